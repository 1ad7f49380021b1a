"""http.createServer's options under kuai against node running the same
script (scripts/server_options.js): how bad values are refused, the values
a server ends up with, custom IncomingMessage/ServerResponse classes, and
joinDuplicateHeaders."""

from __future__ import annotations

import json
import time

import pytest

from httpraw import Conn, build
from script_harness import NO_SCRIPTING, SCRIPTS, running_pair

pytestmark = pytest.mark.skipif(NO_SCRIPTING is not None, reason=str(NO_SCRIPTING))


@pytest.fixture(scope="module", params=["0", "1"], ids=["dropped", "joined"])
def pair(request, logdir):
    with running_pair(logdir, SCRIPTS / "server_options.js", env={"JOIN": request.param}) as p:
        p.join = request.param == "1"
        yield p


def test_options_are_checked_as_node(pair):
    seen = {p.runtime: list(dict.fromkeys(p.lines(r"^(refused|accepted|values) ")))
            for p in pair.procs()}
    assert len(seen["kuai"]) == 17, seen["kuai"]
    assert seen["kuai"][-1] == "values 1234 1000 1000 undefined undefined false"
    assert seen["node"] == seen["kuai"]


def test_host_high_water_and_unique_headers_as_node(pair):
    more = {p.runtime: list(dict.fromkeys(p.lines(r"^more "))) for p in pair.procs()}
    assert more["kuai"] == ["more 65536 true 65536 false"]
    assert more["node"] == more["kuai"]
    answers = {}
    for p in pair.procs():
        port = int(p.lines(r"^LENIENT ")[0].split()[1])
        got = []
        for host in ([], [("Host", "h.test")]):
            with Conn(port, timeout=5) as c:
                # No Host on HTTP/1.1: served, not refused (requireHostHeader: false).
                c.sock.sendall(b"GET /x HTTP/1.1\r\n" + b"".join(f"{k}: {v}\r\n".encode() for k, v in host) +
                               b"\r\n")
                r = c.read_response()
                got.append((r.status, [(k, v) for k, v in r.headers if k.lower() != "date"], json.loads(r.body)))
        answers[p.runtime] = got
    k = answers["kuai"]
    assert k[0][0] == 200 and k[0][2] == {"host": None, "readable": 1024, "writable": 1024}, k
    assert k[1][2]["host"] == "h.test", k
    assert ("X-U", "a; b") in k[0][1] and ("X-V", "c") in k[0][1] and ("Cookie", "e=1; f=2") in k[0][1], k
    assert answers["node"] == k


def test_custom_classes_and_repeated_fields(pair):
    answers = {}
    for p in pair.procs():
        with Conn(p.port, timeout=5) as c:
            c.send(build("GET", "/p", headers=[("X-A", "1"), ("X-A", "2"), ("Authorization", "a"),
                                               ("Authorization", "b"), ("User-Agent", "one"),
                                               ("User-Agent", "two"), ("Cookie", "c=1"),
                                               ("Cookie", "d=2")]))
            r = c.read_response()
            assert r.status == 200, (p, r.status, r.body)
            body = json.loads(r.body)
            body["headers"].pop("host", None)
            answers[p.runtime] = body
    k = answers["kuai"]
    assert k["greeting"] == "MyRequest /p" and k["isMine"] is True, k
    assert k["headers"]["x-a"] == "1, 2"
    assert k["headers"]["cookie"] == "c=1; d=2"
    assert k["headers"]["authorization"] == ("a, b" if pair.join else "a")
    assert k["headers"]["user-agent"] == ("one, two" if pair.join else "one")
    assert answers["node"] == k


def test_max_header_size_answers_431_as_node(pair):
    # maxHeaderSize 2000: 1,000 bytes of fields pass, 3,000 do not.
    for p in pair.procs():
        for size, status in ((1000, 200), (3000, 431)):
            with Conn(p.port, timeout=5) as c:
                c.send(build("GET", "/big", headers=[("X-Big", "b" * size)]))
                r = c.read_response()
                assert r.status == status, (p, size, r.status)
                if status == 431:
                    assert r.header("connection") == "close", p


@pytest.mark.parametrize("path", ["/close-set", "/close-head", "/close-keepalive-flag", "/keep"])
def test_a_response_asking_to_close_ends_the_connection(pair, path):
    # As node: Connection: close from the handler (setHeader, writeHead, or
    # res.shouldKeepAlive = false) is announced and the connection closes.
    closes = path != "/keep"
    for p in pair.procs():
        with Conn(p.port, timeout=5) as c:
            c.send(build("GET", path) + build("GET", "/second"))
            r = c.read_response()
            assert r.status == 200, (p, path, r.status)
            assert (r.header("connection") or "").lower() == ("close" if closes else "keep-alive"), (p, path)
            if closes:
                deadline = time.monotonic() + 5
                while not c.eof:
                    c._fill(deadline)
                assert bytes(c.buf) == b"", (p, path, bytes(c.buf))
            else:
                assert c.read_response().status == 200, (p, path)


def test_body_writes_where_none_may_go(pair):
    for p in pair.procs():
        with Conn(p.port, timeout=5) as c:
            c.send(build("GET", "/no-body"))
            assert c.read_response().status == 204, p
    lines = {p.runtime: p.wait_lines(r"^no-body ", 1)[0] for p in pair.procs()}
    expected = ("no-body ERR_HTTP_BODY_NOT_ALLOWED,ERR_HTTP_BODY_NOT_ALLOWED,ERR_HTTP_BODY_NOT_ALLOWED"
                if pair.join else "no-body true,true,false")
    assert lines["kuai"] == expected
    assert lines["node"] == lines["kuai"]
