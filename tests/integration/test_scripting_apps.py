"""npm apps under kuai and under the pinned node: tests/apps/express_app.js
(Express 5), tests/apps/koa_app.js (Koa 3 + @koa/router 15, and the same app
on kuai's built-in App/Router with KOA_IMPL=kuai) and tests/apps/hono_app.js
(Hono 4 on @hono/node-server 2, which needs Node >= 20) and
tests/apps/proxy_app.js (Express 5 + http-proxy-middleware 3 in front of a
test upstream) and tests/apps/middleware_app.js (Express 5 with morgan,
helmet, cors, compression, express-session, multer). Each request goes to
every server; the answers must equal node's (status, reason, body, headers as
compared in test_scripting.py). Needs tests/apps/node_modules (tools/setup
runs `npm ci` there)."""

from __future__ import annotations

import gzip
import json
import re

import pytest

from conftest import REPO
from httpraw import Conn, build
from script_harness import NO_SCRIPTING, ScriptProc, assert_same, exchange, free_ports, running_pair, shape

pytestmark = pytest.mark.skipif(NO_SCRIPTING is not None, reason=str(NO_SCRIPTING))

APPS = REPO / "tests" / "apps"
MODULES = APPS / "node_modules"
NEEDS_MODULES = pytest.mark.skipif(
    not (MODULES / "koa").is_dir() or not (MODULES / "express").is_dir()
    or not (MODULES / "@koa" / "router").is_dir(),
    reason=f"{MODULES} is missing (run tools/setup, or `npm ci` in tests/apps)")

JSON_BODY = b'{"name":"kuai","list":[1,2,3],"nested":{"ok":true}}'

# (id, request, expected status, answers HEAD). Requests shared by both apps.
COMMON = [
    ("params-query", build("GET", "/users/42?x=1&y=two"), 200),
    ("params-encoded", build("GET", "/users/a%20b"), 200),
    ("wildcard", build("GET", "/files/a/b/c.txt"), 200),
    ("json-in-out", build("POST", "/echo", headers=[
        ("Content-Type", "application/json"), ("Content-Length", str(len(JSON_BODY)))],
        body=JSON_BODY), 201),
    ("stream", build("GET", "/stream"), 200),
    ("text", build("GET", "/text"), 200),
    ("html", build("GET", "/html"), 200),
    ("redirect", build("GET", "/redirect"), 302),
    ("sync-error", build("GET", "/error"), 500),
    ("async-error", build("GET", "/async-error"), 500),
    ("http-error", build("GET", "/teapot"), 418),
    ("not-found", build("GET", "/no/such/path"), 404),
    ("options", build("OPTIONS", "/users/1"), 200),
    ("cookies", build("GET", "/cookies"), 200),
]
BAD_JSON = b'{bad json}'
EXPRESS_ONLY = [
    ("send-status", build("GET", "/status/201"), 201),
    # body-parser's 400 carries V8's own JSON.parse message.
    ("bad-json", build("POST", "/echo", headers=[
        ("Content-Type", "application/json"), ("Content-Length", str(len(BAD_JSON)))],
        body=BAD_JSON), 400),
    ("post-get-only", build("POST", "/only-get", headers=[("Content-Length", "0")]), 404),
]
KOA_ONLY = [
    ("put-204", build("PUT", "/users/1", headers=[("Content-Length", "0")]), 204),
    ("method-not-allowed", build("POST", "/users/1", headers=[("Content-Length", "0")]), 405),
    ("null-body", build("GET", "/empty"), 204),
]


def start_app(logdir, runtime, script, env=None):
    port = free_ports(1)[0]
    return ScriptProc(runtime, APPS / script, logdir,
                      env={"PORT": str(port), **(env or {})}).start()


@pytest.fixture(scope="module")
def express(logdir):
    with running_pair(logdir, APPS / "express_app.js") as pair:
        yield pair


@pytest.fixture(scope="module")
def koa(logdir):
    """{'node': node+Koa (reference, None without node), 'kuai': kuai+Koa,
    'kuai-module': kuai + require('kuai')}."""
    servers = {}
    try:
        servers["node"] = start_app(logdir, "node", "koa_app.js")
        servers["kuai"] = start_app(logdir, "kuai", "koa_app.js")
        servers["kuai-module"] = start_app(logdir, "kuai", "koa_app.js", {"KOA_IMPL": "kuai"})
        yield servers
    finally:
        problems = []
        for p in servers.values():
            if p is not None:
                problems += p.stop()
    if problems:
        pytest.fail("\n".join(problems))


def alive(*procs):
    for p in procs:
        if p is not None and not p.alive():
            pytest.fail(f"{p} died during an earlier test (exit {p.proc.returncode}); "
                        f"stderr tail:\n{p.stderr()[-2500:]}")


def answer(proc, req, head=False):
    r = exchange(proc.port, [req], heads=[head])[0]
    return shape(r)


def undated(r):
    """A response's repr with cookies' Expires dates masked: the two servers
    answer a moment apart, so a date of now may differ by a second."""
    return re.sub(r"Expires=[^;']*", "Expires=DATE", repr(r))


def check(reference, candidate, req, status, what):
    alive(reference, candidate)
    got = answer(candidate, req)
    if reference is not None:
        expected = answer(reference, req)
        assert undated(got) == undated(expected), (f"{what}: {candidate.runtime} differs from node\n"
                                 f"  node: {expected!r}\n  kuai: {got!r}")
    assert got["status"] == status, f"{what}: {got!r}"
    return got


def cookie_round_trip(proc, first):
    """Sends back the cookies the first /cookies response set."""
    pairs = [h.split(";")[0] for k, h in first["headers"] if k.lower() == "set-cookie"]
    return answer(proc, build("GET", "/cookies", headers=[("Cookie", "; ".join(pairs))]))


# --------------------------------------------------------------------------
# Express 5
# --------------------------------------------------------------------------

@NEEDS_MODULES
@pytest.mark.parametrize("name,req,status", COMMON + EXPRESS_ONLY,
                         ids=[c[0] for c in COMMON + EXPRESS_ONLY])
def test_express(express, name, req, status):
    got = check(express.node, express.kuai, req, status, f"express {name}")
    if name == "json-in-out":
        assert json.loads(got["body"])["got"] == json.loads(JSON_BODY), got
    if name == "stream":
        assert got["body"] == b"one\ntwo\nthree\n", got
    if name == "bad-json":
        # V8 12 and later word it so (V8 10, Node 18's: "Unexpected token b in JSON").
        assert json.loads(got["body"])["error"].startswith(
            "Expected property name or '}' in JSON at position 1"), got


@NEEDS_MODULES
def test_express_cookies_and_etag(express):
    """Cookies sent back are seen; If-None-Match with the ETag gets 304; HEAD
    has no body."""

    def probe(p):
        first = answer(p, build("GET", "/cookies"))
        second = cookie_round_trip(p, first)
        text = answer(p, build("GET", "/text"))
        etag = dict((k.lower(), v) for k, v in text["headers"]).get("etag")
        cond = answer(p, build("GET", "/text", headers=[("If-None-Match", etag)]))
        head = answer(p, build("HEAD", "/text"), head=True)
        return second, cond, head

    alive(express.node, express.kuai)
    got = probe(express.kuai)
    expected = probe(express.node)
    assert undated(got) == undated(expected), f"node: {expected!r}\nkuai: {got!r}"
    second, cond, head = got
    assert json.loads(second["body"])["cookie"].startswith("plain=value"), second
    assert cond["status"] == 304 and cond["body"] == b"", cond
    assert head["status"] == 200 and head["body"] == b"", head


# --------------------------------------------------------------------------
# Koa 3 (+ kuai's own App/Router)
# --------------------------------------------------------------------------

@NEEDS_MODULES
@pytest.mark.parametrize("impl", ["kuai", "kuai-module"])
@pytest.mark.parametrize("name,req,status", COMMON + KOA_ONLY,
                         ids=[c[0] for c in COMMON + KOA_ONLY])
def test_koa(koa, impl, name, req, status):
    """impl kuai: Koa from node_modules under kuai; kuai-module: the same app
    on require('kuai') under kuai. Both against Koa under node."""
    got = check(koa["node"], koa[impl], req, status, f"koa app ({impl}) {name}")
    headers = dict((k.lower(), v) for k, v in got["headers"])
    if name == "method-not-allowed":
        assert headers.get("allow") == "HEAD, GET, PUT", got
    if name == "params-query":
        assert json.loads(got["body"]) == {"id": "42", "query": {"x": "1", "y": "two"}}, got
    if name == "stream":
        assert got["body"] == b"one\ntwo\nthree\n", got


@NEEDS_MODULES
@pytest.mark.parametrize("impl", ["kuai", "kuai-module"])
def test_koa_cookies_round_trip(koa, impl):
    """The signed cookie set by the first response verifies on the second."""
    alive(koa["node"], koa[impl])
    got = cookie_round_trip(koa[impl], answer(koa[impl], build("GET", "/cookies")))
    if koa["node"] is not None:
        ref = koa["node"]
        expected = cookie_round_trip(ref, answer(ref, build("GET", "/cookies")))
        assert got == expected, f"node: {expected!r}\n{impl}: {got!r}"
    assert json.loads(got["body"]) == {"plain": "value", "signed": "s1"}, got


@NEEDS_MODULES
def test_koa_head(koa):
    """HEAD on a GET route: Koa keeps Content-Length and sends no body."""
    for impl in ("kuai", "kuai-module"):
        alive(koa["node"], koa[impl])
        got = answer(koa[impl], build("HEAD", "/text"), head=True)
        if koa["node"] is not None:
            expected = answer(koa["node"], build("HEAD", "/text"), head=True)
            assert got == expected, f"{impl}: node {expected!r}\nkuai {got!r}"
        assert got["status"] == 200 and got["body"] == b"", got


# --------------------------------------------------------------------------
# Hono 4 on @hono/node-server 2 (engines: node >= 20)
# --------------------------------------------------------------------------

HONO_JSON = b'{"a":[1,2],"b":"x"}'
HONO = [
    ("text", build("GET", "/"), 200),
    ("params-query", build("GET", "/users/12?q=find"), 200),
    ("json-in-out", build("POST", "/echo", headers=[
        ("Content-Type", "application/json"), ("Content-Length", str(len(HONO_JSON)))],
        body=HONO_JSON), 201),
    ("stream", build("GET", "/stream"), 200),
    ("redirect", build("GET", "/redirect"), 301),
    ("http-exception", build("GET", "/fail"), 418),
    ("not-found", build("GET", "/nowhere"), 404),
]


@pytest.fixture(scope="module")
def hono(logdir):
    if not (MODULES / "@hono" / "node-server").is_dir() or not (MODULES / "hono").is_dir():
        pytest.fail(f"{MODULES}: hono or @hono/node-server is missing (run tools/setup)")
    with running_pair(logdir, APPS / "hono_app.js") as pair:
        yield pair


@pytest.mark.parametrize("name,req,status", HONO, ids=[c[0] for c in HONO])
def test_hono(hono, name, req, status):
    got = check(hono.node, hono.kuai, req, status, f"hono {name}")
    headers = dict((k.lower(), v) for k, v in got["headers"])
    assert headers.get("x-powered") == "hono", got
    if name == "json-in-out":
        assert json.loads(got["body"]) == {"got": {"a": [1, 2], "b": "x"}, "type": "application/json"}, got
    if name == "stream":
        assert got["body"] == b"one two three", got


def test_hono_engines_need_node_20():
    """The package really is one that older Node refuses (the point of the test)."""
    pkg = json.loads((MODULES / "@hono" / "node-server" / "package.json").read_text())
    assert pkg["version"].startswith("2."), pkg["version"]
    assert pkg["engines"]["node"] == ">=20", pkg["engines"]


# --------------------------------------------------------------------------
# A reverse proxy from npm: Express 5 + http-proxy-middleware 3
# --------------------------------------------------------------------------

# The upstream's per-connection counters differ between the two proxies.
PER_CONNECTION = ("x-conn-count", "x-conn-id", "x-request-count")
UPLOAD = bytes(range(256)) * 256  # 64 KiB


@pytest.fixture(scope="module")
def proxy_app(logdir):
    if not (MODULES / "http-proxy-middleware").is_dir():
        pytest.fail(f"{MODULES / 'http-proxy-middleware'} is missing (run tools/setup)")
    from upstream import Upstream
    up = Upstream("npm").start()
    try:
        with running_pair(logdir, APPS / "proxy_app.js", env={"UPSTREAM": f"http://{up.address}"}) as pair:
            yield pair
    finally:
        up.stop()


@pytest.mark.parametrize("name,req", [
    # The upstream's own Transfer-Encoding: chunked, copied onto the response.
    ("chunked", build("GET", "/up/chunked/100000?size=777")),
    ("chunked-trailers", build("GET", "/up/chunked/3000?trailer=1")),
    ("length", build("GET", "/up/bytes/70000")),
    ("close-delimited", build("GET", "/up/close-delimited/5000")),
    ("drip", build("GET", "/up/drip?n=5&size=10&ms=20&chunked=1")),
    ("no-content", build("GET", "/up/status/204")),
    ("upload", build("POST", "/up/upload", headers=[("Content-Type", "application/octet-stream"),
                                                   ("Content-Length", str(len(UPLOAD)))], body=UPLOAD)),
    ("head", build("HEAD", "/up/bytes/1000")),
    ("own", build("GET", "/own")),
], ids=lambda v: v if isinstance(v, str) else "-")
def test_npm_reverse_proxy_as_node(proxy_app, name, req):
    def probe(proc):
        r = shape(exchange(proc.port, [req], heads=[name == "head"])[0])
        r["headers"] = [(k, v) for k, v in r["headers"] if k.lower() not in PER_CONNECTION]
        return r

    alive(proxy_app.node, proxy_app.kuai)
    got = assert_same(proxy_app, probe, name)
    if name == "chunked":
        assert got["framing"].get("transfer-encoding") == ["chunked"] and len(got["body"]) == 100000, got
    if name == "upload":
        assert json.loads(got["body"])["length"] == len(UPLOAD), got


# --------------------------------------------------------------------------
# Express 5 with the common middleware (several hook res.writeHead)
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def middleware(logdir):
    for name in ("compression", "express-session", "morgan", "helmet", "cors", "multer"):
        if not (MODULES / name).is_dir():
            pytest.fail(f"{MODULES / name} is missing (run tools/setup)")
    with running_pair(logdir, APPS / "middleware_app.js") as pair:
        yield pair


MULTIPART = (b'--XyZ\r\nContent-Disposition: form-data; name="note"\r\n\r\nhi there\r\n'
             b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n'
             b'Content-Type: text/plain\r\n\r\n' + b"z" * 3000 + b'\r\n--XyZ--\r\n')
FORM = b"a=1&b=two+words"


@pytest.mark.parametrize("name,req", [
    ("gzip-send", build("GET", "/big", headers=[("Accept-Encoding", "gzip")])),
    ("gzip-static", build("GET", "/static/app.js", headers=[("Accept-Encoding", "gzip")])),
    ("identity-static", build("GET", "/static/app.js")),
    ("gzip-stream", build("GET", "/stream", headers=[("Accept-Encoding", "gzip")])),
    ("range-static", build("GET", "/static/app.js", headers=[("Range", "bytes=3-40")])),
    ("cors-preflight", build("OPTIONS", "/form", headers=[("Origin", "https://example.com"),
                                                         ("Access-Control-Request-Method", "POST")])),
    ("form", build("POST", "/form", headers=[("Content-Type", "application/x-www-form-urlencoded"),
                                             ("Content-Length", str(len(FORM)))], body=FORM)),
    ("upload", build("POST", "/upload", headers=[("Content-Type", "multipart/form-data; boundary=XyZ"),
                                                 ("Content-Length", str(len(MULTIPART)))], body=MULTIPART)),
], ids=lambda v: v if isinstance(v, str) else "-")
def test_express_middleware_as_node(middleware, name, req):
    def probe(proc):
        r = shape(exchange(proc.port, [req])[0])
        # A new session's id is random: its cookie is compared by name.
        r["headers"] = [(k, v.split("=")[0] if v.startswith("connect.sid=") else v)
                        for k, v in r["headers"] if k.lower() not in ("etag", "last-modified")]
        return r

    alive(middleware.node, middleware.kuai)
    got = assert_same(middleware, probe, name)
    headers = dict((k.lower(), v) for k, v in got["headers"])
    if name != "cors-preflight":  # (answered by cors, before the session)
        assert headers.get("set-cookie") == "connect.sid", got  # express-session's, set through writeHead
    if name.startswith("gzip"):
        assert headers.get("content-encoding") == "gzip", got
        expected_start = {"gzip-send": b"yyy", "gzip-static": b"// a script", "gzip-stream": b"chunk 0\n"}[name]
        assert gzip.decompress(got["body"]).startswith(expected_start), got
    if name == "upload":
        assert json.loads(got["body"]) == {"name": "a.txt", "size": 3000, "note": "hi there"}, got


def test_express_session_round_trip(middleware):
    """The session cookie comes back and the session counts, as under node
    (one connection: kuai's threads each keep their own memory store and
    log)."""
    def visits(proc):
        with Conn(proc.port) as c:
            c.send(build("GET", "/session"))
            _, first = c.read_final()
            cookie = first.header("Set-Cookie").split(";")[0]
            c.send(build("GET", "/session", headers=[("Cookie", cookie)]))
            _, second = c.read_final()
            c.send(build("GET", "/log"))
            _, log = c.read_final()
        return json.loads(first.body), json.loads(second.body), json.loads(log.body)[-2:]

    alive(middleware.node, middleware.kuai)
    got = assert_same(middleware, visits, "session round trip")
    assert got == ({"views": 1}, {"views": 2}, ["GET /session 200 11", "GET /session 200 11"]), got
