"""Reverse proxy: the per-core keep-alive pools, load balancing, upstream
failures (502/504, retries, malformed responses) and health checks. The
harness (kuai or nginx under test, the `proxy`/`upstreams` fixtures, how to
run these files against nginx) is proxy_harness.py."""

from __future__ import annotations

import hashlib
import json
import threading
import time

import pytest

from httpraw import Conn, ResponseTimeout, build, get
from upstream import pattern_pieces, pattern_sha256
from proxy_harness import (
    body_headers, classify_aborted, fetch, kuai_only, MiB, proxy_route, read_raw_until_close,
    UNDER, who)
from proxy_harness import dead_address, io, io1, proxy, upstreams  # noqa: F401,F811 (fixtures)

# --------------------------------------------------------------------------
# Keep-alive pool

def test_basic_proxying(proxy, upstreams, io):
    a = upstreams("a")
    p = proxy([proxy_route([a])], io)
    r = fetch(p.port, path="/hello")
    assert r.status == 200, r
    assert r.body == b"hello from a\n", r
    assert who(r) == "a", r
    r = fetch(p.port, path="/nope")
    assert r.status == 404 and who(r) == "a", r


def _hammer(port, conns, per_conn, path="/hello", timeout=10.0):
    """per_conn keep-alive requests on each of conns client connections in
    parallel (a connection the proxy closes, after `Connection: close`, is
    replaced); returns (ok count, list of errors, max X-Request-Count seen)."""
    results = [None] * conns
    req = get(path)

    def worker(i):
        ok, max_rc = 0, 0
        c = None
        try:
            for _ in range(per_conn):
                if c is None:
                    c = Conn(port, timeout=timeout)
                c.send(req)
                r = c.read_response()
                if r.status == 200:
                    ok += 1
                    max_rc = max(max_rc, int(r.header("X-Request-Count", "0")))
                if r.has_token("Connection", "close"):
                    c.close()
                    c = None
            results[i] = (ok, None, max_rc)
        except Exception as e:  # noqa: BLE001 - reported below
            results[i] = (ok, repr(e), max_rc)
        finally:
            if c is not None:
                c.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(conns)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 120
    for t in threads:
        t.join(max(0.1, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "client threads still running after 120 s"
    return (sum(r[0] for r in results), [r[1] for r in results if r[1]],
            max(r[2] for r in results))


@pytest.mark.parametrize("threads", [1, 2])
def test_upstream_connections_reused(proxy, upstreams, io1, threads):
    """10,000 requests over 8 keep-alive client connections: the upstream
    accepts at most threads × maxIdle connections."""
    a = upstreams("a")
    max_idle = 8
    p = proxy([proxy_route([a], keepalive={"maxIdle": max_idle, "idleTimeout": "30s",
                                           "maxRequests": 100000})], io1, threads=threads)
    ok, errors, max_rc = _hammer(p.port, conns=8, per_conn=1250)
    assert not errors, errors[:3]
    assert ok == 10000
    assert a.requests == 10000, a.requests
    assert a.accepted <= threads * max_idle, \
        f"upstream accepted {a.accepted} connections for 10,000 requests"
    assert max_rc >= 10000 // (threads * max_idle), f"max requests on one upstream conn {max_rc}"


def test_keepalive_max_requests(proxy, upstreams, io):
    a = upstreams("a")
    p = proxy([proxy_route([a], keepalive={"maxIdle": 4, "maxRequests": 5})], io)
    counts = []
    with Conn(p.port) as c:
        for _ in range(23):
            c.send(get("/hello"))
            r = c.read_response()
            assert r.status == 200, r
            counts.append(int(r.header("X-Request-Count")))
    assert max(counts) == 5, counts
    assert a.accepted == 5, (a.accepted, counts)  # 23 requests, 5 per connection


def test_keepalive_idle_timeout(proxy, upstreams, io):
    a = upstreams("a")
    p = proxy([proxy_route([a], keepalive={"maxIdle": 4, "idleTimeout": "500ms"})], io)
    r = fetch(p.port)
    assert r.status == 200
    deadline = time.monotonic() + 3.0
    while a.open and time.monotonic() < deadline:
        time.sleep(0.05)
    assert a.open == 0, "the idle upstream connection is still open 3 s later (idleTimeout 500ms)"
    r = fetch(p.port)
    assert r.status == 200 and a.accepted == 2, (r, a.accepted)


def test_pool_keeps_at_most_max_idle(proxy, upstreams, io):
    """8 requests at once need 8 upstream connections; afterwards at most
    maxIdle stay open."""
    a = upstreams("a")
    p = proxy([proxy_route([a], keepalive={"maxIdle": 2, "idleTimeout": "30s"})], io)
    conns = [Conn(p.port, timeout=5) for _ in range(8)]
    try:
        for c in conns:
            c.send(get("/slow/400"))
        for c in conns:
            assert c.read_response().status == 200
        assert a.max_open == 8, a.max_open
        deadline = time.monotonic() + 2
        while a.open > 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert a.open <= 2, f"{a.open} upstream connections kept with maxIdle 2"
        for c in conns:  # and the kept ones are used again
            c.send(get("/hello"))
            assert c.read_response().status == 200
        assert a.accepted == 8, a.accepted
    finally:
        for c in conns:
            c.close()


def test_upstream_closes_pooled_connection(proxy, upstreams, io):
    """The upstream closes an idle pooled connection: the next request works
    on a fresh one."""
    a = upstreams("a")
    p = proxy([proxy_route([a], keepalive={"maxIdle": 4, "idleTimeout": "30s"})], io)
    with Conn(p.port) as c:
        c.send(get("/hello"))
        assert c.read_response().status == 200
        assert a.open == 1
        a.drop_connections(rst=False)
        time.sleep(0.3)
        for _ in range(3):
            c.send(get("/hello"))
            r = c.read_response()
            assert r.status == 200, r
    assert a.accepted == 2, a.accepted


def test_pipelined_requests_in_order(proxy, upstreams, io):
    a = upstreams("a")
    p = proxy([proxy_route([a])], io)
    paths = ["/slow/300", "/hello", "/bytes/70000", "/status/404", "/chunked/3000", "/echo"]
    with Conn(p.port, timeout=10) as c:
        c.send(b"".join(get(x) for x in paths))
        rs = [c.read_response() for _ in paths]
    assert [r.status for r in rs] == [200, 200, 200, 404, 200, 200], rs
    assert rs[0].body.startswith(b"hello from a after 300 ms"), rs[0]
    assert rs[2].body == b"".join(pattern_pieces(70000)), rs[2]
    assert json.loads(rs[5].body)["target"] == "/echo"


def test_http10_client(proxy, upstreams, io):
    """An HTTP/1.0 client gets no chunked encoding, and a close after."""
    a = upstreams("a")
    p = proxy([proxy_route([a])], io)
    with Conn(p.port) as c:
        c.send(b"GET /chunked/5000 HTTP/1.0\r\nHost: x\r\n\r\n")
        raw = read_raw_until_close(c, timeout=5)
    head, body = raw.split(b"\r\n\r\n", 1)
    assert head.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200")), head
    assert b"chunked" not in head.lower(), head
    assert hashlib.sha256(body).hexdigest() == pattern_sha256(5000), (head, len(body))


def test_client_aborts_mid_download(proxy, upstreams, io):
    """The client goes away mid-body: the upstream connection carrying it is
    not put back in the pool half-read, and the proxy goes on."""
    a = upstreams("a")
    p = proxy([proxy_route([a])], io)
    c = Conn(p.port, timeout=5, rcvbuf=16384)
    c.send(get(f"/bytes/{20 * MiB}"))
    c._fill(time.monotonic() + 5)
    c.close()
    time.sleep(0.3)
    for _ in range(5):
        r = fetch(p.port, path="/bytes/1000")
        assert r.status == 200 and r.body == b"".join(pattern_pieces(1000)), r
        assert r.header("X-Conn-Id") != "1", "the aborted response's connection was reused"


# --------------------------------------------------------------------------
# Balancing

def test_round_robin(proxy, upstreams, io):
    ups = [upstreams(n) for n in "abc"]
    p = proxy([proxy_route(ups, balance="round_robin")], io)
    seen = {"a": 0, "b": 0, "c": 0}
    with Conn(p.port) as c:
        for _ in range(300):
            c.send(get("/hello"))
            r = c.read_response()
            assert r.status == 200, r
            seen[who(r)] += 1
    assert all(90 <= n <= 110 for n in seen.values()), seen


def test_weighted(proxy, upstreams, io):
    a, b = upstreams("a"), upstreams("b")
    p = proxy([proxy_route([(a, 3), (b, 1)], balance="weighted")], io)
    seen = {"a": 0, "b": 0}
    with Conn(p.port) as c:
        for _ in range(400):
            c.send(get("/hello"))
            r = c.read_response()
            assert r.status == 200, r
            seen[who(r)] += 1
    assert 280 <= seen["a"] <= 320 and 80 <= seen["b"] <= 120, seen


def test_least_conn(proxy, upstreams, io):
    a, b = upstreams("a"), upstreams("b")
    p = proxy([proxy_route([a, b], balance="least_conn")], io)
    slow = Conn(p.port, timeout=10)
    try:
        slow.send(get("/slow/2500"))
        deadline = time.monotonic() + 3
        while a.requests + b.requests == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        busy = a if a.requests else b
        idle = b if busy is a else a
        assert busy.requests == 1
        with Conn(p.port) as c:
            for _ in range(10):
                c.send(get("/hello"))
                r = c.read_response()
                assert r.status == 200 and who(r) == idle.name, \
                    f"least_conn sent a request to {who(r)} which has a /slow request outstanding"
        r = slow.read_response()
        assert r.status == 200 and who(r) == busy.name, r
    finally:
        slow.close()


# --------------------------------------------------------------------------
# Failures

@pytest.mark.parametrize("query", ["", "?rst=1", "?chunked=1", "?chunked=1&rst=1"])
def test_upstream_dies_mid_response(proxy, upstreams, io, query):
    """The client sees an aborted response (or a 502), never a hang and never
    a response that looks complete; the proxy goes on serving."""
    a = upstreams("a")
    p = proxy([proxy_route([a])], io)
    with Conn(p.port, timeout=5) as c:
        c.send(get("/die-mid" + query))
        try:
            raw = read_raw_until_close(c, timeout=5)
        except ResponseTimeout:
            head = bytes(c.buf).split(b"\r\n\r\n", 1)[0]
            kind, detail = classify_aborted(bytes(c.buf))
            pytest.fail(f"the proxy kept the client connection open 5 s after the upstream "
                        f"died ({kind}: {detail}); head: {head!r}")
    kind, detail = classify_aborted(raw)
    head = raw.split(b"\r\n\r\n")[0]
    assert kind in ("502", "aborted"), f"{kind}: {detail}; head {head!r}"
    r = fetch(p.port)
    assert r.status == 200 and who(r) == "a", r


def nginx_lenient(path, why):
    return pytest.param(path, marks=pytest.mark.skipif(UNDER == "nginx", reason="nginx " + why))


@pytest.mark.parametrize("path", [
    "/garbage?kind=header", "/truncated-head",
    nginx_lenient("/garbage?kind=status", "passes a bad status line through as HTTP/0.9"),
    nginx_lenient("/garbage?kind=http09", "passes a response without a status line through "
                  "as HTTP/0.9"),
    nginx_lenient("/garbage?kind=length", "takes the last of two Content-Length values"),
    nginx_lenient("/garbage?kind=badlength", "ignores an invalid Content-Length")])
def test_malformed_upstream_response(proxy, upstreams, io, path):
    a = upstreams("a")
    p = proxy([proxy_route([a], retries=0, maxFails=100)], io)
    r = fetch(p.port, path=path)
    assert r.status == 502, r
    r = fetch(p.port)
    assert r.status == 200, r


def test_malformed_chunked_body(proxy, upstreams, io):
    """A bad chunk size after a good head: 502, or an aborted response."""
    a = upstreams("a")
    p = proxy([proxy_route([a], retries=0, maxFails=100)], io)
    with Conn(p.port, timeout=5) as c:
        c.send(get("/garbage?kind=chunk&keep=1"))
        raw = read_raw_until_close(c, timeout=5)
    kind, detail = classify_aborted(raw)
    # nginx closes without a response when the head and the bad chunk come together.
    allowed = ("502", "aborted") + (("nothing",) if UNDER == "nginx" else ())
    assert kind in allowed, f"{kind}: {detail}; {raw[:300]!r}"
    assert b"nope" not in raw, raw
    r = fetch(p.port)
    assert r.status == 200, r


def trailer_section(raw):
    """The trailer section of a chunked response's exact bytes."""
    at = raw.rfind(b"\r\n0\r\n")
    assert at >= 0, raw[-200:]
    return raw[at + 5:]


@kuai_only  # nginx drops an HTTP/1.1 upstream's trailers
def test_trailers_pass_both_ways(proxy, upstreams, io):
    """A chunked response's trailer fields reach the client (hop-by-hop ones
    left out, whitespace trimmed, repeats kept), and so do a chunked request's
    to the upstream."""
    a = upstreams("a")
    p = proxy([proxy_route([a])], io)
    with Conn(p.port, timeout=5) as c:
        c.send(get("/chunked/5000?trailer=1"))
        r = c.read_response()
        assert r.status == 200 and hashlib.sha256(r.body).hexdigest() == pattern_sha256(5000), r
        assert trailer_section(r.raw) == (
            b"X-Checksum: %s\r\nX-Count: 1\r\nX-Pad: v\r\nX-Count: 2\r\n\r\n"
            % pattern_sha256(5000).encode()), r.raw[-300:]
        c.send(get("/chunked/100"))  # none: the section stays empty
        r = c.read_response()
        assert r.status == 200 and trailer_section(r.raw) == b"\r\n", r.raw[-100:]
        c.send(build("POST", "/echo", headers=[("Transfer-Encoding", "chunked")],
                     body=b"3\r\nabc\r\n0\r\nX-Sum: 42\r\nKeep-Alive: 5\r\nX-Sum:  43 \r\n\r\n"))
        r = c.read_response()
        doc = json.loads(r.body)
        assert doc["body_length"] == 3 and doc["trailers"] == [["X-Sum", "42"], ["X-Sum", "43"]], doc
        # Content-Length framing upstream: no trailers to carry.
        c.send(build("POST", "/echo", body=b"abc", headers=[("Content-Length", "3")]))
        assert json.loads(c.read_response().body)["trailers"] == []


def test_malformed_response_connection_not_reused(proxy, upstreams, io):
    """Garbage on a connection the upstream keeps open: the proxy drops it."""
    a = upstreams("a")
    p = proxy([proxy_route([a], retries=0, maxFails=100)], io)
    with Conn(p.port) as c:
        c.send(get("/hello"))
        assert c.read_response().status == 200
        c.send(get("/garbage?kind=header&keep=1"))
        r = c.read_response()
        assert r.status == 502, r
    for _ in range(3):
        r = fetch(p.port)
        assert r.status == 200, r
    recs = a.records()
    garbage = [x for x in recs if x.path == "/garbage"]
    after = recs[recs.index(garbage[0]) + 1:]
    assert after and all(x.conn_id != garbage[0].conn_id for x in after), \
        f"the connection that answered garbage was reused: {[(x.path, x.conn_id) for x in recs]}"


def test_upstream_down_502(proxy, io):
    p = proxy([proxy_route([dead_address()], retries=0)], io)
    t = time.monotonic()
    r = fetch(p.port)
    assert r.status == 502, r
    assert time.monotonic() - t < 2.0
    r = fetch(p.port, path="/other")  # marked down: still a prompt 502
    assert r.status == 502, r


def test_slow_upstream_504(proxy, upstreams, io):
    a = upstreams("a")
    p = proxy([proxy_route([a], readTimeout="1s")], io)
    t = time.monotonic()
    r = fetch(p.port, path="/slow/4000", timeout=6)
    took = time.monotonic() - t
    assert r.status == 504, r
    assert 0.8 <= took <= 2.5, f"504 after {took:.2f} s with readTimeout 1s"
    r = fetch(p.port, path="/slow/100")
    assert r.status == 200, r


def test_drip_within_read_timeout(proxy, upstreams, io):
    """readTimeout is between bytes, not for the whole response."""
    a = upstreams("a")
    p = proxy([proxy_route([a], readTimeout="1s")], io)
    r = fetch(p.port, path="/drip?n=6&ms=400&size=100", timeout=10)
    assert r.status == 200 and len(r.body) == 600, r


@pytest.mark.parametrize("how", ["refused", "reset"])
def test_get_retried_on_another_upstream(proxy, upstreams, io, how):
    good = upstreams("good")
    if how == "refused":
        bad = dead_address()
    else:
        bad = upstreams("bad")
        bad.fail_mode = "reset"
    p = proxy([proxy_route([bad, good], retries=1, maxFails=100)], io)
    for i in range(6):
        for method in ("GET", "HEAD", "DELETE", "PUT"):
            body = b"x" * 10 if method == "PUT" else b""
            r = fetch(p.port, method=method, path="/echo", body=body,
                      headers=body_headers(body) if body else ())
            assert r.status == 200 and who(r) == "good", (i, method, r)
    if how == "reset":
        assert bad.requests >= 1, "the resetting upstream never got a request"


def test_post_not_retried(proxy, upstreams, io):
    good, bad = upstreams("good"), upstreams("bad")
    bad.fail_mode = "reset"
    p = proxy([proxy_route([bad, good], retries=1, maxFails=1000)], io)
    statuses = []
    for i in range(6):
        body = f"post {i}".encode()
        r = fetch(p.port, method="POST", path="/echo", body=body, headers=body_headers(body))
        statuses.append(r.status)
        assert r.status in (200, 502), r
        if r.status == 200:
            assert who(r) == "good"
    bad_posts = [x for x in bad.records() if x.method == "POST"]
    good_posts = [x for x in good.records() if x.method == "POST"]
    assert bad_posts, "no POST reached the resetting upstream (round robin?)"
    assert statuses.count(502) == len(bad_posts), (statuses, len(bad_posts))
    assert len(good_posts) == statuses.count(200), (statuses, len(good_posts))


def test_passive_health(proxy, upstreams, io):
    good, bad = upstreams("good"), upstreams("bad")
    bad.fail_mode = "reset"
    p = proxy([proxy_route([bad, good], retries=1, maxFails=1, failTimeout="2s")], io)
    for _ in range(20):
        r = fetch(p.port)
        assert r.status == 200 and who(r) == "good", r
    assert 1 <= bad.requests <= 2, \
        f"a failed upstream got {bad.requests} of 20 requests (maxFails 1, failTimeout 2s)"
    # Recovered, and back after failTimeout (nginx counts it in whole seconds).
    bad.fail_mode = None
    t = time.monotonic()
    while time.monotonic() - t < 5:
        if who(fetch(p.port)) == "bad":
            break
        time.sleep(0.05)
    else:
        pytest.fail("the upstream marked down got no request within 5 s (failTimeout 2s)")
    names = [who(fetch(p.port)) for _ in range(10)]
    assert "bad" in names and "good" in names, names


@kuai_only
def test_active_health_check(proxy, upstreams, io):
    a, b = upstreams("a"), upstreams("b")
    p = proxy([proxy_route([a, b], maxFails=100,
                           healthCheck={"path": "/health", "interval": "200ms",
                                        "timeout": "200ms"})], io)
    deadline = time.monotonic() + 3
    while a.health_requests == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert a.health_requests > 0 and b.health_requests > 0, "no health checks within 3 s"
    a.healthy = False
    # Once a's failed check has been seen, requests go to b alone.
    seen = a.health_requests
    deadline = time.monotonic() + 5
    while a.health_requests < seen + 2:
        assert time.monotonic() < deadline, "no health check of a within 5 s"
        time.sleep(0.02)
    names = [who(fetch(p.port)) for _ in range(10)]
    assert names == ["b"] * 10, f"requests still sent to an unhealthy upstream: {names}"
    a.healthy = True
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        if who(fetch(p.port)) == "a":
            break
        time.sleep(0.05)
    else:
        pytest.fail("the upstream that became healthy again got no request within 3 s")
    assert all(x.path == "/health" and x.method in ("GET", "HEAD") and "X-Forwarded-For" not
               in dict(x.headers) for x in a.records("/health"))
