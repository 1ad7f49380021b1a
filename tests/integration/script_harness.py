"""The harness of the scripting tests (test_scripting*.py and others): one
script run under `kuai --threads 2` and under the pinned `node` (a Pair of
ScriptProcs), requests sent to both, and the responses compared (shape,
exchange, same_response). What is compared and why is in test_scripting.py."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from conftest import KUAI, NODE, SANITIZER_MARKERS, no_scripting_reason
from httpraw import Conn, build

HERE = Path(__file__).resolve().parent
SCRIPTS = HERE / "scripts"
# Reactor threads for kuai (KUAI_SCRIPT_THREADS overrides; 1 lets KUAI_BIN point at a
# wrapper that runs node, to check the tests themselves).
THREADS = int(os.environ.get("KUAI_SCRIPT_THREADS", "2"))
START_TIMEOUT = 20.0
FRAMING = ("date", "connection", "keep-alive", "content-length", "transfer-encoding")


NO_SCRIPTING = no_scripting_reason()


def free_ports(n):
    """n distinct ports that were free on 127.0.0.1 a moment ago."""
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


class ScriptProc:
    """A script running under kuai (--threads 2) or node; stdout and stderr go
    to files. start() waits for `ready` lines matching a pattern (kuai: one per
    reactor thread)."""

    _counter = 0

    def __init__(self, runtime, script, logdir, args=(), env=None, cwd=None,
                 threads=THREADS):
        ScriptProc._counter += 1
        self.runtime = runtime
        self.threads = threads if runtime == "kuai" else 1
        if runtime == "kuai":
            self.cmd = [KUAI, "--threads", str(threads), str(script), *args]
        else:
            self.cmd = [NODE, str(script), *args]
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        n = ScriptProc._counter
        self.out_path = Path(logdir) / f"{runtime}-{Path(script).stem}-{n}.out"
        self.err_path = Path(logdir) / f"{runtime}-{Path(script).stem}-{n}.err"
        self.proc = None
        self.port = None

    def __repr__(self):
        return f"<{self.runtime}: {' '.join(self.cmd[1:])}>"

    def start(self, ready=r"^LISTENING (\d+)", count=None):
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=err,
                                         stdin=subprocess.DEVNULL, env=self.env,
                                         cwd=self.cwd)
        lines = self.wait_lines(ready, count or self.threads, START_TIMEOUT)
        m = re.search(ready, lines[0])
        if m and m.groups():
            self.port = int(m.group(1))
        return self

    def stdout(self):
        return self.out_path.read_bytes().decode("utf-8", "replace")

    def stderr(self):
        return self.err_path.read_bytes().decode("utf-8", "replace")

    def lines(self, pattern):
        return [l for l in self.stdout().splitlines() if re.search(pattern, l)]

    def wait_lines(self, pattern, count=1, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            got = self.lines(pattern)
            if len(got) >= count:
                return got
            if self.proc.poll() is not None:
                pytest.fail(f"{self} exited with {self.proc.returncode} before printing "
                            f"{count} line(s) matching {pattern!r}\nstdout: "
                            f"{self.stdout()[-1500:]}\nstderr: {self.stderr()[-2500:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"{self}: {len(got)} of {count} line(s) matching {pattern!r} "
                            f"after {timeout}s\nstdout: {self.stdout()[-1500:]}\n"
                            f"stderr: {self.stderr()[-2500:]}")
            time.sleep(0.02)

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        """SIGTERM and wait; returns problems found (kuai must exit 0 without
        sanitizer reports; node's exit status on SIGTERM is not checked)."""
        if self.proc is None:
            return []
        problems = []
        if self.proc.poll() is not None:
            problems.append(f"{self} had exited with {self.proc.returncode} before the "
                            "end of the test")
        else:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                problems.append(f"{self} still running 15s after SIGTERM")
            else:
                if self.runtime == "kuai" and self.proc.returncode != 0:
                    problems.append(f"{self} exited with {self.proc.returncode} on SIGTERM")
        if self.runtime == "kuai":
            err = self.stderr()
            for marker in SANITIZER_MARKERS:
                if marker in err:
                    problems.append(f"'{marker}' in the stderr of {self}")
        return problems

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Pair:
    """The same script under the pinned node and under kuai."""

    def __init__(self, node, kuai):
        self.node = node
        self.kuai = kuai

    def procs(self):
        return [p for p in (self.node, self.kuai) if p is not None]


def start_pair(logdir, script, env=None, args=(), cwd=None, ready=r"^LISTENING (\d+)",
               kuai_env=None):
    """Starts the script under node (if present) and kuai, each on its own free
    port given as $PORT."""
    procs = {}
    for runtime in ("node", "kuai"):
        port = free_ports(1)[0]
        e = {"PORT": str(port), **(env or {})}
        if runtime == "kuai" and kuai_env:
            e.update(kuai_env)
        p = ScriptProc(runtime, script, logdir, args=args, env=e, cwd=cwd)
        procs[runtime] = p
        try:
            p.start(ready=ready)
        except BaseException:
            for q in procs.values():
                if q is not None:
                    q.kill()
            raise
    return Pair(procs["node"], procs["kuai"])


def stop_pair(pair):
    problems = []
    for p in pair.procs():
        problems += p.stop()
    return problems


@contextlib.contextmanager
def running_pair(logdir, script, **kwargs):
    """start_pair(...) for a with block (a module fixture's life); both
    processes must then stop cleanly (exit status, no sanitizer report) or
    the fixture fails."""
    pair = start_pair(logdir, script, **kwargs)
    try:
        yield pair
    finally:
        problems = stop_pair(pair)
    if problems:
        pytest.fail("\n".join(problems))


# --------------------------------------------------------------------------
# Comparing responses
# --------------------------------------------------------------------------

def shape(resp, keep_alive_value=False):
    """What must be the same under kuai and node (see the module docstring)."""
    framing = {}
    for k, v in resp.headers:
        lk = k.lower()
        if lk in ("connection", "content-length", "transfer-encoding"):
            framing.setdefault(lk, []).append(v)
        elif lk == "keep-alive":
            framing.setdefault(lk, []).append(
                v if keep_alive_value else re.sub(r"timeout=\d+", "timeout=N", v))
    return {
        "version": resp.version,
        "status": resp.status,
        "reason": resp.reason,
        "headers": [(k, v) for k, v in resp.headers if k.lower() not in FRAMING],
        "framing": framing,
        "has_date": resp.header("Date") is not None,
        "body": resp.body,
    }


def exchange(port, requests, heads=None, timeout=5.0):
    """Sends each request on one connection (waiting for each response) and
    returns the responses; heads: which ones answer HEAD."""
    out = []
    with Conn(port, timeout=timeout) as c:
        for i, req in enumerate(requests):
            c.send(req)
            _, r = c.read_final(head=bool(heads and heads[i]))
            out.append(r)
    return out


def both(pair, probe):
    """probe(proc) under node (None when node is missing) and under kuai."""
    expected = probe(pair.node) if pair.node is not None else None
    got = probe(pair.kuai)
    return expected, got


def assert_same(pair, probe, what):
    """probe(proc) under node and under kuai must give equal results; returns
    kuai's."""
    expected, got = both(pair, probe)
    if pair.node is not None:
        assert got == expected, (
            f"{what}: kuai differs from node\n  node: {expected!r}\n  kuai: {got!r}")
    return got


def same_response(pair, req, what, head=False, keep_alive_value=False):
    return assert_same(pair, lambda p: shape(exchange(p.port, [req], heads=[head])[0],
                                             keep_alive_value), what)


def key():
    return uuid.uuid4().hex[:12]


def get_json(port, path):
    r = exchange(port, [build("GET", path)])[0]
    assert r.status == 200, r
    return json.loads(r.body)
