"""More of Node's http.Server / ServerResponse / IncomingMessage API under
kuai and node (scripts/server_fields.js): the server's fields as Node sets
them, listen({ signal }) closing the server, Symbol.asyncDispose,
res.writeInformation (any 1xx but 101, with fields; Node's errors for bad
calls), res.closed and res.errored, req.signal, req.trailersDistinct and the
socket's state fields."""

from __future__ import annotations

import json
import re
import socket
import time

import pytest

from httpraw import Conn, build
from script_harness import NO_SCRIPTING, SCRIPTS, assert_same, running_pair

pytestmark = pytest.mark.skipif(NO_SCRIPTING is not None, reason=str(NO_SCRIPTING))


@pytest.fixture(scope="module")
def pair(logdir):
    with running_pair(logdir, SCRIPTS / "server_fields.js") as p:
        yield p


def startup_lines(proc):
    return list(dict.fromkeys(proc.lines(r"^(fields|signal|dispose|bad signal) ")))


def test_fields_signal_and_dispose_as_node(pair):
    got = assert_same(pair, startup_lines, "startup lines")
    assert got[0].startswith("fields noDelay=true keepAlive=false"), got
    assert "signal closed listening=false" in got and "dispose listening=false" in got, got
    assert "dispose again ERR_SERVER_NOT_RUNNING" in got and "bad signal ERR_INVALID_ARG_TYPE" in got, got


def raw(port, path):
    """Everything the server sends for GET path (Date lines out)."""
    with Conn(port, timeout=5) as c:
        c.send(build("GET", path, headers=[("Connection", "close")]))
        data = c.read_until_close()
    return re.sub(rb"(?i)date: [^\r]*\r\n", b"", data)


def test_write_information_as_node(pair):
    got = assert_same(pair, lambda p: raw(p.port, "/info"), "GET /info")
    assert got.startswith(b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n"
                          b"HTTP/1.1 199 unknown\r\nx-a: 1\r\nx-b: 2,3\r\n\r\nHTTP/1.1 200 OK\r\n"), got


def test_write_information_errors_as_node(pair):
    def probe(p):
        body = raw(p.port, "/info-errors").split(b"\r\n\r\n", 1)[1]
        p.wait_lines(r"^after-end ")
        return json.loads(body), list(dict.fromkeys(p.lines(r"^after-end ")))
    got = assert_same(pair, probe, "GET /info-errors")
    assert got[1] == ["after-end ERR_HTTP_HEADERS_SENT"], got


def test_closed_and_errored_as_node(pair):
    def probe(p):
        with Conn(p.port, timeout=5) as c:
            c.send(build("GET", "/state"))
            try:
                c.read_final(timeout=2)
            except Exception:  # the response is destroyed: the connection closes
                pass
        p.wait_lines(r"^state closed ")
        return list(dict.fromkeys(p.lines(r"^state ")))
    got = assert_same(pair, probe, "GET /state")
    assert got == ["state before false null", "state destroyed false gone", "state closed true gone"], got


def test_socket_state_as_node(pair):
    got = assert_same(pair, lambda p: json.loads(raw(p.port, "/socket-state").split(b"\r\n\r\n", 1)[1]),
                      "GET /socket-state")
    assert got == ["open", False, False, True, 0, 0, True, {}, 0, False, False, False, False, None,
                   "function", "function"], got


def test_socket_byte_counts_as_node(pair):
    """socket.bytesRead / bytesWritten: the connection's totals so far, at a
    request, after its response, and at the close, over keep-alive requests."""
    def probe(p):
        with Conn(p.port, timeout=5) as c:
            for path in ("/bytes/1", "/bytes/two-longer"):
                c.send(build("GET", path, headers=[("X-Pad", "p" * len(path))]))
                assert c.read_response().status == 200
        p.wait_lines(r"^bytes close ")
        return p.lines(r"^bytes ")
    got = assert_same(pair, probe, "bytesRead/bytesWritten over two requests")
    first, second, close = got[-3:]
    assert first.startswith("bytes /bytes/1 at ") and close.startswith("bytes close "), got
    assert close.split()[-1] == second.split()[-1], got
    read, written = (int(n) for n in close.split()[-1].split("/"))
    assert read > 0 and written > 0, got


def test_request_signal_as_node(pair):
    """req.signal aborts (AbortError) when the client leaves before the
    response is done, and not after a finished response."""
    def probe(p):
        raw(p.port, "/signal-ok")
        with socket.create_connection(("127.0.0.1", p.port), timeout=5) as s:
            s.sendall(build("GET", "/signal-slow"))
            time.sleep(0.1)
        p.wait_lines(r"^signal aborted ")
        p.wait_lines(r"^signal after ")
        return sorted(set(p.lines(r"^signal (aborted|after) ")))
    got = assert_same(pair, probe, "req.signal")
    assert got == ["signal aborted AbortError false", "signal after a response aborted=false"], got


def test_max_requests_per_socket_as_node(logdir):
    # Node answers the last request with Connection: close (and keeps the
    # socket open, answering 503 to more); kuai closes the connection after
    # it, as the field says.
    def probe(p):
        with Conn(p.port, timeout=5) as c:
            c.send(build("GET", "/1") + build("GET", "/2"))
            return [re.sub(rb"(?i)date: [^\r]*\r\n", b"", r.raw) for r in (c.read_response(), c.read_response())]
    with running_pair(logdir, SCRIPTS / "max_requests.js") as pair:
        got = assert_same(pair, probe, "two requests, maxRequestsPerSocket 2")
        assert b"Keep-Alive: timeout=5, max=2\r\n" in got[0] and b"Connection: close\r\n" in got[1], got
        with Conn(pair.kuai.port, timeout=5) as c:
            c.send(build("GET", "/1") + build("GET", "/2") + build("GET", "/3"))
            rest = c.read_until_close()
        assert rest.count(b"HTTP/1.1 200 OK") == 2 and b"ok /3" not in rest, rest
