"""HTTP/1.x connection behaviour: standard headers, keep-alive, HTTP/1.0,
Connection: close, pipelining, 100-continue, HEAD and request bodies."""

import email.utils
import time

import pytest

from conftest import HELLO_BODY
from httpraw import IMF_FIXDATE, Conn, build, chunked, get


def check_standard_headers(r):
    assert (r.header("Server") or "").startswith("kuai"), f"Server header: {r!r}"
    date = r.header("Date")
    assert date is not None, f"no Date header: {r!r}"
    assert IMF_FIXDATE.match(date), f"Date is not IMF-fixdate: {date!r}"
    ts = email.utils.parsedate_to_datetime(date).timestamp()
    assert abs(ts - time.time()) < 10, f"Date {date!r} is not now"


@pytest.mark.parametrize("path,status", [("/index.html", 200), ("/hello", 200),
                                         ("/missing.txt", 404)])
def test_server_and_date_headers(server, path, status):
    with Conn(server.port) as c:
        c.send(get(path))
        r = c.read_response()
    assert r.status == status, r
    assert r.version == "HTTP/1.1", r
    check_standard_headers(r)
    assert r.header("Content-Length") == str(len(r.body)), r


def test_error_response_has_headers_and_closes(server):
    with Conn(server.port) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Nul: a\x00b\r\n\r\n"
               + get("/index.html"))
        r = c.read_response()
        assert r.status == 400, r
        check_standard_headers(r)
        assert r.has_token("Connection", "close"), r
        c.expect_close()


def test_keep_alive_many_requests(server, docroot):
    with Conn(server.port) as c:
        for i in range(10):
            path = ["/index.html", "/style.css", "/hello", "/missing"][i % 4]
            c.send(get(path))
            r = c.read_response()
            assert not r.has_token("Connection", "close"), r
            if path == "/missing":
                assert r.status == 404, r
            elif path == "/hello":
                assert r.status == 200 and r.body == HELLO_BODY.encode(), r
            else:
                assert r.status == 200 and r.body == docroot.files[path[1:]], r
        c.expect_silence(0.2)


def test_http10_closes_by_default(server, docroot):
    with Conn(server.port) as c:
        c.send(b"GET /index.html HTTP/1.0\r\n\r\n")
        r = c.read_response()
        assert r.status == 200, r
        assert r.body == docroot.files["index.html"]
        assert not r.has_token("Connection", "keep-alive"), r
        c.expect_close()


def test_http10_keep_alive(server, docroot):
    with Conn(server.port) as c:
        for _ in range(3):
            c.send(b"GET /index.html HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            r = c.read_response()
            assert r.status == 200, r
            assert r.has_token("Connection", "keep-alive"), r
            assert r.body == docroot.files["index.html"]
        c.expect_silence(0.2)
        # The last one without keep-alive: closed after it.
        c.send(b"GET /hello HTTP/1.0\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and r.body == HELLO_BODY.encode(), r
        c.expect_close()


@pytest.mark.parametrize("path", ["/index.html", "/hello", "/missing"])
def test_connection_close_honoured(server, path):
    with Conn(server.port) as c:
        c.send(get(path, headers=[("Connection", "close")]) + get("/index.html"))
        r = c.read_response()
        assert r.status in (200, 404), r
        assert r.has_token("Connection", "close"), r
        c.expect_close()


def pipeline_batch(docroot):
    """(request bytes, is_head, check) for 20 mixed requests."""
    items = []
    paths = ["/index.html", "/style.css", "/app.js", "/hello", "/nope.html",
             "HEAD /index.html", "/data.json", "/ranges.txt", "/sub/", "/hello",
             "/image.png", "/missing/deeper", "HEAD /hello", "/sub/page.txt",
             "/index.html", "RANGE /ranges.txt", "/a%20b.txt", "/app.js",
             "/hello", "/style.css"]
    for p in paths:
        if p.startswith("HEAD "):
            path = p[5:]
            items.append((build("HEAD", path), True, (path, "head")))
        elif p.startswith("RANGE "):
            path = p[6:]
            items.append((get(path, headers=[("Range", "bytes=3-7")]), False,
                          (path, "range")))
        else:
            items.append((get(p), False, (p, "get")))
    return items


def check_pipelined(docroot, items, responses):
    expected_body = dict(("/" + k, v) for k, v in docroot.files.items())
    expected_body["/hello"] = HELLO_BODY.encode()
    expected_body["/sub/"] = docroot.files["sub/index.html"]
    expected_body["/a%20b.txt"] = docroot.files["a b.txt"]
    for i, ((_, _, (path, kind)), r) in enumerate(zip(items, responses)):
        where = f"response #{i} ({kind} {path}): {r!r}"
        if path in ("/nope.html", "/missing/deeper"):
            assert r.status == 404, where
        elif kind == "head":
            assert r.status == 200 and r.body == b"", where
            assert r.header("Content-Length") == str(len(expected_body[path])), where
        elif kind == "range":
            assert r.status == 206 and r.body == docroot.files["ranges.txt"][3:8], where
        else:
            assert r.status == 200, where
            assert r.body == expected_body[path], where


def test_pipelining_in_one_send(server, docroot):
    items = pipeline_batch(docroot)
    with Conn(server.port) as c:
        c.send(b"".join(i[0] for i in items))
        responses = c.read_responses([i[1] for i in items])
        check_pipelined(docroot, items, responses)
        c.expect_silence(0.2)
        # Still usable afterwards.
        c.send(get("/hello"))
        assert c.read_response().body == HELLO_BODY.encode()


@pytest.mark.parametrize("sizes", [(1,), (2, 3, 5, 7, 11, 13), (17, 1, 64, 3, 250)])
def test_pipelining_split_across_sends(server, docroot, sizes):
    items = pipeline_batch(docroot)
    data = b"".join(i[0] for i in items)
    with Conn(server.port, timeout=10) as c:
        c.send_split(data, sizes=sizes, pause=0.0005 if sizes == (1,) else 0.001)
        responses = c.read_responses([i[1] for i in items])
        check_pipelined(docroot, items, responses)


def test_pipelining_many_small_requests(server):
    n = 200
    with Conn(server.port, timeout=10) as c:
        c.send(get("/hello") * n)
        for i in range(n):
            r = c.read_response()
            assert r.status == 200 and r.body == HELLO_BODY.encode(), f"#{i}: {r!r}"


def test_expect_100_continue(server):
    with Conn(server.port) as c:
        c.send(build("POST", "/index.html", headers=[("Content-Length", "5"),
                                                    ("Expect", "100-continue")]))
        interim = c.read_response()
        assert interim.status == 100, f"expected 100 Continue first, got {interim!r}"
        assert interim.raw.startswith(b"HTTP/1.1 100 Continue\r\n"), interim.raw
        c.send(b"hello")
        r = c.read_response()
        assert r.status == 405, r
        # The connection is still good.
        c.send(get("/hello"))
        r = c.read_response()
        assert r.status == 200 and r.body == HELLO_BODY.encode(), r


def test_expect_100_continue_too_large(server):
    with Conn(server.port) as c:
        c.send(build("POST", "/index.html", headers=[("Content-Length", str(5 * 1024 * 1024)),
                                                    ("Expect", "100-continue")]))
        r = c.read_response()
        assert r.status == 413, f"expected 413 without 100 Continue, got {r!r}"
        assert r.has_token("Connection", "close"), r
        c.expect_close()


@pytest.mark.parametrize("path", ["/index.html", "/hello", "/missing.txt", "/sub/",
                                  "/ranges.txt"])
def test_head_matches_get(server, path):
    with Conn(server.port) as c:
        c.send(get(path) + build("HEAD", path) + get("/hello"))
        g = c.read_response()
        h = c.read_response(head=True)
        after = c.read_response()
    assert h.status == g.status, (g, h)
    assert h.body == b"", h
    skip = {"date"}
    gh = [(k.lower(), v) for k, v in g.headers if k.lower() not in skip]
    hh = [(k.lower(), v) for k, v in h.headers if k.lower() not in skip]
    assert sorted(hh) == sorted(gh), f"HEAD headers differ from GET:\nGET {g!r}\nHEAD {h!r}"
    assert h.header("Content-Length") == str(len(g.body)), h
    # No body bytes were sent after the HEAD response: the next one parses.
    assert after.status == 200 and after.body == HELLO_BODY.encode(), after


def test_post_content_length_body_discarded(server, docroot):
    body = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n" + b"x" * 1000
    with Conn(server.port) as c:
        c.send(build("POST", "/index.html", headers=[("Content-Length", str(len(body)))],
                     body=body) + get("/ranges.txt"))
        r = c.read_response()
        assert r.status == 405, r
        allow = {t.strip().upper() for t in (r.header("Allow") or "").split(",")}
        assert {"GET", "HEAD"} <= allow, f"Allow: {r.header('Allow')!r}"
        assert not r.has_token("Connection", "close"), r
        r2 = c.read_response()
        assert r2.status == 200 and r2.body == docroot.files["ranges.txt"], r2
        c.expect_silence(0.2)


def test_post_chunked_body_discarded(server, docroot):
    body = chunked(b"GET /smuggled HTTP/1.1\r\n", b"Host: x\r\n\r\n", b"y" * 3000)
    with Conn(server.port) as c:
        c.send(build("POST", "/style.css", headers=[("Transfer-Encoding", "chunked")],
                     body=body) + get("/ranges.txt"))
        r = c.read_response()
        assert r.status == 405, r
        r2 = c.read_response()
        assert r2.status == 200 and r2.body == docroot.files["ranges.txt"], r2
        c.expect_silence(0.2)


def test_post_chunked_with_extensions_and_trailers(server, docroot):
    body = (b"5;name=value\r\nhello\r\n"
            b"6\r\n world\r\n"
            b"0\r\nX-Trailer: yes\r\n\r\n")
    with Conn(server.port) as c:
        c.send(build("POST", "/index.html", headers=[("Transfer-Encoding", "chunked")],
                     body=body) + get("/ranges.txt"))
        r = c.read_response()
        assert r.status == 405, r
        r2 = c.read_response()
        assert r2.status == 200 and r2.body == docroot.files["ranges.txt"], r2


def test_post_body_split_across_sends(server, docroot):
    data = (build("POST", "/index.html", headers=[("Content-Length", "300")], body=b"z" * 300)
            + build("POST", "/index.html", headers=[("Transfer-Encoding", "chunked")],
                    body=chunked(b"a" * 100, b"b" * 7, b"c" * 33))
            + get("/ranges.txt"))
    with Conn(server.port, timeout=10) as c:
        c.send_split(data, sizes=(1, 7, 3, 19))
        assert c.read_response().status == 405
        assert c.read_response().status == 405
        r = c.read_response()
        assert r.status == 200 and r.body == docroot.files["ranges.txt"], r
