"""Config files: `kuai --check-config FILE` and `kuai --config FILE`.

.json files are read by kuai itself; .js/.cjs/.mjs files are evaluated once by
the pinned node (tools/setup). Every error is one stderr line
`kuai: FILE: KEY.PATH: ...` and exit code 1; Node's own report of a broken
script (SyntaxError with file:line, a missing module) comes before it."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import KUAI, KuaiServer, SANITIZER_MARKERS, run_kuai
from httpraw import Conn, get


def needs_node(test):
    """(.js configs are evaluated by the pinned node, which every run has.)"""
    return test


@pytest.fixture
def site(tmp_path):
    """A directory with what configs point at: public/, app.js, logs/."""
    (tmp_path / "public").mkdir()
    (tmp_path / "public" / "index.html").write_text("hello\n")
    (tmp_path / "app.js").write_text("module.exports = {};\n")
    (tmp_path / "logs").mkdir()
    return tmp_path


GOOD = {
    "threads": 2,
    "io": "epoll",
    "listen": [{"host": "127.0.0.1", "port": 0}, 0],
    "routes": [
        {"match": "/static/", "static": {"root": "./public", "list": False}},
        {"match": "/api/", "methods": ["get", "POST"],
         "proxy": {"upstreams": ["127.0.0.1:9001", {"address": "[::1]:9002", "weight": 3}],
                   "balance": "least_conn", "connectTimeout": "2s", "keepalive": {"maxIdle": 4},
                   "healthCheck": {"path": "/health", "interval": "5s"}}},
        {"match": "/", "app": "./app.js"},
    ],
    "limits": {"bodyBytes": "8m", "headerTimeout": "10s", "maxRequests": 100},
    "logging": {"access": "./logs/access.log", "metrics": "/metrics"},
}


def write(directory: Path, name: str, text: str) -> Path:
    p = directory / name
    p.write_text(text)
    return p


def check(path: Path, env=None):
    """kuai --check-config PATH, run from PATH's directory with its bare name
    (so messages start with the name as given)."""
    try:
        return subprocess.run([KUAI, "--check-config", path.name], cwd=path.parent, capture_output=True,
                              text=True, timeout=30, stdin=subprocess.DEVNULL, env=env)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"kuai --check-config {path} still running after 30s (stderr={e.stderr!r})")


def no_sanitizer_report(p):
    for marker in SANITIZER_MARKERS:
        assert marker not in p.stderr, p.stderr


def one_error(p, expected: str):
    """Exit 1 and exactly one stderr line, `kuai: ` + expected."""
    no_sanitizer_report(p)
    assert p.returncode == 1, p
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert lines == ["kuai: " + expected], p.stderr
    assert p.stdout == "", p.stdout


def ok(p, name: str, listeners: int, routes: int):
    no_sanitizer_report(p)
    assert p.returncode == 0, p
    plural = lambda n, w: f"{n} {w}" + ("" if n == 1 else "s")
    assert p.stdout == f"kuai: {name}: ok ({plural(listeners, 'listener')}, {plural(routes, 'route')})\n", p


# ---- JSON ----

def test_json_ok(site):
    p = check(write(site, "kuai.config.json", json.dumps(GOOD, indent=2)))
    ok(p, "kuai.config.json", 2, 3)
    assert p.stderr == ""


def test_json_minimal(site):
    p = check(write(site, "site.json", '{"listen": 8080, "routes": [{"static": "public"}]}'))
    ok(p, "site.json", 1, 1)


def test_json_syntax_error_names_line_and_column(site):
    p = check(write(site, "kuai.config.json", '{\n  "listen": 8080,\n  "routes": [\n    {"app": "app.js"},\n  ]\n}\n'))
    one_error(p, "kuai.config.json:5:3: trailing comma before ']'")


@pytest.mark.parametrize("change,expected", [
    (lambda c: c["routes"][1]["proxy"].update(balance="fastest"),
     'routes[1].proxy.balance: expected one of "round_robin", "least_conn", "weighted", got "fastest"'),
    (lambda c: c["routes"][0]["static"].update(root="./nope"),
     "routes[0].static.root: ./nope: no such directory"),
    (lambda c: c["listen"][0].update(port="abc"),
     'listen[0].port: expected a whole number 0-65535, got "abc"'),
    (lambda c: c["routes"][1]["proxy"].update(upstream=c["routes"][1]["proxy"].pop("upstreams")),
     'routes[1].proxy.upstream: unknown key (did you mean "upstreams"?)'),
    (lambda c: c.pop("listen"),
     "listen: required (e.g. listen: 8080, or [{ host: '127.0.0.1', port: 8080 }])"),
    (lambda c: c.update(routes=[]), "routes: expected at least one route"),
    (lambda c: c["routes"][2].update(static="public"), "routes[2]: expected only one of static, proxy, app or redirect"),
    (lambda c: c["routes"][2].update(match="api"), "routes[2].match: expected a path starting with '/', got \"api\""),
    (lambda c: c["routes"][2].update(app="./missing.js"), "routes[2].app: ./missing.js: no such file"),
    (lambda c: c["routes"][1]["proxy"].update(upstreams=["no-such-host.invalid:80"]),
     re.compile(r'routes\[1\]\.proxy\.upstreams\[0\]: cannot resolve "no-such-host\.invalid": .+')),
    (lambda c: c["routes"][1]["proxy"].update(connectTimeout="soon"),
     'routes[1].proxy.connectTimeout: expected a duration from 1ms to 24h (milliseconds, or a string like '
     '"500ms", "10s", "2m"), got "soon"'),
    (lambda c: c["limits"].update(bodyBytes="lots"),
     'limits.bodyBytes: expected a size from 0 to 1099511627776 bytes (a number, or a string like "8k", "1m"), '
     'got "lots"'),
    (lambda c: c.update(threads=0), "threads: expected a whole number 1-1024, got 0"),
    (lambda c: c["listen"].append({"port": 1, "tls": {"cert": "cert.pem", "key": "key.pem"}}),
     "listen[2].tls.cert: cert.pem: no such file"),
    (lambda c: c["logging"].update(access="nodir/access.log"), None),  # message names the directory
], ids=["balance", "static-root", "port", "unknown-key", "no-listen", "no-routes", "two-handlers", "match",
        "app-missing", "unresolvable", "duration", "size", "threads", "tls-file", "log-dir"])
def test_json_schema_errors(site, change, expected):
    config = json.loads(json.dumps(GOOD))
    change(config)
    p = check(write(site, "kuai.config.json", json.dumps(config, indent=2)))
    if expected is None:
        expected = f"logging.access: nodir/access.log: no such directory {site / 'nodir'}"
    if isinstance(expected, re.Pattern):
        assert p.returncode == 1, p
        lines = [line for line in p.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and expected.fullmatch(lines[0][len("kuai: kuai.config.json: "):]), p.stderr
    else:
        one_error(p, "kuai.config.json: " + expected)


def test_missing_file(tmp_path):
    one_error(check(tmp_path / "nope.json"), "nope.json: cannot read: No such file or directory")
    one_error(check(tmp_path / "nope.js"), "nope.js: cannot read: No such file or directory")


def test_unknown_extension(site):
    one_error(check(write(site, "kuai.conf", "{}")),
              "kuai.conf: unknown kind of config file (expected a name ending in .json, .js, .cjs or .mjs)")


@pytest.mark.parametrize("args,needle", [
    (["serve", "{dir}", "--config", "x.json"], "cannot be used with 'serve'"),
    (["--config", "x.json", "app.js"], "cannot be used with a script"),
    (["--config", "x.json", "--watch"], "for scripts, not --config"),
    (["--config"], "--config needs a value"),
    (["--check-config", "a.json", "--config", "b.json"], "cannot be used together"),
])
def test_cli_errors(site, args, needle):
    p = run_kuai(*[a.format(dir=site) for a in args], timeout=5)
    assert p.returncode == 2, p
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("kuai: ") and needle in lines[0], p.stderr


def test_command_line_overrides_the_file(site, logdir):
    """Every option may come with --config and wins over the file: here the
    listener, threads, backend, a fixed route and a limit."""
    path = write(site, "kuai.config.json",
                 json.dumps({"threads": 1, "io": "uring", "listen": [{"host": "127.0.0.1", "port": 1}],
                             "routes": [{"static": "public"}], "limits": {"maxRequests": 5}}))
    server = KuaiServer(["--config", str(path), "--threads=2", "--io", "epoll", "--port", "0",
                         "--respond", "/ping=pong", "--max-requests", "3"], logdir).start()
    try:
        assert "(2 threads, epoll)" in server.banner, server.banner
        with Conn(server.port) as c:
            c.send(get("/ping"))
            r = c.read_response()
            assert r.status == 200 and r.body == b"pong", r
            c.send(get("/index.html"))
            assert c.read_response().body == b"hello\n"
            c.send(get("/index.html"))
            assert c.read_response().has_token("Connection", "close")  # the third: --max-requests 3
    finally:
        server.stop()
    server.check_clean()
    p = run_kuai("--check-config", str(path), "--respond", "/a=b", timeout=30)
    assert p.returncode == 0 and "ok (1 listener, 2 routes)" in p.stdout, p


def test_help_mentions_config():
    p = run_kuai("--help")
    assert "--config FILE" in p.stdout and "--check-config FILE" in p.stdout, p.stdout


def test_config_serves_on_the_first_listener(site, logdir):
    """--config loads the file and starts the server on listen[0]."""
    path = write(site, "kuai.config.json",
                 json.dumps({"threads": 1, "io": "epoll", "listen": [0], "routes": [{"static": "public"}]}))
    server = KuaiServer(["--config", str(path)], logdir).start()
    try:
        assert server.alive()
        assert "epoll" in server.banner, server.banner
    finally:
        server.stop()
    server.check_clean()


def test_config_error_stops_before_serving(site):
    path = write(site, "kuai.config.json", '{"listen": 0, "routes": [{"static": "nope"}]}')
    p = run_kuai("--config", str(path), timeout=10)
    one_error(p, f"{path}: routes[0].static: nope: no such directory")


# ---- JavaScript ----

def test_js_without_node(site, tmp_path):
    """Where the node that evaluates .js configs is missing, they say so."""
    missing = tmp_path / "no-node"
    env = dict(os.environ, KUAI_NODE_BINARY=str(missing))
    p = check(write(site, "kuai.config.js", "module.exports = {};\n"), env=env)
    one_error(p, f"cannot evaluate kuai.config.js: Node.js not found at {missing} "
                 "(run tools/setup, or use a .json config)")


JS_GOOD = """
const path = require('path');
console.log('a config may log; it goes to stderr');
const port = Number(process.env.TEST_PORT || 0);
module.exports = {
  threads: 2,
  listen: [{ port }, { host: '127.0.0.1', port: 0 }],
  routes: [
    { match: '/static/', static: { root: path.join(__dirname, 'public') } },
    { match: '/api/', proxy: { upstreams: ['127.0.0.1:9001'], balance: 'round_robin', retries: 0 } },
    { match: '/', app: './app.js' },
  ],
};
"""


@needs_node
def test_js_object(site):
    p = check(write(site, "kuai.config.js", JS_GOOD))
    ok(p, "kuai.config.js", 2, 3)
    assert "a config may log" in p.stderr


@needs_node
@pytest.mark.parametrize("name,text", [
    ("fn.js", "module.exports = () => ({ listen: 8080, routes: [{ static: './public' }] });"),
    ("async.js", "module.exports = async () => { await new Promise(r => setTimeout(r, 10));\n"
                 "  return { listen: 8080, routes: [{ static: './public' }] }; };"),
    ("promise.js", "module.exports = Promise.resolve({ listen: 8080, routes: [{ static: './public' }] });"),
    ("c.cjs", "module.exports = { listen: [8080, 8081], routes: [{ static: './public' }] };"),
    ("m.mjs", "export default { listen: 8080, routes: [{ static: './public' }] };"),
    ("timer.js", "setInterval(() => {}, 1000);\nmodule.exports = { listen: 8080, routes: [{ app: 'app.js' }] };"),
])
def test_js_forms(site, name, text):
    p = check(write(site, name, text + "\n"))
    ok(p, name, 2 if name == "c.cjs" else 1, 1)


@needs_node
def test_js_syntax_error_shows_file_and_line(site):
    path = write(site, "kuai.config.js", "module.exports = {\n  listen: 8080\n  routes: [],\n};\n")
    p = check(path)
    no_sanitizer_report(p)
    assert p.returncode == 1, p
    assert f"{path}:3" in p.stderr, p.stderr
    assert "SyntaxError" in p.stderr, p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("kuai: kuai.config.js: could not be evaluated"), p.stderr
    assert p.stdout == ""


@needs_node
def test_mjs_syntax_error_shows_file_and_line(site):
    path = write(site, "kuai.config.mjs", "export default {\n  listen: 8080,,\n};\n")
    p = check(path)
    assert p.returncode == 1, p
    assert f"{path}:2" in p.stderr and "SyntaxError" in p.stderr, p.stderr
    assert p.stderr.strip().splitlines()[-1].startswith("kuai: kuai.config.mjs: could not be evaluated"), p.stderr


@needs_node
def test_js_missing_module(site):
    path = write(site, "kuai.config.js", "const x = require('./not-there');\nmodule.exports = { listen: 1 };\n")
    p = check(path)
    assert p.returncode == 1, p
    assert "Cannot find module './not-there'" in p.stderr, p.stderr
    assert f"{path}:1" in p.stderr, p.stderr  # the require's place in the config file
    assert p.stderr.strip().splitlines()[-1].startswith("kuai: kuai.config.js: could not be evaluated"), p.stderr


@needs_node
def test_js_throws(site):
    path = write(site, "kuai.config.js", "module.exports = () => {\n  throw new Error('no config today');\n};\n")
    p = check(path)
    assert p.returncode == 1, p
    assert "no config today" in p.stderr and f"{path}:2" in p.stderr, p.stderr
    assert p.stderr.strip().splitlines()[-1].startswith("kuai: kuai.config.js: could not be evaluated"), p.stderr


@needs_node
@pytest.mark.parametrize("value,expected", [
    ("{ match: '/', handler() {} }",
     "routes[0].handler: a function cannot be used here (a config holds only JSON data: objects, arrays, "
     "strings, numbers, booleans, null)"),
    ("{ match: '/', static: { root: undefined } }",
     "routes[0].static.root: the value is undefined (leave the key out instead)"),
    ("{ match: '/', static: Symbol('x') }",
     "routes[0].static: a symbol cannot be used here (a config holds only JSON data: objects, arrays, "
     "strings, numbers, booleans, null)"),
    ("{ match: '/', static: { root: 'public', list: new Map() } }",
     "routes[0].static.list: a Map cannot be used here (a config holds only JSON data: objects, arrays, "
     "strings, numbers, booleans, null)"),
    ("{ match: '/', proxy: { upstreams: ['127.0.0.1:1'], retries: NaN } }",
     "routes[0].proxy.retries: NaN is not a finite number"),
    ("{ match: '/', proxy: { upstreams: ['127.0.0.1:1'], balance: 'fastest' } }",
     'routes[0].proxy.balance: expected one of "round_robin", "least_conn", "weighted", got "fastest"'),
])
def test_js_values_json_cannot_carry(site, value, expected):
    p = check(write(site, "kuai.config.js", f"module.exports = {{ listen: 8080, routes: [{value}] }};\n"))
    one_error(p, "kuai.config.js: " + expected)


@needs_node
def test_js_exports_nothing(site):
    p = check(write(site, "kuai.config.js", "const config = { listen: 8080 };\n"))
    one_error(p, "kuai.config.js: the file exports an empty object "
                 "(expected module.exports = { listen, routes, ... })")


@needs_node
def test_js_promise_never_settles(site):
    p = check(write(site, "kuai.config.js", "module.exports = new Promise(() => {});\n"))
    one_error(p, "kuai.config.js: no config came out "
                 "(the exported Promise never settled, or the file called process.exit())")


@needs_node
def test_js_relative_paths_follow_the_file(site, tmp_path_factory):
    """Run from another directory: ./public and ./app.js are the config's."""
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    path = write(site, "kuai.config.js",
                 "module.exports = { listen: 8080, routes: [{ match: '/s/', static: './public' }, "
                 "{ app: './app.js' }] };\n")
    p = subprocess.run([KUAI, "--check-config", str(path)], cwd=elsewhere, capture_output=True, text=True,
                       timeout=30, stdin=subprocess.DEVNULL)
    ok(p, str(path), 1, 2)
