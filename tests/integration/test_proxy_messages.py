"""Reverse proxy: what passes through — forwarding and hop-by-hop header
rules, large and streamed bodies both ways, HEAD/204/304, 100-continue and
WebSocket upgrades. Harness: proxy_harness.py."""

from __future__ import annotations

import hashlib
import json
import re
import time

import pytest

from httpraw import Conn, build, get
from upstream import _Reader, pattern_pieces, pattern_sha256, ws_accept_for, ws_frame, ws_read_frame
from proxy_harness import (
    fetch, kuai_only, MiB, proxy_route, read_raw_until_close, SANITIZED, UNDER, vm_rss_kib, who)
from proxy_harness import io, io1, proxy, upstreams  # noqa: F401,F811 (fixtures)

# --------------------------------------------------------------------------
# Headers

def echo_doc(r):
    assert r.status == 200 and r.content_type == "application/json", r
    return json.loads(r.body)


def hdr(doc, name):
    vals = [v for k, v in doc["headers"] if k.lower() == name.lower()]
    return vals


@kuai_only
def test_split_list_fields_reach_the_upstream_whole(proxy, upstreams, io):
    """X-Forwarded-For and Via split over several lines are one list each:
    the upstream gets all of the client's entries, then kuai's, in one field
    (the last line alone would lose the earlier hops)."""
    a = upstreams("a")
    p = proxy([proxy_route([a])], io)
    with Conn(p.port) as c:
        c.send(build("GET", "/echo", headers=[
            ("X-Forwarded-For", "203.0.113.7"), ("Via", "1.0 first"),
            ("X-Forwarded-For", "198.51.100.2, 192.0.2.9"), ("Via", "1.1 second")]))
        doc = echo_doc(c.read_response())
    assert hdr(doc, "X-Forwarded-For") == ["203.0.113.7, 198.51.100.2, 192.0.2.9, 127.0.0.1"], doc
    assert hdr(doc, "Via") == ["1.0 first, 1.1 second, 1.1 kuai"], doc


def test_forwarding_and_hop_by_hop_headers(proxy, upstreams, io):
    a = upstreams("a")
    p = proxy([proxy_route([a])], io)
    with Conn(p.port) as c:
        c.send(build("GET", "/echo?hop=1", host="example.test:8080", headers=[
            ("Connection", "keep-alive, X-Req-Hop"), ("Keep-Alive", "timeout=5"),
            ("Proxy-Connection", "keep-alive"), ("TE", "trailers"), ("Trailer", "X-Foo"),
            ("Upgrade", "h2c"), ("X-Req-Hop", "must-not-pass"),
            ("X-Forwarded-For", "203.0.113.7"), ("X-End", "kept")]))
        r = c.read_response()
        doc = echo_doc(r)
        # Request side.
        for h in ("Keep-Alive", "Proxy-Connection", "TE", "Trailer", "Upgrade", "X-Req-Hop"):
            assert not hdr(doc, h), f"{h} reached the upstream: {doc['headers']}"
        for v in hdr(doc, "Connection"):
            assert {t.strip().lower() for t in v.split(",")} <= {"keep-alive", "close"}, \
                f"client's Connection tokens reached the upstream: {v!r}"
        assert hdr(doc, "X-End") == ["kept"]
        assert hdr(doc, "Host") == ["example.test:8080"]
        xff = ", ".join(hdr(doc, "X-Forwarded-For"))
        assert re.fullmatch(r"203\.0\.113\.7,\s*127\.0\.0\.1", xff), xff
        assert hdr(doc, "X-Forwarded-Proto") == ["http"], doc["headers"]
        assert hdr(doc, "X-Forwarded-Host") in (["example.test:8080"], ["example.test"]), \
            doc["headers"]
        assert any("1.1 kuai" in v for v in hdr(doc, "Via")), doc["headers"]
        # Response side. (nginx: Upgrade is let through for WebSocket's 101,
        # and proxy_hide_header cannot depend on the status.)
        for h in ("Keep-Alive", "Proxy-Connection", "Trailer", "X-Resp-Hop") + (
                ("Upgrade",) if UNDER == "kuai" else ()):
            assert r.header(h) is None, f"{h} reached the client: {r!r}"
        assert not r.has_token("Connection", "x-resp-hop"), r
        assert r.header("X-Resp-End") == "kept", r
        # Still keep-alive.
        c.send(get("/echo"))
        doc = echo_doc(c.read_response())
        xff = hdr(doc, "X-Forwarded-For")
        assert xff == ["127.0.0.1"], xff


def test_host_rewrite_and_strip_prefix(proxy, upstreams, io):
    a, b = upstreams("a"), upstreams("b")
    p = proxy([proxy_route([a], match="/api/", host="backend.internal", stripPrefix=True),
               proxy_route([b], match="/keep/")], io)
    doc = echo_doc(fetch(p.port, path="/api/echo?x=1&y=%20", host="front.test"))
    assert doc["upstream"] == "a"
    assert doc["target"] == "/echo?x=1&y=%20", doc["target"]
    assert hdr(doc, "Host") == ["backend.internal"], doc["headers"]
    assert hdr(doc, "X-Forwarded-Host") in (["front.test"],), doc["headers"]
    r = fetch(p.port, path="/keep/echo?z", host="front.test")
    assert r.status == 404 and who(r) == "b", r
    rec = b.records()[-1]
    assert rec.target == "/keep/echo?z" and rec.header("Host") == "front.test", rec


# --------------------------------------------------------------------------
# Bodies

@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
def test_large_download(proxy, upstreams, io, framing):
    a = upstreams("a")
    p = proxy([proxy_route([a])], io)
    n = 20 * MiB if framing != "close" else 5 * MiB
    path = {"length": f"/bytes/{n}", "chunked": f"/chunked/{n}?size=65536",
            "close": f"/close-delimited/{n}"}[framing]
    with Conn(p.port, timeout=20) as c:
        c.send(get(path))
        r = c.read_response()
        assert r.status == 200, r
        assert len(r.body) == n and hashlib.sha256(r.body).hexdigest() == pattern_sha256(n)
        if framing == "chunked":
            assert r.has_token("Transfer-Encoding", "chunked"), r
        # The client connection survives (close-delimited upstream included).
        c.send(get("/hello"))
        assert c.read_response().status == 200


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_large_upload(proxy, upstreams, io, framing):
    a = upstreams("a")
    p = proxy([proxy_route([a])], io, limits={"bodyBytes": 64 * MiB})
    n = 20 * MiB
    sha = pattern_sha256(n)
    with Conn(p.port, timeout=20) as c:
        if framing == "length":
            c.send(build("POST", "/upload", headers=[("Content-Length", str(n))]))
            for piece in pattern_pieces(n):
                c.send(piece)
        else:
            c.send(build("POST", "/upload", headers=[("Transfer-Encoding", "chunked")]))
            for piece in pattern_pieces(n, piece=100_000):
                c.send(b"%x\r\n" % len(piece) + piece + b"\r\n")
            c.send(b"0\r\n\r\n")
        r = c.read_response(timeout=30)
        assert r.status == 200, r
        doc = json.loads(r.body)
        assert doc["length"] == n and doc["sha256"] == sha, doc


def test_slow_reader_bounded_memory(proxy, upstreams, io1):
    """A client reading a 50 MiB response slowly: the proxy holds back the
    upstream instead of buffering the body (RSS grows by far less than 50 MiB)."""
    a = upstreams("a")
    p = proxy([proxy_route([a])], io1)
    pids = p.worker_pids()
    for _ in range(2):  # warm up the buffers
        r = fetch(p.port, path=f"/bytes/{4 * MiB}", timeout=10)
        assert r.status == 200
    base = sum(vm_rss_kib(x) for x in pids)
    n = 50 * MiB
    with Conn(p.port, timeout=30, rcvbuf=32768) as c:
        c.send(get(f"/bytes/{n}"))
        while b"\r\n\r\n" not in c.buf:
            c._fill(time.monotonic() + 5)
        head, rest = bytes(c.buf).split(b"\r\n\r\n", 1)
        c.buf.clear()
        h = hashlib.sha256(rest)
        got = len(rest)
        peak = 0
        for _ in range(20):  # 2 s of reading very little
            time.sleep(0.1)
            peak = max(peak, sum(vm_rss_kib(x) for x in pids))
        grew = (peak - base) / 1024
        # Sanitizer builds hold freed memory in quarantine: no RSS bound there.
        if not SANITIZED:
            assert grew < 16, \
                f"proxy RSS grew by {grew:.1f} MiB with a slow reader of a 50 MiB body"
        deadline = time.monotonic() + 30
        while got < n:
            if not c._fill(deadline, what="the rest of the body"):
                break
            got += len(c.buf)
            h.update(c.buf)
            c.buf.clear()
    assert head.startswith(b"HTTP/1.1 200"), head
    assert got == n and h.hexdigest() == pattern_sha256(n), f"got {got} of {n} bytes"


def test_chunked_passthrough(proxy, upstreams, io):
    a = upstreams("a")
    p = proxy([proxy_route([a])], io)
    n = 300_000
    with Conn(p.port, timeout=10) as c:
        c.send(get(f"/chunked/{n}"))  # chunks of 1, 7, 100, ... 65536 bytes
        r = c.read_response()
        assert r.status == 200 and r.has_token("Transfer-Encoding", "chunked"), r
        assert hashlib.sha256(r.body).hexdigest() == pattern_sha256(n)
        assert r.header("Content-Length") is None, r


def test_streaming_not_buffered(proxy, upstreams, io):
    """The first piece of a slow body reaches the client before the rest exists."""
    a = upstreams("a")
    p = proxy([proxy_route([a])], io)
    for chunked_ in ("0", "1"):
        with Conn(p.port, timeout=10) as c:
            t = time.monotonic()
            c.send(get(f"/drip?n=5&ms=400&size=50&chunked={chunked_}"))
            while True:
                c._fill(time.monotonic() + 5)
                i = bytes(c.buf).find(b"\r\n\r\n")
                if i >= 0 and len(c.buf) > i + 4 + (10 if chunked_ == "1" else 0):
                    break
            first = time.monotonic() - t
            r = c.read_response()
            total = time.monotonic() - t
            assert r.status == 200 and len(r.body) == 250, r
            assert first < 1.2 and total > 1.8, \
                f"first body bytes after {first:.2f} s, all after {total:.2f} s (chunked={chunked_})"


def test_head_204_304(proxy, upstreams, io):
    a = upstreams("a")
    p = proxy([proxy_route([a])], io)
    with Conn(p.port) as c:
        c.send(build("HEAD", "/bytes/1000"))
        r = c.read_response(head=True)
        assert r.status == 200 and r.header("Content-Length") == "1000" and r.body == b"", r
        c.send(get("/status/204"))
        r = c.read_response()
        assert r.status == 204 and r.body == b"", r
        assert r.header("Content-Length") in (None, "0") and r.header("Transfer-Encoding") is None
        c.send(get("/status/304", headers=[("If-None-Match", '"v1"')]))
        r = c.read_response()
        assert r.status == 304 and r.body == b"" and r.header("ETag") == '"v1"', r
        assert r.header("Transfer-Encoding") is None, r
        c.send(build("HEAD", "/chunked/5000"))
        r = c.read_response(head=True)
        assert r.status == 200 and r.body == b"", r
        # Nothing stray was left on the connection: the next answer is right.
        c.send(get("/hello"))
        r = c.read_response()
        assert r.status == 200 and r.body == b"hello from a\n", r
        c.expect_silence(0.2)


def test_expect_100_continue(proxy, upstreams, io):
    a = upstreams("a")
    p = proxy([proxy_route([a])], io)
    body = b"q" * 100_000
    with Conn(p.port) as c:
        c.send(build("POST", "/upload", headers=[("Content-Length", str(len(body))),
                                                 ("Expect", "100-continue")]))
        r = c.read_response(timeout=3)
        assert r.status == 100, f"no 100 Continue before the body: {r!r}"
        c.send(body)
        _, r = c.read_final()
        assert r.status == 200, r
        doc = json.loads(r.body)
        assert doc["length"] == len(body) and doc["sha256"] == hashlib.sha256(body).hexdigest()


def test_websocket(proxy, upstreams, io):
    a = upstreams("a")
    p = proxy([proxy_route([a])], io)
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    with Conn(p.port, timeout=5) as c:
        c.send(build("GET", "/ws", headers=[("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                            ("Sec-WebSocket-Key", key),
                                            ("Sec-WebSocket-Version", "13")]))
        while b"\r\n\r\n" not in c.buf:
            c._fill(time.monotonic() + 5)
        head, rest = bytes(c.buf).split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head
        assert f"sec-websocket-accept: {ws_accept_for(key)}".encode() in head.lower() \
            or f"Sec-WebSocket-Accept: {ws_accept_for(key)}".encode() in head, head
        assert b"upgrade: websocket" in head.lower(), head
        # Frames over the tunnel, with the socket read directly.
        c.sock.settimeout(5)
        reader = _Reader(c.sock)
        reader.buf += rest
        mask = b"\x11\x22\x33\x44"
        big = bytes(range(256)) * 400  # 102,400 bytes: a 64-bit length
        for opcode, payload in ((0x1, b"hello"), (0x2, big), (0x1, b"x" * 300)):
            c.sock.sendall(ws_frame(opcode, payload, mask=mask))
            fin, op, got = ws_read_frame(reader)
            assert (fin, op, got) == (True, opcode, payload)
        c.sock.sendall(ws_frame(0x9, b"pi", mask=mask))
        assert ws_read_frame(reader) == (True, 0xA, b"pi")
        c.sock.sendall(ws_frame(0x8, b"\x03\xe8", mask=mask))
        assert ws_read_frame(reader) == (True, 0x8, b"\x03\xe8")
        # Then the tunnel closes.
        c.buf = bytearray(reader.buf)
        read_raw_until_close(c, timeout=5)
