"""CONNECT on a script's http server, compared with node running the same
script (scripts/connect_tunnel.js): a 'connect' listener gets the
connection itself as a tunnel (bytes after the head included, whether they
came with it or later); with no listener the connection is closed
unanswered and the 'request' listener never sees the CONNECT."""

from __future__ import annotations

import re
import socket
import time

import pytest

from script_harness import NO_SCRIPTING, SCRIPTS, running_pair

pytestmark = pytest.mark.skipif(NO_SCRIPTING is not None, reason=str(NO_SCRIPTING))

SCRIPT = SCRIPTS / "connect_tunnel.js"


@pytest.fixture(scope="module")
def pair(logdir):
    with running_pair(logdir, SCRIPT) as p:
        yield p


@pytest.fixture(scope="module")
def bare(logdir):
    with running_pair(logdir, SCRIPT, env={"NO_CONNECT": "1"}) as p:
        yield p


def exchange(port, first, later=None, timeout=5.0):
    """Sends `first` (then `later` once something came back), reads until
    the server closes; returns the bytes with Date fields taken out."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    out = b""
    try:
        s.sendall(first)
        if later is not None:
            deadline = time.monotonic() + timeout
            while b"\r\n\r\n" not in out and time.monotonic() < deadline:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
            s.sendall(later)
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    finally:
        s.close()
    return re.sub(rb"\r\nDate: [^\r]*", b"", out, flags=re.I)


def connect_head(target, extra=b""):
    return b"CONNECT " + target + b" HTTP/1.1\r\nHost: " + target + b"\r\n" + extra + b"\r\n"


def through(path):
    return b"GET " + path + b" HTTP/1.1\r\nHost: inner\r\nConnection: close\r\n\r\n"


def test_tunnel_with_bytes_in_the_same_packet_as_node(pair):
    got = {}
    for p in pair.procs():
        target = f"127.0.0.1:{p.port}".encode()
        got[p.runtime] = exchange(p.port, connect_head(target) + through(b"/early"))
    assert got["kuai"] == got["node"], got
    assert got["node"].startswith(b"HTTP/1.1 200 Connection Established\r\nX-Tunnel: 1.1 true\r\n\r\n"
                                  b"HTTP/1.1 200 OK\r\n"), got
    assert got["node"].endswith(b"\r\n\r\nhello GET /early"), got


def test_tunnel_with_bytes_after_the_answer_as_node(pair):
    got = {}
    for p in pair.procs():
        target = f"127.0.0.1:{p.port}".encode()
        got[p.runtime] = exchange(p.port, connect_head(target), later=through(b"/later"))
    assert got["kuai"] == got["node"], got
    assert got["node"].endswith(b"\r\n\r\nhello GET /later"), got


def test_connect_after_a_request_on_the_same_connection_as_node(pair):
    got = {}
    for p in pair.procs():
        target = f"127.0.0.1:{p.port}".encode()
        first = b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n" + connect_head(target)
        got[p.runtime] = exchange(p.port, first + through(b"/second"))
    assert got["kuai"] == got["node"], got
    assert b"hello GET /first" in got["node"] and got["node"].endswith(b"hello GET /second"), got


def test_listener_refusing_the_tunnel_as_node(pair):
    got = {p.runtime: exchange(p.port, connect_head(b"refuse.example:443") + b"ignored")
           for p in pair.procs()}
    assert got["kuai"] == got["node"] == b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", got


def test_connect_without_listener_closes_unanswered_as_node(bare):
    for p in bare.procs():
        assert exchange(p.port, connect_head(b"example.com:443") + b"early bytes") == b"", p
        # The same server answers a plain request, and 'request' never saw the CONNECT.
        plain = exchange(p.port, through(b"/plain"))
        assert plain.startswith(b"HTTP/1.1 200 OK\r\n") and plain.endswith(b"hello GET /plain"), (p, plain)
        assert "request saw CONNECT" not in p.stdout(), p
