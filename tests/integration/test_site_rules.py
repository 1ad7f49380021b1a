"""Site rules a web server in front of a real site needs on day one: dotfiles
hidden by default, a single-page app's fallback and a site's 404 page, per-route response headers (set / append / remove, on
every kind of route and its error pages), redirects with $host, $path and
$query, and per-client rate limits (429 with Retry-After)."""

from __future__ import annotations

import gzip
import json
import socket
import subprocess
import time
from pathlib import Path

import brotli
import pytest

from conftest import KUAI, KuaiServer
from httpraw import Conn, build, get, roundtrip
from upstream import Upstream
from h2client import H2Client


def start_config(tmp_path, logdir, config, extra=()):
    path = tmp_path / "kuai.config.json"
    path.write_text(json.dumps(config))
    return KuaiServer(["--config", str(path), *extra], logdir).start()


def project(tmp_path: Path) -> Path:
    """A project folder as `kuai serve .` would see it."""
    root = tmp_path / "site"
    (root / ".git").mkdir(parents=True)
    (root / ".git" / "config").write_text("[core]\n")
    (root / ".env").write_text("DB_PASSWORD=hunter2\n")
    (root / ".htpasswd").write_text("admin:x\n")
    (root / ".well-known" / "acme-challenge").mkdir(parents=True)
    (root / ".well-known" / "acme-challenge" / "tok").write_text("token\n")
    (root / "assets").mkdir()
    (root / "assets" / "app.js").write_text("console.log(1)\n")
    (root / "assets" / ".secret").write_text("s\n")
    (root / "index.html").write_text("<h1>home</h1>\n")
    return root


# ---------------------------------------------------------------- dotfiles

def test_serve_hides_dotfiles_by_default(tmp_path, logdir):
    root = project(tmp_path)
    (root / "index.html").unlink()
    s = KuaiServer(["serve", str(root), "--port", "0", "--list"], logdir).start()
    try:
        for path in ("/.env", "/.git/config", "/.git/", "/.htpasswd", "/assets/.secret", "/%2eenv",
                     "/assets/../.env"):
            r = roundtrip(s.port, get(path))
            assert r.status == 404, (path, r)
            assert b"hunter2" not in r.body
        assert roundtrip(s.port, get("/.well-known/acme-challenge/tok")).body == b"token\n"
        assert roundtrip(s.port, get("/assets/app.js")).status == 200
        listing = roundtrip(s.port, get("/")).body.decode()
        assert "app.js" not in listing and "assets/" in listing, listing
        for name in (".env", ".git", ".htpasswd"):
            assert name not in listing, listing
        assert ".well-known/" in listing
        assert ".secret" not in roundtrip(s.port, get("/assets/")).body.decode()
    finally:
        s.stop()


def test_dotfiles_flag_and_config(tmp_path, logdir):
    root = project(tmp_path)
    s = KuaiServer(["serve", str(root), "--port", "0", "--dotfiles"], logdir).start()
    try:
        assert roundtrip(s.port, get("/.env")).body == b"DB_PASSWORD=hunter2\n"
        assert roundtrip(s.port, get("/.git/config")).status == 200
    finally:
        s.stop()
    for mode, status in (("allow", 200), ("deny", 403), ("ignore", 404)):
        s = start_config(tmp_path, logdir, {"listen": [{"port": 0}], "routes": [
            {"match": "/", "static": {"root": str(root), "dotfiles": mode}}]})
        try:
            assert roundtrip(s.port, get("/.env")).status == status, mode
            assert roundtrip(s.port, get("/index.html")).status == 200
        finally:
            s.stop()


# ---------------------------------------------------------------- pages

def test_fallback_serves_a_single_page_app(tmp_path, logdir):
    root = project(tmp_path)
    s = KuaiServer(["serve", str(root), "--port", "0", "--fallback", "index.html"], logdir).start()
    try:
        for path in ("/users/42", "/deep/link/here?tab=2", "/.env", "/missing.css"):
            r = roundtrip(s.port, get(path, headers=[("Accept-Encoding", "identity")]))
            assert r.status == 200 and r.body == b"<h1>home</h1>\n", (path, r)
            assert r.content_type == "text/html", (path, r)
        assert roundtrip(s.port, get("/assets/app.js")).body == b"console.log(1)\n"
        # Compressed answers: a file with no precompressed sibling is still
        # itself (the sibling's lookup is not answered by the fallback), and
        # the page for a missing path compresses the page.
        etag = roundtrip(s.port, get("/")).header("ETag")
        r = roundtrip(s.port, get("/users/42", headers=[("If-None-Match", etag)]))
        assert r.status == 304, r
        r = roundtrip(s.port, build("POST", "/users/42", body=b"x"))
        assert r.status == 405, r
    finally:
        s.stop()
    # Compressed answers: a file with no precompressed sibling is still
    # itself (the sibling's lookup is not answered by the fallback page), and
    # a missing path gets the page compressed.
    page = "<html>" + "<p>app shell</p>\n" * 100 + "</html>\n"
    (root / "app.html").write_text(page)
    (root / "assets" / "big.js").write_text("var x = 1;\n" * 400)
    s = KuaiServer(["serve", str(root), "--port", "0", "--fallback", "/app.html"], logdir).start()
    try:
        for path, want in (("/assets/big.js", "var x = 1;\n" * 400), ("/users/7", page), ("/users/8", page),
                           ("/assets/app.js", "console.log(1)\n")):
            for encoding in ("gzip", "br"):
                r = roundtrip(s.port, get(path, headers=[("Accept-Encoding", encoding)]))
                assert r.status == 200, (path, r)
                got = r.body
                if r.header("Content-Encoding") == "gzip":
                    got = gzip.decompress(got)
                elif r.header("Content-Encoding") == "br":
                    got = brotli.decompress(got)
                assert got.decode() == want, (path, encoding, r)
            assert r.header("Content-Encoding") == ("br" if len(want) > 256 else None), (path, r)
    finally:
        s.stop()


def test_not_found_page_and_config(tmp_path, logdir):
    root = project(tmp_path)
    (root / "404.html").write_text("<h1>nothing here</h1>\n")
    s = start_config(tmp_path, logdir, {"listen": [{"port": 0}], "routes": [
        {"match": "/", "static": {"root": str(root), "notFound": "/404.html"},
         "headers": {"set": {"X-Site": "1"}}}]})
    try:
        with Conn(s.port) as c:
            c.send(get("/nope") + build("HEAD", "/nope") + get("/index.html"))
            r = c.read_response()
            assert r.status == 404 and r.body == b"<h1>nothing here</h1>\n", r
            assert r.content_type == "text/html" and r.header("X-Site") == "1", r
            h = c.read_response(head=True)
            assert h.status == 404 and h.header("Content-Length") == str(len(r.body)), h
            assert c.read_response().body == b"<h1>home</h1>\n"
    finally:
        s.stop()
    # A config that names a page that is not there does not start.
    path = tmp_path / "bad.config.json"
    path.write_text(json.dumps({"listen": [{"port": 0}], "routes": [
        {"match": "/", "static": {"root": str(root), "fallback": "app.html"}}]}))
    p = subprocess.run([KUAI, "--config", str(path)], capture_output=True, text=True, timeout=20)
    assert p.returncode != 0, p
    assert f"routes[0].static.fallback: app.html: no such file under {root}" in p.stderr, p.stderr
    p = subprocess.run([KUAI, "serve", str(root), "--port", "0", "--not-found", "missing.html"],
                       capture_output=True, text=True, timeout=20)
    assert p.returncode != 0, p
    assert f"option --not-found: missing.html: no such file under {root}" in p.stderr, p.stderr


# ---------------------------------------------------------------- headers

RULES = {"set": {"Cache-Control": "public, max-age=31536000, immutable",
                 "Strict-Transport-Security": "max-age=63072000",
                 "Content-Type": "text/x-custom"},
         "append": {"Vary": "Origin", "X-Extra": "one"},
         "remove": ["X-Upstream", "X-Request-Count", "server"]}


@pytest.fixture
def origin():
    u = Upstream("o").start()
    yield u
    u.stop()


def test_header_rules_on_static_proxy_and_errors(tmp_path, logdir, origin):
    root = project(tmp_path)
    s = start_config(tmp_path, logdir, {"listen": [{"port": 0}], "routes": [
        {"match": "/api/", "proxy": {"upstreams": [origin.address], "stripPrefix": True}, "headers": RULES},
        {"match": "/plain/", "proxy": {"upstreams": [origin.address], "stripPrefix": True}},
        {"match": "/", "static": {"root": str(root)}, "headers": RULES},
    ]})
    try:
        for path in ("/index.html", "/api/hello", "/missing.txt"):
            r = roundtrip(s.port, get(path))
            assert r.header("Cache-Control") == "public, max-age=31536000, immutable", (path, r)
            assert r.header("Strict-Transport-Security") == "max-age=63072000", (path, r)
            assert r.headers_named("Content-Type") == ["text/x-custom"], (path, r)
            assert r.headers_named("X-Extra") == ["one"], (path, r)
            assert r.header("Server") is None, (path, r)
            assert r.header("X-Upstream") is None and r.header("X-Request-Count") is None, (path, r)
            assert r.header("Date") and r.header("Content-Length"), (path, r)
        r = roundtrip(s.port, get("/api/hello"))
        assert r.status == 200 and r.body == b"hello from o\n"
        assert r.header("X-Conn-Id") is not None  # not in the rules: kept
        assert roundtrip(s.port, get("/missing.txt")).status == 404
        # HEAD and 304 get them too; the body rules are the protocol's.
        etag = roundtrip(s.port, get("/index.html")).header("ETag")
        r = roundtrip(s.port, get("/index.html", headers=[("If-None-Match", etag)]))
        assert r.status == 304 and r.header("Cache-Control").startswith("public"), r
        # A route without rules is untouched.
        r = roundtrip(s.port, get("/plain/hello"))
        assert r.header("X-Upstream") == "o" and r.header("X-Extra") is None and r.header("Cache-Control") is None, r
    finally:
        s.stop()


def test_header_rules_over_http2(tmp_path, logdir):
    root = project(tmp_path)
    s = start_config(tmp_path, logdir, {"listen": [{"port": 0, "http2": "h2c"}], "routes": [
        {"match": "/", "static": {"root": str(root)}, "headers": RULES}]})
    try:
        c = H2Client(s.port)
        try:
            h, body, ended = c.response(c.request("/index.html", scheme="http"))
        finally:
            c.close()
        assert h[":status"] == "200" and ended
        assert h["cache-control"] == "public, max-age=31536000, immutable"
        assert h["content-type"] == "text/x-custom" and h["x-extra"] == "one"
        assert "server" not in h
        assert body == b"<h1>home</h1>\n"
    finally:
        s.stop()


def test_append_keeps_the_handlers_field(tmp_path, logdir, origin):
    s = start_config(tmp_path, logdir, {"listen": [{"port": 0}], "routes": [
        {"match": "/", "proxy": {"upstreams": [origin.address]}, "headers": {"append": {"X-Upstream": "edge"}}}]})
    try:
        r = roundtrip(s.port, get("/hello"))
        assert r.headers_named("X-Upstream") == ["o", "edge"], r
    finally:
        s.stop()


@pytest.mark.parametrize("rules,message", [
    ({"set": {"Content-Length": "5"}}, "routes[0].headers.set.Content-Length: Content-Length is written by the protocol"),
    ({"remove": ["Connection"]}, "routes[0].headers.remove[0]: Connection is written by the protocol"),
    ({"set": {"Bad Name": "x"}}, 'routes[0].headers.set.Bad Name: "Bad Name" is not a valid field name'),
    ({"set": {"X-A": "a\r\nInjected: 1"}}, "routes[0].headers.set.X-A: expected a string without control characters"),
    ({"sett": {}}, 'routes[0].headers.sett: unknown key (did you mean "set"?)'),
])
def test_header_rule_errors(tmp_path, rules, message):
    path = tmp_path / "kuai.config.json"
    path.write_text(json.dumps({"listen": [{"port": 0}], "routes": [
        {"match": "/", "static": str(tmp_path), "headers": rules}]}))
    p = subprocess.run([KUAI, "--config", str(path)], capture_output=True, text=True, timeout=30)
    assert p.returncode != 0
    assert message in p.stderr, p.stderr
    assert str(path) in p.stderr, p.stderr


# ---------------------------------------------------------------- redirects

def test_redirect_substitutions(tmp_path, logdir):
    root = project(tmp_path)
    s = start_config(tmp_path, logdir, {"listen": [{"port": 0}], "routes": [
        {"match": "/", "host": "www.example.com", "redirect": {"to": "https://example.com$path$query", "status": 301}},
        {"match": "/old/", "redirect": {"to": "/new/?from=$host", "status": 308}},
        {"match": "/go", "exact": True, "redirect": "https://$host:8443$path$query"},
        {"match": "/", "static": str(root)},
    ]})
    try:
        r = roundtrip(s.port, get("/a/b%20c.html?x=1&y=2", host="www.example.com:8080"))
        assert r.status == 301 and r.header("Location") == "https://example.com/a/b%20c.html?x=1&y=2", r
        assert r.body == b"301 Moved Permanently\n"
        r = roundtrip(s.port, get("/", host="WWW.EXAMPLE.COM"))
        assert r.status == 301 and r.header("Location") == "https://example.com/", r
        r = roundtrip(s.port, build("HEAD", "/x", host="www.example.com"), head=True)
        assert r.status == 301 and r.header("Location") == "https://example.com/x" and r.body == b""
        r = roundtrip(s.port, build("POST", "/old/thing", host="kuai.test", body=b"abc",
                                    headers=[("Content-Length", "3")]))
        assert r.status == 308 and r.header("Location") == "/new/?from=kuai.test", r
        r = roundtrip(s.port, get("/go?q=%3F", host="[::1]:8080"))
        assert r.status == 302 and r.header("Location") == "https://[::1]:8443/go?q=%3F", r
        r = roundtrip(s.port, get("/go", host="kuai.test"))
        assert r.header("Location") == "https://kuai.test:8443/go", r
        # No Host to put in $host (HTTP/1.0 without one): 400, not a broken Location.
        r = roundtrip(s.port, build("GET", "/go", version="HTTP/1.0", host=None))
        assert r.status == 400, r
        # Other hosts reach the files.
        assert roundtrip(s.port, get("/index.html", host="example.com")).status == 200
    finally:
        s.stop()


@pytest.mark.parametrize("redirect,message", [
    ({"to": "/x", "status": 200}, "routes[0].redirect.status: expected one of 301, 302, 303, 307, 308, got 200"),
    ({"status": 301}, "routes[0].redirect.to: required"),
    ({"to": "/a b"}, "routes[0].redirect.to: expected a URL without spaces or control characters"),
])
def test_redirect_errors(tmp_path, redirect, message):
    path = tmp_path / "kuai.config.json"
    path.write_text(json.dumps({"listen": [{"port": 0}], "routes": [{"match": "/", "redirect": redirect}]}))
    p = subprocess.run([KUAI, "--config", str(path)], capture_output=True, text=True, timeout=30)
    assert p.returncode != 0 and message in p.stderr, p.stderr


def test_route_needs_one_answer(tmp_path):
    path = tmp_path / "kuai.config.json"
    path.write_text(json.dumps({"listen": [{"port": 0}], "routes": [
        {"match": "/", "redirect": "/x", "static": str(tmp_path)}]}))
    p = subprocess.run([KUAI, "--config", str(path)], capture_output=True, text=True, timeout=30)
    assert p.returncode != 0 and "expected only one of static, proxy, app or redirect" in p.stderr, p.stderr


# ---------------------------------------------------------------- rate limits

def burst(port, n, path="/hello"):
    """n requests on one keep-alive connection; their statuses and Retry-After."""
    statuses = []
    with Conn(port) as c:
        for _ in range(n):
            c.send(get(path))
            _, r = c.read_final()
            statuses.append((r.status, r.header("Retry-After")))
    return statuses


def test_rate_limit_burst_then_429(tmp_path, logdir, origin):
    root = project(tmp_path)
    s = start_config(tmp_path, logdir, {"threads": 1, "listen": [{"port": 0}], "routes": [
        {"match": "/hello", "rateLimit": {"rate": 2, "burst": 5}, "proxy": {"upstreams": [origin.address]}},
        {"match": "/", "static": str(root)},
    ]})
    try:
        got = burst(s.port, 12)
        ok = [st for st, _ in got if st == 200]
        limited = [(st, ra) for st, ra in got if st == 429]
        # 5 from the burst, at most one more refilled while they ran.
        assert 5 <= len(ok) <= 6, got
        assert len(ok) + len(limited) == 12, got
        assert all(ra is not None and 1 <= int(ra) <= 1 for _, ra in limited), got
        assert got[0][0] == 200 and got[-1][0] == 429
        before = origin.requests
        # Refused requests never reached the origin; other routes are not limited.
        assert all(roundtrip(s.port, get("/index.html")).status == 200 for _ in range(20))
        assert origin.requests == before
        # Tokens come back at the rate: after 1.1 s, two more.
        time.sleep(1.1)
        again = [st for st, _ in burst(s.port, 4)]
        assert again[:2] == [200, 200] and again[3] == 429, again
    finally:
        s.stop()


def test_rate_limit_is_per_client(tmp_path, logdir, origin):
    s = start_config(tmp_path, logdir, {"threads": 1, "listen": [{"port": 0}], "routes": [
        {"match": "/", "rateLimit": {"rate": 1, "burst": 3}, "proxy": {"upstreams": [origin.address]}}]})
    try:
        def from_addr(src, n):
            out = []
            for _ in range(n):
                sock = socket.create_connection(("127.0.0.1", s.port), timeout=10, source_address=(src, 0))
                sock.sendall(get("/hello"))
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                sock.close()
                out.append(int(data.split(b" ", 2)[1]))
            return out
        a = from_addr("127.0.0.2", 6)
        assert a[:3] == [200, 200, 200] and a.count(429) >= 2, a
        # Another client address still has its whole burst.
        assert from_addr("127.0.0.3", 3) == [200, 200, 200]
    finally:
        s.stop()


def test_rate_limit_errors(tmp_path):
    for limit, message in (({"burst": 5}, "routes[0].rateLimit.rate: required"),
                           ({"rate": 0}, "routes[0].rateLimit.rate: expected requests per second per client")):
        path = tmp_path / "kuai.config.json"
        path.write_text(json.dumps({"listen": [{"port": 0}], "routes": [
            {"match": "/", "static": str(tmp_path), "rateLimit": limit}]}))
        p = subprocess.run([KUAI, "--config", str(path)], capture_output=True, text=True, timeout=30)
        assert p.returncode != 0 and message in p.stderr, p.stderr


def test_rate_limit_over_http2(tmp_path, logdir):
    # Streams of one HTTP/2 connection are requests like any other: the same
    # bucket, 429 with Retry-After on the streams over it, the connection goes on.
    root = project(tmp_path)
    s = start_config(tmp_path, logdir, {"threads": 1, "listen": [{"port": 0, "http2": "h2c"}], "routes": [
        {"match": "/", "rateLimit": {"rate": 1, "burst": 3}, "static": str(root)}]})
    try:
        c = H2Client(s.port)
        try:
            sids = [c.request("/index.html", scheme="http") for _ in range(8)]
            answers = [c.response(sid) for sid in sids]
        finally:
            c.close()
        statuses = [h[":status"] for h, _, _ in answers]
        assert statuses.count("200") in (3, 4), statuses
        assert statuses.count("429") == 8 - statuses.count("200"), statuses
        for h, body, ended in answers:
            assert ended
            if h[":status"] == "429":
                assert h["retry-after"] == "1" and body == b"429 Too Many Requests\n", (h, body)
            else:
                assert body == b"<h1>home</h1>\n"
    finally:
        s.stop()
