"""kuai's proxy in front of a real nginx origin: nginx names the upstream
connection each request came on ($connection / $connection_requests), so pool
reuse is seen from the origin's side; files served by nginx come through
intact (sha256) whatever their size; nginx's keep-alive limits close pooled
connections under the proxy, which must not fail a request."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import KUAI, KuaiServer, free_port
from httpraw import Conn, get

NGINX = os.environ.get("NGINX_BIN", "/usr/sbin/nginx")
pytestmark = pytest.mark.skipif(not Path(NGINX).exists(), reason="nginx not installed")




@pytest.fixture
def origin(tmp_path):
    """nginx on a free port: /conn answers which connection it came on,
    /files/ serves a directory; keepalive_requests 50 and a 2 s idle timeout."""
    root = tmp_path / "files"
    root.mkdir()
    big = (bytes(range(256)) * 4096 * 9)[: 9 * 1024 * 1024 + 7]  # ~9 MiB, odd size
    (root / "big.bin").write_bytes(big)
    (root / "small.txt").write_text("small file\n")
    port = free_port()
    conf = tmp_path / "nginx.conf"
    # As root, the workers keep root's access to pytest's private tmp dirs.
    user = "user root;" if os.geteuid() == 0 else ""
    conf.write_text(f"""
{user}
worker_processes 1;
daemon off;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {tmp_path}/t1; proxy_temp_path {tmp_path}/t2;
  fastcgi_temp_path {tmp_path}/t3; uwsgi_temp_path {tmp_path}/t4; scgi_temp_path {tmp_path}/t5;
  keepalive_requests 50;
  keepalive_timeout 2s;
  server {{
    listen 127.0.0.1:{port};
    location /conn {{
      default_type application/json;
      return 200 '{{"conn": $connection, "n": $connection_requests}}';
    }}
    location /files/ {{ alias {root}/; }}
  }}
}}
""")
    proc = subprocess.Popen([NGINX, "-p", str(tmp_path), "-c", str(conf), "-e",
                             str(tmp_path / "error.log")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 5
    while True:
        try:
            with Conn(port, timeout=1) as c:
                c.send(get("/conn"))
                c.read_response()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("nginx origin did not start")
            time.sleep(0.05)
    yield port, hashlib.sha256(big).hexdigest(), len(big)
    proc.terminate()
    proc.wait(timeout=10)


def start_proxy(tmp_path, logdir, origin_port, threads, io, max_idle=4):
    cfg = {"threads": threads, "io": io, "listen": [{"port": 0}],
           "routes": [{"match": "/", "proxy": {
               "upstreams": [f"127.0.0.1:{origin_port}"],
               "keepalive": {"maxIdle": max_idle, "idleTimeout": "1500ms", "maxRequests": 1000}}}]}
    path = tmp_path / "kuai.config.json"
    path.write_text(json.dumps(cfg))
    return KuaiServer(["--config", str(path)], logdir).start()


@pytest.mark.parametrize("io", ["uring", "epoll"])
def test_pool_reuse_seen_by_nginx(tmp_path, logdir, origin, io):
    port, _, _ = origin
    threads, max_idle = 2, 4
    kuai = start_proxy(tmp_path, logdir, port, threads, io, max_idle)
    seen = set()
    errors = []
    lock = threading.Lock()

    def client():
        try:
            with Conn(kuai.port, timeout=10) as c:
                for _ in range(500):
                    c.send(get("/conn"))
                    r = c.read_response()
                    assert r.status == 200, r
                    doc = json.loads(r.body)
                    with lock:
                        seen.add(doc["conn"])
                    if r.header("Connection", "").lower() == "close":
                        break
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    workers = [threading.Thread(target=client) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    try:
        assert not errors, errors[:3]
        # 2,000 requests; nginx closes each upstream connection after 50, so
        # at least 40 connections, and with reuse not many more than that.
        assert 40 <= len(seen) <= 40 + threads * max_idle * 2, len(seen)
    finally:
        kuai.stop()
    kuai.check_clean()


def test_files_through_the_proxy_by_hash(tmp_path, logdir, origin):
    port, digest, size = origin
    kuai = start_proxy(tmp_path, logdir, port, 1, "uring")
    try:
        for _ in range(3):  # on one keep-alive client connection, pooled upstream
            with Conn(kuai.port, timeout=20) as c:
                c.send(get("/files/big.bin"))
                r = c.read_response(timeout=30)
                assert r.status == 200 and len(r.body) == size
                assert hashlib.sha256(r.body).hexdigest() == digest
                c.send(get("/files/small.txt"))
                r = c.read_response()
                assert r.status == 200 and r.body == b"small file\n"
                c.send(get("/files/missing"))
                assert c.read_response().status == 404
    finally:
        kuai.stop()
    kuai.check_clean()


def test_idle_pool_outlived_by_nginx_timeout(tmp_path, logdir, origin):
    """nginx drops idle connections after 2 s; kuai's pool lets go after 1.5 s,
    and a request after 3 s of quiet still succeeds."""
    port, _, _ = origin
    kuai = start_proxy(tmp_path, logdir, port, 1, "uring")
    try:
        for pause in (0, 3.0, 0):
            time.sleep(pause)
            with Conn(kuai.port, timeout=10) as c:
                c.send(get("/conn"))
                assert c.read_response().status == 200
    finally:
        kuai.stop()
    kuai.check_clean()
