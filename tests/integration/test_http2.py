"""HTTP/2: ALPN h2 on TLS (on by default, --no-http2 turns it off), h2c with
prior knowledge (--h2c), every native route kind answering over h2 through the
same handlers as HTTP/1.1, with real clients (curl, h2load) and frame-level
cases written with Python's h2 (bad preface, oversized header blocks,
CONTINUATION floods, rapid reset, GOAWAY on drain). Every test runs on both
backends."""

import contextlib
import hashlib
import json
import signal
import socket
import ssl
import subprocess
import time

import h2.events
import h2.errors
import h2.settings
import pytest
from hyperframe.frame import ContinuationFrame, HeadersFrame

from conftest import HELLO_BODY, KuaiServer
from h2client import H2Client, goaway
from httpraw import byteranges
from upstream import Upstream, pattern_sha256


@pytest.fixture
def scheme():
    return "https"


def curl(server, *args, timeout=30):
    cmd = ["curl", "-sS", "--max-time", str(timeout), *args]
    p = subprocess.run(cmd, capture_output=True, timeout=timeout + 10)
    return p


def https_url(server, path):
    return f"https://localhost:{server.port}{path}"


def curl_tls(server):
    return ["--cacert", str(server.certs.ca), "--resolve", f"localhost:{server.port}:127.0.0.1"]


def version_and_body(server, path, *extra):
    p = curl(server, *curl_tls(server), "--http2", "-w", "\n%{http_version} %{http_code}", *extra,
             https_url(server, path))
    assert p.returncode == 0, p.stderr.decode()
    body, _, tail = p.stdout.rpartition(b"\n")
    version, code = tail.decode().split()
    return version, int(code), body


# ---- real clients ----

def test_tls_offers_h2_and_answers_every_route_kind(server, docroot):
    v, code, body = version_and_body(server, "/hello")
    assert (v, code, body.decode()) == ("2", 200, HELLO_BODY)
    v, code, body = version_and_body(server, "/style.css")
    assert (v, code, body) == ("2", 200, docroot.files["style.css"])
    v, code, body = version_and_body(server, "/nowhere")
    assert (v, code, body) == ("2", 404, b"404 Not Found\n")
    v, code, body = version_and_body(server, "/big.bin")
    assert (v, code) == ("2", 200)
    assert hashlib.sha256(body).hexdigest() == docroot.big_sha


def test_static_conditionals_ranges_and_head_over_h2(server, docroot):
    p = curl(server, *curl_tls(server), "--http2", "-D", "-", "-o", "/dev/null", https_url(server, "/data.json"))
    head = p.stdout.decode().lower()
    assert head.startswith("http/2 200")
    etag = next(l.split(":", 1)[1].strip() for l in head.splitlines() if l.startswith("etag:"))
    v, code, body = version_and_body(server, "/data.json", "-H", f"If-None-Match: {etag}")
    assert (v, code, body) == ("2", 304, b"")
    v, code, body = version_and_body(server, "/ranges.txt", "-H", "Range: bytes=2-9")
    assert (v, code, body) == ("2", 206, docroot.files["ranges.txt"][2:10])
    p = curl(server, *curl_tls(server), "--http2", "-I", https_url(server, "/data.json"))
    out = p.stdout.decode().lower()
    assert out.startswith("http/2 200")
    assert f"content-length: {len(docroot.files['data.json'])}" in out
    # No connection-specific fields in HTTP/2 (RFC 9113 §8.2.2).
    assert "connection:" not in out and "keep-alive:" not in out


def test_no_http2_keeps_tls_on_http11(kuai):
    s = kuai("--respond", "/hello=hi", "--no-http2")
    v, code, body = version_and_body(s, "/hello")
    assert (v, code, body) == ("1.1", 200, b"hi")


def test_h2c_with_prior_knowledge_and_http11_on_the_same_port(kuai):
    s = kuai("--respond", "/hello=hi", "--h2c", tls=False)
    p = curl(s, "--http2-prior-knowledge", "-w", "\n%{http_version}", f"http://127.0.0.1:{s.port}/hello")
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout == b"hi\n2"
    p = curl(s, "-w", "\n%{http_version}", f"http://127.0.0.1:{s.port}/hello")
    assert p.stdout == b"hi\n1.1"


@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "tls"])
def test_concurrent_ranges_of_one_file_arrive_exact(kuai, docroot, tls):
    """Streams on one connection asking for overlapping and far-apart ranges
    of the same file (and the whole of it), their 16 KiB frames interleaved
    in kuai's output batches: each gets exactly its bytes."""
    s = kuai("--h2c", tls=tls) if not tls else kuai()
    big = (docroot.root / "big.bin").read_bytes()
    ranges = [(0, 99_999), (50_000, 349_999), (5_000_000, docroot.big_size - 1), (1, 1),
              (300_001, 1_300_000), (0, docroot.big_size - 1)]
    c = H2Client(s.port, s.certs.ca if tls else None,
                 settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 24})
    try:
        c.conn.increment_flow_control_window(1 << 24)
        sids = [c.request("/big.bin", scheme="https" if tls else "http", extra=[("range", f"bytes={a}-{b}")])
                for a, b in ranges]
        for sid, (a, b) in zip(sids, ranges):
            headers, body, ended = c.response(sid, timeout=30)
            assert ended and headers[":status"] == "206", (a, b, headers)
            assert body == big[a:b + 1], (a, b, len(body))
    finally:
        c.close()


@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "tls"])
def test_several_ranges_answer_multipart_over_h2(kuai, docroot, tls):
    """multipart/byteranges over HTTP/2: the parts' fields and the file's
    ranges (sent from disk) reach the client in the order written, for a file
    kept in memory and one read from disk."""
    s = kuai("--h2c", tls=tls) if not tls else kuai()
    big = (docroot.root / "big.bin").read_bytes()
    small = docroot.files["ranges.txt"]
    cases = [("/big.bin", big, [(3_000_000, 3_099_999), (0, 0), (70_000, 1_270_000)]),
             ("/ranges.txt", small, [(len(small) - 2, len(small) - 1), (0, 1)])]
    c = H2Client(s.port, s.certs.ca if tls else None,
                 settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 24})
    try:
        c.conn.increment_flow_control_window(1 << 24)
        for path, content, spans in cases:
            spec = ",".join(f"{a}-{b}" for a, b in spans)
            sid = c.request(path, scheme="https" if tls else "http", extra=[("range", f"bytes={spec}")])
            headers, body, ended = c.response(sid, timeout=30)
            assert ended and headers[":status"] == "206", headers
            assert headers["content-length"] == str(len(body)), headers
            parts = byteranges(headers["content-type"], body)
            assert [(r, d) for r, _, d in parts] == [
                (f"bytes {a}-{b}/{len(content)}", content[a:b + 1]) for a, b in spans], path
    finally:
        c.close()


@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "tls"])
def test_large_file_frame_sizes_and_windows(kuai, docroot, tls):
    """5 MiB over h2 with the client's largest frames (16 MiB - 1: kuai's DATA
    frames are 64 KiB file ranges, sent with sendfile in clear text) and with
    the default 16 KiB frames: the bytes arrive whole, in order, in frames no
    larger than allowed."""
    s = kuai("--h2c", tls=tls) if not tls else kuai()
    for frame_size in (16384, (1 << 24) - 1):
        c = H2Client(s.port, s.certs.ca if tls else None, settings={
            h2.settings.SettingCodes.MAX_FRAME_SIZE: frame_size,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 24})
        try:
            c.conn.increment_flow_control_window(1 << 24)
            sid = c.request("/big.bin", scheme="https" if tls else "http")
            headers, body, ended = c.response(sid, timeout=30)
            assert ended and headers[":status"] == "200"
            assert len(body) == docroot.big_size
            assert hashlib.sha256(body).hexdigest() == docroot.big_sha
            sizes = [len(e.data) for e in c.log if isinstance(e, h2.events.DataReceived)]
            assert max(sizes) <= frame_size
            if frame_size > 65536:
                assert max(sizes) == 65536, sizes[:8]
        finally:
            c.close()


def test_clear_text_without_h2c_refuses_the_preface(kuai):
    s = kuai("--respond", "/hello=hi", tls=False)
    p = curl(s, "--http2-prior-knowledge", f"http://127.0.0.1:{s.port}/hello")
    assert p.returncode != 0


def test_h2load_many_streams_all_succeed(server):
    p = subprocess.run(["h2load", "-n", "3000", "-c", "4", "-m", "20", f"https://127.0.0.1:{server.port}/hello"],
                       capture_output=True, text=True, timeout=60)
    assert "3000 succeeded, 0 failed, 0 errored" in p.stdout, p.stdout + p.stderr
    assert "Application protocol: h2" in p.stdout


# ---- frame level ----

def test_concurrent_streams_on_one_connection(server, docroot):
    c = H2Client(server.port, server.certs.ca)
    try:
        sids = [c.request("/hello"), c.request("/style.css"), c.request("/nowhere"),
                c.request("/data.json", method="HEAD")]
        results = {sid: c.response(sid) for sid in sids}
    finally:
        c.close()
    assert results[sids[0]][0][":status"] == "200" and results[sids[0]][1] == HELLO_BODY.encode()
    assert results[sids[1]][1] == docroot.files["style.css"]
    assert results[sids[2]][0][":status"] == "404"
    head = results[sids[3]]
    assert head[0][":status"] == "200" and head[1] == b"" and head[2]
    assert head[0]["content-length"] == str(len(docroot.files["data.json"]))


def test_a_request_body_reaches_a_native_route(server):
    c = H2Client(server.port, server.certs.ca)
    try:
        sid = c.request("/hello", method="POST", end_stream=False, extra=[("content-length", "5")])
        c.conn.send_data(sid, b"hello", end_stream=True)
        c.flush()
        headers, body, ended = c.response(sid)
    finally:
        c.close()
    assert headers[":status"] == "405" and ended


def test_bad_preface_is_a_connection_error(kuai):
    s = kuai("--respond", "/hello=hi", "--h2c", tls=False)
    with socket.create_connection(("127.0.0.1", s.port), timeout=5) as sock:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + b"\x00" * 64)
        data = b""
        try:
            while chunk := sock.recv(4096):
                data += chunk
        except (ConnectionResetError, socket.timeout):
            pass
    # A GOAWAY (type 7) and the close.
    assert b"\x07\x00\x00\x00\x00\x00" in data or data == b""
    assert s.alive()


def test_too_large_header_block_gets_431(server):
    c = H2Client(server.port, server.certs.ca)
    try:
        sid = c.request("/hello", extra=[(f"x-h{i}", "v" * 100) for i in range(150)])
        headers, body, ended = c.response(sid)
        assert headers.get(":status") == "431", headers
        sid2 = c.request("/hello")
        h2_, b2, _ = c.response(sid2)
        assert h2_[":status"] == "200" and b2 == HELLO_BODY.encode()
    finally:
        c.close()


@pytest.mark.parametrize("fields", [
    [("connection", "keep-alive")],
    [("transfer-encoding", "chunked")],
    [(":protocol", "x")],
    [("Upper-Case", "x")],
], ids=["connection", "transfer-encoding", "unknown-pseudo", "uppercase-name"])
def test_malformed_requests_reset_the_stream_only(server, fields):
    c = H2Client(server.port, server.certs.ca)
    try:
        c.events(lambda e: any(isinstance(x, h2.events.RemoteSettingsChanged) for x in e), timeout=3)
        base = [(":method", "GET"), (":path", "/hello"), (":scheme", "https"), (":authority", "localhost")]
        c.conn.send_headers(1, base + fields, end_stream=True)
        c.flush()
        evs, closed = c.events(lambda e: any(isinstance(x, (h2.events.StreamReset, h2.events.ResponseReceived))
                                             for x in e))
        assert any(isinstance(e, h2.events.StreamReset) and e.stream_id == 1 for e in evs), evs
        sid2 = c.request("/hello")
        headers, body, _ = c.response(sid2)
        assert headers[":status"] == "200"
    finally:
        c.close()


def test_continuation_flood_closes_the_connection(server):
    c = H2Client(server.port, server.certs.ca)
    try:
        c.events(lambda e: any(isinstance(x, h2.events.RemoteSettingsChanged) for x in e), timeout=3)
        block = c.conn.encoder.encode([(":method", "GET"), (":path", "/hello"), (":scheme", "https"),
                                       (":authority", "localhost")])
        hf = HeadersFrame(1)
        hf.data = block
        hf.flags.add("END_STREAM")
        data = hf.serialize()
        for _ in range(2000):
            cf = ContinuationFrame(1)
            cf.data = b"\x40\x01a\x01b"  # literal field a: b, never ending the block
            data += cf.serialize()
        try:
            c.send_raw(data)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass
        evs, closed = c.events(lambda e: goaway(e) is not None, timeout=10)
        assert closed or goaway(evs) is not None
    finally:
        c.close()
    assert server.alive()


def test_rapid_reset_gets_enhance_your_calm(server):
    c = H2Client(server.port, server.certs.ca)
    try:
        for _ in range(1500):
            sid = c.conn.get_next_available_stream_id()
            c.conn.send_headers(sid, [(":method", "GET"), (":path", "/hello"), (":scheme", "https"),
                                      (":authority", "localhost")], end_stream=True)
            c.conn.reset_stream(sid)
        try:
            c.flush()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass
        evs, closed = c.events(lambda e: goaway(e) is not None, timeout=10)
        g = goaway(evs)
        assert g is not None, evs[-5:]
        assert g.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    finally:
        c.close()
    assert server.alive()


def rss_kib(server):
    with open(f"/proc/{server.proc.pid}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))


def hello_works(server):
    c = H2Client(server.port, server.certs.ca)
    try:
        headers, body, _ = c.response(c.request("/hello"))
        return headers.get(":status") == "200" and body == HELLO_BODY.encode()
    finally:
        c.close()


def flood(server, frame, count, batch=2000):
    """Sends `count` copies of a raw frame without reading anything; returns
    the events read afterwards and whether the server closed."""
    c = H2Client(server.port, server.certs.ca)
    try:
        blob = frame * batch
        try:
            for _ in range(count // batch):
                c.send_raw(blob)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            return [], True
        return c.events(lambda e: goaway(e) is not None, timeout=20)
    finally:
        c.close()


# Frames that each ask for an answer (SETTINGS and PING want an ACK), sent
# faster than they are read: nghttp2's queue of answers is capped
# (max_outbound_ack), so the connection ends instead of memory growing.
@pytest.mark.parametrize("frame", [
    b"\x00\x00\x00\x04\x00\x00\x00\x00\x00",                      # SETTINGS, empty
    b"\x00\x00\x08\x06\x00\x00\x00\x00\x00" + b"pingpong",        # PING
], ids=["settings", "ping"])
def test_frames_that_want_answers_flooded_close_the_connection(server, frame):
    before = rss_kib(server)
    evs, closed = flood(server, frame, 1_000_000)
    g = goaway(evs)
    assert closed or g is not None, evs[-3:]
    if g is not None:
        assert g.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM, g
    assert rss_kib(server) - before < 64 * 1024
    assert hello_works(server)


def test_window_update_flood_is_absorbed(server):
    """A million WINDOW_UPDATEs (increment 1): nothing to answer, little to
    do per frame; the connection still serves afterwards."""
    frame = b"\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00\x00\x00\x01"
    c = H2Client(server.port, server.certs.ca)
    try:
        blob = frame * 2000
        t0 = time.monotonic()
        for _ in range(500):
            c.send_raw(blob)
        headers, body, _ = c.response(c.request("/hello"), timeout=30)
        assert headers.get(":status") == "200" and body == HELLO_BODY.encode()
        assert time.monotonic() - t0 < 30
    finally:
        c.close()


def test_zero_window_update_is_a_connection_error(server):
    c = H2Client(server.port, server.certs.ca)
    try:
        c.send_raw(b"\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00")
        evs, _ = c.events(lambda e: goaway(e) is not None)
        g = goaway(evs)
        assert g is not None and g.error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR
    finally:
        c.close()


def test_hpack_bomb_gets_431_and_memory_stays_bounded(server):
    """A header block of ~8 KiB that decodes to ~16 MB: one 4000-byte field
    put in the HPACK table, then referenced by index 4000 times (one byte
    each). kuai stops keeping fields past its header limit: 431, the
    connection goes on."""
    before = rss_kib(server)
    c = H2Client(server.port, server.certs.ca)
    try:
        for _ in range(10):
            sid = c.request("/hello", extra=[("x-bomb", "b" * 4000)] * 4000)
            headers, _, ended = c.response(sid, timeout=20)
            assert headers.get(":status") == "431", headers
        headers, body, _ = c.response(c.request("/hello"))
        assert headers.get(":status") == "200" and body == HELLO_BODY.encode()
    finally:
        c.close()
    assert rss_kib(server) - before < 64 * 1024


def test_settings_never_acknowledged_times_out(kuai):
    """A client that never acknowledges the server's SETTINGS: GOAWAY
    SETTINGS_TIMEOUT after the header deadline, and the connection ends."""
    s = kuai("--respond", "/hello=hi", "--header-timeout", "1s")
    raw = socket.create_connection(("127.0.0.1", int(s.port)), timeout=10)
    ctx = ssl.create_default_context(cafile=str(s.certs.ca))
    ctx.set_alpn_protocols(["h2"])
    sock = ctx.wrap_socket(raw, server_hostname="localhost")
    try:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        got = b""
        t0 = time.monotonic()
        while time.monotonic() - t0 < 10:
            try:
                d = sock.recv(65536)
            except (ConnectionResetError, ssl.SSLError):
                break
            if not d:
                break
            got += d
        elapsed = time.monotonic() - t0
    finally:
        sock.close()
    assert 0.9 < elapsed < 8, elapsed
    # The last frame: GOAWAY (type 7) with SETTINGS_TIMEOUT (4).
    frames, at = [], 0
    while at + 9 <= len(got):
        n = int.from_bytes(got[at:at + 3], "big")
        frames.append((got[at + 3], got[at + 9:at + 9 + n]))
        at += 9 + n
    assert frames and frames[-1][0] == 7, frames
    assert int.from_bytes(frames[-1][1][4:8], "big") == 4


def test_drain_sends_goaway_and_finishes_streams(kuai, docroot, tmp_path):
    """SIGTERM while curl downloads over h2: the download completes."""
    s = kuai("--respond", "/hello=hi")
    out = tmp_path / "big.bin"
    proc = subprocess.Popen(["curl", "-sS", "--http2", *curl_tls(s), "--limit-rate", "2M", "-o", str(out),
                             https_url(s, "/big.bin")], stderr=subprocess.PIPE)
    time.sleep(0.7)
    s.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, proc.stderr.read()
    assert hashlib.sha256(out.read_bytes()).hexdigest() == docroot.big_sha
    s.wait()


def test_reload_loses_nothing_in_flight(io, tmp_path, logdir):
    """SIGHUP with new routes while an h2 download is under way: the download
    finishes whole from the route it started on; new requests see the new
    routes."""
    import os
    # 8 MiB at 2 MB/s: about 4 s, long enough to outlast a reload on a busy machine.
    old, new = os.urandom(8 << 20), os.urandom(1000)
    for d, data in (("a", old), ("b", new)):
        (tmp_path / d).mkdir()
        (tmp_path / d / "f.bin").write_bytes(data)
    path = tmp_path / "kuai.config.json"
    cfg = {"threads": 1, "io": io, "listen": [{"port": 0, "http2": "h2c"}], "routes": [{"static": "./a"}]}
    path.write_text(json.dumps(cfg))
    s = KuaiServer(["--config", str(path)], logdir).start()
    try:
        url = f"http://127.0.0.1:{s.port}/f.bin"
        out = tmp_path / "got.bin"
        proc = subprocess.Popen(["curl", "-sS", "--http2-prior-knowledge", "--limit-rate", "2M", "-o", str(out),
                                 url], stderr=subprocess.PIPE)
        time.sleep(0.7)
        cfg["routes"] = [{"static": "./b"}]
        path.write_text(json.dumps(cfg))
        s.proc.send_signal(signal.SIGHUP)  # (send_signal would count as the stop signal)
        deadline = time.monotonic() + 5
        while True:
            p = curl(s, "--http2-prior-knowledge", url)
            if p.stdout == new:
                break
            assert time.monotonic() < deadline, "the new routes never answered"
            time.sleep(0.05)
        assert proc.poll() is None, "the download ended before the reload"
        assert proc.wait(timeout=30) == 0, proc.stderr.read()
        assert out.read_bytes() == old
    finally:
        s.stop()
    s.check_clean()


def test_zero_window_client_cannot_pin_memory(io, tmp_path, logdir):
    """A client that opens 100 streams for a 4 MiB file with a window of 0 and
    never opens it: kuai holds no response bytes for them (files are read as
    the window allows), and closes the connection once nothing has moved for
    the send timeout."""
    import os
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "f.bin").write_bytes(os.urandom(4 << 20))
    path = tmp_path / "kuai.config.json"
    path.write_text(json.dumps({"threads": 1, "io": io, "listen": [{"port": 0, "http2": "h2c"}],
                                "limits": {"sendTimeout": "1s", "bodyTimeout": "1s"},
                                "routes": [{"static": "./www"}]}))
    s = KuaiServer(["--config", str(path)], logdir).start()
    try:
        before = rss_kib(s)
        c = H2Client(s.port, settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
        try:
            for _ in range(100):
                c.request("/f.bin", scheme="http")
            t0 = time.monotonic()
            evs, closed = c.events(lambda e: False, timeout=8)
            elapsed = time.monotonic() - t0
        finally:
            c.close()
        assert closed and elapsed < 6, (closed, elapsed)
        assert sum(len(e.data) for e in evs if isinstance(e, h2.events.DataReceived)) == 0
        assert sum(1 for e in evs if isinstance(e, h2.events.ResponseReceived)) == 100
        assert rss_kib(s) - before < 32 * 1024
    finally:
        s.stop()
    s.check_clean()


def test_refused_uploads_get_their_413(io, tmp_path, logdir):
    """A body over the limit, announced (content-length) or found out
    midway (no content-length): the client gets its 413 and finishes (Debian's
    curl included), what it still sends is dropped, an app's handler hears
    'aborted' (nothing uncaught), and the server goes on answering."""
    up = Upstream("a").start()
    try:
        (tmp_path / "handler.js").write_text(
            "module.exports = (req, res) => {\n"
            "  let n = 0;\n"
            "  req.on('data', (c) => { n += c.length; });\n"
            "  req.on('aborted', () => console.log(`ABORTED after ${n > 0 ? 'some' : 'no'} bytes`));\n"
            "  req.on('end', () => res.end(`got ${n}`));\n"
            "};\n")
        cfg = {"threads": 1, "io": io, "listen": [{"port": 0, "http2": "h2c"}],
               "limits": {"bodyBytes": 100000},
               "routes": [{"match": "/up/", "proxy": {"upstreams": [up.address], "stripPrefix": True}},
                          {"match": "/app/", "app": "./handler.js"}]}
        path = tmp_path / "kuai.config.json"
        path.write_text(json.dumps(cfg))
        body = tmp_path / "body.bin"
        body.write_bytes(b"x" * 300000)
        s = KuaiServer(["--config", str(path)], logdir).start()
        try:
            base = f"http://127.0.0.1:{s.port}"
            for target in ("/up/echo", "/app/x"):
                for framing in ([], ["-H", "Transfer-Encoding: chunked"]):  # the latter: no content-length
                    p = curl(s, "--http2-prior-knowledge", "-w", " %{http_code}", "--data-binary", f"@{body}",
                             *framing, f"{base}{target}")
                    assert p.returncode == 0 and p.stdout.endswith(b" 413"), (target, framing, p.stdout, p.stderr)
            # A frame-level client that waits for the windows is not left stalled.
            c = H2Client(s.port)
            sid = c.request("/app/x", method="POST", end_stream=False, scheme="http")
            c.send_body(sid, b"y" * 300000)
            headers, data, ended = c.response(sid)
            assert headers[":status"] == "413" and ended, headers
            c.close()
            p = curl(s, "--http2-prior-knowledge", "--data-binary", "small", f"{base}/app/x")
            assert p.stdout == b"got 5", p.stdout + p.stderr
            deadline = time.monotonic() + 5
            while s.stdout().count("ABORTED after some bytes") < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert s.stdout().count("ABORTED after some bytes") == 2, s.stdout()
            assert "Uncaught" not in s.stderr(), s.stderr()
        finally:
            s.stop()
            s.check_clean()
    finally:
        up.stop()


@contextlib.contextmanager
def h2c_proxy(io, tmp_path, logdir):
    """kuai from a config file: an h2c listener whose one route proxies to a
    test upstream (upstream.py)."""
    up = Upstream("a").start()
    try:
        cfg = {"threads": 1, "io": io, "listen": [{"port": 0, "http2": "h2c"}],
               "routes": [{"match": "/", "proxy": {"upstreams": [up.address]}}]}
        path = tmp_path / "kuai.config.json"
        path.write_text(json.dumps(cfg))
        s = KuaiServer(["--config", str(path)], logdir).start()
        try:
            yield s
        finally:
            s.stop()
            s.check_clean()
    finally:
        up.stop()


def test_proxy_trailers_over_h2(io, tmp_path, logdir):
    """Trailers through the proxy with an HTTP/2 client: an HTTP/1.1
    upstream's chunked trailer fields become the stream's trailing HEADERS
    (hop-by-hop ones left out), and the client's trailing HEADERS end the
    chunked request body upstream."""
    with h2c_proxy(io, tmp_path, logdir) as s:
        c = H2Client(s.port)
        sid = c.request("/chunked/5000?trailer=1", scheme="http")
        headers, body, ended = c.response(sid)
        assert headers[":status"] == "200" and ended, headers
        assert hashlib.sha256(body).hexdigest() == pattern_sha256(5000)
        trailers = [list(e.headers) for e in c.log
                    if isinstance(e, h2.events.TrailersReceived) and e.stream_id == sid]
        assert trailers == [[("x-checksum", pattern_sha256(5000)), ("x-count", "1"),
                             ("x-pad", "v"), ("x-count", "2")]], trailers
        sid = c.request("/echo", method="POST", end_stream=False, scheme="http")
        c.conn.send_data(sid, b"hello")
        c.conn.send_headers(sid, [("x-sum", "5"), ("x-note", "end")], end_stream=True)
        c.flush()
        headers, body, ended = c.response(sid)
        doc = json.loads(body)
        assert doc["body_length"] == 5 and doc["trailers"] == [["x-sum", "5"], ["x-note", "end"]], json.dumps(doc)
        c.close()


def test_proxy_joins_split_fields_for_http11(io, tmp_path, logdir):
    """An HTTP/2 client may send each cookie in a field of its own (browsers
    do, for HPACK's sake); the HTTP/1.1 upstream gets one Cookie field, "; "
    between (RFC 9113 section 8.2.3). A list field the client split
    (X-Forwarded-For, Via) reaches it whole, with kuai's entry added, and
    kuai names the protocol it received in Via."""
    with h2c_proxy(io, tmp_path, logdir) as s:
        c = H2Client(s.port)
        sid = c.request("/echo", scheme="http", extra=[
            ("cookie", "a=1"), ("x-forwarded-for", "203.0.113.7"), ("cookie", "b=2"),
            ("via", "1.1 first"), ("x-forwarded-for", "198.51.100.2"), ("cookie", "c=3"),
            ("via", "2 second")])
        headers, body, ended = c.response(sid)
        assert headers[":status"] == "200" and ended, headers
        fields = json.loads(body)["headers"]
        got = lambda name: [v for k, v in fields if k.lower() == name]
        assert got("cookie") == ["a=1; b=2; c=3"], fields
        assert got("x-forwarded-for") == ["203.0.113.7, 198.51.100.2, 127.0.0.1"], fields
        assert got("via") == ["1.1 first, 2 second, 2 kuai"], fields
        c.close()


def test_config_h2c_proxy_app_metrics_and_log(io, tmp_path, logdir):
    """A config file's listener with http2: "h2c": the proxy (HTTP/1.1
    upstream), an app route (Node's http handler sees HTTP/2 as '2.0' with
    :authority as host), the metrics page counting h2 requests, and the access
    log."""
    up = Upstream("a").start()
    try:
        (tmp_path / "handler.js").write_text(
            "module.exports = (req, res) => {\n"
            "  let n = 0;\n"
            "  req.on('data', c => n += c.length);\n"
            "  req.on('end', () => res.end(`${req.httpVersion} ${req.headers.host} ${req.method} ${n} ` +\n"
            "    `${req.rawHeaders.filter((f, i) => i % 2 === 0 && f[0] === ':').length}`));\n"
            "};\n")
        (tmp_path / "logs").mkdir()
        cfg = {"threads": 1, "io": io, "listen": [{"port": 0, "http2": "h2c"}],
               "routes": [{"match": "/up/", "proxy": {"upstreams": [up.address], "stripPrefix": True}},
                          {"match": "/app/", "app": "./handler.js"}],
               "logging": {"access": "./logs/access.log", "metrics": "/metrics"}}
        path = tmp_path / "kuai.config.json"
        path.write_text(json.dumps(cfg))
        s = KuaiServer(["--config", str(path)], logdir).start()
        try:
            base = f"http://127.0.0.1:{s.port}"
            p = curl(s, "--http2-prior-knowledge", "-w", "\n%{http_version}", f"{base}/up/hello")
            assert p.stdout == b"hello from a\n\n2", p.stdout + p.stderr
            p = curl(s, "--http2-prior-knowledge", f"{base}/up/bytes/1000000", "-o", "-")
            assert hashlib.sha256(p.stdout).hexdigest() == pattern_sha256(1000000)
            p = curl(s, "--http2-prior-knowledge", "--data-binary", "x" * 70000, f"{base}/app/x")
            # http.createServer's request: no pseudo-header fields.
            assert p.stdout == b"2.0 127.0.0.1:%d POST 70000 0" % s.port, p.stdout + p.stderr
            p = curl(s, "--http2-prior-knowledge", f"{base}/metrics")
            metrics = p.stdout.decode()
            assert 'kuai_protocol_requests_total{protocol="h2"} 3' in metrics, metrics
            p = curl(s, f"{base}/metrics")
            assert 'kuai_protocol_requests_total{protocol="http/1.1"} 0' in p.stdout.decode()
        finally:
            s.stop()
            s.check_clean()
        log = (tmp_path / "logs" / "access.log").read_text()
        assert '"GET /up/hello HTTP/2.0" 200 13' in log, log
        assert '"POST /app/x HTTP/2.0" 200' in log, log
    finally:
        up.stop()
