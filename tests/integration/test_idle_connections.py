"""10,000 idle keep-alive connections (the benchmark's RSS case, as a test):
kuai keeps them all, still answers a new one at once, holds them in bounded
memory, closes them all promptly on SIGTERM and exits 0."""

from __future__ import annotations

import resource
import signal
import socket
import time

import pytest

from httpraw import Conn, get

N = 10_000


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_ten_thousand_idle_connections(kuai, io):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < N + 500:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {N + 500}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    s = kuai("--idle-timeout", "60s", "--threads", "2")
    socks = []
    try:
        request = get("/index.html")
        for i in range(N):
            c = socket.create_connection(("127.0.0.1", s.port), timeout=10)
            c.sendall(request)
            socks.append(c)
        # Every one gets its answer and stays open.
        for c in socks:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = c.recv(65536)
                assert chunk, "a connection closed instead of answering"
                data += chunk
            assert data.startswith(b"HTTP/1.1 200"), data[:100]
        time.sleep(0.5)
        with Conn(s.port, timeout=5) as fresh:
            fresh.send(get("/index.html"))
            assert fresh.read_response().status == 200
        rss = rss_kib(s.proc.pid)
        limit = 200 * 1024 if not __import__("os").environ.get("KUAI_SANITIZED") else 2 * 1024 * 1024
        assert rss < limit, f"RSS {rss // 1024} MiB with {N} idle connections"
        # A connection from the first batch is still usable.
        socks[0].sendall(request)
        assert socks[0].recv(65536).startswith(b"HTTP/1.1 200")
        t0 = time.monotonic()
        s.send_signal(signal.SIGTERM)
        s.wait(timeout=15)
        took = time.monotonic() - t0
        assert took < 10, f"{took:.1f} s to close {N} idle connections and exit"
        s.check_clean()
    finally:
        for c in socks:
            c.close()
