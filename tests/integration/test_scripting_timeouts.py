"""Socket timeouts in scripts (scripts/timeouts.js) under kuai and under node:
req.setTimeout, res.setTimeout, socket.setTimeout and server.setTimeout fire
after that long without a read or write, restart with each write, stop when
the response ends; with nobody listening for 'timeout' the connection is
destroyed, as is one a handler destroys. server.getConnections and
closeAllConnections (which cuts the connections answering a request)."""

from __future__ import annotations

import json
import time

import pytest

from httpraw import ConnectionClosed, Conn, build
from script_harness import NO_SCRIPTING, SCRIPTS, assert_same, running_pair

pytestmark = pytest.mark.skipif(NO_SCRIPTING is not None, reason=str(NO_SCRIPTING))


@pytest.fixture(scope="module")
def pair(logdir):
    with running_pair(logdir, SCRIPTS / "timeouts.js", ready=r"^LISTENING (\d+) (\d+)") as p:
        for proc in p.procs():
            proc.timed = int(proc.lines(r"^LISTENING")[0].split()[2])
        yield p


def outcome(port, path, partial_body=False):
    """(status, body) or "closed", and whether it came within 2 s.
    partial_body: a POST announcing 10 bytes sends 3."""
    start = time.monotonic()
    with Conn(port, timeout=5) as c:
        if partial_body:
            c.send(build("POST", path, headers=[("Content-Length", "10")]) + b"abc")
        else:
            c.send(build("GET", path))
        try:
            _, r = c.read_final(timeout=5)
            got = (r.status, r.body.decode())
        except ConnectionClosed:
            got = "closed"
    return got, time.monotonic() - start < 2


@pytest.mark.parametrize("path,expected", [
    # The request hears of it only while it is not all in (as Node): a whole
    # GET's timeout goes unheard, and the connection is destroyed.
    ("/req-timeout", "closed"),
    ("/res-timeout", (503, "response timed out true")),
    ("/socket-timeout", "closed"),
    ("/slow-writes", (200, "xxxxxxxxdone")),
    ("/destroy", "closed"),
    ("/close-all", "closed"),
])
def test_timeouts_as_node(pair, path, expected):
    got, soon = assert_same(pair, lambda p: outcome(p.port, path), path)
    assert got == expected and soon, got


def test_request_timeout_while_its_body_is_due(pair):
    got = assert_same(pair, lambda p: outcome(p.port, "/req-timeout", partial_body=True), "partial body")
    assert got == ((504, "request timed out"), True), got


def test_server_timeout_cuts_a_hanging_request(pair):
    got = assert_same(pair, lambda p: outcome(p.timed, "/hang"), "server.setTimeout")
    assert got == ("closed", True), got
    assert outcome(pair.kuai.timed, "/quick") == ((200, "quick"), True)


def test_a_response_in_time_stops_its_timeout(pair):
    def probe(p):
        with Conn(p.port, timeout=5) as c:
            c.send(build("GET", "/in-time"))
            _, r = c.read_final()
            time.sleep(0.4)  # past the 200 ms: nothing may fire
            c.send(build("GET", "/fired"))
            _, fired = c.read_final()
        return r.body, json.loads(fired.body)

    assert assert_same(pair, probe, "/in-time") == (b"ok", [])


def test_get_connections_counts_this_one(pair):
    got, soon = outcome(pair.kuai.port, "/connections")
    assert soon and got[0] == 200 and int(got[1].split("=")[1]) >= 1, got
