"""Static files: MIME types, validators, ranges, directories, path escapes,
symlinks, large files, freshness and methods."""

import contextlib
import hashlib
import os
import re
import socket
import subprocess
import time

import pytest

from httpraw import IMF_FIXDATE, Conn, build, byteranges, get, roundtrip

from conftest import RANGES_CONTENT


def fetch(port, path, headers=None, method="GET"):
    return roundtrip(port, build(method, path, headers=headers), head=(method == "HEAD"))


@pytest.mark.parametrize("path,types", [
    ("/index.html", {"text/html"}),
    ("/style.css", {"text/css"}),
    ("/app.js", {"text/javascript", "application/javascript"}),
    ("/data.json", {"application/json"}),
    ("/image.png", {"image/png"}),
    ("/ranges.txt", {"text/plain"}),
    ("/blob.weirdext", {"application/octet-stream"}),
])
def test_mime_types(server, docroot, path, types):
    r = fetch(server.port, path)
    assert r.status == 200, r
    assert r.content_type in types, f"{path}: Content-Type {r.header('Content-Type')!r}"
    assert r.body == docroot.files[path[1:]]


def test_percent_decoded_path(server, docroot):
    r = fetch(server.port, "/a%20b.txt")
    assert r.status == 200 and r.body == docroot.files["a b.txt"], r


def test_query_string_ignored(server, docroot):
    r = fetch(server.port, "/style.css?v=123&x=%2e%2e")
    assert r.status == 200 and r.body == docroot.files["style.css"], r


def test_etag_and_last_modified(server, docroot):
    r = fetch(server.port, "/index.html")
    etag, lm = r.header("ETag"), r.header("Last-Modified")
    assert etag and re.match(r'^(W/)?"[^"]*"$', etag), f"ETag {etag!r}"
    assert lm and IMF_FIXDATE.match(lm), f"Last-Modified {lm!r}"
    mtime = os.stat(docroot.root / "index.html").st_mtime
    from email.utils import parsedate_to_datetime
    assert abs(parsedate_to_datetime(lm).timestamp() - int(mtime)) <= 1, (lm, mtime)


def test_if_none_match_304(server):
    etag = fetch(server.port, "/index.html").header("ETag")
    with Conn(server.port) as c:
        c.send(get("/index.html", headers=[("If-None-Match", etag)])
               + get("/index.html", headers=[("If-None-Match", '"not-the-etag"')])
               + get("/index.html", headers=[("If-None-Match", f'"zzz", {etag}')]))
        r = c.read_response()
        assert r.status == 304, r
        assert r.body == b"", r
        assert r.header("ETag") == etag, r
        r2 = c.read_response()  # would misparse if the 304 carried a body
        assert r2.status == 200, r2
        r3 = c.read_response()
        assert r3.status == 304, f"If-None-Match with a list holding the ETag: {r3!r}"


def test_if_modified_since_304(server):
    lm = fetch(server.port, "/style.css").header("Last-Modified")
    with Conn(server.port) as c:
        c.send(get("/style.css", headers=[("If-Modified-Since", lm)])
               + get("/style.css", headers=[("If-Modified-Since", "Mon, 01 Jan 1990 00:00:00 GMT")]))
        r = c.read_response()
        assert r.status == 304 and r.body == b"", r
        r2 = c.read_response()
        assert r2.status == 200 and r2.body, r2


SIZE = len(RANGES_CONTENT)


@pytest.mark.parametrize("spec,start,end", [
    ("bytes=0-9", 0, 9),
    ("bytes=-5", SIZE - 5, SIZE - 1),
    ("bytes=10-", 10, SIZE - 1),
    ("bytes=5-5", 5, 5),
    ("bytes=50-1000", 50, SIZE - 1),
    ("bytes=-1000", 0, SIZE - 1),
])
def test_range(server, spec, start, end):
    r = fetch(server.port, "/ranges.txt", headers=[("Range", spec)])
    assert r.status == 206, f"Range {spec}: {r!r}"
    assert r.header("Content-Range") == f"bytes {start}-{end}/{SIZE}", r
    assert r.body == RANGES_CONTENT[start:end + 1], r
    assert r.header("Content-Length") == str(end - start + 1), r


@pytest.mark.parametrize("spec", ["bytes=100-200", f"bytes={SIZE}-", "bytes=-0"])
def test_range_unsatisfiable(server, spec):
    with Conn(server.port) as c:
        c.send(get("/ranges.txt", headers=[("Range", spec)]) + get("/ranges.txt"))
        r = c.read_response()
        assert r.status == 416, f"Range {spec}: {r!r}"
        assert r.header("Content-Range") == f"bytes */{SIZE}", r
        r2 = c.read_response()
        assert r2.status == 200, r2


def test_range_on_big_file(server, docroot):
    start = 3 * 1024 * 1024 + 7
    r = fetch(server.port, "/big.bin", headers=[("Range", f"bytes={start}-{start + 99999}")])
    assert r.status == 206, r
    data = (docroot.root / "big.bin").read_bytes()[start:start + 100000]
    assert r.body == data


def test_several_ranges_answer_multipart(server, docroot):
    """Several ranges: one 206 multipart/byteranges body, the parts in the
    order asked for (overlapping ones merged), its length exact (the next
    response on the connection parses), HEAD the same head."""
    rng = "bytes=0-4, 10-14,-3"
    with Conn(server.port) as c:
        c.send(get("/ranges.txt", headers=[("Range", rng)]) + get("/ranges.txt"))
        r = c.read_response()
        assert r.status == 206, r
        assert r.header("Content-Range") is None, r
        assert r.header("ETag") and r.header("Last-Modified"), r
        assert r.header("Content-Length") == str(len(r.body)), r
        parts = byteranges(r.header("Content-Type"), r.body)
        assert parts == [(f"bytes 0-4/{SIZE}", "text/plain; charset=utf-8", RANGES_CONTENT[0:5]),
                         (f"bytes 10-14/{SIZE}", "text/plain; charset=utf-8", RANGES_CONTENT[10:15]),
                         (f"bytes {SIZE - 3}-{SIZE - 1}/{SIZE}", "text/plain; charset=utf-8",
                          RANGES_CONTENT[-3:])], r.body
        r2 = c.read_response()
        assert r2.status == 200 and r2.body == RANGES_CONTENT, r2
    h = fetch(server.port, "/ranges.txt", headers=[("Range", rng)], method="HEAD")
    assert h.status == 206 and h.body == b"", h
    assert h.header("Content-Length") == r.header("Content-Length"), h
    assert h.header("Content-Type").startswith("multipart/byteranges; boundary="), h
    # Overlapping ranges merged into one: a plain 206; past the end: dropped.
    r = fetch(server.port, "/ranges.txt", headers=[("Range", "bytes=5-9,0-6,100-")])
    assert r.status == 206 and r.header("Content-Range") == f"bytes 0-9/{SIZE}", r
    assert r.body == RANGES_CONTENT[0:10], r
    # If-Range that does not match: the whole file.
    r = fetch(server.port, "/ranges.txt", headers=[("Range", rng), ("If-Range", '"other"')])
    assert r.status == 200 and r.body == RANGES_CONTENT, r


def test_several_ranges_of_a_big_file(server, docroot):
    """Parts of a file sent from disk (sendfile, or the TLS copy), far apart
    and past the first MiB, in the order asked for."""
    big = (docroot.root / "big.bin").read_bytes()
    spans = [(4_000_000, 4_199_999), (7, 7), (1_048_570, 1_048_600), (docroot.big_size - 100, None)]
    spec = ",".join(f"{a}-" if b is None else f"{a}-{b}" for a, b in spans)
    r = fetch(server.port, "/big.bin", headers=[("Range", f"bytes={spec}")])
    assert r.status == 206, r
    assert r.header("Content-Length") == str(len(r.body)), r
    parts = byteranges(r.header("Content-Type"), r.body)
    assert len(parts) == len(spans)
    for (content_range, ctype, data), (a, b) in zip(parts, spans):
        b = docroot.big_size - 1 if b is None else b
        assert content_range == f"bytes {a}-{b}/{docroot.big_size}"
        assert ctype == "application/octet-stream"
        assert data == big[a:b + 1], (a, b, len(data))


def test_directory_redirect(server):
    r = fetch(server.port, "/sub")
    assert r.status == 301, r
    loc = r.header("Location") or ""
    assert loc.endswith("/sub/"), f"Location {loc!r}"


def test_directory_index(server, docroot):
    r = fetch(server.port, "/sub/")
    assert r.status == 200 and r.body == docroot.files["sub/index.html"], r
    assert r.content_type == "text/html", r
    r = fetch(server.port, "/")
    assert r.status == 200 and r.body == docroot.files["index.html"], r


def test_directory_without_index_404(server):
    r = fetch(server.port, "/noindex/")
    assert r.status == 404, r


def test_directory_listing(kuai):
    s = kuai("--list")
    r = fetch(s.port, "/noindex/")
    assert r.status == 200, r
    assert r.content_type == "text/html", r
    assert b"a.txt" in r.body and b"zeta-file.css" in r.body, r.body[:500]
    # A directory with an index still serves it.
    r = fetch(s.port, "/sub/")
    assert r.body == b"<p>sub index page</p>\n"


ESCAPES = [
    "/../secret.txt",
    "/%2e%2e/secret.txt",
    "/%2E%2E/secret.txt",
    "/..%2fsecret.txt",
    "/sub/..%2f..%2fsecret.txt",
    "/sub/../../secret.txt",
    "/sub/%2e%2e/%2e%2e/secret.txt",
    "/./../secret.txt",
    "/%2fetc/passwd",
    "//etc/passwd",
    "/..%2f..%2f..%2f..%2f..%2f..%2fetc/passwd",
    "/%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fetc/passwd",
    "/..\\secret.txt",
    "/index.html%00.png",
    "/%00",
    "/sub%00/page.txt",
    "/link_out_dir/inner.txt",
]


@pytest.mark.parametrize("path", ESCAPES)
def test_path_escape_refused(server, docroot, path):
    with Conn(server.port) as c:
        c.send(get(path))
        r = c.read_response()
    assert r.status in (400, 403, 404), f"{path}: {r!r}"
    assert docroot.secret not in r.body, f"{path} leaked the file outside the root"
    assert b"root:" not in r.body, f"{path} leaked /etc/passwd"


@pytest.mark.parametrize("path", ["/link_out_secret", "/link_out_etc"])
def test_symlink_outside_refused(server, docroot, path):
    r = fetch(server.port, path)
    assert r.status in (403, 404), f"{path}: {r!r}"
    assert docroot.secret not in r.body
    try:
        hostname = open("/etc/hostname", "rb").read()
    except OSError:
        hostname = None
    if hostname and r.body:
        assert hostname.strip() not in r.body, f"{path} served /etc/hostname"


def test_symlink_inside_served(server, docroot):
    r = fetch(server.port, "/link_in.html")
    assert r.status == 200 and r.body == docroot.files["index.html"], r


def test_large_file_with_curl(server, docroot, tmp_path):
    out = tmp_path / "big.out"
    p = subprocess.run(["curl", "-sS", "--fail", "--max-time", "30", "-o", str(out),
                        "-w", "%{http_code} %{size_download}", *server.curl_tls,
                        f"{server.url}/big.bin"],
                       capture_output=True, text=True, timeout=40)
    assert p.returncode == 0, p.stderr
    assert p.stdout == f"200 {docroot.big_size}", p.stdout
    assert hashlib.sha256(out.read_bytes()).hexdigest() == docroot.big_sha


def test_large_file_raw_and_keepalive(server, docroot):
    with Conn(server.port, timeout=20) as c:
        c.send(get("/big.bin") + build("HEAD", "/big.bin") + get("/hello"))
        r = c.read_response()
        assert r.status == 200 and len(r.body) == docroot.big_size, r
        assert hashlib.sha256(r.body).hexdigest() == docroot.big_sha
        h = c.read_response(head=True)
        assert h.header("Content-Length") == str(docroot.big_size), h
        assert c.read_response().status == 200


def test_curl_reuses_connection(server, docroot):
    url = server.url
    p = subprocess.run(["curl", "-sv", "--max-time", "10", *server.curl_tls,
                        "-o", "/dev/null", "-o", "/dev/null",
                        f"{url}/index.html", f"{url}/style.css"],
                       capture_output=True, text=True, timeout=20)
    assert p.returncode == 0, p.stderr
    assert re.search(r"Re-using existing connection", p.stderr), p.stderr[-2000:]


def _poll_until(port, path, want, limit=3.0):
    t0 = time.monotonic()
    while True:
        r = fetch(port, path)
        if r.body == want:
            return r, time.monotonic() - t0
        if time.monotonic() - t0 > limit:
            raise AssertionError(f"{path} still served stale after {limit}s: {r!r}")
        time.sleep(0.1)


@pytest.mark.parametrize("same_size", [False, True])
def test_changed_file_served_fresh(server, docroot, io, same_size):
    name = f"fresh_{io}_{int(same_size)}.txt"
    path = docroot.root / name
    path.write_bytes(b"version one\n")
    os.utime(path, (time.time() - 100, time.time() - 100))
    r1 = fetch(server.port, "/" + name)
    assert r1.status == 200 and r1.body == b"version one\n", r1
    new = b"version two\n" if same_size else b"version two, longer\n"
    path.write_bytes(new)
    os.utime(path, (time.time(), time.time()))
    r2, took = _poll_until(server.port, "/" + name, new)
    assert took <= 2.5, f"took {took:.2f}s to see the new content"
    assert r2.header("ETag") != r1.header("ETag"), (r1, r2)
    assert r2.header("Content-Length") == str(len(new))


def test_deleted_file_becomes_404(server, docroot, io):
    path = docroot.root / f"deleted_{io}.txt"
    path.write_bytes(b"soon gone\n")
    assert fetch(server.port, "/" + path.name).status == 200
    path.unlink()
    t0 = time.monotonic()
    while True:
        r = fetch(server.port, "/" + path.name)
        if r.status == 404:
            break
        assert time.monotonic() - t0 < 3, f"deleted file still served: {r!r}"
        time.sleep(0.1)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_other_methods_405(server, method):
    with Conn(server.port) as c:
        c.send(build(method, "/index.html", headers=[("Content-Length", "0")]) + get("/hello"))
        r = c.read_response()
        assert r.status == 405, r
        allow = {t.strip().upper() for t in (r.header("Allow") or "").split(",")}
        assert {"GET", "HEAD"} <= allow, f"Allow: {r.header('Allow')!r}"
        assert c.read_response().status == 200


def test_missing_file_404(server):
    r = fetch(server.port, "/no/such/file.html")
    assert r.status == 404, r
    assert r.header("Content-Length") == str(len(r.body)), r


@contextlib.contextmanager
def random_file(docroot, name, size=24 * 1024 * 1024):
    """A file of random bytes in the docroot for one test: (path, bytes)."""
    data = os.urandom(size)
    path = docroot.root / name
    path.write_bytes(data)
    try:
        yield path, data
    finally:
        path.unlink()


def test_long_download_read_slowly_then_next_response(server, docroot):
    # 24 MiB, not read for a while at first: the socket buffer fills, so the
    # file goes on in pieces as the client takes them (file_send.h); a range
    # at an odd offset of it and the pipelined request after it stay intact.
    with random_file(docroot, "long.bin") as (path, data):
        with Conn(server.port, timeout=30) as c:
            c.send(get("/long.bin") + build("GET", "/long.bin", headers=[("Range", "bytes=1000001-21000000")])
                   + get("/hello"))
            time.sleep(0.5)  # nobody reads: the server waits on a full socket buffer
            r = c.read_response()
            assert r.status == 200 and len(r.body) == len(data), (r.status, len(r.body))
            assert hashlib.sha256(r.body).digest() == hashlib.sha256(data).digest()
            r = c.read_response()
            assert r.status == 206 and r.body == data[1000001:21000001], (r.status, len(r.body))
            assert c.read_response().status == 200


def test_file_truncated_during_download_ends_that_connection(server, docroot):
    # The file shrinks while it is being sent: its promised length cannot be
    # kept, so the response ends short with the connection; the server goes on.
    with random_file(docroot, "shrinking.bin") as (path, data):
        with Conn(server.port, timeout=30) as c:
            c.send(get("/shrinking.bin"))
            time.sleep(0.3)  # nobody reads: the server waits on a full socket buffer
            os.truncate(path, 4096)
            raw = c.read_until_close()
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head[:200]
        assert f"content-length: {len(data)}".encode() in head.lower(), head
        assert 0 < len(body) < len(data), len(body)
        assert body == data[:len(body)]
        assert fetch(server.port, "/hello").status == 200


def _own_address():
    """This machine's own IPv4 address other than loopback, or None."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # sends nothing: only picks the route's source
            addr = s.getsockname()[0]
    except OSError:
        return None
    return None if addr.startswith("127.") or addr == "0.0.0.0" else addr


def test_large_file_to_a_peer_not_on_loopback(kuai, docroot, scheme):
    # A connection to an address other than loopback counts as one from
    # elsewhere: files leave with sendfile (file_send.h), where loopback
    # peers get them copied; the bytes are the same either way.
    if scheme == "https":
        pytest.skip("over TLS a file is encrypted from reads, the same for every peer")
    addr = _own_address()
    if addr is None:
        pytest.skip("this machine has no address but loopback")
    s = kuai("--host", addr)
    with open(docroot.root / "big.bin", "rb") as f:
        data = f.read()
    with Conn(s.port, host=addr, timeout=20) as c:
        c.send(get("/big.bin") + build("GET", "/big.bin", headers=[("Range", "bytes=1000001-4000000")])
               + get("/index.html"))
        time.sleep(0.3)  # nobody reads at first: the server waits on a full socket buffer
        r = c.read_response()
        assert r.status == 200 and hashlib.sha256(r.body).hexdigest() == docroot.big_sha, (r.status, len(r.body))
        r = c.read_response()
        assert r.status == 206 and r.body == data[1000001:4000001], (r.status, len(r.body))
        r = c.read_response()
        assert r.status == 200 and r.body == docroot.files["index.html"], r
