"""Request smuggling vectors and malformed requests: each is refused with the
given status and Connection: close, the connection is closed, and a request
pipelined after it is never answered."""

import pytest

from conftest import HELLO_BODY
from httpraw import Conn, get

FOLLOW_UP = get("/hello")  # must NOT be answered after a refused request

CASES = [
    # id, request bytes, accepted statuses
    ("cl-and-te",
     b"POST /index.html HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", {400}),
    ("te-and-cl",
     b"POST /index.html HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
     b"Content-Length: 5\r\n\r\n0\r\n\r\n", {400}),
    ("two-different-cl",
     b"POST /index.html HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
     b"Content-Length: 6\r\n\r\nhello!", {400}),
    ("cl-list", b"POST /index.html HTTP/1.1\r\nHost: x\r\nContent-Length: 1,1\r\n\r\nx", {400}),
    ("cl-plus", b"POST /index.html HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello", {400}),
    ("cl-minus", b"POST /index.html HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", {400}),
    ("cl-trailing-garbage",
     b"POST /index.html HTTP/1.1\r\nHost: x\r\nContent-Length:  5x\r\n\r\nhello", {400}),
    ("cl-hex", b"POST /index.html HTTP/1.1\r\nHost: x\r\nContent-Length: 0x5\r\n\r\nhello", {400}),
    ("cl-empty", b"POST /index.html HTTP/1.1\r\nHost: x\r\nContent-Length: \r\n\r\n", {400}),
    ("cl-huge",
     b"POST /index.html HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
     {400, 413}),
    ("te-gzip-chunked",
     b"POST /index.html HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
     {400, 501}),
    ("te-chunked-gzip",
     b"POST /index.html HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
     {400, 501}),
    ("te-identity",
     b"POST /index.html HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n", {400, 501}),
    ("te-chunked-twice",
     b"POST /index.html HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", {400, 501}),
    ("te-in-http10",
     b"POST /index.html HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     {400, 405, 501}),  # RFC 9112 6.1: faulty framing, close after it
    ("two-hosts", b"GET /index.html HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", {400}),
    ("no-host-http11", b"GET /index.html HTTP/1.1\r\nAccept: */*\r\n\r\n", {400}),
    ("obs-fold",
     b"GET /index.html HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n  continued\r\n\r\n", {400}),
    ("obs-fold-tab",
     b"GET /index.html HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n\tcontinued\r\n\r\n", {400}),
    ("leading-space-first-header",
     b"GET /index.html HTTP/1.1\r\n Host: x\r\n\r\n", {400}),
    ("bare-cr-in-value", b"GET /index.html HTTP/1.1\r\nHost: x\r\nX-A: b\rc\r\n\r\n", {400}),
    ("bare-cr-line-end", b"GET /index.html HTTP/1.1\r\nHost: x\r\nX-A: b\r\r\n\r\n", {400}),
    ("nul-in-value", b"GET /index.html HTTP/1.1\r\nHost: x\r\nX-A: b\x00c\r\n\r\n", {400}),
    ("space-before-colon", b"GET /index.html HTTP/1.1\r\nHost: x\r\nX-A : b\r\n\r\n", {400}),
    ("space-before-colon-cl",
     b"POST /index.html HTTP/1.1\r\nHost: x\r\nContent-Length : 5\r\n\r\nhello", {400}),
    ("space-before-colon-te",
     b"POST /index.html HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
     {400}),
    ("space-inside-name", b"GET /index.html HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n", {400}),
    ("bad-chunk-size",
     b"POST /index.html HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n",
     {400}),
    ("chunk-size-overflow",
     b"POST /index.html HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"ffffffffffffffffffff\r\nab\r\n0\r\n\r\n", {400, 413}),
    ("chunk-missing-crlf",
     b"POST /index.html HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"3\r\nabcX0\r\n\r\n", {400}),
    ("http2-request-line", b"GET /index.html HTTP/2.0\r\nHost: x\r\n\r\n", {400, 505}),
    ("http-version-3", b"GET /index.html HTTP/3.0\r\nHost: x\r\n\r\n", {400, 505}),
    ("garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n", {400}),
    ("garbage-text", b"hello there, this is not http\r\n\r\n", {400}),
    ("bad-header-name", b"GET /index.html HTTP/1.1\r\nHost: x\r\nBad\x01Name: v\r\n\r\n", {400}),
    ("no-colon", b"GET /index.html HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n", {400}),
]


@pytest.mark.parametrize("raw,statuses", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_refused_then_closed(server, raw, statuses):
    with Conn(server.port) as c:
        c.send(raw + FOLLOW_UP, ignore_errors=True)
        r = c.read_response()
        assert r.status in statuses, f"sent {raw!r}: expected {sorted(statuses)}, got {r!r}"
        assert r.has_token("Connection", "close"), f"sent {raw!r}: {r!r}"
        c.expect_close()  # and so the pipelined GET /hello was not answered


def test_http10_without_host_is_fine(server, docroot):
    with Conn(server.port) as c:
        c.send(b"GET /index.html HTTP/1.0\r\n\r\n")
        r = c.read_response()
    assert r.status == 200 and r.body == docroot.files["index.html"], r


def test_same_content_length_twice_not_smuggled(server):
    """Two equal Content-Length fields may be refused (400) or merged; either
    way the 5 body bytes never become a request."""
    with Conn(server.port) as c:
        c.send(b"POST /index.html HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
               b"Content-Length: 5\r\n\r\nGET /" + FOLLOW_UP)
        r = c.read_response()
        if r.status == 400:
            c.expect_close()
        else:
            assert r.status == 405, r
            r2 = c.read_response()
            assert r2.status == 200 and r2.body == HELLO_BODY.encode(), r2


def test_valid_requests_still_served(server):
    """Sanity for the cases above: the shared server still answers."""
    with Conn(server.port) as c:
        c.send(FOLLOW_UP)
        r = c.read_response()
    assert r.status == 200 and r.body == HELLO_BODY.encode(), r
