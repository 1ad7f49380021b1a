"""Node's command-line shape under kuai, compared with the pinned node where
node has the same form: --opt=value and --opt value, -p/--print, -c/--check,
-r/--require, --import, --env-file, a script on stdin, Node and V8 options
passed through, the runtime's version, and the REPL (through a
pseudo-terminal)."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import time
from pathlib import Path

import pytest

from conftest import KUAI, NODE, NODE_VERSION, free_port
from script_harness import NO_SCRIPTING

pytestmark = pytest.mark.skipif(NO_SCRIPTING is not None, reason=str(NO_SCRIPTING))

HERE = Path(__file__).resolve().parent
CLI = HERE / "cli_scripts"


def run(cmd, timeout=30, **kw):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              stdin=kw.pop("stdin", subprocess.DEVNULL), **kw)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{cmd} still running after {timeout}s (stdout={e.stdout!r}, stderr={e.stderr!r})")


def kuai(*args, **kw):
    return run([KUAI, *args], **kw)


def node(*args, **kw):
    return run([NODE, *args], **kw)


# ---- the runtime ----

def test_runtime_is_the_pinned_node():
    p = kuai("--threads", "1", str(CLI / "env_and_options.js"))
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)
    assert got["version"] == f"v{NODE_VERSION}", got
    expected = json.loads(node("-p", "JSON.stringify(process.versions)").stdout)
    assert got["v8"] == expected["v8"], (got, expected)


# Short-lived garbage with a few survivors: V8 grows the young generation to
# its cap while this runs; new_space's size is both semi-spaces.
YOUNG_CHURN = ("const keep = []; for (let i = 0; i < 3e6; i++) { const o = { i, s: 'x' + i };"
               " if (i % 50 === 0) keep.push(o); if (keep.length > 2000) keep.length = 0; }"
               " v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size")


def test_young_generation_is_capped_unless_sized(tmp_path):
    """An environment's semi-spaces stop at 4 MiB (node's grow to 16 MiB
    here); a size the user gives, as an option or in NODE_OPTIONS, wins."""
    mib = 1 << 20
    grown = node("-p", YOUNG_CHURN)
    assert grown.returncode == 0, grown.stderr
    assert int(grown.stdout) > 8 * mib, grown.stdout  # the churn does grow it
    capped = kuai("-p", YOUNG_CHURN)
    assert capped.returncode == 0, capped.stderr
    assert int(capped.stdout) <= 8 * mib, capped.stdout
    given = kuai("--max-semi-space-size=16", "-p", YOUNG_CHURN)
    assert given.returncode == 0, given.stderr
    assert int(given.stdout) > 8 * mib, given.stdout
    env = dict(os.environ, NODE_OPTIONS="--max-semi-space-size=16")
    from_env = kuai("-p", YOUNG_CHURN, env=env)
    assert from_env.returncode == 0, from_env.stderr
    assert int(from_env.stdout) > 8 * mib, from_env.stdout
    # process.execArgv shows what the user gave only, as node's does.
    script = tmp_path / "argv.js"
    script.write_text("console.log(JSON.stringify(process.execArgv))")
    for opts in ([], ["--max-old-space-size=64"]):
        got, expected = kuai("--threads", "1", *opts, str(script)), node(*opts, str(script))
        assert got.stdout == expected.stdout, (got, expected)


# ---- --opt=value ----

def test_kuai_options_take_equals(tmp_path):
    """--io=epoll --threads=2 --port=0 (refused before) mean what --io epoll
    etc. mean."""
    (tmp_path / "index.html").write_text("hi\n")
    proc = subprocess.Popen([KUAI, "serve", str(tmp_path), "--io=epoll", "--threads=2", "--port=0",
                             "--host=127.0.0.1", "--max-body=2m"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "(2 threads, epoll)" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
        port = int(re.search(r":(\d+) ", line).group(1))
        assert subprocess.run(["curl", "-sf", f"http://127.0.0.1:{port}/"], capture_output=True,
                              text=True, timeout=10).stdout == "hi\n"
    finally:
        proc.terminate()
        assert proc.wait(timeout=15) == 0


@pytest.mark.parametrize("args,needle", [
    (["--threads=0", "-e", "1"], "--threads"),
    (["--io=kqueue", "-e", "1"], "'kqueue'"),
    (["serve", ".", "--list=yes"], "--list takes no value"),
    (["--port=", "-e", "1"], "--port"),
])
def test_equals_values_are_checked(args, needle):
    p = kuai(*args)
    assert p.returncode == 2, p
    assert p.stderr.startswith("kuai: ") and needle in p.stderr, p.stderr


def test_script_options_both_forms():
    for form in (["--threads", "1", "--env-file", str(CLI / "test.env"), "--max-old-space-size", "64"],
                 ["--threads=1", f"--env-file={CLI / 'test.env'}", "--max-old-space-size=64"]):
        p = kuai(*form, str(CLI / "env_and_options.js"), "a", "--b")
        assert p.returncode == 0, (form, p.stderr)
        got = json.loads(p.stdout)
        assert got["fromEnvFile"] == "from .env file", got
        # kuai's environments have 4 MiB semi-spaces unless told otherwise
        # (see test_young_generation_is_capped_unless_sized).
        expected = node("--max-old-space-size=64", "--max-semi-space-size=4", "-p",
                        "Math.round(require('v8').getHeapStatistics().heap_size_limit / 1048576)")
        assert got["heapLimitMiB"] == int(expected.stdout) and got["heapLimitMiB"] < 1024, (got, expected)
        assert "--max-old-space-size=64" in got["execArgv"], got
        assert got["argv"] == ["a", "--b"], got


# ---- -p, -e, stdin ----

@pytest.mark.parametrize("expr", ["1 + 2", "'text'", "({ a: [1, { b: 2 }], c: 'd' })",
                                  "[process.version, typeof require('fs').readFileSync]",
                                  "Promise.resolve(42)", "undefined"])
def test_print_as_node(expr):
    got, expected = kuai("-p", expr), node("-p", expr)
    assert got.returncode == expected.returncode == 0, (got.stderr, expected.stderr)
    assert got.stdout == expected.stdout, (got.stdout, expected.stdout)


def test_print_long_form_and_kuai_module():
    p = kuai("--print", "Object.keys(require('kuai')).includes('App') && require('kuai').App.name")
    assert p.returncode == 0 and p.stdout == "App\n", p


def test_print_runs_once():
    p = kuai("-p", "console.log('ran'); 'value'")
    assert p.stdout == "ran\nvalue\n", p


def test_eval_is_a_script_like_node():
    """-e code runs in the global scope (var makes a global), require and
    __filename as in node."""
    code = "var x = 5; console.log(globalThis.x, __filename, typeof require, typeof module)"
    got, expected = kuai("--threads", "1", "-e", code), node("-e", code)
    assert got.stdout == expected.stdout == "5 [eval] function object\n", (got, expected)


@pytest.mark.parametrize("code", [
    "console.log(typeof fs, typeof v8, typeof child_process, fs === require('fs'))",
    "http = 5; console.log(http, typeof require('http').createServer)",
    "console.log(Object.keys(globalThis).includes('os'), 'os' in globalThis, typeof fs_promises)",
])
def test_builtins_are_globals_in_eval_as_node(code):
    """node -e and -p see the public builtins as globals (made on first use,
    replaceable); code from stdin does not."""
    got, expected = kuai("--threads", "1", "-e", code), node("-e", code)
    assert got.returncode == expected.returncode == 0, (got.stderr, expected.stderr)
    assert got.stdout == expected.stdout, (got.stdout, expected.stdout)
    got, expected = kuai("--threads", "1", "-", input=code, stdin=None), node("-", input=code, stdin=None)
    assert (got.returncode, got.stdout) == (expected.returncode, expected.stdout), (got, expected)


def test_script_from_stdin():
    """`kuai -` and a bare `kuai` off a terminal read the script from stdin
    (like -e, it runs once per reactor thread)."""
    src = "console.log('from stdin', require('path').basename(__filename))"
    p = kuai("--threads", "1", "-", input=src, stdin=None)
    assert p.returncode == 0 and p.stdout == "from stdin [eval]\n", p
    p = kuai(input=src, stdin=None)
    lines = p.stdout.splitlines()
    assert p.returncode == 0 and lines and set(lines) == {"from stdin [eval]"}, p


# ---- -c ----

def test_check_as_node():
    assert kuai("-c", str(CLI / "good.js")).returncode == 0
    got, expected = kuai("--check", str(CLI / "bad.js")), node("--check", str(CLI / "bad.js"))
    assert got.returncode == expected.returncode == 1, (got, expected)
    assert got.stderr == expected.stderr, (got.stderr, expected.stderr)
    assert f"{CLI / 'bad.js'}:3" in got.stderr and "SyntaxError" in got.stderr, got.stderr


def test_check_needs_a_script():
    p = kuai("-c")
    assert p.returncode == 2 and "needs a script" in p.stderr, p


# ---- -r, --import ----

def test_require_and_import_in_every_environment():
    p = kuai("--threads", "2", "-r", str(CLI / "preload.js"), f"--require={CLI / 'preload.js'}",
             "--import", str(CLI / "preload.mjs"), str(CLI / "uses_preload.js"))
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    # Twice per environment (given twice, loaded once each: module cache), two
    # environments; never in node's own main environment.
    preloads = [l for l in lines if l.startswith("PRELOAD ")]
    assert len(preloads) == 2 and len(set(preloads)) == 2, lines
    assert lines.count("IMPORTED") == 2, lines
    assert lines.count("MAIN preloaded=1 imported=true") == 2, lines
    # Node: the same, once.
    n = node("-r", str(CLI / "preload.js"), "--import", str(CLI / "preload.mjs"), str(CLI / "uses_preload.js"))
    assert n.stdout.splitlines()[1:] == ["IMPORTED", "MAIN preloaded=1 imported=true"], n


def test_require_relative_to_cwd():
    p = kuai("--threads", "1", "-r", "./preload.js", "-p", "globalThis.preloaded", cwd=CLI)
    assert p.returncode == 0 and p.stdout.splitlines()[-1] == "1", p


def test_missing_preload_fails_start():
    p = kuai("--threads", "2", "-r", "./no-such-preload", str(CLI / "good.js"), cwd=CLI)
    assert p.returncode == 1, p
    assert p.stderr.count("Cannot find module './no-such-preload'") == 1, p.stderr


@pytest.mark.parametrize("how", ["listen", "next-tick", "promise"])
def test_failure_in_the_first_turn_ends_the_process(tmp_path, how):
    """An error in the main script's first turn that only surfaces after its
    code ran (a port in use reported by 'error' on the next tick, a throw in
    a next-tick or a rejected promise) ends kuai with status 1, as it ends
    node; each environment started again would fail the same way."""
    import socket
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen(1)
    port = held.getsockname()[1]
    body = {
        "listen": f"require('http').createServer(() => {{}}).listen({port}, '127.0.0.1');",
        "next-tick": "process.nextTick(() => { throw new Error('boom in a tick'); });",
        "promise": "Promise.reject(new Error('boom in a promise'));",
    }[how]
    script = tmp_path / "fails.js"
    script.write_text(f"require('http').createServer(() => {{}}).listen(0, '127.0.0.1');\n{body}\n")
    try:
        t0 = time.monotonic()
        p = kuai("--threads", "2", str(script), timeout=20)
        elapsed = time.monotonic() - t0
        n = node(str(script), timeout=20)
    finally:
        held.close()
    assert n.returncode == 1, n
    assert p.returncode == 1, p
    assert elapsed < 10, elapsed
    needle = {"listen": f"listen EADDRINUSE: address already in use 127.0.0.1:{port}",
              "next-tick": "boom in a tick", "promise": "boom in a promise"}[how]
    assert needle in n.stderr, n.stderr
    # Reported once (the other reactor's environment never starts), then why
    # kuai stops.
    assert p.stderr.count(needle) == 1, p.stderr[-3000:]
    assert "kuai: cannot start: the script failed to start" in p.stderr, p.stderr[-3000:]
    assert "starting a fresh JavaScript environment" not in p.stderr, p.stderr[-3000:]


# ---- the REPL ----

class Pty:
    def __init__(self, args, env=None):
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, close_fds=True,
                                     env={**os.environ, "NODE_REPL_HISTORY": "", **(env or {})})
        os.close(slave)
        self.out = b""

    def read_until(self, needle, timeout=15):
        deadline = time.monotonic() + timeout
        while needle.encode() not in self.out:
            left = deadline - time.monotonic()
            assert left > 0, f"no {needle!r} in {self.out[-2000:]!r}"
            r, _, _ = select.select([self.master], [], [], left)
            if r:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:
                    chunk = b""
                assert chunk, f"pty closed before {needle!r}: {self.out[-2000:]!r}"
                self.out += chunk
        text = self.out.decode("utf-8", "replace")
        self.out = b""
        return text

    def send(self, line):
        os.write(self.master, line.encode() + b"\r")

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        os.close(self.master)


@pytest.mark.parametrize("args", [[], ["-i"]], ids=["no-arguments", "-i"])
def test_repl_on_a_terminal(args):
    t = Pty([KUAI, *args])
    try:
        banner = t.read_until("> ")
        assert f"Node.js v{NODE_VERSION}" in banner, banner
        t.send("require('kuai').Router.name + '/' + process.version")
        t.read_until(f"'Router/v{NODE_VERSION}'")
        t.send("const http = require('http')")
        t.read_until("undefined")
        port = free_port()
        # A server started from the REPL is served by kuai's engine.
        t.send(f"http.createServer((q, s) => s.end('repl ' + q.url)).listen({port}, () => console.log('UP'))")
        t.read_until("UP")
        body = subprocess.run(["curl", "-s", f"http://127.0.0.1:{port}/x"], capture_output=True,
                              text=True, timeout=10).stdout
        assert body == "repl /x", body
        t.send(".exit")
        assert t.proc.wait(timeout=15) == 0
    finally:
        t.close()


def test_repl_from_a_pipe_with_i():
    p = kuai("-i", input="1 + 41\n.exit\n", stdin=None)
    assert p.returncode == 0 and "42" in p.stdout, p


def test_interactive_with_a_script_or_code():
    """-i with a script runs the script (as node); -i -e runs the code, then
    the REPL, where what the code defined is there."""
    p = kuai("-i", str(CLI / "uses_preload.js"), input="", stdin=None)
    assert p.returncode == 0 and "MAIN preloaded=undefined imported=false" in p.stdout, p
    p = kuai("-i", "-e", "var fromCode = 20", input="fromCode + 22\n.exit\n", stdin=None)
    assert p.returncode == 0 and "42" in p.stdout, p
