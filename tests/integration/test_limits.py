"""Request limits and timeouts, with their defaults and custom values."""

import time

import pytest

from conftest import HELLO_BODY
from httpraw import Conn, build, get


def refused(c, status):
    """Reads the error response, checks Connection: close and the close."""
    r = c.read_response()
    assert r.status == status, f"expected {status}, got {r!r}"
    assert r.has_token("Connection", "close"), r
    c.expect_close()
    return r


def accepted(port, data):
    with Conn(port) as c:
        c.send(data)
        r = c.read_response()
        assert r.status in (200, 404, 405), f"expected the request to pass the limit: {r!r}"
        return r


# ---- request line -> 414 -------------------------------------------------

def test_request_line_default_limit(server):
    with Conn(server.port) as c:
        c.send(get("/" + "a" * 9000) + get("/hello"))
        refused(c, 414)
    accepted(server.port, get("/" + "a" * 7000))


@pytest.mark.parametrize("flag,over,under", [("1k", 1100, 900), ("16k", 17000, 15000)])
def test_request_line_custom_limit(kuai, flag, over, under):
    s = kuai("--max-request-line", flag, "--max-header-bytes", "64k")
    with Conn(s.port) as c:
        c.send(get("/" + "a" * over) + get("/index.html"))
        refused(c, 414)
    r = accepted(s.port, get("/" + "a" * under))
    assert r.status == 404, r


# ---- one header field -> 431 ---------------------------------------------

def test_field_size_default_limit(server):
    with Conn(server.port) as c:
        c.send(get("/hello", headers=[("X-Long", "v" * 9000)]) + get("/hello"))
        refused(c, 431)
    r = accepted(server.port, get("/hello", headers=[("X-Long", "v" * 7000)]))
    assert r.body == HELLO_BODY.encode()


def test_field_size_custom_limit(kuai):
    s = kuai("--max-field-size", "1k")
    with Conn(s.port) as c:
        c.send(get("/index.html", headers=[("X-Long", "v" * 1100)]))
        refused(c, 431)
    accepted(s.port, get("/index.html", headers=[("X-Long", "v" * 900)]))


# ---- header block -> 431 -------------------------------------------------

def many(n, size):
    return [(f"X-H{i}", "h" * size) for i in range(n)]


def test_header_block_default_limit(server):
    with Conn(server.port) as c:
        c.send(get("/hello", headers=many(40, 1000)) + get("/hello"))  # ~40 KiB
        refused(c, 431)
    accepted(server.port, get("/hello", headers=many(24, 1000)))  # ~24 KiB


def test_header_block_custom_limit(kuai):
    s = kuai("--max-header-bytes", "4k")
    with Conn(s.port) as c:
        c.send(get("/index.html", headers=many(10, 500)))  # ~5 KiB
        refused(c, 431)
    accepted(s.port, get("/index.html", headers=many(5, 500)))


# ---- number of header fields -> 431 --------------------------------------

def test_header_count_default_limit(server):
    with Conn(server.port) as c:
        c.send(get("/hello", headers=many(100, 1)) + get("/hello"))  # 101 with Host
        refused(c, 431)
    accepted(server.port, get("/hello", headers=many(99, 1)))  # exactly 100


def test_header_count_custom_limit(kuai):
    s = kuai("--max-headers", "10")
    with Conn(s.port) as c:
        c.send(get("/index.html", headers=many(10, 1)))  # 11 with Host
        refused(c, 431)
    accepted(s.port, get("/index.html", headers=many(9, 1)))  # 10


# ---- body -> 413 ---------------------------------------------------------

def test_body_content_length_default_limit(server):
    with Conn(server.port) as c:
        c.send(build("POST", "/index.html", headers=[("Content-Length", str(1024 * 1024 + 1))]))
        refused(c, 413)
    with Conn(server.port, timeout=10) as c:
        body = b"b" * (1024 * 1024)
        c.send(build("POST", "/index.html", headers=[("Content-Length", str(len(body)))],
                     body=body) + get("/hello"))
        r = c.read_response()
        assert r.status == 405, f"a body of exactly 1 MiB should pass: {r!r}"
        r = c.read_response()
        assert r.status == 200 and r.body == HELLO_BODY.encode(), r


def test_body_chunked_default_limit(server):
    with Conn(server.port, timeout=10) as c:
        c.send(build("POST", "/index.html", headers=[("Transfer-Encoding", "chunked")]))
        piece = b"c" * 65536
        for _ in range(17):  # 1 MiB + 64 KiB
            if not c.send(b"%x\r\n" % len(piece) + piece + b"\r\n", ignore_errors=True):
                break
        c.send(b"0\r\n\r\n", ignore_errors=True)
        refused(c, 413)


def test_body_custom_limit(kuai):
    s = kuai("--max-body", "1k")
    hdr = lambda n: [("Content-Length", str(n))]  # noqa: E731
    with Conn(s.port) as c:
        c.send(build("POST", "/index.html", headers=hdr(1025), body=b"x" * 1025))
        refused(c, 413)
    with Conn(s.port) as c:
        c.send(build("POST", "/index.html", headers=hdr(1024), body=b"x" * 1024)
               + get("/index.html"))
        assert c.read_response().status == 405
        assert c.read_response().status == 200
    te = [("Transfer-Encoding", "chunked")]
    with Conn(s.port) as c:
        c.send(build("POST", "/index.html", headers=te,
                     body=b"258\r\n" + b"x" * 600 + b"\r\n258\r\n" + b"y" * 600 + b"\r\n0\r\n\r\n"))
        refused(c, 413)
    with Conn(s.port) as c:
        c.send(build("POST", "/index.html", headers=te,
                     body=b"200\r\n" + b"x" * 512 + b"\r\n200\r\n" + b"y" * 512 + b"\r\n0\r\n\r\n")
               + get("/index.html"))
        assert c.read_response().status == 405
        assert c.read_response().status == 200


def test_body_custom_limit_megabytes(kuai):
    s = kuai("--max-body", "2m")
    with Conn(s.port) as c:
        c.send(build("POST", "/index.html", headers=[("Content-Length", str(2 * 1024 * 1024 + 1))]))
        refused(c, 413)
    with Conn(s.port) as c:
        c.send(build("POST", "/index.html", headers=[("Content-Length", str(1536 * 1024)),
                                                    ("Expect", "100-continue")]))
        r = c.read_response()
        assert r.status == 100, f"1.5 MiB is under --max-body 2m: {r!r}"


# ---- timeouts ------------------------------------------------------------

LONG = "30s"  # for the timeouts a test does not exercise


@pytest.mark.parametrize("flag,secs", [("1s", 1.0), ("1500ms", 1.5)])
def test_header_timeout(kuai, flag, secs):
    s = kuai("--header-timeout", flag, "--idle-timeout", LONG, "--body-timeout", LONG)
    with Conn(s.port, timeout=secs + 4) as c:
        t0 = time.monotonic()
        c.send(b"GET /index.html HTTP/1.1\r\nHost: x\r\nX-Partial: ")
        r = c.read_response()
        elapsed = time.monotonic() - t0
        assert r.status == 408, r
        assert r.has_token("Connection", "close"), r
        c.expect_close()
    assert secs * 0.6 <= elapsed <= secs + 3, f"408 after {elapsed:.2f}s with --header-timeout {flag}"


def test_header_timeout_not_reset_by_trickle(kuai):
    """A slow-loris client sending a byte now and then still hits the deadline."""
    s = kuai("--header-timeout", "1s", "--idle-timeout", LONG, "--body-timeout", LONG)
    head = b"GET /index.html HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 60
    with Conn(s.port, timeout=6) as c:
        t0 = time.monotonic()
        for b in head:  # one byte every 0.1 s: 7 s for all of it
            if not c.send(bytes([b]), ignore_errors=True):
                break
            if c.poll(0.1):  # the 408 (or the close) arrived
                break
        r = c.read_response()
        elapsed = time.monotonic() - t0
        assert r.status == 408, r
        c.expect_close()
    assert elapsed <= 4, f"408 only after {elapsed:.2f}s of trickling with --header-timeout 1s"


def test_header_timeout_not_hit_by_prompt_requests(kuai):
    s = kuai("--header-timeout", "1s", "--idle-timeout", LONG)
    with Conn(s.port) as c:
        for _ in range(4):
            time.sleep(0.4)
            c.send(get("/index.html"))
            assert c.read_response().status == 200


@pytest.mark.parametrize("flag,secs", [("1s", 1.0), ("1500ms", 1.5)])
def test_idle_timeout(kuai, flag, secs):
    s = kuai("--idle-timeout", flag, "--header-timeout", LONG, "--body-timeout", LONG)
    with Conn(s.port, timeout=5) as c:
        c.send(get("/index.html"))
        assert c.read_response().status == 200
        waited = c.expect_close(timeout=secs + 3)
    assert waited >= secs * 0.6, f"closed after {waited:.2f}s with --idle-timeout {flag}"


def test_idle_timeout_reset_by_activity(kuai):
    s = kuai("--idle-timeout", "1s", "--header-timeout", LONG)
    with Conn(s.port) as c:
        for _ in range(5):  # 5 x 0.35 s > 1 s in all
            c.send(get("/index.html"))
            assert c.read_response().status == 200
            time.sleep(0.35)
        c.send(get("/index.html"))
        assert c.read_response().status == 200


@pytest.mark.parametrize("flag,secs", [("1s", 1.0), ("1500ms", 1.5)])
def test_body_timeout(kuai, flag, secs):
    s = kuai("--body-timeout", flag, "--header-timeout", LONG, "--idle-timeout", LONG)
    with Conn(s.port, timeout=secs + 4) as c:
        t0 = time.monotonic()
        c.send(build("POST", "/index.html", headers=[("Content-Length", "100")], body=b"x" * 10))
        r = c.read_response()
        elapsed = time.monotonic() - t0
        assert r.status == 408, f"expected 408 for a stalled body: {r!r}"
        assert r.has_token("Connection", "close"), r
        c.expect_close()
    assert secs * 0.6 <= elapsed <= secs + 3, f"408 after {elapsed:.2f}s with --body-timeout {flag}"


def test_body_timeout_chunked(kuai):
    s = kuai("--body-timeout", "1s", "--header-timeout", LONG, "--idle-timeout", LONG)
    with Conn(s.port, timeout=5) as c:
        c.send(build("POST", "/index.html", headers=[("Transfer-Encoding", "chunked")],
                     body=b"10\r\nabc"))
        r = c.read_response()
        assert r.status == 408, r
        c.expect_close()


# ---- requests per connection ---------------------------------------------

@pytest.mark.parametrize("n", [3, 5])
def test_max_requests_sequential(kuai, n):
    s = kuai("--max-requests", str(n))
    with Conn(s.port) as c:
        for i in range(1, n + 1):
            c.send(get("/index.html"))
            r = c.read_response()
            assert r.status == 200, r
            if i < n:
                assert not r.has_token("Connection", "close"), f"request {i}: {r!r}"
            else:
                assert r.has_token("Connection", "close"), f"request {i} (the last): {r!r}"
        c.expect_close()


def test_max_requests_pipelined(kuai):
    s = kuai("--max-requests", "3")
    with Conn(s.port) as c:
        c.send(get("/index.html") * 6)
        rs = [c.read_response() for _ in range(3)]
        assert [r.status for r in rs] == [200, 200, 200], rs
        assert rs[2].has_token("Connection", "close"), rs[2]
        c.expect_close()
