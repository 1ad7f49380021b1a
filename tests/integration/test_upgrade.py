"""Zero-downtime upgrade of the binary: on SIGUSR2 kuai starts the executable
it was started from ($KUAI_EXE here: a wrapper that records its start, then
runs kuai) on the same listening sockets; once the new process serves, the old
one drains and exits. Under load, no request fails: the clients open a new
connection for every request, so each one lands on whichever process accepts
it at that moment."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import KUAI, SANITIZER_MARKERS
from httpraw import get, roundtrip

SERVES_RE = re.compile(r"SIGUSR2: pid (\d+) serves; pid (\d+) drains")


class Lines:
    """Collects a pipe's lines on a thread (the new process shares the old
    one's stdout and stderr, so they stay open after the old one exits)."""

    def __init__(self, pipe):
        self.lines: list[str] = []
        self.cond = threading.Condition()
        threading.Thread(target=self._read, args=(pipe,), daemon=True).start()

    def _read(self, pipe):
        for line in pipe:
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()

    def wait_for(self, pattern, timeout=30):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.lines:
                    m = re.search(pattern, line)
                    if m:
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no line matching {pattern!r}: {self.lines}")
                self.cond.wait(left)

    def text(self):
        with self.cond:
            return "".join(self.lines)


def fetch(port, path):
    """GET on a new connection, closed after the answer."""
    return roundtrip(port, get(path, headers=[("Connection", "close")]), timeout=10)


class Load:
    """Clients that each open a new connection per request until stopped."""

    def __init__(self, port, path, expect, clients=4):
        self.ok = 0
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._client, args=(port, path, expect)) for _ in range(clients)]
        for t in self.threads:
            t.start()

    def _client(self, port, path, expect):
        while not self.stop.is_set():
            try:
                r = fetch(port, path)
                with self.lock:
                    if r.status == 200 and r.body == expect:
                        self.ok += 1
                    else:
                        self.errors.append(repr(r.raw[:200]))
            except (OSError, AssertionError) as e:  # (httpraw's timeouts and early closes)
                with self.lock:
                    self.errors.append(repr(e))

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)
        return self.ok, self.errors


def wrapper(tmp_path, command='exec "$KUAI_REAL" "$@"'):
    """An executable standing for the new binary: notes its pid, then runs kuai."""
    path = tmp_path / "kuai-new"
    path.write_text(f'#!/bin/sh\necho $$ >> "{tmp_path}/started"\n{command}\n')
    path.chmod(0o755)
    return path


def wait_gone(pid, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(") ", 1)[1].startswith("Z"):
                    return
        except FileNotFoundError:
            return
        time.sleep(0.05)
    raise AssertionError(f"pid {pid} still running")


def start(tmp_path, args, exe, **env):
    e = dict(os.environ, KUAI_EXE=str(exe), KUAI_REAL=KUAI, **env)
    proc = subprocess.Popen([KUAI, *args], env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, Lines(proc.stdout), Lines(proc.stderr)


def port_of(out):
    return int(out.wait_for(r"127\.0\.0\.1:(\d+)", timeout=30).group(1))


def end(proc, new_pid, err):
    """Whatever is left of the old process goes; the new one (not our child)
    is stopped as a service would be, and neither said anything a sanitizer
    would."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    if new_pid:
        os.kill(new_pid, signal.SIGTERM)
        wait_gone(new_pid)
    text = err.text()
    assert not any(m in text for m in SANITIZER_MARKERS), text


@pytest.mark.parametrize("io", ["uring", "epoll"])
def test_upgrade_under_load_loses_nothing(tmp_path, io):
    root = tmp_path / "www"
    root.mkdir()
    body = b"x" * 3000 + b"end\n"
    (root / "page.txt").write_bytes(body)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(10)
    proc, out, err = start(tmp_path, ["serve", str(root), "--port", "0", "--threads", "2", "--io", io],
                           wrapper(tmp_path), NOTIFY_SOCKET=str(tmp_path / "notify.sock"))
    new_pid = None
    try:
        port = port_of(out)
        assert b"READY=1" in notify.recv(4096)
        load = Load(port, "/page.txt", body)
        time.sleep(0.5)
        proc.send_signal(signal.SIGUSR2)
        m = err.wait_for(SERVES_RE)
        new_pid, old_pid = int(m.group(1)), int(m.group(2))
        assert old_pid == proc.pid
        assert proc.wait(timeout=20) == 0
        time.sleep(0.5)  # the new process alone
        ok, errors = load.finish()
        assert errors == [], errors[:5]
        assert ok > 50, ok
        # The wrapper ran once, and became the process that now serves.
        assert (tmp_path / "started").read_text().split() == [str(new_pid)]
        assert fetch(port, "/page.txt").body == body
        # systemd is told which process is the service's from now on.
        msgs = b""
        while b"MAINPID=%d" % new_pid not in msgs:
            msgs += notify.recv(4096)
        assert b"READY=1" in msgs
        # It can be upgraded in turn.
        os.kill(new_pid, signal.SIGUSR2)
        third = err.wait_for(rf"SIGUSR2: pid (\d+) serves; pid {new_pid} drains")
        wait_gone(new_pid)
        new_pid = int(third.group(1))
        assert fetch(port, "/page.txt").body == body
    finally:
        end(proc, new_pid, err)
        notify.close()


def test_upgrade_that_fails_keeps_the_old_process_serving(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    (root / "a.txt").write_text("still here\n")
    config = tmp_path / "kuai.config.json"
    config.write_text(json.dumps({"listen": [{"port": 0}], "routes": [{"match": "/", "static": str(root)}]}))
    proc, out, err = start(tmp_path, ["--config", str(config)], wrapper(tmp_path))
    try:
        port = port_of(out)
        # The config went bad meanwhile: the new process refuses to start.
        config.write_text("{ not json")
        proc.send_signal(signal.SIGUSR2)
        err.wait_for(r"SIGUSR2: the new process did not start \(exit status 1\); still serving")
        assert fetch(port, "/a.txt").body == b"still here\n"
        # An executable that cannot run.
        (tmp_path / "kuai-new").unlink()
        proc.send_signal(signal.SIGUSR2)
        err.wait_for(r"SIGUSR2: cannot start the new binary: .*kuai-new: No such file or directory")
        assert fetch(port, "/a.txt").body == b"still here\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_upgrade_of_an_app_site_finishes_requests_in_flight(tmp_path):
    app = tmp_path / "app.js"
    app.write_text("""
module.exports = (req, res) => {
  const reply = () => { res.setHeader('x-pid', String(process.pid)); res.end('done ' + req.url + '\\n'); };
  if (req.url === '/slow') setTimeout(reply, 1500); else reply();
};
""")
    config = tmp_path / "kuai.config.js"
    config.write_text(f"module.exports = {{ listen: [{{ port: 0 }}], routes: [{{ match: '/', app: {json.dumps(str(app))} }}] }};\n")
    proc, out, err = start(tmp_path, ["--config", str(config), "--threads", "2"], wrapper(tmp_path))
    new_pid = None
    try:
        port = port_of(out)
        load = Load(port, "/fast", b"done /fast\n", clients=2)
        slow: dict = {}
        t = threading.Thread(target=lambda: slow.setdefault("r", fetch(port, "/slow")))
        t.start()
        time.sleep(0.3)  # the slow request is in the old process
        proc.send_signal(signal.SIGUSR2)
        m = err.wait_for(SERVES_RE, timeout=60)
        new_pid = int(m.group(1))
        assert proc.wait(timeout=20) == 0
        t.join(timeout=10)
        assert slow["r"].body == b"done /slow\n", slow
        assert slow["r"].header("x-pid") == str(proc.pid)
        ok, errors = load.finish()
        assert errors == [], errors[:5]
        assert ok > 10, ok
        assert fetch(port, "/fast").header("x-pid") == str(new_pid)
    finally:
        end(proc, new_pid, err)


def test_stop_during_an_upgrade_stops_the_new_process_too(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    # A new binary slow to start: the stop comes before it serves.
    proc, out, err = start(tmp_path, ["serve", str(root), "--port", "0"],
                           wrapper(tmp_path, 'sleep 5; exec "$KUAI_REAL" "$@"'))
    try:
        port_of(out)
        proc.send_signal(signal.SIGUSR2)
        err.wait_for(r"SIGUSR2: starting ")
        started = tmp_path / "started"
        deadline = time.monotonic() + 10
        while not started.exists() or not started.read_text().strip():
            assert time.monotonic() < deadline, "the new binary did not start"
            time.sleep(0.02)
        child = int(started.read_text().split()[0])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        err.wait_for(rf"stopping: the new process \(pid {child}\) had not started serving; it is stopped too")
        wait_gone(child, timeout=10)
    finally:
        end(proc, None, err)
