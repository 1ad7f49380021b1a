"""The harness of the reverse-proxy tests (test_proxy.py, test_proxy_messages.py,
test_proxy_operations.py): `kuai --config FILE` with proxy routes in front of
the test upstreams of upstream.py (in-process, 127.0.0.1, free ports).

    KUAI_BIN=bazel-bin/kuai python3 -m pytest -q tests/integration/test_proxy*.py
    KUAI_PROXY_UNDER_TEST=nginx KUAI_BIN=/bin/true python3 -m pytest -q \
        tests/integration/test_proxy*.py    # against nginx (no kuai needed)

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

import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import KUAI, SANITIZER_MARKERS, free_port
from httpraw import Conn, build
from upstream import Upstream

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
