"""The native --respond route."""

import pytest

from conftest import HELLO_BODY
from httpraw import Conn, build, get


def test_hello_route(server):
    with Conn(server.port) as c:
        c.send(get("/hello"))
        r = c.read_response()
    assert r.status == 200, r
    assert r.content_type == "text/plain", r
    assert r.body == HELLO_BODY.encode(), r
    assert r.header("Content-Length") == str(len(HELLO_BODY)), r


def test_hello_head(server):
    with Conn(server.port) as c:
        c.send(build("HEAD", "/hello") + get("/hello"))
        h = c.read_response(head=True)
        g = c.read_response()
    assert h.status == 200 and h.body == b"", h
    assert h.header("Content-Length") == str(len(HELLO_BODY)), h
    assert g.body == HELLO_BODY.encode(), g


@pytest.mark.parametrize("path,status", [("/index.html", 200), ("/hello/", 404),
                                         ("/hellox", 404), ("/hello.txt", 404)])
def test_other_paths_fall_through_to_static(server, docroot, path, status):
    with Conn(server.port) as c:
        c.send(get(path))
        r = c.read_response()
    assert r.status == status, r
    if status == 200:
        assert r.body == docroot.files[path[1:]]
    assert r.body != HELLO_BODY.encode()


def test_custom_respond_body(kuai, docroot):
    s = kuai("--respond", "/ping=pong pong")
    with Conn(s.port) as c:
        c.send(get("/ping") + get("/index.html") + get("/hello"))
        r = c.read_response()
        assert r.status == 200 and r.body == b"pong pong", r
        assert r.content_type == "text/plain", r
        r = c.read_response()
        assert r.status == 200 and r.body == docroot.files["index.html"], r
        r = c.read_response()
        assert r.status == 404, f"/hello is not a route on this server: {r!r}"


def test_respond_repeated_and_equals_in_body(kuai):
    """Not in the brief's flag list explicitly: --respond given twice, and a
    BODY holding '=' (split at the first '=')."""
    s = kuai("--respond", "/a=first", "--respond", "/b=x=y=z")
    with Conn(s.port) as c:
        c.send(get("/a") + get("/b"))
        r = c.read_response()
        assert r.status == 200 and r.body == b"first", r
        r = c.read_response()
        assert r.status == 200 and r.body == b"x=y=z", r


def test_respond_route_pipelined_many(server):
    with Conn(server.port, timeout=10) as c:
        c.send(get("/hello") * 64)
        for i in range(64):
            r = c.read_response()
            assert r.status == 200 and r.body == HELLO_BODY.encode(), f"#{i}: {r!r}"
