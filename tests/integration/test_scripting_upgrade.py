"""kuai's http server side: 'upgrade' (the socket an upgrade listener gets is
the connection itself: the ws package's WebSocketServer works on it unchanged),
'checkContinue' / writeContinue() and Expect other than 100-continue (417),
each compared with node running the same script (scripts/upgrade_expect.js)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from httpraw import Conn, build
from script_harness import NO_SCRIPTING, SCRIPTS, running_pair
from upstream import ws_accept_for, ws_frame, ws_read_frame

APPS = Path(__file__).resolve().parent.parent / "apps"

pytestmark = [
    pytest.mark.skipif(NO_SCRIPTING is not None, reason=str(NO_SCRIPTING)),
    pytest.mark.skipif(not (APPS / "node_modules" / "ws").exists(),
                       reason="tests/apps not installed (npm ci)"),
]


@pytest.fixture(scope="module")
def pair(logdir):
    with running_pair(logdir, SCRIPTS / "upgrade_expect.js", env={"APPS": str(APPS)}) as p:
        yield p


class _Reader:
    def __init__(self, sock, buf=b""):
        self.sock = sock
        self.buf = bytearray(buf)

    def read_exact(self, n):
        while len(self.buf) < n:
            d = self.sock.recv(65536)
            if not d:
                raise EOFError("connection closed")
            self.buf += d
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out


def handshake(port, path, extra=()):
    c = Conn(port, timeout=5)
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    c.send(build("GET", path, headers=[("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                       ("Sec-WebSocket-Key", key),
                                       ("Sec-WebSocket-Version", "13"), *extra]))
    while b"\r\n\r\n" not in c.buf:
        c._fill(time.monotonic() + 5)
    head, rest = bytes(c.buf).split(b"\r\n\r\n", 1)
    return c, key, head, rest


def procs(pair):
    return pair.procs()


def test_websocket_with_ws_package(pair):
    for p in procs(pair):
        for _ in range(2):  # both reactors (kuai --threads 2)
            c, key, head, rest = handshake(p.port, "/ws")
            with c:
                assert head.startswith(b"HTTP/1.1 101"), (p, head)
                assert ws_accept_for(key).encode() in head, (p, head)
                reader = _Reader(c.sock, rest)
                mask = b"\x01\x02\x03\x04"
                c.sock.sendall(ws_frame(0x1, b"hello", mask=mask))
                assert ws_read_frame(reader) == (True, 0x1, b"echo:hello"), p
                big = bytes(range(256)) * 1000  # 256,000 bytes each way
                c.sock.sendall(ws_frame(0x2, big, mask=mask))
                assert ws_read_frame(reader) == (True, 0x2, big), p
                c.sock.sendall(ws_frame(0x8, b"\x03\xe8", mask=mask))
                fin, op, payload = ws_read_frame(reader)
                assert (fin, op, payload[:2]) == (True, 0x8, b"\x03\xe8"), p


def test_websocket_after_a_body_nobody_reads(pair):
    # As node: the ws package reads only the socket; that lets the request's
    # 100 KB body (more than its stream buffers) flow and be dropped, and the
    # frames after it arrive.
    body = b"x" * 100_000
    for p in procs(pair):
        c, key, head, rest = handshake(p.port, "/ws", extra=[("Content-Length", str(len(body)))])
        with c:
            assert head.startswith(b"HTTP/1.1 101"), (p, head)
            reader = _Reader(c.sock, rest)
            mask = b"\x01\x02\x03\x04"
            c.sock.sendall(body + ws_frame(0x1, b"after the body", mask=mask))
            assert ws_read_frame(reader) == (True, 0x1, b"echo:after the body"), p


def test_raw_upgrade_with_head_bytes(pair):
    for p in procs(pair):
        with Conn(p.port, timeout=5) as c:
            # The first bytes of the new protocol ride along with the head.
            c.send(build("GET", "/raw", headers=[("Upgrade", "shout"), ("Connection", "upgrade")])
                   + b"early ")
            deadline = time.monotonic() + 5
            while b"EARLY " not in c.buf:
                assert c._fill(deadline), (p, bytes(c.buf))
            assert bytes(c.buf).startswith(b"HTTP/1.1 101 Switching Protocols\r\n"), p
            c.buf.clear()
            c.sock.sendall(b"quiet words")
            while b"QUIET WORDS" not in c.buf:
                assert c._fill(deadline), (p, bytes(c.buf))
            c.sock.sendall(b"bye")
            while not c.eof:
                c._fill(deadline)
            assert bytes(c.buf).endswith(b"BYE\n"), (p, bytes(c.buf))


@pytest.mark.parametrize("framing,body,seen", [
    ("Content-Length", b"early ", b"early "),
    ("Transfer-Encoding", b"3\r\near\r\n3;x=1\r\nly \r\n0\r\n\r\n", b"early "),
])
def test_upgrade_body_is_the_requests_then_the_socket_reads(pair, framing, body, seen):
    # As node: the 'upgrade' listener has the connection at the head; a body
    # the head announces is parsed as HTTP into the request ('data', 'end'),
    # and the socket's data starts after it, in one write or cut anywhere.
    value = str(len(body)) if framing == "Content-Length" else "chunked"
    request = build("GET", "/raw", headers=[("Upgrade", "shout"), ("Connection", "upgrade"),
                                            (framing, value)]) + body + b"after"
    for p in procs(pair):
        for cut in (len(request), len(request) - len(body) - 5 + 2, len(request) - 3):
            with Conn(p.port, timeout=5) as c:
                c.send(request[:cut])
                time.sleep(0.05)
                c.send(request[cut:])
                deadline = time.monotonic() + 5
                # What the request heard ("[...]") and the socket's echo
                # interleave as they will (node writes either first).
                while True:
                    out = bytes(c.buf)
                    heard = re.findall(rb"\[([^\]]*)\]", out)
                    echoed = re.sub(rb"\[[^\]]*\]", b"", out.split(b"\r\n\r\n", 1)[-1])
                    if b"end" in heard and len(echoed) >= 5:
                        break
                    assert c._fill(deadline), (p, cut, out)
                assert out.startswith(b"HTTP/1.1 101 Switching Protocols\r\n"), (p, out)
                assert echoed == b"AFTER", (p, cut, out)
                assert heard[-1] == b"end", (p, cut, out)
                assert b"".join(h[5:] for h in heard if h.startswith(b"body:")) == seen, (p, cut, out)
                assert all(h.startswith(b"body:") for h in heard[:-1]), (p, cut, out)


def test_upgrade_body_cut_short_aborts_the_request(pair):
    for p in procs(pair):
        with Conn(p.port, timeout=5) as c:
            c.send(build("GET", "/raw", headers=[("Upgrade", "shout"), ("Connection", "upgrade"),
                                                 ("Content-Length", "10")]) + b"abc")
            deadline = time.monotonic() + 5
            while b"[body:abc]" not in c.buf:
                assert c._fill(deadline), (p, bytes(c.buf))
        # The client is gone mid-body: the server goes on serving.
        c2, _, head, _ = handshake(p.port, "/nowhere")
        with c2:
            assert head.startswith(b"HTTP/1.1 404"), (p, head)


def test_should_upgrade_callback_decides_as_node(pair):
    results = {}
    for p in procs(pair):
        got = []
        # (node ends the process when the callback throws: kuai only, below)
        for path in ("/declined", "/plain", "/raw"):
            with Conn(p.port, timeout=5) as c:
                headers = [("Upgrade", "shout"), ("Connection", "upgrade")] if path != "/plain" else []
                c.send(build("GET", path, headers=headers))
                while b"\r\n\r\n" not in c.buf:
                    assert c._fill(time.monotonic() + 5), (p, path, bytes(c.buf))
                if bytes(c.buf).startswith(b"HTTP/1.1 101"):
                    got.append((101, b""))
                    continue
                r = c.read_response()
                got.append((r.status, r.body))
        results[p.runtime] = got
    assert results["kuai"][0] == (200, b"request GET /declined 0 upgrade=false")
    assert results["kuai"][1] == (200, b"request GET /plain 0")
    assert results["kuai"][2] == (101, b"")
    assert results["node"] == results["kuai"]


def test_should_upgrade_callback_that_throws_fails_the_request(pair):
    p = next(p for p in procs(pair) if p.runtime == "kuai")
    with Conn(p.port, timeout=5) as c:
        c.send(build("GET", "/throw", headers=[("Upgrade", "shout"), ("Connection", "upgrade")]))
        assert c.read_response().status == 500
    assert "no deciding this one" in p.stderr()
    with Conn(p.port, timeout=5) as c:
        c.send(build("GET", "/declined", headers=[("Upgrade", "shout"), ("Connection", "upgrade")]))
        assert c.read_response().status == 200


def test_should_upgrade_callback_is_checked_as_node(pair):
    lines = {p.runtime: sorted(set(p.lines("^shouldUpgradeCallback"))) for p in procs(pair)}
    assert len(lines["kuai"]) == 4, lines
    assert lines["node"] == lines["kuai"]


def test_upgrade_request_without_listener_match_is_answered_by_listener(pair):
    for p in procs(pair):
        c, _, head, _ = handshake(p.port, "/nowhere")
        with c:
            assert head.startswith(b"HTTP/1.1 404"), (p, head)


def expect_request(port, allow, expect="100-continue"):
    with Conn(port, timeout=5) as c:
        headers = [("Content-Length", "5"), ("Expect", expect)]
        if allow:
            headers.append(("X-Allow", "yes"))
        c.send(build("POST", "/upload", headers=headers))
        deadline = time.monotonic() + 5
        while b"\r\n\r\n" not in c.buf:
            assert c._fill(deadline), bytes(c.buf)
        first = bytes(c.buf)
        if first.startswith(b"HTTP/1.1 100"):
            c.buf = bytearray(first.split(b"\r\n\r\n", 1)[1])
            c.send(b"hello")
            r = c.read_response()
            return "continued", r.status, r.body
        c.buf = bytearray(first)
        r = c.read_response()
        return "answered", r.status, r.body


def test_check_continue(pair):
    results = {}
    for p in procs(pair):
        results[p.runtime] = (expect_request(p.port, True), expect_request(p.port, False))
    assert results["kuai"][0] == ("continued", 200, b"request POST /upload 5")
    assert results["kuai"][1] == ("answered", 403, b"no continue")
    assert results["node"] == results["kuai"]


def test_unknown_expectation_gets_417(pair):
    results = {p.runtime: expect_request(p.port, True, expect="something-else")
               for p in procs(pair)}
    assert results["kuai"][:2] == ("answered", 417)
    assert results["node"][:2] == results["kuai"][:2]
