"""kuai --watch: when a file the script loaded changes, each reactor thread
replaces its environment with a fresh one running the new code, one thread at
a time, while the listening sockets stay open. Under a steady load (new and
keep-alive connections) no request fails or is refused, and the answers
switch to the new code."""

from __future__ import annotations

import http.client
import os
import re
import shutil
import subprocess
import threading
import time

import pytest

from conftest import KUAI, free_port
from script_harness import NO_SCRIPTING, SCRIPTS

pytestmark = pytest.mark.skipif(NO_SCRIPTING is not None, reason=str(NO_SCRIPTING))


class Load:
    """Clients asking / in a loop: keep-alive connections, a new one every
    few requests."""

    def __init__(self, port, clients=6):
        self.port = port
        self.stop_flag = threading.Event()
        self.lock = threading.Lock()
        self.answers = []   # (time, body)
        self.errors = []
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True) for i in range(clients)]
        for t in self.threads:
            t.start()

    def run(self, i):
        while not self.stop_flag.is_set():
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
            try:
                for _ in range(5 + i):
                    conn.request("GET", "/")
                    r = conn.getresponse()
                    body = r.read().decode()
                    with self.lock:
                        if r.status != 200:
                            self.errors.append(f"status {r.status}: {body!r}")
                        else:
                            self.answers.append((time.monotonic(), body))
            except Exception as e:  # refused, reset, timed out: all failures here
                with self.lock:
                    self.errors.append(repr(e))
            finally:
                conn.close()

    def finish(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(timeout=30)


def start(tmp_path, *flags, threads=2):
    shutil.copy(SCRIPTS / "watch_app.js", tmp_path / "app.js")
    (tmp_path / "watch_version.js").write_text("module.exports = 'v1';\n")
    port = free_port()
    proc = subprocess.Popen([KUAI, "--threads", str(threads), *flags, "app.js"], cwd=tmp_path,
                            env={**os.environ, "PORT": str(port)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for _ in range(threads):
        line = proc.stdout.readline()
        assert line.startswith("LISTENING"), (line, proc.stderr.read() if proc.poll() is not None else "")
    # The watching starts just after: an edit in the same instant could be
    # missed (as with node --watch).
    time.sleep(1)
    return proc, port


def wait_for(pred, timeout=20, what=""):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out: {what}"
        time.sleep(0.05)


def edit(path, text):
    """As an editor saves: write a new file and rename it over the old one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def test_watch_swaps_environments_under_load(tmp_path):
    proc, port = start(tmp_path, "--watch")
    load = Load(port)
    try:
        wait_for(lambda: len(load.answers) > 200, what="load started")
        edit(tmp_path / "watch_version.js", "module.exports = 'v2';\n")
        edited = time.monotonic()
        # Both threads answer with the new code, and then only the new code.
        def switched():
            with load.lock:
                late = [b for t, b in load.answers if t > edited + 0.5]
                recent = [b for t, b in load.answers[-60:]]
            return (len({b.split()[1] for b in late if b.startswith("v2 ")}) == 2 and
                    recent and all(b.startswith("v2 ") for b in recent))
        wait_for(switched, what="answers from v2 on both threads")
        time.sleep(0.5)
    finally:
        load.finish()
        proc.terminate()
        code = proc.wait(timeout=20)
        err = proc.stderr.read()
    assert load.errors == [], f"{len(load.errors)} failed requests, e.g. {load.errors[:5]}\nstderr: {err}"
    assert code == 0, err
    versions = [b.split()[0] for _, b in load.answers]
    assert versions.count("v1") > 100 and versions.count("v2") > 100, (versions.count("v1"), versions.count("v2"))
    assert "watch_version.js changed" in err, err
    assert len(re.findall(r"thread \d: watch_version\.js changed; starting a fresh", err)) == 2, err


def test_watch_keeps_going_after_a_broken_edit(tmp_path):
    """A syntax error in the new code: that environment cannot start (its
    error printed; its port stays open and answers 503 meanwhile); the next
    good edit brings it back."""
    proc, port = start(tmp_path, "--watch", threads=1)
    try:
        edit(tmp_path / "watch_version.js", "module.exports = 'v2'\n  oops(;\n")
        wait_for(lambda: subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                         f"http://127.0.0.1:{port}/"], capture_output=True, text=True,
                                        timeout=10).stdout == "503", what="503 while broken")
        edit(tmp_path / "watch_version.js", "module.exports = 'v3';\n")
        wait_for(lambda: subprocess.run(["curl", "-s", f"http://127.0.0.1:{port}/"], capture_output=True,
                                        text=True, timeout=10).stdout.startswith("v3 "), what="v3")
    finally:
        proc.terminate()
        code = proc.wait(timeout=20)
        err = proc.stderr.read()
    assert code == 0, err
    assert "SyntaxError" in err and "did not start again" in err, err


def test_watch_path(tmp_path):
    """--watch-path DIR: a change anywhere under it reloads, even in a file the
    script never loaded."""
    (tmp_path / "conf").mkdir()
    proc, port = start(tmp_path, "--watch-path", "conf", threads=1)
    try:
        (tmp_path / "watch_version.js").write_text("module.exports = 'v2';\n")
        (tmp_path / "conf" / "other.txt").write_text("x\n")
        wait_for(lambda: subprocess.run(["curl", "-s", f"http://127.0.0.1:{port}/"], capture_output=True,
                                        text=True, timeout=10).stdout.startswith("v2 "), what="v2")
    finally:
        proc.terminate()
        code = proc.wait(timeout=20)
    assert code == 0
