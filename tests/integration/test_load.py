"""Bounded load sanity: many concurrent keep-alive connections, and wrk."""

import re
import shutil
import subprocess
import threading

import pytest

from conftest import HELLO_BODY
from httpraw import Conn, get

CONNS = 200
PER_CONN = 20


def test_concurrent_keep_alive(server):
    barrier = threading.Barrier(CONNS, timeout=20)
    results = [None] * CONNS

    def worker(i):
        try:
            with Conn(server.port, timeout=20) as c:
                barrier.wait()  # all connections open at the same time
                ok = 0
                for _ in range(PER_CONN):
                    c.send(get("/hello" if i % 2 else "/index.html"))
                    r = c.read_response()
                    if r.status == 200 and not r.has_token("Connection", "close"):
                        ok += 1
                results[i] = ok
        except Exception as e:  # noqa: BLE001 - reported below
            results[i] = repr(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(CONNS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "workers still running after 60s"
    bad = [(i, r) for i, r in enumerate(results) if r != PER_CONN]
    assert not bad, f"{len(bad)} of {CONNS} connections failed, e.g. {bad[:5]}"


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_wrk(server):
    p = subprocess.run(["wrk", "-t1", "-c32", "-d2s", "--timeout", "2s",
                        f"http://127.0.0.1:{server.port}/hello"],
                       capture_output=True, text=True, timeout=30)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    m = re.search(r"(\d+) requests in", out)
    assert m and int(m.group(1)) > 0, out
    se = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    assert se is None or all(int(x) == 0 for x in se.groups()), out
    n2 = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    assert n2 is None or int(n2.group(1)) == 0, out
    # The server is still fine afterwards.
    with Conn(server.port) as c:
        c.send(get("/hello"))
        assert c.read_response().body == HELLO_BODY.encode()
