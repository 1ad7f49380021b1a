"""Content-Encoding on static, proxy and app routes: brotli, zstd and gzip
chosen by Accept-Encoding q-values, each decoded and compared byte for byte;
precompressed siblings; Vary and an ETag per encoding; identity for Range,
HEAD, 304, small bodies, other types, already-encoded or no-transform
responses; streamed bodies reach the client before the origin finishes; the
per-reactor cache of compressed files stays within its size."""

from __future__ import annotations

import gzip
import http.server
import json
import os
import random
import socket
import threading
import time
from pathlib import Path

import brotli
import pytest
import zstandard

from conftest import KuaiServer, no_scripting_reason
from h2client import H2Client
from httpraw import Conn, build, get, roundtrip


def decode(encoding, data):
    if encoding == "br":
        return brotli.decompress(data)
    if encoding == "gzip":
        return gzip.decompress(data)
    if encoding == "zstd":
        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    assert encoding is None, encoding
    return data


def text(n, seed=1):
    rng = random.Random(seed)
    words = [b"kuai ", b"fast ", b"<div class=\"row\">", b"server ", b"\n", b"function(){return 1}", b"0123 "]
    out = bytearray()
    while len(out) < n:
        out += rng.choice(words)
    return bytes(out[:n])


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "public"
    (root / "js").mkdir(parents=True)
    (root / "app.js").write_bytes(text(200_000))
    (root / "style.css").write_bytes(text(5_000, 2))
    (root / "tiny.txt").write_bytes(b"tiny\n")
    (root / "photo.png").write_bytes(text(50_000, 3))  # not a compressible type
    (root / "pre.js").write_bytes(text(100_000, 4))
    (root / "pre.js.br").write_bytes(brotli.compress((root / "pre.js").read_bytes(), quality=11))
    (root / "pre.js.gz").write_bytes(gzip.compress((root / "pre.js").read_bytes(), 9))
    (root / "index.html").write_bytes(b"<!doctype html>" + text(3_000, 5))
    return root


def start(tmp_path, logdir, routes, compression=None, threads=1, http2=None):
    listen = {"port": 0}
    if http2:
        listen["http2"] = http2
    config = {"threads": threads, "listen": [listen], "routes": routes}
    if compression is not None:
        config["compression"] = compression
    path = tmp_path / "kuai.config.json"
    path.write_text(json.dumps(config))
    return KuaiServer(["--config", str(path)], logdir).start()


def fetch(port, path, ae=None, method="GET", headers=()):
    hs = list(headers) + ([("Accept-Encoding", ae)] if ae is not None else [])
    return roundtrip(port, build(method, path, headers=hs), head=(method == "HEAD"))


@pytest.mark.parametrize("ae,want", [
    ("br", "br"), ("zstd", "zstd"), ("gzip", "gzip"),
    ("gzip, deflate, br, zstd", "br"), ("zstd, gzip", "zstd"),
    ("br;q=0.5, gzip;q=0.8", "gzip"), ("br;q=0, *", "zstd"),
    ("identity", None), ("deflate", None), ("", None), (" ", None), (None, None),
    ("gzip;q=0.5, identity;q=0.9", None),
])
def test_static_negotiation_and_round_trip(tmp_path, logdir, site, ae, want):
    s = start(tmp_path, logdir, [{"match": "/", "static": str(site)}])
    try:
        r = fetch(s.port, "/app.js", ae)
        assert r.status == 200
        assert r.header("Content-Encoding") == want, r
        assert r.header("Vary") == "Accept-Encoding", r
        assert decode(want, r.body) == (site / "app.js").read_bytes()
        if want:
            assert len(r.body) < 200_000 // 3
            assert r.header("ETag").endswith(f'-{want}"'), r
            assert r.header("Accept-Ranges") is None
        else:
            assert r.header("Accept-Ranges") == "bytes"
    finally:
        s.stop()


def test_static_etags_304_range_head(tmp_path, logdir, site):
    s = start(tmp_path, logdir, [{"match": "/", "static": str(site)}])
    try:
        ident = fetch(s.port, "/app.js").header("ETag")
        br = fetch(s.port, "/app.js", "br")
        gz = fetch(s.port, "/app.js", "gzip")
        tags = {ident, br.header("ETag"), gz.header("ETag")}
        assert len(tags) == 3, tags  # one ETag per representation
        # Each revalidates with its own tag.
        r = fetch(s.port, "/app.js", "br", headers=[("If-None-Match", br.header("ETag"))])
        assert r.status == 304 and r.header("ETag") == br.header("ETag") and r.header("Vary") == "Accept-Encoding"
        r = fetch(s.port, "/app.js", "gzip", headers=[("If-None-Match", br.header("ETag"))])
        assert r.status == 200 and r.header("Content-Encoding") == "gzip"
        r = fetch(s.port, "/app.js", None, headers=[("If-None-Match", ident)])
        assert r.status == 304 and r.header("Vary") == "Accept-Encoding", r
        # Ranges are on the identity bytes.
        r = fetch(s.port, "/app.js", "br", headers=[("Range", "bytes=10-19")])
        assert r.status == 206 and r.header("Content-Encoding") is None
        assert r.body == (site / "app.js").read_bytes()[10:20]
        # HEAD: identity.
        r = fetch(s.port, "/app.js", "br", method="HEAD")
        assert r.status == 200 and r.header("Content-Encoding") is None and r.body == b""
        # Small files and other types go as they are, without Vary.
        for path in ("/tiny.txt", "/photo.png"):
            r = fetch(s.port, path, "br, gzip")
            assert r.header("Content-Encoding") is None and r.header("Vary") is None, (path, r)
            assert r.body == (site / path[1:]).read_bytes()
        # The directory index is compressed too.
        r = fetch(s.port, "/", "gzip")
        assert r.header("Content-Encoding") == "gzip" and decode("gzip", r.body) == (site / "index.html").read_bytes()
    finally:
        s.stop()


def test_precompressed_siblings(tmp_path, logdir, site):
    s = start(tmp_path, logdir, [{"match": "/", "static": str(site)}])
    try:
        r = fetch(s.port, "/pre.js", "br, gzip")
        assert r.header("Content-Encoding") == "br"
        assert r.body == (site / "pre.js.br").read_bytes()  # the file itself, quality 11
        assert r.header("Content-Type").startswith("text/javascript"), r
        r = fetch(s.port, "/pre.js", "gzip")
        assert r.body == (site / "pre.js.gz").read_bytes()
        # No .zst sibling: made here.
        r = fetch(s.port, "/pre.js", "zstd")
        assert r.header("Content-Encoding") == "zstd" and decode("zstd", r.body) == (site / "pre.js").read_bytes()
    finally:
        s.stop()
    s = start(tmp_path, logdir, [{"match": "/", "static": str(site)}], compression={"precompressed": False})
    try:
        r = fetch(s.port, "/pre.js", "br")
        assert r.header("Content-Encoding") == "br" and r.body != (site / "pre.js.br").read_bytes()
        assert decode("br", r.body) == (site / "pre.js").read_bytes()
    finally:
        s.stop()


def test_settings_and_off(tmp_path, logdir, site):
    s = start(tmp_path, logdir, [{"match": "/", "static": str(site)}],
              compression={"types": ["text/css"], "minSize": 100, "encodings": ["gzip"], "levels": {"gzip": 1}})
    try:
        assert fetch(s.port, "/app.js", "gzip").header("Content-Encoding") is None  # type not listed
        r = fetch(s.port, "/style.css", "br, gzip")
        assert r.header("Content-Encoding") == "gzip" and decode("gzip", r.body) == (site / "style.css").read_bytes()
        assert fetch(s.port, "/tiny.txt", "gzip").header("Content-Encoding") is None
    finally:
        s.stop()
    s = start(tmp_path, logdir, [{"match": "/", "static": str(site)}], compression=False)
    try:
        r = fetch(s.port, "/app.js", "br, gzip")
        assert r.header("Content-Encoding") is None and r.header("Vary") is None
    finally:
        s.stop()


def test_static_over_http2(tmp_path, logdir, site):
    s = start(tmp_path, logdir, [{"match": "/", "static": str(site)}], http2="h2c")
    try:
        c = H2Client(s.port)
        try:
            h, body, ended = c.response(c.request("/app.js", scheme="http", extra=[("accept-encoding", "gzip, br")]))
        finally:
            c.close()
        assert ended and h[":status"] == "200" and h["content-encoding"] == "br" and h["vary"] == "Accept-Encoding"
        assert brotli.decompress(body) == (site / "app.js").read_bytes()
    finally:
        s.stop()


@pytest.mark.parametrize("ae", ["br", "zstd", "gzip"])
def test_curl_decodes(tmp_path, logdir, site, ae):
    import subprocess
    s = start(tmp_path, logdir, [{"match": "/", "static": str(site)}])
    try:
        out = subprocess.run(["curl", "-s", "--compressed", "-H", f"Accept-Encoding: {ae}", "-D", "-", "-o",
                              str(tmp_path / "got"), f"http://127.0.0.1:{s.port}/app.js"],
                             capture_output=True, text=True, timeout=30)
        assert f"content-encoding: {ae}" in out.stdout.lower(), out.stdout
        assert (tmp_path / "got").read_bytes() == (site / "app.js").read_bytes()
    finally:
        s.stop()


# ---------------------------------------------------------------- proxy

class Origin(http.server.ThreadingHTTPServer):
    daemon_threads = True


class OriginHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    BODY = text(150_000, 9)

    def log_message(self, *a):
        pass

    def do_HEAD(self):
        self.head_only = True
        self.answer()

    def do_GET(self):
        self.head_only = False
        self.answer()

    def answer(self):
        if self.path == "/text":
            self.send(200, self.BODY, [("Content-Type", "text/html; charset=utf-8"), ("ETag", '"abc"')])
        elif self.path == "/json-chunked":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(50):
                piece = json.dumps({"i": i, "pad": "x" * 500}).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/slow":
            # The first part, then a pause: it must reach the client first.
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            first = b"first part " * 100
            self.wfile.write(b"%x\r\n%s\r\n" % (len(first), first))
            self.wfile.flush()
            time.sleep(1.5)
            last = b"last part " * 100
            self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(last), last))
        elif self.path == "/encoded":
            self.send(200, gzip.compress(self.BODY), [("Content-Type", "text/html"), ("Content-Encoding", "gzip")])
        elif self.path == "/no-transform":
            self.send(200, self.BODY, [("Content-Type", "text/html"), ("Cache-Control", "public, no-transform")])
        elif self.path == "/binary":
            self.send(200, self.BODY, [("Content-Type", "application/octet-stream")])
        elif self.path == "/small":
            self.send(200, b"ok", [("Content-Type", "text/plain")])
        elif self.path == "/nocontent":
            self.send(204, b"", [("Content-Type", "text/plain")])
        else:
            self.send(404, b"no\n", [("Content-Type", "text/plain")])

    def send(self, status, body, headers):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        if status != 204:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not self.head_only:
            self.wfile.write(body)


@pytest.fixture
def origin():
    srv = Origin(("127.0.0.1", 0), OriginHandler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


@pytest.mark.parametrize("ae", ["br", "zstd", "gzip"])
def test_proxy_compresses(tmp_path, logdir, origin, ae):
    s = start(tmp_path, logdir, [{"match": "/", "proxy": {"upstreams": [origin]}}])
    try:
        r = fetch(s.port, "/text", ae)
        assert r.status == 200 and r.header("Content-Encoding") == ae, r
        assert decode(ae, r.body) == OriginHandler.BODY
        assert r.header("ETag") == 'W/"abc"', r  # not the identity's bytes any more
        assert "Accept-Encoding" in (r.header("Vary") or ""), r
        assert r.header("Content-Length") is None and r.header("Transfer-Encoding") == "chunked"
        r = fetch(s.port, "/json-chunked", ae)
        assert r.header("Content-Encoding") == ae
        lines = decode(ae, r.body).splitlines()
        assert [json.loads(x)["i"] for x in lines] == list(range(50))
        # Keep-alive still works after a compressed, chunked answer.
        with Conn(s.port) as c:
            for _ in range(3):
                c.send(build("GET", "/text", headers=[("Accept-Encoding", ae)]))
                _, r = c.read_final()
                assert decode(ae, r.body) == OriginHandler.BODY
    finally:
        s.stop()


def test_proxy_leaves_alone(tmp_path, logdir, origin):
    s = start(tmp_path, logdir, [{"match": "/", "proxy": {"upstreams": [origin]}}])
    try:
        r = fetch(s.port, "/encoded", "br, gzip")
        assert r.header("Content-Encoding") == "gzip" and gzip.decompress(r.body) == OriginHandler.BODY
        for path in ("/no-transform", "/binary", "/small"):
            r = fetch(s.port, path, "br, gzip")
            assert r.header("Content-Encoding") is None, (path, r)
        assert fetch(s.port, "/no-transform", "br").body == OriginHandler.BODY
        r = fetch(s.port, "/nocontent", "br")
        assert r.status == 204 and r.header("Content-Encoding") is None
        r = fetch(s.port, "/text", "br", method="HEAD")
        assert r.status == 200 and r.header("Content-Encoding") is None
        r = fetch(s.port, "/text", None)
        assert r.header("Content-Encoding") is None and r.body == OriginHandler.BODY
    finally:
        s.stop()


def test_proxy_streams_compressed(tmp_path, logdir, origin):
    s = start(tmp_path, logdir, [{"match": "/", "proxy": {"upstreams": [origin]}}])
    try:
        sock = socket.create_connection(("127.0.0.1", s.port), timeout=10)
        sock.sendall(build("GET", "/slow", headers=[("Accept-Encoding", "gzip")]))
        t0 = time.monotonic()
        data = b""
        d = None
        got = b""
        while not got:
            data += sock.recv(65536)
            if b"\r\n\r\n" in data and d is None:
                head, data = data.split(b"\r\n\r\n", 1)
                assert b"Content-Encoding: gzip" in head, head
                d = __import__("zlib").decompressobj(16 + 15)
            if d is not None and data:
                # Undo the chunked framing of what came so far.
                buf, body = data, b""
                while b"\r\n" in buf:
                    size_line, rest = buf.split(b"\r\n", 1)
                    n = int(size_line, 16)
                    if len(rest) < n + 2:
                        break
                    body += rest[:n]
                    buf = rest[n + 2:]
                got = d.decompress(body)
        elapsed = time.monotonic() - t0
        assert got.startswith(b"first part"), got[:50]
        assert elapsed < 1.2, f"the first part took {elapsed:.2f}s: held until the origin finished"
        sock.close()
    finally:
        s.stop()


@pytest.mark.skipif(bool(no_scripting_reason()), reason="app routes need the scripting addon")
def test_app_route_compresses(tmp_path, logdir):
    (tmp_path / "app.js").write_text(
        "module.exports = (req, res) => {\n"
        "  res.setHeader('Content-Type', 'application/json');\n"
        "  res.end(JSON.stringify({ items: Array.from({ length: 500 }, (_, i) => ({ i, name: 'item ' + i })) }));\n"
        "};\n")
    s = start(tmp_path, logdir, [{"match": "/", "app": "./app.js"}])
    try:
        for ae in ("br", "zstd", "gzip"):
            r = fetch(s.port, "/", ae)
            assert r.status == 200 and r.header("Content-Encoding") == ae, r
            doc = json.loads(decode(ae, r.body))
            assert len(doc["items"]) == 500 and doc["items"][499]["name"] == "item 499"
        r = fetch(s.port, "/")
        assert r.header("Content-Encoding") is None and len(json.loads(r.body)["items"]) == 500
    finally:
        s.stop()


# ---------------------------------------------------------------- the cache's bound

def rss_kib(pid):
    total = 0
    for p in [pid] + [int(x) for x in os.popen(f"pgrep -P {pid}").read().split()]:
        with open(f"/proc/{p}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


@pytest.mark.skipif(bool(os.environ.get("KUAI_SANITIZED")),
                    reason="AddressSanitizer keeps freed memory in its quarantine: RSS says nothing of the cache")
def test_compressed_cache_is_bounded(tmp_path, logdir):
    root = tmp_path / "many"
    root.mkdir()
    # 120 files of 512 KiB of hard-to-compress text: about 40 MiB compressed
    # in all, against a 2 MiB cache.
    for i in range(120):
        rng = random.Random(i)
        (root / f"f{i}.txt").write_bytes(bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz0123456789 \n")
                                               for _ in range(512 * 1024)))
    growth = {}
    for cache in ("2m", "1g"):
        s = start(tmp_path, logdir, [{"match": "/", "static": str(root)}],
                  compression={"cacheSize": cache, "levels": {"gzip": 1}, "encodings": ["gzip"]})
        try:
            fetch(s.port, "/f0.txt", "gzip")
            before = rss_kib(s.proc.pid)
            with Conn(s.port) as c:
                for i in range(120):
                    c.send(build("GET", f"/f{i}.txt", headers=[("Accept-Encoding", "gzip")]))
                    _, r = c.read_final()
                    assert r.header("Content-Encoding") == "gzip"
            growth[cache] = rss_kib(s.proc.pid) - before
        finally:
            s.stop()
    # Unbounded, the bodies stay (the check can fail); bounded, they go.
    assert growth["1g"] > 30 * 1024, growth
    assert growth["2m"] < 16 * 1024, growth


def test_command_line(tmp_path, logdir, site):
    s = KuaiServer(["serve", str(site), "--port", "0"], logdir).start()
    try:
        r = fetch(s.port, "/app.js", "gzip")
        assert r.header("Content-Encoding") == "gzip" and gzip.decompress(r.body) == (site / "app.js").read_bytes()
    finally:
        s.stop()
    s = KuaiServer(["serve", str(site), "--port", "0", "--no-compression"], logdir).start()
    try:
        r = fetch(s.port, "/app.js", "gzip")
        assert r.header("Content-Encoding") is None and r.body == (site / "app.js").read_bytes()
    finally:
        s.stop()
