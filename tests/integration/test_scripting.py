"""kuai's JavaScript layer against Node: the same script (tests/integration/
scripts/) runs under `kuai --threads 2` and under `node`, gets the same
requests, and must answer the same (status, reason, body, the headers that
matter). The reference is the pinned node that kuai itself runs on
(conftest.NODE), so Node's own messages match exactly.

Headers compared: every header except Date, in order, names in the case sent,
after taking out the ones each server adds itself (Date, Connection,
Keep-Alive, Content-Length, Transfer-Encoding): Node writes those after the
script's headers, kuai writes Date first, and their position carries no
meaning. Their values are still compared (framing: Content-Length,
Transfer-Encoding, Connection), except Keep-Alive's timeout: Node says
timeout=5 (server.keepAliveTimeout, 5 s by default), kuai its own idle timeout
(--idle-timeout, 10 s); test_keep_alive_timeout_property checks the value a
script sets.

The tests themselves can be checked against node alone: point KUAI_BIN at a
wrapper that drops `--threads N` and runs `node "$@"` (with an empty kuai.node
file beside it), set KUAI_SCRIPT_THREADS=1 and NODE_PATH=<repo>/scripting/lib
(for require('kuai')); then only the kuai-only tests fail (a throwing handler
kills node)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import time

import pytest

from conftest import KUAI, NODE
from httpraw import Conn, ResponseTimeout, build, get
from script_harness import (NO_SCRIPTING, SCRIPTS, THREADS, Pair, ScriptProc, assert_same, both, exchange,
                            free_ports, get_json, key, running_pair, same_response, shape)

pytestmark = pytest.mark.skipif(NO_SCRIPTING is not None, reason=str(NO_SCRIPTING))


@pytest.fixture(scope="module")
def api(logdir):
    """scripts/http_api.js under node and kuai for the whole module."""
    with running_pair(logdir, SCRIPTS / "http_api.js") as pair:
        yield pair


@pytest.fixture
def live(api):
    """Fails at once (instead of timing out) when a server died in an earlier test."""
    for p in api.procs():
        if not p.alive():
            pytest.fail(f"{p} died during an earlier test (exit {p.proc.returncode}); "
                        f"stderr tail:\n{p.stderr()[-2500:]}")
    return api


# --------------------------------------------------------------------------
# IncomingMessage
# --------------------------------------------------------------------------

def info_of(proc, req):
    """/info's JSON, remotePort replaced by whether it is the client's port."""
    with Conn(proc.port) as c:
        c.send(req)
        _, r = c.read_final()
        assert r.status == 200, f"{proc}: {r!r}"
        info = json.loads(r.body)
        info["remotePortIsClients"] = info.pop("remotePort") == c.sock.getsockname()[1]
        info.pop("socketSerial")
    return info


def test_request_line_and_socket(live):
    req = build("GET", "/info?a=1&b=%20x", headers=[("X-Test", "yes")])

    def probe(p):
        with Conn(p.port) as c:
            c.send(req)
            _, r = c.read_final()
            info = json.loads(r.body)
            info["remotePortIsClients"] = info.pop("remotePort") == c.sock.getsockname()[1]
            # A second request on the same keep-alive connection: same socket object.
            first = info.pop("socketSerial")
            c.send(req)
            _, r2 = c.read_final()
            info["sameSocketOnKeepAlive"] = json.loads(r2.body)["socketSerial"] == first
        return info

    got = assert_same(live, probe, "GET /info")
    assert got["method"] == "GET" and got["url"] == "/info?a=1&b=%20x", got
    assert got["httpVersion"] == "1.1", got
    assert got["remoteAddress"] == "127.0.0.1", got
    assert got["remotePortIsClients"], got
    assert (got["localAddress"], got["localFamily"], got["localPortIsServers"], got["address"]) == (
        "127.0.0.1", "IPv4", True, True), got
    assert got["sameSocketOnKeepAlive"], got


def test_http10_request(live):
    got = assert_same(live, lambda p: info_of(p, build("GET", "/info", version="HTTP/1.0")),
                      "GET /info HTTP/1.0")
    assert got["httpVersion"] == "1.0" and got["httpVersionMinor"] == 0, got


def test_request_headers_merging(live):
    req = build("POST", "/info", headers=[
        ("X-Dup", "a"), ("x-dup", "b"), ("X-DUP", "c"),
        ("Cookie", "c1=1"), ("Cookie", "c2=2"),
        ("Set-Cookie", "s1=1"), ("Set-Cookie", "s2=2"),
        ("Content-Type", "text/plain"), ("Content-Type", "text/html"),
        ("User-Agent", "ua-first"), ("User-Agent", "ua-second"),
        ("Accept", "a/b"), ("Accept", "c/d"),
        ("Authorization", "first"), ("Authorization", "second"),
        ("X-MiXeD-CaSe", "kept"),
        ("Content-Length", "3"),
    ], body=b"abc")
    got = assert_same(live, lambda p: info_of(p, req), "duplicate request headers")
    h = got["headers"]
    assert h["x-dup"] == "a, b, c", h
    assert h["cookie"] == "c1=1; c2=2", h
    assert h["set-cookie"] == ["s1=1", "s2=2"], h
    assert h["content-type"] == "text/plain", h
    assert h["user-agent"] == "ua-first", h
    assert "X-MiXeD-CaSe" in got["rawHeaders"], got["rawHeaders"]
    assert got["completeAtEnd"] is True, got


@pytest.mark.parametrize("mode", ["data", "pause", "iter", "readable"])
@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_request_body(live, mode, framing):
    body = os.urandom(300_000)
    if framing == "length":
        req = build("POST", f"/body?mode={mode}", headers=[("Content-Length", str(len(body)))],
                    body=body)
    else:
        parts = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 50_000]), body[i:i + 50_000])
                         for i in range(0, len(body), 50_000)) + b"0\r\n\r\n"
        req = build("POST", f"/body?mode={mode}",
                    headers=[("Transfer-Encoding", "chunked")], body=parts)

    def probe(p):
        r = exchange(p.port, [req])[0]
        return r.status, json.loads(r.body) if r.status == 200 else r.body

    status, got = assert_same(live, probe, f"POST /body?mode={mode} ({framing})")
    assert status == 200, got
    assert got["length"] == len(body) and got["sha256"] == hashlib.sha256(body).hexdigest(), got
    assert got["completeAtEnd"] is True, got
    if mode == "pause":
        assert got["dataWhilePaused"] == 0 and got["isPausedAfterPause"] is True, got


def test_pipe_echo_1mib(live):
    body = os.urandom(1 << 20)
    req = build("PUT", "/pipe", headers=[("Content-Length", str(len(body)))], body=body)

    def probe(p):
        r = exchange(p.port, [req], timeout=20)[0]
        s = shape(r)
        s["body"] = (len(r.body), hashlib.sha256(r.body).hexdigest())
        return s

    got = assert_same(live, probe, "PUT /pipe with 1 MiB (req.pipe(res))")
    assert got["status"] == 200, got
    assert got["body"] == (len(body), hashlib.sha256(body).hexdigest()), got


def abort_events(proc, k, timeout=5.0):
    line = proc.wait_lines(rf"^EVENTS {k} ", 1, timeout)[0]
    return json.loads(line.split(" ", 2)[2])


def close_mid_body(p, path):
    """Sends 1000 of 100000 announced body bytes to `path`, then closes; the
    events the handler saw."""
    k = key()
    c = Conn(p.port)
    c.send(build("POST", f"{path}?k={k}", headers=[("Content-Length", "100000")], body=b"x" * 1000))
    time.sleep(0.2)
    c.close()
    return abort_events(p, k)


def test_client_aborts_mid_body(live):
    """'aborted' and 'close' on the request, 'close' (no 'finish') on the
    response when the client goes away before the body is complete."""
    got = assert_same(live, lambda p: close_mid_body(p, "/abort"),
                      "client closes after 1000 of 100000 body bytes")
    assert got["req"] == ["aborted", "error:ECONNRESET", "close"], got
    assert got["res"] == ["close"] and got["resWritableEnded"] is False, got
    assert got["order"] == ["req aborted", "res close", "socket close", "req error:ECONNRESET",
                            "req close"], got


def test_client_aborts_mid_body_with_no_error_listener(live):
    """As Node: with no 'error' listener on the request, a client leaving
    mid-body raises nothing, only 'aborted' and 'close' (an uncaught error
    would replace the environment, and end every request in flight on its
    thread with it)."""

    def probe(p):
        uncaught = p.stderr().count("Uncaught")
        events = close_mid_body(p, "/abort-quiet")["req"]
        return {"events": events, "uncaught": p.stderr().count("Uncaught") - uncaught}

    got = assert_same(live, probe, "a client closes mid-body; nobody listens for 'error'")
    assert got == {"events": ["aborted", "close"], "uncaught": 0}, got


def test_write_after_the_client_left(live):
    """As Node: once the client has gone, res.write() says false (a writer
    waiting for 'drain' stops) and its callback gets ERR_STREAM_DESTROYED."""

    def probe(p):
        k = key()
        c = Conn(p.port)
        c.send(get(f"/write-after-close?k={k}"))
        time.sleep(0.2)
        c.close()
        return abort_events(p, k)

    got = assert_same(live, probe, "a write after the client closed")
    assert got == {"destroyed": True, "ok": False, "cbErr": "ERR_STREAM_DESTROYED"}, got


def test_client_aborts_before_response(live):
    """The request was complete; the client leaves while the handler has not
    answered: 'close' on the response, never 'finish'."""

    def probe(p):
        k = key()
        c = Conn(p.port)
        c.send(build("GET", f"/abort?k={k}"))
        time.sleep(0.2)
        c.close()
        return abort_events(p, k)

    got = assert_same(live, probe, "client closes while waiting for the response")
    assert got["res"] == ["close"] and got["resWritableEnded"] is False, got
    assert got["req"] == ["end", "close"], got


# --------------------------------------------------------------------------
# ServerResponse
# --------------------------------------------------------------------------

@pytest.mark.parametrize("path,reason", [
    ("/status?code=200", "OK"),
    ("/status?code=404", "Not Found"),
    ("/status?code=418", "I'm a Teapot"),
    ("/status?code=299", "unknown"),
    ("/status?code=418&msg=I%27m%20a%20custom%20reason", "I'm a custom reason"),
    ("/status?code=503&msg=Busy", "Busy"),
])
def test_status_and_reason(live, path, reason):
    """Custom reason phrases, and the default ones of http.STATUS_CODES."""
    got = same_response(live, build("GET", path), f"GET {path}")
    assert got["reason"] == reason, got


@pytest.mark.parametrize("path", [
    "/headers-api", "/append-header", "/writehead-merge", "/writehead-reason", "/writehead-array",
    "/late-setheader", "/chunked", "/fixed", "/empty", "/no-such-route", "/writehead-array-order",
    "/writehead-array-over", "/writehead-array-odd", "/own-transfer-encoding", "/own-transfer-encoding-trailers",
    "/hooked-writehead?via=end", "/hooked-writehead?via=write", "/hooked-writehead?via=flush", "/removed-fields",
])
def test_response_shape(live, path):
    got = same_response(live, build("GET", path), f"GET {path}")
    if path == "/headers-api":
        r = json.loads(got["body"])
        assert r["getHeadersNullProto"] is True and r["getNumber"] == 42, r
        assert r["hasRemovedBefore"] and not r["hasRemovedAfter"], r
        names = [k for k, _ in got["headers"]]
        assert "X-MiXeD-Case" in names and names.count("Set-Cookie") == 2, got
    elif path == "/append-header":
        body, _, late = got["body"].partition(b";")
        r = json.loads(body)
        assert r["str"] == ["a", "b"] and r["arr"] == ["c", "d", "e", "f"], r
        assert r["badName"] == "ERR_INVALID_HTTP_TOKEN" and r["badValue"] == "ERR_INVALID_CHAR", r
        assert late == b"late=ERR_HTTP_HEADERS_SENT", got
        assert [v for k, v in got["headers"] if k == "Set-Cookie"] == ["k=1", "l=2"], got
    elif path == "/writehead-merge":
        assert got["status"] == 201, got
        assert ("X-B", "from-writeHead") in got["headers"], got
    elif path == "/late-setheader":
        assert got["body"] == b"part;code=ERR_HTTP_HEADERS_SENT", got
    elif path == "/chunked":
        assert got["framing"].get("transfer-encoding") == ["chunked"], got
    elif path == "/writehead-array-order":
        assert [h for h in got["headers"] if h[0].startswith("X-")] == [("X-A", "1"), ("X-B", "2"), ("X-A", "3")]
    elif path == "/writehead-array-odd":
        assert (got["status"], got["reason"]) == (400, "OK"), got
        assert got["body"].startswith(b"ERR_INVALID_ARG_VALUE The argument 'headers' is invalid."), got
    elif path.startswith("/hooked-writehead"):
        assert got["status"] == 203 and ("X-Hook-Args", "[203]") in got["headers"], got
        assert ("X-Header-Before", "null") in got["headers"], got
        if not path.endswith("end"):
            assert got["body"].endswith(b"calls=1 header=string HTTP/1.1 203 Non-Authoritative Information"), got
    elif path == "/removed-fields":
        assert got["framing"].get("transfer-encoding") == ["chunked"] and not got["has_date"], got
    elif path.startswith("/own-transfer-encoding"):
        assert got["framing"].get("transfer-encoding") == ["chunked"], got
        assert got["body"] in (b"xy", b"ab"), got


@pytest.mark.parametrize("path", ["/set-headers", "/early-hints", "/trailers", "/processing"])
def test_response_extras_byte_for_byte(live, path):
    """setHeaders, writeEarlyHints (a 103 before the response) and addTrailers
    (after the last chunk): the bytes on the wire as node's, Date and the
    connection fields aside; and every argument check's error."""

    def probe(p):
        with Conn(p.port, timeout=5) as c:
            c.send(build("GET", path, headers=[("Connection", "close")]))
            deadline = time.monotonic() + 5
            while not c.eof:
                c._fill(deadline)
            lines = bytes(c.buf).split(b"\r\n")
        return [l for l in lines if not l.lower().startswith((b"date:", b"connection:", b"keep-alive:"))]

    got = assert_same(live, probe, f"GET {path}")
    if path == "/early-hints":
        assert got[0] == b"HTTP/1.1 103 Early Hints", got
        assert b"Link: </a.css>; rel=preload; as=style, </b.js>; rel=preload" in got, got
    elif path == "/trailers":
        assert b"X-T: done" in got and got.count(b"X-U: 1") == 1, got
    elif path == "/processing":
        assert got[:2] == [b"HTTP/1.1 102 Processing", b""], got
    else:
        assert got.count(b"Set-Cookie: a=1") + got.count(b"set-cookie: a=1") == 1, got


@pytest.mark.parametrize("query", ["", "c=keep-alive", "c=Keep-Alive", "c=close", "c=upgrade,foo",
                                   "ka=timeout%3D9", "c=keep-alive&ka=timeout%3D9", "nodate=1",
                                   "date=Thu,%2001%20Jan%201970%2000:00:00%20GMT", "chunked=1&c=foo"])
def test_own_connection_keep_alive_and_date_as_node(live, query):
    """The head byte for byte as node's (only the server's own Date value
    aside): the handler's Connection, Keep-Alive and Date fields as given,
    what it left out added after its fields, in node's order; the
    connection closes only when node's would."""
    now = re.compile(rb"^Date: (Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d \w{3} 2\d{3} [\d:]{8} GMT$")

    def probe(p):
        with Conn(p.port, timeout=5) as c:
            c.send(build("GET", f"/own-fields?{query}"))
            r = c.read_response()
            head = [b"Date: (now)" if now.match(l) else l for l in r.raw.split(b"\r\n\r\n")[0].split(b"\r\n")]
            c.send(build("GET", "/own-fields"))
            try:
                second = c.read_response().status
            except (OSError, AssertionError):
                second = None
        return head, r.body, second

    head, body, second = assert_same(live, probe, f"GET /own-fields?{query}")
    if query.startswith("c=close"):
        assert second is None and b"Connection: close" in head, head
    else:
        assert second == 200, head
    if "ka=" in query:
        assert b"Keep-Alive: timeout=9" in head and head.count(b"Keep-Alive: timeout=9") == 1, head


def test_request_trailers_as_node(live):
    request = (b"POST /request-trailers HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"3\r\nabc\r\n0\r\nX-Checksum: 42\r\nX-Other: y\r\nx-other: z\r\n"
               b"Set-Cookie: a=1\r\nHost: not-the-host\r\n\r\n")

    def probe(p):
        out = []
        for cut in (len(request), len(request) - 20):
            with Conn(p.port, timeout=5) as c:
                c.send(request[:cut])
                time.sleep(0.05)
                c.send(request[cut:])
                out.append(json.loads(c.read_response().body))
        return out

    got = assert_same(live, probe, "POST with trailers")
    assert got[0] == got[1], got
    assert got[0]["trailers"]["x-checksum"] == "42" and got[0]["trailers"]["x-other"] == "y, z", got
    assert got[0]["rawTrailers"][:2] == ["X-Checksum", "42"], got


def test_strict_content_length_as_node(live):
    def probe(p):
        out = []
        with Conn(p.port, timeout=5) as c:
            c.send(build("GET", "/strict-end"))
            deadline = time.monotonic() + 5
            while not c.eof:
                c._fill(deadline)
            out.append(bytes(c.buf))  # nothing: the handler destroyed it
        rs = exchange(p.port, [build("GET", "/strict-write"), build("GET", "/strict-log")])
        out.append(shape(rs[0]))
        out.append([m for m in json.loads(rs[1].body) if "of 4 byte(s)" in m])
        return out

    got = assert_same(live, probe, "strictContentLength")
    assert got[0] == b"" and got[1]["body"] == b"abc", got
    assert len(got[2]) == 2 and all(m.startswith("ERR_HTTP_CONTENT_LENGTH_MISMATCH: ") for m in got[2]), got


@pytest.mark.parametrize("path", ["/fixed", "/chunked", "/empty", "/head-aware"])
def test_head_has_no_body(live, path):
    """HEAD: the head GET would get, no body; the next request on the
    connection still works (no stray body bytes). No Content-Length of the
    server's own, as Node (end()'s data on HEAD is discarded; a handler that
    ends a HEAD with no data must not be said to have a 0-byte body)."""

    def probe(p):
        rs = exchange(p.port, [build("HEAD", path), build("GET", path), build("GET", "/fixed")],
                      heads=[True, False, False])
        shapes = [shape(r) for r in rs]
        head_length = shapes[0]["framing"].get("content-length")
        if head_length is not None and p is live.kuai:
            assert head_length == [str(len(rs[1].body))], (
                f"HEAD {path}: Content-Length {head_length} but GET's body is {len(rs[1].body)} bytes")
        return shapes

    got = assert_same(live, probe, f"HEAD {path}, GET {path}, GET /fixed")
    assert got[0]["body"] == b"" and got[2]["body"] == b"fixed body", got


@pytest.mark.parametrize("code", [204, 304])
def test_no_body_statuses(live, code):
    def probe(p):
        rs = exchange(p.port, [build("GET", f"/nocontent?code={code}"), build("GET", "/fixed")])
        return [shape(r) for r in rs]

    got = assert_same(live, probe, f"GET /nocontent?code={code} then GET /fixed")
    assert got[0]["status"] == code and got[0]["body"] == b"", got
    assert got[1]["body"] == b"fixed body", got


def test_http10_response_framing(live):
    """An HTTP/1.0 client: no chunked encoding; the body ends at the close."""

    def probe(p):
        with Conn(p.port) as c:
            c.send(build("GET", "/chunked", version="HTTP/1.0"))
            raw = c.read_until_close()
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        names = sorted(l.split(":")[0].lower() for l in lines[1:])
        conn = [l for l in lines[1:] if l.lower().startswith("connection:")]
        return lines[0], names, conn, body

    status, names, conn, body = assert_same(live, probe, "GET /chunked HTTP/1.0")
    assert body == b"abc" and "transfer-encoding" not in names, (status, names, body)


def test_flush_headers(live):
    """flushHeaders(): the head arrives on its own; the body only once the
    script is told to send it (another request, /release)."""

    def probe(p):
        k = key()
        with Conn(p.port) as c:
            c.send(build("GET", f"/flush?k={k}"))
            deadline = time.monotonic() + 10
            try:
                while b"\r\n\r\n" not in c.buf:
                    c._fill(deadline, "the flushed head")
            except ResponseTimeout:
                pass
            head_early = b"\r\n\r\n" in c.buf and c.buf.endswith(b"\r\n\r\n")
            # /release must reach the thread that holds the /flush response:
            # each try is a new connection, which may land on another thread.
            for _ in range(40):
                released = exchange(p.port, [build("GET", f"/release?k={k}")])[0].body
                if released != b"nothing to release":
                    break
            _, r = c.read_final()
        return head_early, released, shape(r)

    head_early, released, got = assert_same(live, probe, "GET /flush")
    assert head_early, "the head did not arrive alone, before the body"
    assert released == b"released", released
    assert got["body"] == b"headersSent false->true", got


def test_response_state_and_events(live):
    """headersSent/writableEnded/finished along a response; end()'s callback,
    then 'finish', then 'close' (Node 22 and later; Node 20 emitted 'finish'
    first)."""

    def probe(p):
        k = key()
        with Conn(p.port) as c:
            c.send(build("GET", f"/state?k={k}"))
            _, r1 = c.read_final()
            time.sleep(0.1)
            c.send(build("GET", f"/report?k={k}"))
            _, r2 = c.read_final()
        return shape(r1), json.loads(r2.body)

    r1, rep = assert_same(live, probe, "GET /state then /report")
    assert r1["body"] == b"xy", r1
    assert rep["states"]["start"] == {"headersSent": False, "writableEnded": False,
                                      "writableFinished": False, "finished": False}, rep
    assert rep["states"]["afterEnd"]["writableEnded"] is True, rep
    assert rep["events"] == ["end-callback", "finish", "close", "req-close"], rep


def test_backpressure_and_drain(live):
    """A big streamed response to a client that does not read for a while:
    write() returns false, 'drain' follows each time, every byte arrives."""
    total = 8 << 20

    def probe(p):
        k = key()
        with Conn(p.port, rcvbuf=8192, timeout=30) as c:
            c.send(build("GET", f"/big?k={k}&total={total}"))
            time.sleep(0.5)
            _, r = c.read_final()
            c.send(build("GET", f"/report?k={k}"))
            _, r2 = c.read_final()
        rep = json.loads(r2.body)
        return {
            "status": r.status,
            "length": len(r.body),
            "framing": shape(r)["framing"],
            "write_returned_false": rep["falses"] > 0,
            "drain_per_false": rep["drains"] == rep["falses"],
            "needDrain": rep["needDrainSeen"],
            "events": rep["events"],
        }

    got = assert_same(live, probe, f"GET /big ({total} bytes) with a slow reader")
    assert got["length"] == total and got["write_returned_false"], got


# --------------------------------------------------------------------------
# Threads
# --------------------------------------------------------------------------

def test_both_environments_serve(live):
    """With --threads 2 both environments get connections."""
    ids = set()
    for _ in range(40):
        r = exchange(live.kuai.port, [build("GET", "/whoami")])[0]
        assert r.status == 200, r
        ids.add(r.body.decode())
        if len(ids) == THREADS:
            break
    listening = {l.split()[2] for l in live.kuai.lines(r"^LISTENING ")}
    assert len(listening) == THREADS, f"expected {THREADS} LISTENING lines with distinct ids: {listening}"
    assert ids == listening, f"40 connections reached {ids}; environments: {listening}"


# --------------------------------------------------------------------------
# http.Server
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server_api(logdir):
    """scripts/server_api.js under node and kuai; each gets its own six ports
    and its own held port (a Python listener: EADDRINUSE)."""
    procs, held = {}, []
    try:
        for runtime in ("node", "kuai"):
            hs = socket.socket()
            hs.bind(("127.0.0.1", 0))
            hs.listen(1)
            held.append(hs)
            ports = free_ports(6)
            p = ScriptProc(runtime, SCRIPTS / "server_api.js", logdir, env={
                "PORTS": ",".join(map(str, ports)), "HELD_PORT": str(hs.getsockname()[1])})
            p.ports = ports
            p.held = hs.getsockname()[1]
            procs[runtime] = p
            p.start(ready=r'"srv":"ready"')
        yield Pair(procs["node"], procs["kuai"])
    finally:
        problems = []
        for p in procs.values():
            if p is not None:
                problems += p.stop()
        for hs in held:
            hs.close()
    if problems:
        pytest.fail("\n".join(problems))


def records(proc):
    """The JSON lines, grouped per environment: {env: [record, ...]}."""
    out = {}
    for line in proc.stdout().splitlines():
        if line.startswith("{"):
            rec = json.loads(line)
            out.setdefault(rec.pop("env"), []).append(rec)
    return out


def normalized(recs, proc):
    """One environment's records, with the run's own ports replaced by names."""
    names = {proc.held: "HELD", **{p: f"P{i}" for i, p in enumerate(proc.ports)}}
    out = []
    for r in recs:
        r = json.loads(json.dumps(r))
        if r["srv"] == "e":
            r.pop("port")
        if isinstance(r.get("address"), dict):
            r["address"]["port"] = names.get(r["address"]["port"], r["address"]["port"])
        if "port" in r:
            r["port"] = names.get(r["port"], r["port"])
        out.append(r)
    return sorted(out, key=lambda r: r["srv"])


def test_server_events_and_listen_overloads(server_api):
    """Each environment's records (listen overloads, address(), events,
    close(), EADDRINUSE) equal node's."""
    for p in server_api.procs():
        p.wait_lines(r'"srv":"f-closed"', p.threads, 5)
    kuai_envs = records(server_api.kuai)
    assert len(kuai_envs) == THREADS, f"expected records from {THREADS} environments: {kuai_envs}"
    if server_api.node is not None:
        (node_recs,) = records(server_api.node).values()
        expected = normalized(node_recs, server_api.node)
        for env, recs in kuai_envs.items():
            got = normalized(recs, server_api.kuai)
            exp_by = {r["srv"]: r for r in expected}
            got_by = {r["srv"]: r for r in got}
            diffs = [f"  {s}: node {exp_by.get(s)!r}\n  {' ' * len(s)}  kuai {got_by.get(s)!r}"
                     for s in sorted(set(exp_by) | set(got_by)) if exp_by.get(s) != got_by.get(s)]
            assert not diffs, f"environment {env}: records differ from node's:\n" + "\n".join(diffs)
    for env, recs in kuai_envs.items():
        by = {r["srv"]: r for r in recs}
        assert by["a"]["before"] is None, by["a"]
        assert by["h-error"]["code"] == "EADDRINUSE", by.get("h-error")
        assert "h-listening" not in by, by


def test_server_order_of_close_records(server_api):
    """'close' event listeners run before close()'s callback."""

    def order(p):
        out = []
        for recs in records(p).values():
            seq = [r["srv"] for r in recs if r["srv"].startswith("f")]
            out.append(seq)
        return out

    for p in server_api.procs():
        p.wait_lines(r'"srv":"f-closed"', p.threads, 5)
    expected, got = both(server_api, order)
    want = expected[0] if expected else ["f", "f-close-return", "f-close-event", "f-closed"]
    for seq in got:
        assert seq == want, f"kuai: {seq}; node: {want}"


def test_server_listeners_answer(server_api):
    """Every listening server answers with its own handler (a: no host, b: the
    'request' event, c-e: the other overloads, k)."""
    for p in server_api.procs():
        e_port = json.loads(p.lines(r'"srv":"e"')[0])["port"]
        for name, port in [("a", p.ports[0]), ("b", p.ports[1]), ("c", p.ports[2]),
                           ("d", p.ports[3]), ("e", e_port), ("k", p.ports[5])]:
            r = exchange(port, [build("GET", "/")])[0]
            assert (r.status, r.body) == (200, f"server {name}".encode()), f"{p}: {name}: {r!r}"


def test_closed_server_refuses(server_api):
    """After close() (in every environment), connecting is refused."""
    for p in server_api.procs():
        p.wait_lines(r'"srv":"f-closed"', p.threads, 5)
        s = socket.socket()
        s.settimeout(2)
        try:
            with pytest.raises(ConnectionRefusedError):
                s.connect(("127.0.0.1", p.ports[4]))
                # Accepted by a listener that should be gone: show what it answers.
                s.sendall(build("GET", "/"))
                pytest.fail(f"{p}: connection to the closed server accepted; "
                            f"it answered {s.recv(200)!r}")
        finally:
            s.close()


def test_keep_alive_timeout_property(server_api):
    """server.keepAliveTimeout = 2000 -> Keep-Alive: timeout=2 (node's value)."""

    def probe(p):
        r = exchange(p.ports[5], [build("GET", "/")])[0]
        return r.header("Connection"), r.header("Keep-Alive")

    got = assert_same(server_api, probe, "Keep-Alive header of a server with keepAliveTimeout=2000")
    assert got == ("keep-alive", "timeout=2"), got


# --------------------------------------------------------------------------
# Errors, process, start-up failures
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def errors_kuai(logdir):
    port = free_ports(1)[0]
    p = ScriptProc("kuai", SCRIPTS / "errors.js", logdir, args=["--flag", "value"],
                   env={"PORT": str(port), "KUAI_TEST_VAR": "from-env"}).start()
    yield p
    problems = p.stop()
    if problems:
        pytest.fail("\n".join(problems))


@pytest.mark.parametrize("path,marker", [
    ("/throw", "kuai-test-sync-throw-marker"),
    ("/reject", "kuai-test-async-reject-marker"),
])
def test_handler_error_is_500(errors_kuai, path, marker):
    """kuai only (node's process dies of an uncaught exception): a handler
    that throws or rejects gets a 500 for that request, its stack on stderr,
    and the same connection then serves the next request."""
    p = errors_kuai
    rs = exchange(p.port, [build("GET", path), build("GET", "/ok")])
    assert rs[0].status == 500, rs[0]
    assert rs[0].header("X-Set-Before-Throw") is None, rs[0]
    assert rs[1].status == 200 and rs[1].body == b"ok", rs[1]
    deadline = time.monotonic() + 3
    while marker not in p.stderr() and time.monotonic() < deadline:
        time.sleep(0.05)
    err = p.stderr()
    assert marker in err, f"no stack with {marker!r} on stderr: {err[-1500:]!r}"
    assert re.search(r"at .*errors\.js:\d+", err), f"no stack frame naming errors.js: {err[-1500:]!r}"
    assert p.alive()


def test_process_globals(errors_kuai, logdir):
    """process.argv, __filename, __dirname, process.env and require.main as
    node shows them (argv[0], the executable, differs by design)."""
    got = get_json(errors_kuai.port, "/info")
    port = free_ports(1)[0]
    n = ScriptProc("node", SCRIPTS / "errors.js", logdir, args=["--flag", "value"],
                   env={"PORT": str(port), "KUAI_TEST_VAR": "from-env"}).start()
    try:
        expected = get_json(n.port, "/info")
    finally:
        n.stop()
    assert got == expected, f"node: {expected!r}\nkuai: {got!r}"
    assert got["args"] == ["--flag", "value"], got
    assert got["filename"] == str(SCRIPTS / "errors.js"), got
    assert got["env"] == "from-env" and got["requireMainIsModule"] is True, got


def run_to_exit(runtime, script, timeout=20):
    cmd = [KUAI, "--threads", str(THREADS), str(script)] if runtime == "kuai" else [NODE, str(script)]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{runtime} {script.name} still running after {timeout}s "
                    f"(stdout={e.stdout!r}, stderr={e.stderr!r})")


def test_syntax_error_exits_1():
    script = SCRIPTS / "bad_syntax.js"
    runtimes = ["kuai"] + ["node"]
    for runtime in runtimes:
        p = run_to_exit(runtime, script)
        assert p.returncode == 1, f"{runtime}: exit {p.returncode}, stderr {p.stderr!r}"
        assert f"{script}:3" in p.stderr, f"{runtime}: {script}:3 not in stderr {p.stderr!r}"
        assert "SyntaxError" in p.stderr, f"{runtime}: {p.stderr!r}"


@pytest.mark.parametrize("script,word", [("bad_syntax.js", "SyntaxError:"),
                                         ("missing_module.js", "Error: Cannot find module")])
def test_start_error_reported_once(script, word):
    """One report, not one per reactor thread (node prints it once)."""
    p = run_to_exit("kuai", SCRIPTS / script)
    n = p.stderr.count(word)
    assert n == 1, f"{word!r} appears {n} times in kuai's stderr:\n{p.stderr}"


def test_missing_module_exits_1():
    script = SCRIPTS / "missing_module.js"
    runtimes = ["kuai"] + ["node"]
    for runtime in runtimes:
        p = run_to_exit(runtime, script)
        assert p.returncode == 1, f"{runtime}: exit {p.returncode}, stderr {p.stderr!r}"
        assert "Cannot find module 'kuai-test-no-such-module'" in p.stderr, f"{runtime}: {p.stderr!r}"


def unix_get(path, target):
    """A GET over the Unix socket at path: (status, JSON body or None)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(str(path))
        s.sendall(build("GET", target, headers=[("Connection", "close")]))
        data = b"".join(iter(lambda: s.recv(65536), b""))  # up to the server's close
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body) if body else None


@pytest.mark.parametrize("form", ["path", "options"])
def test_unix_socket_listen_as_node(logdir, tmp_path, form):
    """listen(path) and listen({ path }): every reactor answers on the one
    Unix socket, server.address() is the path, the connection has no
    address (undefined, as under node), readableAll widens the file's mode,
    and close() unlinks the file once every reactor's server has closed."""
    results = {}
    for runtime in ("node", "kuai"):
        sock = tmp_path / f"{runtime}-{form}.sock"
        proc = ScriptProc(runtime, SCRIPTS / "unix_listen.js", logdir,
                          env={"SOCK": str(sock), "FORM": form})
        proc.start(ready=r"^LISTENING")
        try:
            listening = {l.split()[2] for l in proc.lines(r"^LISTENING")}
            answers = [unix_get(sock, "/") for _ in range(10)]
            # Each reactor's server closes on the /close it gets; one that
            # arrives as a reactor closes may be answered 503 by it.
            for _ in range(20):
                if len(proc.lines(r"^CLOSED")) == proc.threads:
                    break
                try:
                    unix_get(sock, "/close")
                except OSError:  # the last server closed meanwhile: the file is gone
                    pass
                time.sleep(0.05)
            proc.wait_lines(r"^CLOSED", proc.threads)
            closed = proc.lines(r"^CLOSED")
            # Nothing left to do: the script ends (0) under both.
            assert proc.proc.wait(timeout=10) == 0, proc
        finally:
            proc.kill()
        for status, seen in answers:
            assert status == 200 and seen["serverAddress"] == str(sock), seen
            seen["serverAddress"] = "SOCK"
        results[runtime] = (listening, answers[0], closed[-1], sock.exists())
    node, kuai = results["node"], results["kuai"]
    assert kuai == node, f"kuai: {kuai}\nnode: {node}"
    assert kuai[2] == "CLOSED false" and not kuai[3]


def test_unix_socket_in_use_fails_as_node(tmp_path):
    """A path another process listens on: node's error, the start fails
    with exit 1, one report."""
    sock = tmp_path / "held.sock"
    holder = socket.socket(socket.AF_UNIX)
    holder.bind(str(sock))
    holder.listen()
    code = f"require('http').createServer((q, s) => s.end()).listen('{sock}')"
    try:
        for runtime in ("node", "kuai"):
            cmd = [NODE, "-e", code] if runtime == "node" else [KUAI, "--threads", str(THREADS), "-e", code]
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
            assert p.returncode == 1, (runtime, p)
            assert f"listen EADDRINUSE: address already in use {sock}" in p.stderr, (runtime, p.stderr)
            if runtime == "kuai":
                assert p.stderr.count("EADDRINUSE") <= 2, p.stderr
    finally:
        holder.close()


def test_script_without_server_exits_0():
    """Like node, a script that starts nothing exits 0 once it has run."""
    try:
        p = subprocess.run([KUAI, "--threads", str(THREADS), "-e",
                            "setTimeout(() => console.log('ran-e'), 50)"],
                           capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"kuai -e without a server still running after 10s (stdout={e.stdout!r})")
    assert p.returncode == 0, p
    assert "ran-e" in p.stdout, p
