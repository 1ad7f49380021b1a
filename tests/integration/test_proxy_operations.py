"""Reverse proxy in operation: reloads under load, the access log and
metrics, draining on SIGTERM, connect and send timeouts, retried bodies, a
TLS listener in front. Harness: proxy_harness.py."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import free_port
from httpraw import Conn, ConnectionClosed, build, get
from proxy_harness import (
    body_headers, fetch, kuai_only, KuaiProxy, make_config, MiB, proxy_route, STOP_TIMEOUT, UNDER,
    who)
from proxy_harness import dead_address, io, io1, proxy, upstreams  # noqa: F401,F811 (fixtures)

# --------------------------------------------------------------------------
# Reload, logging, metrics

def test_sighup_reload_under_load(proxy, upstreams, io1):
    a, b = upstreams("a"), upstreams("b")
    p = proxy([proxy_route([a])], io1)
    stop = threading.Event()
    stats = {"ok": 0, "by": {}, "failures": [], "reconnects": 0}
    lock = threading.Lock()

    def client(fresh_each):
        c = None
        while not stop.is_set():
            reused = c is not None
            try:
                if c is None:
                    c = Conn(p.port, timeout=5)
                c.send(get("/hello"))
                r = c.read_response()
                with lock:
                    if r.status == 200:
                        stats["ok"] += 1
                        stats["by"][who(r)] = stats["by"].get(who(r), 0) + 1
                    else:
                        stats["failures"].append(f"status {r.status}")
                if fresh_each or r.has_token("Connection", "close"):
                    c.close()
                    c = None
            except ConnectionClosed as e:
                # A keep-alive connection closed before any byte of the next
                # response: a client may retry (RFC 9112 9.3.1); counted.
                with lock:
                    if reused and not c.buf:
                        stats["reconnects"] += 1
                    else:
                        stats["failures"].append(repr(e)[:200])
                c.close()
                c = None
            except Exception as e:  # noqa: BLE001 - reported below
                with lock:
                    stats["failures"].append(repr(e)[:200])
                if c:
                    c.close()
                c = None
        if c:
            c.close()

    threads = [threading.Thread(target=client, args=(i == 0,), daemon=True) for i in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        assert stats["ok"] > 0 and not stats["failures"], stats
        new = [proxy_route([b], match="/b-only/", stripPrefix=True), proxy_route([b])]
        p.reload(make_config(new, io1, p.port))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not stats["by"].get("b"):
            time.sleep(0.05)
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert not stats["failures"], f"{len(stats['failures'])} failures: {stats['failures'][:5]}"
    assert stats["by"].get("b"), f"the new upstream never answered: {stats}"
    assert p.alive()
    r = fetch(p.port, path="/b-only/hello")
    assert r.status == 200 and who(r) == "b", r
    assert who(fetch(p.port)) == "b"


COMBINED = re.compile(
    r'^127\.0\.0\.1 - (-|\S+) \[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\] '
    r'"(?P<request>[^"]*)" (?P<status>\d{3}) (?P<bytes>\d+|-) "(?P<referer>[^"]*)" '
    r'"(?P<ua>[^"]*)"$')


def test_access_log(proxy, upstreams, io, tmp_path):
    a = upstreams("a")
    log = tmp_path / "access.log"
    p = proxy([proxy_route([a])], io, logging={"access": str(log)})
    r = fetch(p.port, path="/hello?q=1", headers=[("User-Agent", "pytest-ua/1.0"),
                                                  ("Referer", "http://ref.test/x")])
    assert r.status == 200
    r = fetch(p.port, path="/status/404")
    assert r.status == 404
    # Written while the proxy runs (batched, not only at exit).
    lines = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = log.read_text().splitlines() if log.exists() else []
        if len(lines) >= 2:
            break
        time.sleep(0.1)
    assert len(lines) == 2, lines
    m = COMBINED.match(lines[0])
    assert m, f"not combined log format: {lines[0]!r}"
    assert m["request"] == "GET /hello?q=1 HTTP/1.1" and m["status"] == "200", lines[0]
    assert m["bytes"] == "13" and m["referer"] == "http://ref.test/x", lines[0]
    assert m["ua"] == "pytest-ua/1.0", lines[0]
    m = COMBINED.match(lines[1])
    assert m and m["status"] == "404" and m["referer"] == "-" and m["ua"] == "-", lines[1]


PROM_LINE = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?P<labels>[^}]*)\})? '
                       r'(?P<value>[-+]?([0-9.]+([eE][-+]?\d+)?|Inf|NaN))$')


@kuai_only
def test_metrics(proxy, upstreams, io):
    a = upstreams("a")
    p = proxy([proxy_route([a], match="/ok/", stripPrefix=True),
               proxy_route([dead_address()], match="/down/", retries=0)], io,
              logging={"metrics": "/metrics"})
    for _ in range(3):
        assert fetch(p.port, path="/ok/hello").status == 200
    assert fetch(p.port, path="/down/x").status == 502
    r = fetch(p.port, path="/metrics")
    assert r.status == 200 and r.content_type == "text/plain", r
    samples = {}
    types = {}
    for line in r.body.decode().splitlines():
        if not line or line.startswith("#"):
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split(" ", 3)
                types[name] = kind
            continue
        m = PROM_LINE.match(line)
        assert m, f"not Prometheus text format: {line!r}"
        samples[(m["name"], m["labels"] or "")] = float(m["value"])

    def value(name, **labels):
        total, found = 0.0, False
        for (n, lab), v in samples.items():
            if n == name and all(f'{k}="{w}"' in lab for k, w in labels.items()):
                total, found = total + v, True
        return total if found else None

    assert (value("kuai_requests_total", code="200") or 0) >= 3, samples
    assert (value("kuai_requests_total", code="502") or 0) >= 1, samples
    assert any(k == "histogram" for k in types.values()), types
    hist = [n for n, k in types.items() if k == "histogram"][0]
    assert value(hist + "_count") and value(hist + "_count") >= 4, samples
    assert any(n.endswith("_bucket") and 'le="+Inf"' in lab for n, lab in samples), samples
    assert any("connections" in n for n, _ in samples), "no open-connections gauge"
    ups = {n for n, _ in samples if "upstream" in n}
    assert ups, "no upstream pool / failure metrics"


# --------------------------------------------------------------------------
# Promises the tests above left open

def _start_slow(port, path, timeout=20):
    """A request whose response takes a while: the connection, head sent."""
    c = Conn(port, timeout=timeout)
    c.send(build("GET", path))
    return c


@kuai_only
def test_sigterm_drains_an_in_flight_proxied_request(proxy, upstreams, io):
    a = upstreams("a")
    p = proxy([proxy_route([a])], io)
    c = _start_slow(p.port, "/slow/1500")
    deadline = time.monotonic() + 5
    while a.requests < 1:  # the request reached the upstream
        assert time.monotonic() < deadline, "the slow request never reached the upstream"
        time.sleep(0.02)
    p.proc.send_signal(signal.SIGTERM)
    p.stopping = True
    with c:
        _, r = c.read_final(timeout=10)
    assert r.status == 200 and r.body == b"hello from a after 1500 ms\n", r
    assert r.has_token("Connection", "close"), r.headers
    assert p.proc.wait(STOP_TIMEOUT) == 0, p.output()[-2000:]
    p.returncode = 0
    p.check_clean()


@kuai_only
def test_request_in_flight_across_a_reload_keeps_its_route(proxy, upstreams, io1):
    a, b = upstreams("a"), upstreams("b")
    p = proxy([proxy_route([a])], io1)
    c = _start_slow(p.port, "/slow/1500")
    deadline = time.monotonic() + 5
    while a.requests < 1:
        assert time.monotonic() < deadline, "the slow request never reached a"
        time.sleep(0.02)
    p.reload(make_config([proxy_route([b])], io1, p.port))
    deadline = time.monotonic() + 5
    while "reloaded" not in p.output():
        assert time.monotonic() < deadline, f"no reload: {p.output()[-2000:]}"
        time.sleep(0.02)
    assert who(fetch(p.port)) == "b"  # new requests: the new route
    with c:
        _, r = c.read_final(timeout=10)
    assert r.status == 200 and who(r) == "a" and r.body == b"hello from a after 1500 ms\n", r


def _blackhole():
    """A listening socket whose accept queue is full: a further SYN is dropped
    (no reset), so connecting to it hangs. Returns (address, sockets to keep)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    keep = [srv]
    addr = srv.getsockname()
    for _ in range(4):  # fill the queue (its size is backlog + 1)
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(addr)
        keep.append(s)
    time.sleep(0.1)
    return f"127.0.0.1:{addr[1]}", keep


@kuai_only
def test_connect_timeout_is_a_504(proxy, io):
    address, keep = _blackhole()
    try:
        p = proxy([proxy_route([address], connectTimeout="500ms", retries=0)], io)
        t = time.monotonic()
        r = fetch(p.port, timeout=10)
        took = time.monotonic() - t
        assert r.status == 504, r
        assert 0.4 <= took <= 5, f"504 after {took:.2f} s with connectTimeout 500ms"
    finally:
        for s in keep:
            s.close()


@kuai_only
def test_send_timeout_when_the_upstream_takes_no_body(proxy, upstreams, io):
    """An upstream that reads the head and never the body: once the socket
    buffers are full, nothing moves for sendTimeout, and the request fails."""
    a = upstreams("a")
    a.fail_mode = "stall"
    p = proxy([proxy_route([a], sendTimeout="1s", readTimeout="30s")], io,
              limits={"bodyBytes": "64m"})
    body = b"x" * (32 * MiB)
    head = build("POST", "/upload", headers=body_headers(body))
    s = socket.create_connection(("127.0.0.1", p.port))
    s.setblocking(False)
    t = time.monotonic()
    data, sent, raw, answered = head + body, 0, b"", None
    import select
    while time.monotonic() - t < 20 and b"\r\n\r\n" not in raw:
        r, w, _ = select.select([s], [s] if sent < len(data) else [], [], 0.2)
        if r:
            try:
                chunk = s.recv(65536)
            except OSError:
                chunk = b""
            raw += chunk
            if not chunk:
                break
        if w:
            try:
                sent += s.send(data[sent:sent + 65536])
            except (BlockingIOError, OSError):
                pass
    answered = time.monotonic() - t
    s.close()
    assert a.requests >= 1, "the upstream never got the head"
    # readTimeout is 30 s: a 504 this soon is the send timeout.
    assert raw.startswith(b"HTTP/1.1 504"), raw[:200]
    assert answered < 15, f"504 after {answered:.1f} s with sendTimeout 1s"


@kuai_only
@pytest.mark.parametrize("size,retried", [(60 * 1024, True), (100 * 1024, False)],
                         ids=["60k-replayed", "100k-not-replayed"])
def test_retry_replays_bodies_up_to_64k(proxy, upstreams, io, size, retried):
    """PUT (idempotent) to an upstream that resets before answering: retried
    on the next upstream when its body fits the replay buffer (64 KiB)."""
    good, bad = upstreams("good"), upstreams("bad")
    bad.fail_mode = "reset"
    # bad first in the rotation for every request: weight 1000 against 1.
    p = proxy([proxy_route([(bad, 1000), (good, 1)], retries=1, maxFails=100)], io)
    body = os.urandom(size)
    r = fetch(p.port, method="PUT", path="/upload", body=body, headers=body_headers(body), timeout=10)
    assert bad.requests >= 1, "the resetting upstream got no request"
    if retried:
        assert r.status == 200 and who(r) == "good", r
        assert json.loads(r.body)["sha256"] == hashlib.sha256(body).hexdigest(), r.body
    else:
        assert r.status == 502, r


@kuai_only
def test_proxy_route_behind_a_tls_listener(proxy, upstreams, io, certs, tmp_path):
    a = upstreams("a")
    d = tmp_path / "tlsproxy"
    d.mkdir()
    port = free_port()
    cfg = make_config([proxy_route([a])], io, port)
    cfg["listen"] = [{"host": "127.0.0.1", "port": port,
                      "tls": {"cert": str(certs.ecdsa), "key": str(certs.ecdsa_key)}}]
    p = KuaiProxy(d, cfg).start()
    try:
        # HTTP/1.1, and (kuai offers it by ALPN) HTTP/2 downstream of the same
        # HTTP/1.1 upstream.
        for version, status_line in [("--http1.1", "HTTP/1.1 200"), ("--http2", "HTTP/2 200")]:
            if version == "--http2" and UNDER != "kuai":
                continue
            r = subprocess.run(["curl", "-sS", version, "--cacert", str(certs.ca), "-D", "-",
                                f"https://localhost:{port}/echo"],
                               capture_output=True, text=True, timeout=20)
            assert r.returncode == 0, r.stderr
            head, _, body = r.stdout.partition("\n\n")  # (text mode: \r\n read as \n)
            assert head.startswith(status_line), head
            doc = json.loads(body)
            fwd = dict((k.lower(), v) for k, v in doc["headers"])
            assert fwd["x-forwarded-proto"] == "https", doc
            assert "x-upstream: a" in head.lower(), head
    finally:
        p.stop()


@kuai_only
def test_access_log_reopened_on_sighup(proxy, upstreams, io1, tmp_path):
    """logrotate's way: rename the file, SIGHUP; the next lines go to a new
    file at the configured path, none lost."""
    a = upstreams("a")
    log = tmp_path / "access.log"
    p = proxy([proxy_route([a])], io1, logging={"access": str(log)})

    def wait_lines(path, n):
        deadline = time.monotonic() + 5
        while True:
            lines = path.read_text().splitlines() if path.exists() else []
            if len(lines) >= n:
                return lines
            assert time.monotonic() < deadline, f"{path}: {lines}"
            time.sleep(0.05)

    assert fetch(p.port, path="/hello?first").status == 200
    assert "GET /hello?first" in wait_lines(log, 1)[0]
    rotated = tmp_path / "access.log.1"
    os.rename(log, rotated)
    p.reload(p.config)
    deadline = time.monotonic() + 5
    while "reloaded" not in p.output():
        assert time.monotonic() < deadline, p.output()[-2000:]
        time.sleep(0.02)
    assert fetch(p.port, path="/hello?second").status == 200
    lines = wait_lines(log, 1)
    assert len(lines) == 1 and "GET /hello?second" in lines[0], lines
    old = rotated.read_text().splitlines()
    assert len(old) == 1 and "GET /hello?first" in old[0], old
