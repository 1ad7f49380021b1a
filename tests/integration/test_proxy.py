"""Reverse proxy: `kuai --config FILE` with proxy routes in front of the test
upstreams of upstream.py (in-process, 127.0.0.1, free ports).

    KUAI_BIN=bazel-bin/kuai python3 -m pytest -q tests/integration/test_proxy.py
    KUAI_PROXY_UNDER_TEST=nginx KUAI_BIN=/bin/true python3 -m pytest -q \
        tests/integration/test_proxy.py    # against nginx (no kuai needed)

(conftest skips every test when KUAI_BIN is not executable, hence /bin/true
when kuai is not built.)

Each test writes a kuai config (JSON) into tmp_path and starts its own kuai.
With KUAI_PROXY_UNDER_TEST=nginx the same tests run against nginx instead
(`/usr/sbin/nginx`, one master + `threads` workers, non-root paths in
tmp_path): the kuai config is translated into the equivalent nginx config
(upstream block with keepalive, proxy_pass, proxy_http_version 1.1,
proxy_next_upstream, max_fails/fail_timeout, proxy_set_header for the
forwarding headers, buffering off). That checks the tests and upstream.py
against a proxy known to work; tests of what nginx has no equivalent for
(active health checks, the metrics endpoint) are skipped there.

Behaviour tests run on both kuai backends (`io` = uring, epoll); the costly
ones (10,000 requests, 50 MiB slow reader, reload under load) on one.
"""

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
from pathlib import Path

import pytest

from conftest import KUAI, SANITIZER_MARKERS, free_port
from httpraw import ConnectionClosed, Conn, ResponseTimeout, build, chunked, get
from upstream import (Upstream, _Reader, pattern_pieces, pattern_sha256, ws_accept_for,
                      ws_frame, ws_read_frame)

UNDER = os.environ.get("KUAI_PROXY_UNDER_TEST", "kuai")
if UNDER not in ("kuai", "nginx"):
    raise RuntimeError(f"KUAI_PROXY_UNDER_TEST={UNDER!r}: want kuai or nginx")
NGINX = os.environ.get("NGINX_BIN", "/usr/sbin/nginx")
IOS = ["nginx"] if UNDER == "nginx" else ["uring", "epoll"]
ONE_IO = IOS[-1:]  # the costly tests: one backend
START_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0
MiB = 1024 * 1024

SANITIZED = bool(os.environ.get("KUAI_SANITIZED"))  # an ASan/UBSan kuai: slower
kuai_only = pytest.mark.skipif(UNDER != "kuai", reason="kuai only (no nginx equivalent)")

if UNDER == "nginx" and not os.access(NGINX, os.X_OK):
    pytestmark = pytest.mark.skip(reason=f"KUAI_PROXY_UNDER_TEST=nginx but no {NGINX}")


@pytest.fixture(params=IOS)
def io(request):
    """Overrides conftest's: kuai's backend, or just "nginx"."""
    return request.param


@pytest.fixture(params=ONE_IO)
def io1(request):
    return request.param




def dead_address():
    """127.0.0.1:PORT with nothing listening (connections are refused)."""
    return f"127.0.0.1:{free_port()}"


# --------------------------------------------------------------------------
# Config: the kuai schema, as Python dicts

def proxy_route(upstreams, match="/", **opts):
    """A route {"match": .., "proxy": {...}}; upstreams: Upstream objects,
    "host:port" strings, or (upstream, weight) pairs."""
    ups = []
    for u in upstreams:
        if isinstance(u, tuple):
            addr = u[0].address if isinstance(u[0], Upstream) else u[0]
            ups.append({"address": addr, "weight": u[1]})
        else:
            ups.append(u.address if isinstance(u, Upstream) else u)
    return {"match": match, "proxy": {"upstreams": ups, **opts}}


def make_config(routes, io, port, threads=1, logging=None, limits=None):
    cfg = {"threads": threads, "listen": [{"host": "127.0.0.1", "port": port}],
           "routes": routes}
    if io in ("uring", "epoll"):
        cfg["io"] = io
    if limits:
        cfg["limits"] = limits
    if logging:
        cfg["logging"] = logging
    return cfg


def _duration_ms(v):
    if isinstance(v, (int, float)):
        return int(v)
    m = re.fullmatch(r"(\d+)(ms|s|m)", v)
    assert m, f"bad duration {v!r}"
    return int(m.group(1)) * {"ms": 1, "s": 1000, "m": 60000}[m.group(2)]


# --------------------------------------------------------------------------
# The proxy under test

def _pids_below(pid):
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                kids.setdefault(ppid, []).append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return kids.get(pid, [])


def vm_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


class ProxyProcess:
    """kuai --config FILE (or nginx with the translated config)."""

    def __init__(self, directory: Path, config: dict):
        self.dir = directory
        self.config = config
        self.port = config["listen"][0]["port"]
        self.proc = None
        self.out_path = directory / "proxy.out"
        self.err_path = directory / "proxy.err"
        self.returncode = None
        self.stopping = False

    # Written by subclasses
    def write_config(self, config):
        raise NotImplementedError

    def command(self):
        raise NotImplementedError

    def start(self):
        self.write_config(self.config)
        with open(self.out_path, "ab") as out, open(self.err_path, "ab") as err:
            self.proc = subprocess.Popen(self.command(), stdout=out, stderr=err,
                                         stdin=subprocess.DEVNULL, cwd=self.dir)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"{self.name} exited with {self.proc.returncode} before serving:\n"
                            f"{self.output()[-3000:]}\nconfig: {json.dumps(self.config)}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.03)
        self.kill()
        pytest.fail(f"{self.name} not listening on {self.port} within {START_TIMEOUT}s:\n"
                    f"{self.output()[-3000:]}")

    def output(self):
        out = []
        for p in (self.out_path, self.err_path):
            try:
                out.append(p.read_text(errors="replace"))
            except OSError:
                pass
        return "\n".join(out)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def reload(self, config):
        """New config, then SIGHUP."""
        self.config = config
        self.write_config(config)
        self.proc.send_signal(signal.SIGHUP)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self):
        if self.proc is None or self.returncode is not None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.returncode = self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            self.returncode = self.proc.returncode
            raise AssertionError(f"{self.name} did not exit within {STOP_TIMEOUT}s of SIGTERM")
        self.check_clean()

    def check_clean(self):
        pass

    def worker_pids(self):
        return [self.proc.pid]


class KuaiProxy(ProxyProcess):
    name = "kuai"

    @property
    def config_path(self):
        return self.dir / "kuai.config.json"

    def write_config(self, config):
        tmp = self.dir / "kuai.config.json.tmp"
        tmp.write_text(json.dumps(config, indent=2))
        os.replace(tmp, self.config_path)  # a reload never sees half a file

    def command(self):
        return [KUAI, "--config", str(self.config_path)]

    def check_clean(self):
        err = self.output()
        problems = []
        if self.returncode != 0:
            problems.append(f"exit code {self.returncode} (expected 0)")
        problems += [f"'{m}' in its output" for m in SANITIZER_MARKERS if m in err]
        if problems:
            raise AssertionError(f"kuai: {'; '.join(problems)}\n{err[-3000:]}")


class NginxProxy(ProxyProcess):
    """nginx with the equivalent of a kuai config (see the module docstring)."""
    name = "nginx"
    REQ_HOP_EXTRA = ["Proxy-Connection", "Trailer", "X-Req-Hop"]  # the tests' extras
    RESP_HOP_EXTRA = ["Proxy-Connection", "Trailer", "X-Resp-Hop", "Keep-Alive"]

    def write_config(self, config):
        (self.dir / "nginx.conf").write_text(self.translate(config))

    def command(self):
        return [NGINX, "-p", str(self.dir), "-c", str(self.dir / "nginx.conf"),
                "-e", str(self.dir / "nginx-error.log")]

    def stop(self):
        super().stop()

    def worker_pids(self):
        return _pids_below(self.proc.pid)

    def output(self):
        text = super().output()
        try:
            text += (self.dir / "nginx-error.log").read_text(errors="replace")
        except OSError:
            pass
        return text

    def translate(self, config):
        d = self.dir
        tmp = d / "nginx-temp"
        tmp.mkdir(exist_ok=True)
        logging = config.get("logging", {})
        access = (f"access_log {logging['access']} combined;" if logging.get("access")
                  else "access_log off;")
        upstreams, locations = [], []
        for i, r in enumerate(config["routes"]):
            p = r["proxy"]
            lines = [f"upstream u{i} {{"]
            if p.get("balance") == "least_conn":
                lines.append("    least_conn;")
            for u in p["upstreams"]:
                addr, w = (u, 1) if isinstance(u, str) else (u["address"], u.get("weight", 1))
                lines.append(f"    server {addr} weight={w} max_fails={p.get('maxFails', 1)} "
                             f"fail_timeout={p.get('failTimeout', '10s')};")
            ka = p.get("keepalive", {})
            lines.append(f"    keepalive {ka.get('maxIdle', 32)};")
            lines.append(f"    keepalive_timeout {ka.get('idleTimeout', '4s')};")
            lines.append(f"    keepalive_requests {ka.get('maxRequests', 1000)};")
            lines.append("}")
            upstreams.append("\n".join(lines))
            host = p.get("host")
            loc = [f"location {r['match']} {{",
                   f"    proxy_pass http://u{i}{'/' if p.get('stripPrefix') else ''};",
                   "    proxy_http_version 1.1;",
                   "    proxy_set_header Connection $kuai_connection;",
                   "    proxy_set_header Upgrade $kuai_upgrade;",
                   f"    proxy_set_header Host {host or '$http_host'};",
                   "    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
                   "    proxy_set_header X-Forwarded-Proto $scheme;",
                   "    proxy_set_header X-Forwarded-Host $http_host;",
                   '    proxy_set_header Via "1.1 kuai";']
            loc += [f'    proxy_set_header {h} "";' for h in self.REQ_HOP_EXTRA]
            loc += [f"    proxy_hide_header {h};" for h in self.RESP_HOP_EXTRA]
            loc += [f"    proxy_connect_timeout {p.get('connectTimeout', '2s')};",
                    f"    proxy_send_timeout {p.get('sendTimeout', '30s')};",
                    f"    proxy_read_timeout {p.get('readTimeout', '30s')};",
                    "    proxy_next_upstream error;",
                    f"    proxy_next_upstream_tries {p.get('retries', 1) + 1};",
                    "    proxy_buffering off;",
                    "    proxy_request_buffering off;",
                    "}"]
            locations.append("\n".join("    " + l for l in loc))
        if not any(r["match"] == "/" for r in config["routes"]):
            locations.append("    location / { return 404; }")
        user = "user root;" if os.geteuid() == 0 else ""
        metrics = ""
        return f"""# generated by test_proxy.py from a kuai config
{user}
worker_processes {config.get('threads', 1)};
daemon off;
master_process on;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log info;
events {{ worker_connections 4096; }}
http {{
    {access}
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    client_max_body_size 0;
    keepalive_timeout 75s;
    keepalive_requests 100000;
    map $http_upgrade $kuai_upgrade {{ ~*^websocket$ websocket; default ""; }}
    map $http_upgrade $kuai_connection {{ ~*^websocket$ upgrade; default ""; }}
{chr(10).join(upstreams)}
    server {{
        listen 127.0.0.1:{self.port};{metrics}
{chr(10).join(locations)}
    }}
}}
"""


@pytest.fixture
def upstreams():
    """make(name) -> a started Upstream; all stopped at teardown."""
    made = []

    def make(name):
        u = Upstream(name).start()
        made.append(u)
        return u
    yield make
    for u in made:
        u.stop()


@pytest.fixture
def proxy(tmp_path):
    """start(routes, io, threads=1, logging=None, limits=None) -> a running proxy (kuai, or
    nginx under KUAI_PROXY_UNDER_TEST=nginx); stopped and checked at teardown."""
    started = []

    def start(routes, io, threads=1, logging=None, limits=None):
        d = tmp_path / f"proxy{len(started)}"
        d.mkdir()
        cfg = make_config(routes, io, free_port(), threads=threads, logging=logging,
                          limits=limits)
        p = (NginxProxy if UNDER == "nginx" else KuaiProxy)(d, cfg)
        started.append(p)
        return p.start()
    yield start
    errors = []
    for p in started:
        try:
            p.stop()
        except AssertionError as e:
            errors.append(str(e))
    if errors:
        pytest.fail("proxy did not stop cleanly:\n" + "\n".join(errors))


# --------------------------------------------------------------------------
# Client helpers

def fetch(port, method="GET", path="/hello", headers=(), body=b"", timeout=5.0, host="localhost"):
    """One request on a new connection; the final response."""
    with Conn(port, timeout=timeout) as c:
        c.send(build(method, path, headers=list(headers), body=body, host=host))
        _, r = c.read_final(head=method == "HEAD")
        return r


def body_headers(body):
    return [("Content-Length", str(len(body)))]


def who(r):
    return r.header("X-Upstream")


def read_raw_until_close(c, timeout):
    """Everything until the close (reset included); raises ResponseTimeout on a hang."""
    deadline = time.monotonic() + timeout
    while not c.eof:
        c._fill(deadline, what="the response or the close")
    return bytes(c.buf)


def classify_aborted(raw):
    """For a response the upstream broke off: ("502", None) when the proxy
    answered 502, ("aborted", detail) when the head came through but the body
    is visibly incomplete, ("complete", detail) when it looks complete (wrong)."""
    if b"\r\n\r\n" not in raw:
        return ("nothing" if not raw else "partial-head"), raw[:200]
    head, body = raw.split(b"\r\n\r\n", 1)
    status = int(head.split(b" ", 2)[1])
    if status == 502:
        return "502", None
    lower = head.lower()
    m = re.search(rb"\r\ncontent-length:\s*(\d+)", lower)
    if m:
        want = int(m.group(1))
        return ("aborted" if len(body) < want else "complete"), f"{len(body)} of {want} bytes"
    if b"chunked" in lower:
        # complete only with the last chunk
        p, got = 0, 0
        while True:
            nl = body.find(b"\r\n", p)
            if nl < 0:
                return "aborted", f"chunked, {got} bytes, no last chunk"
            size = int(body[p:nl].split(b";")[0], 16)
            if size == 0:
                return "complete", f"chunked, {got} bytes and the last chunk"
            if len(body) < nl + 2 + size + 2:
                return "aborted", f"chunked, cut inside a chunk after {got} bytes"
            got += size
            p = nl + 2 + size + 2
    return "close-delimited", f"{len(body)} bytes"


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


# --------------------------------------------------------------------------
# Headers

def echo_doc(r):
    assert r.status == 200 and r.content_type == "application/json", r
    return json.loads(r.body)


def hdr(doc, name):
    vals = [v for k, v in doc["headers"] if k.lower() == name.lower()]
    return vals


@kuai_only
def test_split_list_fields_reach_the_upstream_whole(proxy, upstreams, io):
    """X-Forwarded-For and Via split over several lines are one list each:
    the upstream gets all of the client's entries, then kuai's, in one field
    (the last line alone would lose the earlier hops)."""
    a = upstreams("a")
    p = proxy([proxy_route([a])], io)
    with Conn(p.port) as c:
        c.send(build("GET", "/echo", headers=[
            ("X-Forwarded-For", "203.0.113.7"), ("Via", "1.0 first"),
            ("X-Forwarded-For", "198.51.100.2, 192.0.2.9"), ("Via", "1.1 second")]))
        doc = echo_doc(c.read_response())
    assert hdr(doc, "X-Forwarded-For") == ["203.0.113.7, 198.51.100.2, 192.0.2.9, 127.0.0.1"], doc
    assert hdr(doc, "Via") == ["1.0 first, 1.1 second, 1.1 kuai"], doc


def test_forwarding_and_hop_by_hop_headers(proxy, upstreams, io):
    a = upstreams("a")
    p = proxy([proxy_route([a])], io)
    with Conn(p.port) as c:
        c.send(build("GET", "/echo?hop=1", host="example.test:8080", headers=[
            ("Connection", "keep-alive, X-Req-Hop"), ("Keep-Alive", "timeout=5"),
            ("Proxy-Connection", "keep-alive"), ("TE", "trailers"), ("Trailer", "X-Foo"),
            ("Upgrade", "h2c"), ("X-Req-Hop", "must-not-pass"),
            ("X-Forwarded-For", "203.0.113.7"), ("X-End", "kept")]))
        r = c.read_response()
        doc = echo_doc(r)
        # Request side.
        for h in ("Keep-Alive", "Proxy-Connection", "TE", "Trailer", "Upgrade", "X-Req-Hop"):
            assert not hdr(doc, h), f"{h} reached the upstream: {doc['headers']}"
        for v in hdr(doc, "Connection"):
            assert {t.strip().lower() for t in v.split(",")} <= {"keep-alive", "close"}, \
                f"client's Connection tokens reached the upstream: {v!r}"
        assert hdr(doc, "X-End") == ["kept"]
        assert hdr(doc, "Host") == ["example.test:8080"]
        xff = ", ".join(hdr(doc, "X-Forwarded-For"))
        assert re.fullmatch(r"203\.0\.113\.7,\s*127\.0\.0\.1", xff), xff
        assert hdr(doc, "X-Forwarded-Proto") == ["http"], doc["headers"]
        assert hdr(doc, "X-Forwarded-Host") in (["example.test:8080"], ["example.test"]), \
            doc["headers"]
        assert any("1.1 kuai" in v for v in hdr(doc, "Via")), doc["headers"]
        # Response side. (nginx: Upgrade is let through for WebSocket's 101,
        # and proxy_hide_header cannot depend on the status.)
        for h in ("Keep-Alive", "Proxy-Connection", "Trailer", "X-Resp-Hop") + (
                ("Upgrade",) if UNDER == "kuai" else ()):
            assert r.header(h) is None, f"{h} reached the client: {r!r}"
        assert not r.has_token("Connection", "x-resp-hop"), r
        assert r.header("X-Resp-End") == "kept", r
        # Still keep-alive.
        c.send(get("/echo"))
        doc = echo_doc(c.read_response())
        xff = hdr(doc, "X-Forwarded-For")
        assert xff == ["127.0.0.1"], xff


def test_host_rewrite_and_strip_prefix(proxy, upstreams, io):
    a, b = upstreams("a"), upstreams("b")
    p = proxy([proxy_route([a], match="/api/", host="backend.internal", stripPrefix=True),
               proxy_route([b], match="/keep/")], io)
    doc = echo_doc(fetch(p.port, path="/api/echo?x=1&y=%20", host="front.test"))
    assert doc["upstream"] == "a"
    assert doc["target"] == "/echo?x=1&y=%20", doc["target"]
    assert hdr(doc, "Host") == ["backend.internal"], doc["headers"]
    assert hdr(doc, "X-Forwarded-Host") in (["front.test"],), doc["headers"]
    r = fetch(p.port, path="/keep/echo?z", host="front.test")
    assert r.status == 404 and who(r) == "b", r
    rec = b.records()[-1]
    assert rec.target == "/keep/echo?z" and rec.header("Host") == "front.test", rec


# --------------------------------------------------------------------------
# Bodies

@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
def test_large_download(proxy, upstreams, io, framing):
    a = upstreams("a")
    p = proxy([proxy_route([a])], io)
    n = 20 * MiB if framing != "close" else 5 * MiB
    path = {"length": f"/bytes/{n}", "chunked": f"/chunked/{n}?size=65536",
            "close": f"/close-delimited/{n}"}[framing]
    with Conn(p.port, timeout=20) as c:
        c.send(get(path))
        r = c.read_response()
        assert r.status == 200, r
        assert len(r.body) == n and hashlib.sha256(r.body).hexdigest() == pattern_sha256(n)
        if framing == "chunked":
            assert r.has_token("Transfer-Encoding", "chunked"), r
        # The client connection survives (close-delimited upstream included).
        c.send(get("/hello"))
        assert c.read_response().status == 200


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_large_upload(proxy, upstreams, io, framing):
    a = upstreams("a")
    p = proxy([proxy_route([a])], io, limits={"bodyBytes": 64 * MiB})
    n = 20 * MiB
    sha = pattern_sha256(n)
    with Conn(p.port, timeout=20) as c:
        if framing == "length":
            c.send(build("POST", "/upload", headers=[("Content-Length", str(n))]))
            for piece in pattern_pieces(n):
                c.send(piece)
        else:
            c.send(build("POST", "/upload", headers=[("Transfer-Encoding", "chunked")]))
            for piece in pattern_pieces(n, piece=100_000):
                c.send(b"%x\r\n" % len(piece) + piece + b"\r\n")
            c.send(b"0\r\n\r\n")
        r = c.read_response(timeout=30)
        assert r.status == 200, r
        doc = json.loads(r.body)
        assert doc["length"] == n and doc["sha256"] == sha, doc


def test_slow_reader_bounded_memory(proxy, upstreams, io1):
    """A client reading a 50 MiB response slowly: the proxy holds back the
    upstream instead of buffering the body (RSS grows by far less than 50 MiB)."""
    a = upstreams("a")
    p = proxy([proxy_route([a])], io1)
    pids = p.worker_pids()
    for _ in range(2):  # warm up the buffers
        r = fetch(p.port, path=f"/bytes/{4 * MiB}", timeout=10)
        assert r.status == 200
    base = sum(vm_rss_kib(x) for x in pids)
    n = 50 * MiB
    with Conn(p.port, timeout=30, rcvbuf=32768) as c:
        c.send(get(f"/bytes/{n}"))
        while b"\r\n\r\n" not in c.buf:
            c._fill(time.monotonic() + 5)
        head, rest = bytes(c.buf).split(b"\r\n\r\n", 1)
        c.buf.clear()
        h = hashlib.sha256(rest)
        got = len(rest)
        peak = 0
        for _ in range(20):  # 2 s of reading very little
            time.sleep(0.1)
            peak = max(peak, sum(vm_rss_kib(x) for x in pids))
        grew = (peak - base) / 1024
        # Sanitizer builds hold freed memory in quarantine: no RSS bound there.
        if not SANITIZED:
            assert grew < 16, \
                f"proxy RSS grew by {grew:.1f} MiB with a slow reader of a 50 MiB body"
        deadline = time.monotonic() + 30
        while got < n:
            if not c._fill(deadline, what="the rest of the body"):
                break
            got += len(c.buf)
            h.update(c.buf)
            c.buf.clear()
    assert head.startswith(b"HTTP/1.1 200"), head
    assert got == n and h.hexdigest() == pattern_sha256(n), f"got {got} of {n} bytes"


def test_chunked_passthrough(proxy, upstreams, io):
    a = upstreams("a")
    p = proxy([proxy_route([a])], io)
    n = 300_000
    with Conn(p.port, timeout=10) as c:
        c.send(get(f"/chunked/{n}"))  # chunks of 1, 7, 100, ... 65536 bytes
        r = c.read_response()
        assert r.status == 200 and r.has_token("Transfer-Encoding", "chunked"), r
        assert hashlib.sha256(r.body).hexdigest() == pattern_sha256(n)
        assert r.header("Content-Length") is None, r


def test_streaming_not_buffered(proxy, upstreams, io):
    """The first piece of a slow body reaches the client before the rest exists."""
    a = upstreams("a")
    p = proxy([proxy_route([a])], io)
    for chunked_ in ("0", "1"):
        with Conn(p.port, timeout=10) as c:
            t = time.monotonic()
            c.send(get(f"/drip?n=5&ms=400&size=50&chunked={chunked_}"))
            while True:
                c._fill(time.monotonic() + 5)
                i = bytes(c.buf).find(b"\r\n\r\n")
                if i >= 0 and len(c.buf) > i + 4 + (10 if chunked_ == "1" else 0):
                    break
            first = time.monotonic() - t
            r = c.read_response()
            total = time.monotonic() - t
            assert r.status == 200 and len(r.body) == 250, r
            assert first < 1.2 and total > 1.8, \
                f"first body bytes after {first:.2f} s, all after {total:.2f} s (chunked={chunked_})"


def test_head_204_304(proxy, upstreams, io):
    a = upstreams("a")
    p = proxy([proxy_route([a])], io)
    with Conn(p.port) as c:
        c.send(build("HEAD", "/bytes/1000"))
        r = c.read_response(head=True)
        assert r.status == 200 and r.header("Content-Length") == "1000" and r.body == b"", r
        c.send(get("/status/204"))
        r = c.read_response()
        assert r.status == 204 and r.body == b"", r
        assert r.header("Content-Length") in (None, "0") and r.header("Transfer-Encoding") is None
        c.send(get("/status/304", headers=[("If-None-Match", '"v1"')]))
        r = c.read_response()
        assert r.status == 304 and r.body == b"" and r.header("ETag") == '"v1"', r
        assert r.header("Transfer-Encoding") is None, r
        c.send(build("HEAD", "/chunked/5000"))
        r = c.read_response(head=True)
        assert r.status == 200 and r.body == b"", r
        # Nothing stray was left on the connection: the next answer is right.
        c.send(get("/hello"))
        r = c.read_response()
        assert r.status == 200 and r.body == b"hello from a\n", r
        c.expect_silence(0.2)


def test_expect_100_continue(proxy, upstreams, io):
    a = upstreams("a")
    p = proxy([proxy_route([a])], io)
    body = b"q" * 100_000
    with Conn(p.port) as c:
        c.send(build("POST", "/upload", headers=[("Content-Length", str(len(body))),
                                                 ("Expect", "100-continue")]))
        r = c.read_response(timeout=3)
        assert r.status == 100, f"no 100 Continue before the body: {r!r}"
        c.send(body)
        _, r = c.read_final()
        assert r.status == 200, r
        doc = json.loads(r.body)
        assert doc["length"] == len(body) and doc["sha256"] == hashlib.sha256(body).hexdigest()


def test_websocket(proxy, upstreams, io):
    a = upstreams("a")
    p = proxy([proxy_route([a])], io)
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    with Conn(p.port, timeout=5) as c:
        c.send(build("GET", "/ws", headers=[("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                            ("Sec-WebSocket-Key", key),
                                            ("Sec-WebSocket-Version", "13")]))
        while b"\r\n\r\n" not in c.buf:
            c._fill(time.monotonic() + 5)
        head, rest = bytes(c.buf).split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head
        assert f"sec-websocket-accept: {ws_accept_for(key)}".encode() in head.lower() \
            or f"Sec-WebSocket-Accept: {ws_accept_for(key)}".encode() in head, head
        assert b"upgrade: websocket" in head.lower(), head
        # Frames over the tunnel, with the socket read directly.
        c.sock.settimeout(5)
        reader = _Reader(c.sock)
        reader.buf += rest
        mask = b"\x11\x22\x33\x44"
        big = bytes(range(256)) * 400  # 102,400 bytes: a 64-bit length
        for opcode, payload in ((0x1, b"hello"), (0x2, big), (0x1, b"x" * 300)):
            c.sock.sendall(ws_frame(opcode, payload, mask=mask))
            fin, op, got = ws_read_frame(reader)
            assert (fin, op, got) == (True, opcode, payload)
        c.sock.sendall(ws_frame(0x9, b"pi", mask=mask))
        assert ws_read_frame(reader) == (True, 0xA, b"pi")
        c.sock.sendall(ws_frame(0x8, b"\x03\xe8", mask=mask))
        assert ws_read_frame(reader) == (True, 0x8, b"\x03\xe8")
        # Then the tunnel closes.
        c.buf = bytearray(reader.buf)
        read_raw_until_close(c, timeout=5)


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
