"""Scripts get Node's request limits by default (kuai's own stricter defaults
are for native serving): a body of any size streams through, more fields than
server.maxHeadersCount or more than 16 KiB of fields is a 431.
Compared with node running scripts/limits.js."""

from __future__ import annotations

import json

import pytest

from httpraw import Conn, build
from script_harness import NO_SCRIPTING, SCRIPTS, running_pair

pytestmark = pytest.mark.skipif(NO_SCRIPTING is not None, reason=str(NO_SCRIPTING))


@pytest.fixture(scope="module")
def pair(logdir):
    with running_pair(logdir, SCRIPTS / "limits.js") as p:
        yield p


def ask(port, headers=(), body=b""):
    with Conn(port, timeout=20) as c:
        c.send(build("POST", "/", headers=[("Content-Length", str(len(body))), *headers]))
        for i in range(0, len(body), 1 << 20):
            c.send(body[i:i + (1 << 20)])
        r = c.read_response(timeout=30)
        return r.status, (json.loads(r.body) if r.status == 200 else None)


def both(pair, **kw):
    out = {p.runtime: ask(p.port, **kw) for p in pair.procs()}
    assert out["node"] == out["kuai"], out
    return out["kuai"]


def test_large_body_without_a_cap(pair):
    assert both(pair, body=b"x" * (24 << 20)) == (200, {"body": 24 << 20, "raw": 2,
                                                       "fields": ["host", "content-length"]})


def test_max_headers_count(pair):
    # server.maxHeadersCount is 5: Host, Content-Length and three more pass;
    # one more is a 431 (Node 22 and later; Node 20 kept the first five).
    fields = [(f"X-F{i}", str(i)) for i in range(3)]
    assert both(pair, headers=fields) == (200, {"body": 0, "raw": 5, "fields": [
        "host", "content-length", "x-f0", "x-f1", "x-f2"]})
    assert both(pair, headers=fields + [("X-F3", "3")]) == (431, None)


def test_header_fields_over_16k_get_431(pair):
    status, _ = both(pair, headers=[("X-Big", "a" * 17000)])
    assert status == 431


def quick_port(proc):
    line = proc.wait_lines(r"^QUICK (\d+)", 1)[0]
    return int(line.split()[1])


def slow_request(port, head_pause, body_pause):
    """Sends a request in pieces; the status line that comes back (or None
    when the server waited it out)."""
    import time as _time
    with Conn(port, timeout=6) as c:
        c.send(b"POST / HTTP/1.1\r\nHost: x\r\n")
        _time.sleep(head_pause)
        try:
            c.send(b"Content-Length: 4\r\n\r\nab")
            _time.sleep(body_pause)
            c.send(b"cd")
        except OSError:
            pass
        try:
            r = c.read_response(timeout=6)
        except Exception:  # noqa: BLE001 - closed without an answer
            return None
        return r.status


def test_headers_and_request_timeouts(pair):
    out = {}
    for p in pair.procs():
        port = quick_port(p)
        out[p.runtime] = (slow_request(port, 0, 0), slow_request(port, 1.6, 0),
                          slow_request(port, 0, 2.8))
    assert out["kuai"] == (200, 408, 408), out
    assert out["node"] == out["kuai"], out
