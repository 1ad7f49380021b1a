"""Serving from a config file: several listeners (plain and TLS) in one
process, route matching (prefix, exact, host, method, first match wins, the
mount point of static routes), the metrics endpoint and the access log, and a
SIGHUP that swaps the routes while the listeners stay."""

from __future__ import annotations

import json
import re
import signal
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import KuaiServer, make_certs


def listeners(server):
    """[(scheme, port)] from the banner lines, one per listener."""
    deadline = time.monotonic() + 10
    while True:
        found = re.findall(r"serving \d+ routes? on (https?)://127\.0\.0\.1:(\d+)", server.stdout())
        if len(found) >= server.expected or time.monotonic() > deadline:
            return [(s, int(p)) for s, p in found]
        time.sleep(0.05)


def fetch(url, method="GET", host=None, context=None):
    headers = {"Host": host} if host else {}
    req = urllib.request.Request(url, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10, context=context) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture
def site(tmp_path):
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "f.txt").write_text(f"root {name}\n")
        (tmp_path / name / "g.txt").write_text(f"g {name}\n")
    return tmp_path


def start(site, logdir, config, expected=1):
    path = site / "kuai.config.json"
    path.write_text(json.dumps(config))
    s = KuaiServer(["--config", str(path)], logdir)
    s.expected = expected
    return s.start(), path


ROUTES = [
    {"match": "/f.txt", "exact": True, "static": "./c"},
    {"match": "/m/", "methods": ["POST"], "static": "./c"},
    {"match": "/m/", "static": "./a"},
    {"match": "/h/", "host": "kuai.test", "static": "./c"},
    {"match": "/h/", "static": "./a"},
    {"match": "/", "static": "./b"},
]


def test_two_listeners_plain_and_tls(site, logdir, tmp_path_factory):
    certs = make_certs(tmp_path_factory.mktemp("certs"))
    config = {"threads": 2, "listen": [
        {"port": 0}, {"port": 0, "tls": {"cert": str(certs.ecdsa), "key": str(certs.ecdsa_key)}}],
        "routes": [{"match": "/", "static": "./a"}]}
    s, _ = start(site, logdir, config, expected=2)
    try:
        ls = listeners(s)
        assert [x[0] for x in ls] == ["http", "https"], s.stdout()
        ctx = ssl.create_default_context(cafile=str(certs.ca))
        assert fetch(f"http://127.0.0.1:{ls[0][1]}/f.txt") == (200, b"root a\n")
        assert fetch(f"https://localhost:{ls[1][1]}/f.txt", context=ctx) == (200, b"root a\n")
    finally:
        s.stop()
    s.check_clean()


def test_route_matching(site, logdir):
    s, _ = start(site, logdir, {"threads": 1, "listen": [0], "routes": ROUTES})
    base = f"http://127.0.0.1:{s.port}"
    try:
        # exact: the path itself, whatever the query; first match wins
        assert fetch(f"{base}/f.txt?x=1") == (200, b"root c\n")
        assert fetch(f"{base}/g.txt") == (200, b"g b\n")
        assert fetch(f"{base}/f.txt/more")[0] == 404  # not exact: "/" (b) has no such file
        # static routes are mount points: /m/g.txt is g.txt in the route's root
        assert fetch(f"{base}/m/g.txt") == (200, b"g a\n")
        # methods: POST goes to the first /m/ route (static answers GET/HEAD only)
        assert fetch(f"{base}/m/g.txt", method="POST")[0] == 405
        # host (port ignored, any case)
        assert fetch(f"{base}/h/g.txt", host="KUAI.test:8080") == (200, b"g c\n")
        assert fetch(f"{base}/h/g.txt", host="other.test") == (200, b"g a\n")
    finally:
        s.stop()
    s.check_clean()


def test_metrics_and_access_log(site, logdir):
    log = site / "access.log"
    s, _ = start(site, logdir, {"threads": 2, "listen": [0], "routes": [{"static": "./a"}],
                                "logging": {"access": str(log), "metrics": "/metrics"}})
    base = f"http://127.0.0.1:{s.port}"
    try:
        for _ in range(3):
            assert fetch(f"{base}/f.txt")[0] == 200
        assert fetch(f"{base}/missing")[0] == 404
        status, body = fetch(f"{base}/metrics")
        text = body.decode()
        assert status == 200
        assert 'kuai_requests_total{code="200"} 3' in text, text
        assert 'kuai_requests_total{code="404"} 1' in text, text
        assert "kuai_request_duration_seconds_count 4" in text, text
        assert re.search(r"^kuai_open_connections \d+$", text, re.M), text
        # Written while kuai runs (batched per reactor, not only at exit).
        deadline = time.monotonic() + 5
        lines = []
        while len(lines) < 5:
            assert time.monotonic() < deadline, f"the access log has {lines} while kuai runs"
            time.sleep(0.05)
            lines = log.read_text().splitlines() if log.exists() else []
    finally:
        s.stop()
    s.check_clean()
    lines = log.read_text().splitlines()
    assert len(lines) == 5, lines  # the metrics request too
    pat = re.compile(r'^127\.0\.0\.1 - - \[\d\d/\w\w\w/\d{4}:\d\d:\d\d:\d\d \+0000\] '
                     r'"GET /f\.txt HTTP/1\.1" 200 7 "-" "Python-urllib/[\d.]+"$')
    assert sum(1 for l in lines if pat.match(l)) == 3, lines
    assert any('"GET /missing HTTP/1.1" 404 ' in l for l in lines), lines


def test_sighup_swaps_routes(site, logdir):
    s, path = start(site, logdir, {"threads": 2, "listen": [0], "routes": [{"static": "./a"}]})
    base = f"http://127.0.0.1:{s.port}"
    try:
        assert fetch(f"{base}/f.txt") == (200, b"root a\n")
        path.write_text(json.dumps({"threads": 2, "listen": [0], "routes": [{"static": "./c"}]}))
        s.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while fetch(f"{base}/f.txt") != (200, b"root c\n"):
            assert time.monotonic() < deadline, "the new routes never answered"
            time.sleep(0.05)
        # A broken file keeps the routes in use.
        path.write_text('{"listen": [0], "routes": [{"static": "./nope"}]}')
        s.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while "keeping the old configuration" not in s.stderr():
            assert time.monotonic() < deadline, f"the broken file was not read: {s.stderr()[-2000:]}"
            time.sleep(0.05)
        assert fetch(f"{base}/f.txt") == (200, b"root c\n")
    finally:
        s.stop()
    s.check_clean()


def test_the_example_config_checks(logdir):
    """examples/kuai.config.js (the README's shape) passes --check-config."""
    from conftest import KUAI, REPO
    p = subprocess.run([KUAI, "--check-config", str(REPO / "examples" / "kuai.config.js")],
                       capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr
    assert "ok (1 listener, 3 routes)" in p.stdout, p.stdout
