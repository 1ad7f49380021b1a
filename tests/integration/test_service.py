"""Running under systemd: kuai speaks the notify protocol (Type=notify) to
$NOTIFY_SOCKET: READY=1 once it serves, RELOADING=1 then READY=1 around a
SIGHUP, STOPPING=1 when a stop begins. The test plays systemd's part with a
datagram socket of its own."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import urllib.request

import pytest

from conftest import KUAI


def messages(sock, until, timeout=10):
    got = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            data = sock.recv(4096).decode()
        except socket.timeout:
            break
        got.append(dict(line.split("=", 1) for line in data.split("\n") if "=" in line))
        if until(got[-1]):
            return got
    raise AssertionError(f"no message satisfying the wait; got {got}")


@pytest.mark.parametrize("abstract", [False, True])
def test_notify_ready_reload_stopping(tmp_path, abstract):
    root = tmp_path / "www"
    root.mkdir()
    (root / "a.txt").write_text("a\n")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if abstract:
        name = f"@kuai-test-{os.getpid()}-{time.monotonic_ns()}"
        sock.bind("\0" + name[1:])
    else:
        name = str(tmp_path / "notify.sock")
        sock.bind(name)
    config = tmp_path / "kuai.config.json"
    config.write_text(json.dumps({"listen": [{"port": 0}], "routes": [{"match": "/", "static": str(root)}]}))
    env = dict(os.environ, NOTIFY_SOCKET=name)
    import subprocess
    proc = subprocess.Popen([KUAI, "--config", str(config), "--threads", "2"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready = messages(sock, lambda m: m.get("READY") == "1")[-1]
        assert ready["MAINPID"] == str(proc.pid), ready
        # It serves by the time it says so.
        line = proc.stdout.readline()
        port = int(line.rsplit(":", 1)[1].split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/a.txt", timeout=5) as r:
            assert r.read() == b"a\n"
        proc.send_signal(signal.SIGHUP)
        got = messages(sock, lambda m: m.get("READY") == "1")
        assert got[0].get("RELOADING") == "1" and int(got[0]["MONOTONIC_USEC"]) > 0, got
        proc.send_signal(signal.SIGTERM)
        got = messages(sock, lambda m: m.get("STOPPING") == "1")
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.close()


def test_no_notify_socket_is_fine(tmp_path):
    import subprocess
    root = tmp_path / "www"
    root.mkdir()
    env = dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "missing.sock"))
    proc = subprocess.Popen([KUAI, "serve", str(root), "--port", "0"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "serving" in proc.stdout.readline()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
