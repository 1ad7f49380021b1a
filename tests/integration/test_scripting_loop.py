"""Node's event-loop order as seen from a request handler, under kuai and under
the pinned node (scripts/loop_order.js): process.nextTick before promise
jobs, and after an I/O callback setImmediate before an expired
setTimeout(..., 0); the same from a body's events, a timer and an fs
callback. Each order is asserted outright, not only compared, so that a
change on both sides is noticed too. And Node's own sockets in a handler
(scripts/libuv_sockets.js) see all of what a peer sends, its end too, on
both I/O backends."""

from __future__ import annotations

import json
import socket
import threading

import pytest

from httpraw import build
from script_harness import NO_SCRIPTING, SCRIPTS, ScriptProc, exchange, free_ports, running_pair

pytestmark = pytest.mark.skipif(NO_SCRIPTING is not None, reason=str(NO_SCRIPTING))

EXPECTED = ["sync", "nextTick", "promise", "microtask", "immediate", "timeout"]


@pytest.fixture(scope="module")
def pair(logdir):
    with running_pair(logdir, SCRIPTS / "loop_order.js") as p:
        yield p


def order(proc, req):
    r = exchange(proc.port, [req])[0]
    assert r.status == 200, r
    return json.loads(r.body)


def both(pair, req, rounds=20):
    """Many rounds: a race would show as a differing round."""
    for _ in range(rounds):
        got = order(pair.kuai, req)
        expected = order(pair.node, req)
        assert got == expected, f"node: {expected}\nkuai: {got}"
    return got


@pytest.mark.parametrize("path", ["/handler", "/timer", "/fs"])
def test_order_after_a_callback(pair, path):
    assert both(pair, build("GET", path)) == EXPECTED


def test_order_in_body_events(pair):
    body = b"x" * 100
    got = both(pair, build("POST", "/body", headers=[("Content-Length", str(len(body)))], body=body))
    data = [e[5:] for e in got if e.startswith("data:")]
    end = [e[4:] for e in got if e.startswith("end:")]
    assert data == EXPECTED and end == EXPECTED, got


def test_next_tick_and_promise_nesting(pair):
    assert both(pair, build("GET", "/nested")) == [
        "tick1", "tick2", "promise1", "promiseFromTick", "promise2", "tickFromPromise"]


class SendAndClose:
    """Accepts connections on 127.0.0.1 and, on each, sends `size` bytes at
    once and closes: the data and the FIN reach the client together."""

    def __init__(self, size):
        self.size = size
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            c.sendall(b"x" * self.size)
            c.close()

    def close(self):
        self.sock.close()


@pytest.mark.parametrize("io", ["uring", "epoll"])
def test_node_sockets_in_a_handler_see_data_and_end(logdir, io):
    port = free_ports(1)[0]
    proc = ScriptProc("kuai", SCRIPTS / "libuv_sockets.js", logdir, env={"PORT": str(port)})
    proc.cmd[1:1] = ["--io", io]
    proc.start()
    peers = [SendAndClose(n) for n in (1, 5000, 3 * 1024 * 1024)]
    try:
        for peer in peers:
            for _ in range(5):
                r = exchange(proc.port, [build("GET", f"/?port={peer.port}")], timeout=5)[0]
                assert r.status == 200 and json.loads(r.body) == {"bytes": peer.size}, r
    finally:
        for peer in peers:
            peer.close()
        problems = proc.stop()
    assert not problems, problems
