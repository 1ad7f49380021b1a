"""--inspect, --inspect-brk and --inspect-wait: every reactor thread's
environment gets an inspector of its own (port, port+1, ...), each printed,
speaking the Chrome DevTools protocol: Runtime.evaluate on thread k's
inspector runs in thread k's environment."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
import urllib.request

import pytest

from conftest import KUAI, free_port
from script_harness import NO_SCRIPTING, SCRIPTS
from wsclient import WebSocket

pytestmark = pytest.mark.skipif(NO_SCRIPTING is not None, reason=str(NO_SCRIPTING))


def two_free_ports():
    """A port p with p+1 free too."""
    for _ in range(50):
        p = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p + 1))
            except OSError:
                continue
        return p
    pytest.fail("no two consecutive free ports")


class Debugged:
    def __init__(self, *flags, threads=2):
        self.port = free_port()
        self.proc = subprocess.Popen([KUAI, "--threads", str(threads), *flags, str(SCRIPTS / "inspect_app.js")],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env={"PORT": str(self.port), "PATH": "/usr/bin:/bin"})
        self.err = ""

    def wait_stderr(self, pattern, count=1, timeout=15):
        import os
        import select
        deadline = time.monotonic() + timeout
        fd = self.proc.stderr.fileno()
        while len(re.findall(pattern, self.err)) < count:
            left = deadline - time.monotonic()
            assert left > 0 and self.proc.poll() is None, f"no {count}x {pattern!r} in stderr: {self.err!r}"
            r, _, _ = select.select([fd], [], [], left)
            if r:
                self.err += os.read(fd, 65536).decode()
        return re.findall(pattern, self.err)

    def stop(self):
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=15)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


def targets(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
        return json.loads(r.read())


def evaluate(ws, expression):
    r = ws.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                     "includeCommandLineAPI": True})
    assert "exceptionDetails" not in r, r
    return r["result"]["value"]


def test_an_inspector_per_thread():
    base = two_free_ports()
    d = Debugged(f"--inspect=127.0.0.1:{base}")
    try:
        urls = d.wait_stderr(r"Debugger listening on (ws://127\.0\.0\.1:\d+/[\w-]+)", count=2)
        ports = sorted(int(re.search(r":(\d+)/", u).group(1)) for u in urls)
        assert ports == [base, base + 1], urls
        seen = set()
        for port in ports:
            t = targets(port)
            assert len(t) == 1 and t[0]["webSocketDebuggerUrl"].startswith(f"ws://127.0.0.1:{port}/"), t
            assert "devtoolsFrontendUrl" in t[0], t
            ws = WebSocket(t[0]["webSocketDebuggerUrl"])
            try:
                tag = evaluate(ws, "globalThis.threadTag")
                assert evaluate(ws, "require('worker_threads').threadId") == int(tag.split("-")[1])
                assert evaluate(ws, "process.version") == subprocess.run(
                    [KUAI, "-p", "process.version"], capture_output=True, text=True, timeout=30).stdout.strip()
            finally:
                ws.close()
            seen.add(tag)
        assert len(seen) == 2, seen
        # The threads that answer requests are those the inspectors looked into.
        answered = set()
        for _ in range(40):
            with urllib.request.urlopen(f"http://127.0.0.1:{d.port}/", timeout=10) as r:
                answered.add(r.read().decode())
        assert answered <= seen and answered, (answered, seen)
    finally:
        assert d.stop() == 0, d.err


def test_inspect_brk_pauses_on_the_first_line():
    base = free_port()
    d = Debugged(f"--inspect-brk={base}", threads=1)
    try:
        d.wait_stderr(r"Debugger listening on ws://127\.0\.0\.1:%d/" % base)
        ws = WebSocket(targets(base)[0]["webSocketDebuggerUrl"])
        try:
            ws.call("Debugger.enable")
            ws.call("Runtime.runIfWaitingForDebugger")
            paused = ws.wait_event("Debugger.paused")
            frame = paused["params"]["callFrames"][0]
            scripts = {e["params"]["scriptId"]: e["params"]["url"] for e in ws.events
                       if e.get("method") == "Debugger.scriptParsed"}
            assert scripts.get(frame["location"]["scriptId"], "").endswith("inspect_app.js"), frame
            # The script's first statement (line 3, after the comments), before it ran.
            assert frame["location"]["lineNumber"] == 3, frame
            assert evaluate(ws, "typeof globalThis.threadTag") == "undefined"
            # Paused: the server is not listening yet.
            with socket.socket() as s:
                assert s.connect_ex(("127.0.0.1", d.port)) != 0, "serving while paused"
            ws.call("Debugger.resume")
        finally:
            ws.close()
        line = d.proc.stdout.readline()
        assert line.startswith("LISTENING"), line
    finally:
        assert d.stop() == 0, d.err


def test_inspect_wait_waits_for_a_debugger():
    base = free_port()
    d = Debugged(f"--inspect-wait=127.0.0.1:{base}", threads=1)
    try:
        d.wait_stderr(r"Debugger listening on ws://127\.0\.0\.1:%d/" % base)
        time.sleep(0.5)
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", d.port)) != 0, "serving before a debugger attached"
        ws = WebSocket(targets(base)[0]["webSocketDebuggerUrl"])
        try:
            ws.call("Runtime.runIfWaitingForDebugger")
            line = d.proc.stdout.readline()
            assert line.startswith("LISTENING"), line
        finally:
            ws.close()
    finally:
        assert d.stop() == 0, d.err
