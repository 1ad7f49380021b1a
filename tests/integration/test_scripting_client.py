"""kuai's http client (require('kuai').request / get / fetch, over the reactor
threads' native keep-alive pools) against Node's own: scripts/client_cases.js
CASE runs under `kuai --threads 1` and under `node` (require('kuai') is then
Node's http.request / http.get / global fetch, through NODE_PATH=
<repo>/scripting/lib) against the same origins, and both must print the same
result (status, selected headers, bodies and their digests, event sequences,
error codes). Where node is missing only the kuai-side assertions run.

Origins: tests/integration/upstream.py's Upstream (in-process; X-Conn-Id and
X-Request-Count show connection reuse), and a small http.server here for what
it lacks (duplicate response headers, redirects, gzip, JSON).

Event sequences leave out 'socket' and 'finish': kuai's 'finish' means the
request was handed to the native client, which may be before its connect
fails (Node emits it only once a socket took the request).

kuai-only: keep-alive reuse counted at the upstream, both I/O backends, and
scripts/client_app.js (a server whose handlers use the client: per-thread
pools, piping both ways, an environment replaced with a request in flight)."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from conftest import KUAI, NODE, SANITIZER_MARKERS, no_scripting_reason
from httpraw import Conn, build
from upstream import Upstream, pattern_sha256

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SCRIPT = HERE / "scripts" / "client_cases.js"
APP = HERE / "scripts" / "client_app.js"
RUN_TIMEOUT = 60


NO_SCRIPTING = no_scripting_reason()
pytestmark = pytest.mark.skipif(NO_SCRIPTING is not None, reason=str(NO_SCRIPTING))


def closed_port():
    """A port on 127.0.0.1 that nobody listens on (free a moment ago)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# --------------------------------------------------------------------------
# The extra origin
# --------------------------------------------------------------------------

GZIP_TEXT = "hello gzip " * 200
JSON_DOC = {"kuai": True, "list": [1, 2, 3], "nested": {"a": "\u00e9"}}


class ExtraHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _route(self):
        body = self._read_body()
        u = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(u.query).items()}
        if u.path == "/dup":
            return self._send(200, b"dup body", [
                ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"),
                ("X-Dup", "one"), ("X-Dup", "two"),
                ("Content-Type", "text/plain"), ("Content-Type", "text/html"),
                ("Cache-Control", "no-cache"), ("Cache-Control", "no-store"),
                ("WWW-Authenticate", "Basic a"), ("WWW-Authenticate", "Bearer b"),
                ("X-Latin1", "caf\u00e9"),
            ])
        if u.path == "/redirect":
            return self._send(int(q.get("code", "302")), b"redirecting",
                              [("Location", q.get("to", "/method"))])
        if u.path.startswith("/chain/"):
            n = int(u.path[len("/chain/"):])
            if n > 0:
                return self._send(302, b"", [("Location", f"/chain/{n - 1}")])
            return self._send(200, b"done", [("Content-Type", "text/plain")])
        if u.path == "/method":
            doc = {"method": self.command, "length": len(body),
                   "type": self.headers.get("Content-Type")}
            return self._send(200, json.dumps(doc).encode(), [("Content-Type", "application/json")])
        if u.path == "/json":
            return self._send(200, json.dumps(JSON_DOC).encode(),
                              [("Content-Type", "application/json; charset=utf-8")])
        if u.path == "/gzip":
            return self._send(200, gzip.compress(GZIP_TEXT.encode()),
                              [("Content-Type", "text/plain"), ("Content-Encoding", "gzip")])
        return self._send(404, b"not found")

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _route


@pytest.fixture(scope="module")
def origins():
    up = Upstream("client").start()
    extra = ThreadingHTTPServer(("127.0.0.1", 0), ExtraHandler)
    extra.daemon_threads = True
    t = threading.Thread(target=extra.serve_forever, daemon=True)
    t.start()
    env = {
        "UPSTREAM": f"http://127.0.0.1:{up.port}",
        "EXTRA": f"http://127.0.0.1:{extra.server_address[1]}",
        "CLOSED_PORT": str(closed_port()),
    }
    yield up, env
    extra.shutdown()
    extra.server_close()
    up.stop()


# --------------------------------------------------------------------------
# Running a case
# --------------------------------------------------------------------------

def run_case(runtime, case, env, io=None):
    """Runs client_cases.js CASE under kuai or node; returns its RESULT."""
    if runtime == "kuai":
        cmd = [KUAI, "--threads", "1"] + (["--io", io] if io else []) + [str(SCRIPT), case]
    else:
        cmd = [NODE, str(SCRIPT), case]
    full_env = {**os.environ, **env, "NODE_PATH": str(REPO / "scripting" / "lib")}
    try:
        p = subprocess.run(cmd, env=full_env, capture_output=True, text=True,
                           timeout=RUN_TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{runtime} {case}: still running after {RUN_TIMEOUT}s\n"
                    f"stdout: {e.stdout!r}\nstderr: {e.stderr!r}")
    results = [l for l in p.stdout.splitlines() if l.startswith("RESULT ")]
    problems = []
    if p.returncode != 0:
        problems.append(f"exit code {p.returncode}")
    if not results:
        problems.append("no RESULT line")
    if runtime == "kuai":
        for marker in SANITIZER_MARKERS + ("Uncaught",):
            if marker in p.stderr:
                problems.append(f"'{marker}' in stderr")
    if problems:
        pytest.fail(f"{runtime} {case}: {'; '.join(problems)}\nstdout: {p.stdout[-3000:]}\n"
                    f"stderr: {p.stderr[-3000:]}")
    return json.loads(results[-1][len("RESULT "):])


def strip(result, ignore):
    if not ignore:
        return result
    return {k: v for k, v in result.items() if k not in ignore}


def compare(origins, case, ignore=()):
    """The case under kuai and under the pinned node: equal results
    (keys in `ignore` aside). Returns kuai's result."""
    _, env = origins
    got = run_case("kuai", case, env)
    expected = run_case("node", case, env)
    assert strip(got, ignore) == strip(expected, ignore), (
        f"{case}: kuai differs from node\n  node: {expected!r}\n  kuai: {got!r}")
    return got


# --------------------------------------------------------------------------
# http.request / http.get
# --------------------------------------------------------------------------

def test_get(origins):
    r = compare(origins, "get_hello")
    assert r["status"] == 200 and r["message"] == "OK" and r["version"] == "1.1", r
    assert r["body"] == "hello from client\n" and r["complete"] is True, r
    assert r["headers"]["content-length"] == "18", r


def test_url_object_with_options(origins):
    r = compare(origins, "url_object_and_options")
    assert r["method"] == "GET" and r["target"] == "/echo?x=1&y=%20z", r
    assert ["X-A", "1"] in r["headers"], r


def test_header_api(origins):
    r = compare(origins, "header_api")
    api, echo = r["api"], r["echo"]
    assert api["getHeader"] == ["a", "b"] and api["hasHeader"] == [True, False], api
    assert api["late"] == "ERR_HTTP_HEADERS_SENT", api
    assert api["badName"] == "ERR_INVALID_HTTP_TOKEN", api
    assert api["badValue"] == "ERR_INVALID_CHAR", api
    assert echo["method"] == "PUT", echo
    names = [k for k, _ in echo["headers"]]
    assert names[:6] == ["X-One", "X-Two", "X-Two", "Cookie", "Host", "X-Three"], echo
    assert ["Cookie", "c=1; d=2"] in echo["headers"], echo
    assert echo["bodyLength"] == 10, echo


def test_headers_as_array(origins):
    r = compare(origins, "headers_array")
    assert r["headers"][:3] == [["X-B", "2"], ["Host", r["headers"][1][1]], ["X-B", "3"]], r


def test_post_string(origins):
    r = compare(origins, "post_string")
    assert r["upload"]["length"] == 11 and r["upload"]["chunked"] is False, r
    assert ["Content-Length", "5"] in r["echo"]["headers"], r


def test_put_buffer(origins):
    r = compare(origins, "put_buffer")
    assert r["upload"]["sha256"] == r["expect"] and r["upload"]["length"] == 64, r


def test_bodyless_post_and_delete(origins):
    r = compare(origins, "post_empty")
    assert ["Content-Length", "0"] in r["post"]["headers"], r
    assert not any(k.lower() == "content-length" for k, _ in r["del"]["headers"]), r


def test_chunked_writes(origins):
    r = compare(origins, "post_chunked_writes")
    assert r["upload"]["chunked"] is True and r["upload"]["sha256"] == r["expect"], r


def test_content_length_with_writes(origins):
    r = compare(origins, "content_length_writes")
    assert r["upload"]["chunked"] is False and r["upload"]["sha256"] == r["expect"], r


def test_download_with_backpressure(origins):
    r = compare(origins, "download_backpressure", ignore=("maxBuffered",))
    n = 16 * 1024 * 1024
    assert r["length"] == n and r["sha"] == pattern_sha256(n), r
    assert r["boundedBuffer"] is True, r


def test_chunked_download_async_iteration(origins):
    r = compare(origins, "chunked_async_iteration")
    assert r["length"] == 300000 and r["sha"] == pattern_sha256(300000), r
    assert r["te"] == "chunked" and r["complete"] is True, r


def test_large_upload_with_drain(origins):
    # The body is random: each side checks its own digest.
    r = compare(origins, "upload_large", ignore=("upload", "expect"))
    assert r["upload"]["length"] == 16 * 1024 * 1024 and r["upload"]["sha256"] == r["expect"], r
    assert r["drained"] is True, r


def test_keep_alive_reuse(origins):
    up, env = origins
    before = up.accepted
    r = run_case("kuai", "keepalive_sequential", env)
    assert r["distinct"] == 1 and r["last"] >= 20, r
    assert up.accepted - before <= 1, (before, up.accepted)


def test_connection_refused(origins):
    r = compare(origins, "refused")
    assert r["error"]["code"] == "ECONNREFUSED" and r["error"]["syscall"] == "connect", r
    assert r["events"] == ["error:ECONNREFUSED:" + r["error"]["message"], "close"], r


def test_upstream_hangs_up(origins):
    up, _ = origins
    up.fail_mode = "close"
    try:
        r = compare(origins, "hang_up")
    finally:
        up.fail_mode = None
    assert r["error"]["code"] == "ECONNRESET" and r["error"]["message"] == "socket hang up", r
    assert r["events"] == ["error:ECONNRESET:socket hang up", "close"], r


def test_malformed_response(origins):
    # Node says which parse error (HPE_INVALID_STATUS...); kuai's native
    # client reports a bad response like a hang-up: compared loosely.
    _, env = origins
    r = run_case("kuai", "malformed", env)
    assert r["error"] is not None and r["error"]["code"] in ("ECONNRESET", "HPE_INVALID_CONSTANT"), r
    assert r["events"][-1] == "close" and "response" not in r["events"], r
    n = run_case("node", "malformed", env)
    assert n["error"]["code"].startswith("HPE_") and n["events"][-1] == "close", n


def test_timeout(origins):
    r = compare(origins, "timeout")
    assert r["events"] == ["timeout", "error:ECONNRESET:socket hang up", "close"], r


def test_timeout_option_and_abort(origins):
    r = compare(origins, "options_timeout")
    assert r["events"][:2] == ["timeout", "abort"] and r["timeout"] == 300, r


def test_destroy_mid_response(origins):
    r = compare(origins, "destroy_mid_response")
    assert r["events"] == ["response", "res.data", "res.aborted", "close",
                           "res.error:ECONNRESET:aborted", "res.close"], r


def test_upstream_dies_mid_response(origins):
    r = compare(origins, "upstream_dies_mid_response")
    assert "res.aborted" in r["events"] and "res.error:ECONNRESET:aborted" in r["events"], r
    assert "res.end" not in r["events"], r


def test_abort_and_destroy(origins):
    r = compare(origins, "abort_before_and_after_start")
    assert r["before"] == ["close", "abort"], r
    assert r["after"] == ["abort", "error:ECONNRESET:socket hang up", "close"], r
    assert r["withError"] == ["error:undefined:boom", "close"], r


def test_head_and_204(origins):
    r = compare(origins, "head_and_204")
    assert r["head"] == {"status": 200, "length": "100", "body": 0}, r
    assert r["none"]["status"] == 204 and r["none"]["body"] == 0, r


def test_response_headers_merging(origins):
    r = compare(origins, "response_headers_merging")
    h = r["headers"]
    assert h["set-cookie"] == ["a=1", "b=2"] and h["x-dup"] == "one, two", h
    assert h["content-type"] == "text/plain", h
    assert h["cache-control"] == "no-cache, no-store", h
    assert r["latin1"] == "caf\u00e9", r
    assert r["distinct"]["x-dup"] == ["one", "two"], r


def test_trailers_both_ways(origins):
    r = compare(origins, "trailers_both_ways")
    assert r["sent"] == [["X-Sum", "42"], ["X-List", "a"], ["X-List", "b"]], r
    assert r["sentLength"] == 6 and r["sized"] == [], r
    assert r["errors"] == {"badName": "ERR_INVALID_HTTP_TOKEN", "badValue": "ERR_INVALID_CHAR"}, r
    d = r["download"]
    assert d["before"] == {} and d["complete"] is True and d["length"] == 5000, r
    assert d["trailers"]["x-checksum"] == d["sha"] == pattern_sha256(5000), r
    assert d["trailers"]["x-count"] == "1, 2" and d["trailers"]["x-pad"] == "v", r
    assert d["raw"][:8] == ["X-Checksum", d["sha"], "X-Count", "1", "X-Pad", "v", "X-Count", "2"], r
    assert r["plain"] == {"trailers": {}, "raw": []}, r


def test_https_goes_to_node(origins):
    # Node's http.request refuses https: URLs; kuai's hands them to https.request.
    _, env = origins
    r = run_case("kuai", "https_delegates", env)
    assert r["error"]["code"] == "ECONNREFUSED" and r["error"]["syscall"] == "connect", r


# --------------------------------------------------------------------------
# fetch
# --------------------------------------------------------------------------

def test_fetch_basic(origins):
    r = compare(origins, "fetch_basic")
    assert r["status"] == 200 and r["ok"] is True and r["statusText"] == "OK", r
    assert r["url"].endswith("/hello") and r["redirected"] is False, r
    assert r["text"] == "hello from client\n" and r["before"] is False and r["after"] is True, r
    assert r["isResponse"] and r["isHeaders"], r


def test_fetch_json(origins):
    r = compare(origins, "fetch_json")
    assert r["a"] == JSON_DOC, r
    assert r["method"] == "POST" and r["length"] == 17, r
    assert r["contentType"] == "application/json" and r["contentLength"] == "17", r


def test_fetch_bodies(origins):
    r = compare(origins, "fetch_bodies")
    assert r["string"]["type"] == "text/plain;charset=UTF-8" and r["string"]["length"] == 9, r
    assert r["params"]["type"] == "application/x-www-form-urlencoded;charset=UTF-8", r
    assert r["arraybuffer"]["length"] == 3 and r["empty"]["contentLength"] == "0", r
    assert r["nullPost"] == [["content-length", "0"]], r


def test_fetch_header_shapes(origins):
    r = compare(origins, "fetch_header_shapes")
    assert r["object"] == [["x-a", "1"], ["x-b", "2"]], r
    assert r["array"] == [["x-a", "1, 2"]] and r["headers"] == [["x-c", "3"]], r


def test_fetch_redirect_follow(origins):
    r = compare(origins, "fetch_redirect_follow")
    assert r["status"] == 200 and r["redirected"] is True and r["text"] == "done", r
    assert r["url"].endswith("/chain/0"), r


def test_fetch_redirect_methods(origins):
    r = compare(origins, "fetch_redirect_methods")
    assert r["see"] == {"method": "GET", "length": 0, "type": None}, r
    assert r["found"]["method"] == "GET", r
    assert r["temp"]["method"] == "POST" and r["temp"]["length"] == 4, r
    assert r["perm"]["method"] == "PUT" and r["perm"]["length"] == 5, r


def test_fetch_redirect_manual(origins):
    r = compare(origins, "fetch_redirect_manual")
    assert r["status"] == 302 and r["location"] == "/method" and r["redirected"] is False, r


def test_fetch_redirect_error(origins):
    r = compare(origins, "fetch_redirect_error")
    assert r == {"name": "TypeError", "message": "fetch failed", "cause": "unexpected redirect"}, r


def test_fetch_too_many_redirects(origins):
    r = compare(origins, "fetch_too_many_redirects")
    assert r["name"] == "TypeError" and r["cause"] == "redirect count exceeded", r


def test_fetch_abort_controller(origins):
    r = compare(origins, "fetch_abort")
    assert r["pending"] == {"name": "AbortError", "isDomException": True}, r
    assert r["already"] == {"name": "AbortError"} and r["body"] == {"name": "AbortError"}, r
    assert r["after"] == "hello from client\n", r


def test_fetch_refused(origins):
    r = compare(origins, "fetch_refused")
    assert r["name"] == "TypeError" and r["message"] == "fetch failed", r
    assert r["cause"]["code"] == "ECONNREFUSED", r


def test_fetch_gzip(origins):
    r = compare(origins, "fetch_gzip")
    assert r["text"] == GZIP_TEXT and r["encoding"] == "gzip", r


def test_fetch_body_forms(origins):
    r = compare(origins, "fetch_body_forms")
    assert r["ab"] == 1000 and r["abSha"] == pattern_sha256(1000), r
    assert r["blob"] == 2000 and r["blobType"] == "application/octet-stream", r
    assert r["streamed"] == 70000 and r["plain"] is True, r
    assert r["head"] == [200, None, "100"] and r["none"] == [204, None, ""], r


def test_fetch_duplicate_headers(origins):
    r = compare(origins, "fetch_duplicate_headers")
    assert r["dup"] == "one, two" and r["cookie"] == "a=1, b=2", r


def test_fetch_keep_alive_reuse(origins):
    up, env = origins
    before = up.accepted
    r = run_case("kuai", "fetch_keepalive", env)
    assert r["distinct"] == 1, r
    assert up.accepted - before <= 1, (before, up.accepted)


# --------------------------------------------------------------------------
# kuai only: both backends, and a server using the client
# --------------------------------------------------------------------------

@pytest.mark.parametrize("io", ["uring", "epoll"])
@pytest.mark.parametrize("case", ["keepalive_sequential", "download_backpressure", "refused",
                                  "timeout", "upload_large"])
def test_backends(origins, io, case):
    up, env = origins
    before = up.accepted
    r = run_case("kuai", case, env, io=io)
    if case == "keepalive_sequential":
        assert r["distinct"] == 1 and up.accepted - before <= 1, r
    elif case == "download_backpressure":
        assert r["sha"] == pattern_sha256(16 * 1024 * 1024) and r["boundedBuffer"], r
    elif case == "refused":
        assert r["error"]["code"] == "ECONNREFUSED", r
    elif case == "timeout":
        assert r["events"] == ["timeout", "error:ECONNRESET:socket hang up", "close"], r
    else:
        assert r["upload"]["sha256"] == r["expect"], r


@pytest.fixture
def client_app(origins, logdir):
    up, env = origins
    port = closed_port()
    out = open(logdir / f"client_app-{port}.out", "wb")
    err_path = logdir / f"client_app-{port}.err"
    errf = open(err_path, "wb")
    proc = subprocess.Popen([KUAI, "--threads", "2", "--max-body", "64m", str(APP)],
                            stdout=out, stderr=errf,
                            stdin=subprocess.DEVNULL,
                            env={**os.environ, **env, "PORT": str(port)})
    out_path = logdir / f"client_app-{port}.out"
    deadline = time.monotonic() + 20
    while out_path.read_bytes().count(b"LISTENING") < 2:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"client_app.js did not start: {err_path.read_text()[-2000:]}")
        time.sleep(0.05)
    yield proc, port, up, err_path
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail("client_app.js still running 15s after SIGTERM")
    out.close()
    errf.close()
    text = err_path.read_text()
    assert proc.returncode == 0, f"exit {proc.returncode}: {text[-2000:]}"
    for marker in SANITIZER_MARKERS:
        assert marker not in text, text[-3000:]


def test_server_handlers_share_the_thread_pools(client_app):
    proc, port, up, _ = client_app
    before = up.accepted
    for _ in range(4):
        with Conn(port, timeout=10) as c:
            for _ in range(10):
                c.send(build("GET", "/fetch"))
                _, r = c.read_final()
                assert r.status == 200 and r.body == b"hello from client\n", r
            for n in (1, 300_000):
                c.send(build("GET", f"/get?n={n}"))
                _, r = c.read_final(timeout=10)
                assert r.status == 200 and hashlib.sha256(r.body).hexdigest() == pattern_sha256(n)
    # One pool per reactor thread, each request after the previous one.
    assert up.accepted - before <= 2, (before, up.accepted)


def test_server_pipes_an_upload_through(client_app):
    proc, port, up, _ = client_app
    body = os.urandom(3 * 1024 * 1024)
    parts = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 65536]), body[i:i + 65536])
                     for i in range(0, len(body), 65536)) + b"0\r\n\r\n"
    with Conn(port, timeout=20) as c:
        c.send(build("POST", "/upload", headers=[("Transfer-Encoding", "chunked")], body=parts))
        _, r = c.read_final(timeout=20)
    assert r.status == 200, r
    doc = json.loads(r.body)
    assert doc["length"] == len(body) and doc["sha256"] == hashlib.sha256(body).hexdigest(), doc


def test_environment_replaced_with_a_request_in_flight(client_app):
    proc, port, up, err_path = client_app
    for _ in range(2):
        with Conn(port, timeout=10) as c:
            c.send(build("GET", "/crash"))
            _, r = c.read_final()
            assert r.status == 200, r
    time.sleep(1.0)
    assert proc.poll() is None, err_path.read_text()[-2000:]
    assert "starting a fresh JavaScript environment" in err_path.read_text()
    with Conn(port, timeout=10) as c:
        c.send(build("GET", "/fetch"))
        _, r = c.read_final()
        assert r.status == 200 and r.body == b"hello from client\n", r
