"""Running under systemd: kuai speaks the notify protocol (Type=notify) to
$NOTIFY_SOCKET: READY=1 once it serves, RELOADING=1 then READY=1 around a
SIGHUP, STOPPING=1 when a stop begins; and it takes listening sockets passed
by socket activation ($LISTEN_FDS / $LISTEN_PID, fds 3..). The tests play
systemd's part with sockets of their own."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

from conftest import KUAI
from httpraw import Conn, get


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


def serves_then_stops(proc):
    """The banner comes, SIGTERM ends it with status 0; returns its stderr."""
    try:
        assert "serving" in proc.stdout.readline()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        return proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def serve_with_env(tmp_path, **env):
    """kuai serve DIR on a free port with extra environment variables."""
    root = tmp_path / "www"
    root.mkdir()
    return subprocess.Popen([KUAI, "serve", str(root), "--port", "0"], env=dict(os.environ, **env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


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
    serves_then_stops(serve_with_env(tmp_path, NOTIFY_SOCKET=str(tmp_path / "missing.sock")))


def activated(args, sockets, env_extra=None):
    """Starts kuai as systemd would for socket activation: the listening
    sockets as fds 3.., LISTEN_FDS and LISTEN_PID (the child's own pid)."""
    fds = [s.fileno() for s in sockets]

    def child():
        # Copies first (a target fd may be one of the sources), then in place.
        copies = [os.dup(fd) for fd in fds]
        for i, fd in enumerate(copies):
            os.dup2(fd, 3 + i)
            os.set_inheritable(3 + i, True)
        os.environ["LISTEN_PID"] = str(os.getpid())
        os.environ["LISTEN_FDS"] = str(len(fds))
        for k, v in (env_extra or {}).items():
            os.environ[k] = v

    return subprocess.Popen([KUAI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=child, close_fds=False)


def listening_socket():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(128)
    return s, s.getsockname()[1]


def test_socket_activation(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    (root / "a.txt").write_text("activated\n")
    s1, port1 = listening_socket()
    s2, port2 = listening_socket()
    config = tmp_path / "kuai.config.json"
    config.write_text(json.dumps({"threads": 2, "listen": [{"port": port1}, {"port": port2}],
                                  "routes": [{"match": "/", "static": str(root)}]}))
    # The sockets stay ours: a client can connect before kuai even runs.
    early = Conn(port1, timeout=10)
    proc = activated(["--config", str(config)], [s1, s2])
    try:
        assert "serving" in proc.stdout.readline()
        early.send(get("/a.txt", headers=[("Connection", "close")]))
        r = early.read_response()
        assert r.status == 200 and r.body == b"activated\n", r.raw
        for port in (port1, port2):
            for _ in range(4):  # both reactors take from the one socket
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/a.txt", timeout=5) as r:
                    assert r.read() == b"activated\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert "socket activation passed sockets" not in proc.stderr.read()
        # The sockets are systemd's: they still listen for the next start.
        with socket.create_connection(("127.0.0.1", port1), timeout=5):
            pass
        conn, _ = s1.accept()
        conn.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        early.close()
        s1.close()
        s2.close()


def test_socket_activation_unused_socket_is_named(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    s1, port1 = listening_socket()
    extra, port2 = listening_socket()
    config = tmp_path / "kuai.config.json"
    config.write_text(json.dumps({"listen": [{"port": port1}], "routes": [{"match": "/", "static": str(root)}]}))
    proc = activated(["--config", str(config)], [s1, extra])
    try:
        err = serves_then_stops(proc)
        assert f"socket activation passed sockets no listener uses: 127.0.0.1:{port2}" in err, err
    finally:
        s1.close()
        extra.close()


def test_listen_pid_of_another_process_is_ignored(tmp_path):
    # LISTEN_PID names another process: the fds are not kuai's to take.
    serves_then_stops(serve_with_env(tmp_path, LISTEN_PID="1", LISTEN_FDS="1"))


def journal_run(args, match=True, signal_after_banner=None, timeout=15, **extra_env):
    """Runs kuai with stderr on a pipe that $JOURNAL_STREAM names (as systemd
    does for StandardError=journal), or names another file when not `match`."""
    r, w = os.pipe()
    st = os.fstat(w)
    stream = f"{st.st_dev}:{st.st_ino if match else st.st_ino + 1}"
    env = dict(os.environ, JOURNAL_STREAM=stream, **extra_env)
    proc = subprocess.Popen([KUAI, *args], env=env, stdout=subprocess.PIPE, stderr=w, text=True)
    os.close(w)
    try:
        if signal_after_banner:
            assert "serving" in proc.stdout.readline()
            for sig in signal_after_banner:
                proc.send_signal(sig)
                time.sleep(0.3)
        code = proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with os.fdopen(r) as f:
        return code, f.read()


def test_journal_lines_carry_their_priority(tmp_path):
    code, err = journal_run(["--config", str(tmp_path / "missing.json")])
    assert code == 1
    assert err.startswith("<3>kuai: ") and "missing.json" in err, err
    # Every line of the stream has its priority.
    root = tmp_path / "www"
    root.mkdir()
    # An upgrade whose new binary fails: information, then an error.
    code, err = journal_run(["serve", str(root), "--port", "0"], KUAI_EXE="/bin/false",
                            signal_after_banner=[signal.SIGUSR2, signal.SIGTERM])
    assert code == 0
    lines = err.splitlines()
    assert lines and all(l[:3] in ("<3>", "<4>", "<5>", "<6>") for l in lines), lines
    assert any(l.startswith("<6>kuai: SIGUSR2: starting /bin/false ") for l in lines), lines
    assert any(l.startswith("<3>kuai: SIGUSR2: the new process did not start") for l in lines), lines


def test_no_priority_prefix_outside_the_journal(tmp_path):
    code, err = journal_run(["--config", str(tmp_path / "missing.json")], match=False)
    assert code == 1
    assert err.startswith("kuai: ") and "<3>" not in err, err


def test_sticky_with_one_socket_passed_in_serves_and_says_why_it_cannot_steer(tmp_path):
    # One socket passed in is shared by every reactor: nothing to steer
    # between, so --sticky cannot apply; kuai says so and serves.
    root = tmp_path / "www"
    root.mkdir()
    (root / "a.txt").write_text("activated\n")
    s, port = listening_socket()
    config = tmp_path / "kuai.config.json"
    config.write_text(json.dumps({"threads": 2, "sticky": True, "listen": [{"port": port}],
                                  "routes": [{"match": "/", "static": str(root)}]}))
    proc = activated(["--config", str(config)], [s])
    try:
        assert "serving" in proc.stdout.readline()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/a.txt", timeout=5) as r:
            assert r.read() == b"activated\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert f"warning: --sticky: 127.0.0.1:{port}:" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
        s.close()
