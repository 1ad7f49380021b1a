"""Node's event-loop order as seen from a request handler, under kuai and under
the pinned node (scripts/loop_order.js): process.nextTick before promise
jobs, and after an I/O callback setImmediate before an expired
setTimeout(..., 0); the same from a body's events, a timer and an fs
callback. Each order is asserted outright, not only compared, so that a
change on both sides is noticed too."""

from __future__ import annotations

import json

import pytest

from httpraw import build
from script_harness import NO_SCRIPTING, SCRIPTS, exchange, start_pair, stop_pair

pytestmark = pytest.mark.skipif(NO_SCRIPTING is not None, reason=str(NO_SCRIPTING))

EXPECTED = ["sync", "nextTick", "promise", "microtask", "immediate", "timeout"]


@pytest.fixture(scope="module")
def pair(logdir):
    p = start_pair(logdir, SCRIPTS / "loop_order.js")
    yield p
    problems = stop_pair(p)
    if problems:
        pytest.fail("\n".join(problems))


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
