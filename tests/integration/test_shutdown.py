"""Graceful shutdown on SIGTERM / SIGINT."""

import hashlib
import os
import signal
import socket
import time

import pytest

from httpraw import Conn, get

BIG_SIZE = 50 * 1024 * 1024


@pytest.fixture(scope="module")
def bigroot(tmp_path_factory):
    root = tmp_path_factory.mktemp("kuai-big")
    block = os.urandom(1024 * 1024)
    with open(root / "big50.bin", "wb") as f:
        for _ in range(50):
            f.write(block)
    (root / "index.html").write_bytes(b"small\n")
    return root, hashlib.sha256(block * 50).hexdigest()


def connect_refused_within(port, limit=2.0):
    """Returns None once a new connection to port is refused (within limit
    seconds), else a description of what the last accepted connection got."""
    deadline = time.monotonic() + limit
    what = "no attempt"
    while time.monotonic() < deadline:
        try:
            c = Conn(port, timeout=0.5)
        except ConnectionRefusedError:
            return None
        except OSError as e:
            what = f"connect failed with {e!r}"
            time.sleep(0.05)
            continue
        try:
            c.send(get("/index.html"), ignore_errors=True)
            try:
                r = c.read_response(timeout=0.5)
                what = f"connect succeeded and GET /index.html was answered {r.status}"
            except AssertionError as e:
                what = f"connect succeeded, then: {str(e)[:120]}"
        finally:
            c.close()
        time.sleep(0.05)
    return what


def start_slow_download(port):
    c = Conn(port, timeout=10, rcvbuf=16384)
    c.send(get("/big50.bin"))
    # Read the head and a little of the body.
    while b"\r\n\r\n" not in c.buf:
        c._fill(time.monotonic() + 5)
    head, rest = bytes(c.buf).split(b"\r\n\r\n", 1)
    c.buf.clear()
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"content-length: %d" % BIG_SIZE in head.lower(), head
    h = hashlib.sha256(rest)
    return c, h, len(rest)


def _graceful_body(s, port, idle, sig, sha):
    idle.send(get("/index.html"))
    assert idle.read_response().status == 200

    c, h, got = start_slow_download(port)
    try:
        t_sig = time.monotonic()
        s.send_signal(sig)

        # The idle keep-alive connection is closed promptly.
        idle.expect_close(timeout=2.0)
        # New connections are refused.
        late = connect_refused_within(port)
        assert late is None, f"new connections not refused 2s after the signal: {late}"

        # Read slowly for a while: the server must still be there, sending.
        slow_until = time.monotonic() + 1.0
        while time.monotonic() < slow_until:
            c.sock.settimeout(5)
            data = c.sock.recv(4096)
            if not data:
                break
            h.update(data)
            got += len(data)
            time.sleep(0.01)
        assert got < BIG_SIZE, "the download finished too soon to test anything"
        assert s.alive(), (f"kuai exited {time.monotonic() - t_sig:.2f}s after the signal "
                           f"with a response in flight ({got} of {BIG_SIZE} bytes sent)")

        # Now read the rest at full speed.
        c.sock.settimeout(15)
        while got < BIG_SIZE:
            data = c.sock.recv(1 << 20)
            if not data:
                break
            h.update(data)
            got += len(data)
        assert got == BIG_SIZE, f"in-flight response cut short at {got} of {BIG_SIZE} bytes"
        assert h.hexdigest() == sha
        # Then the server closes this connection too.
        c.sock.settimeout(5)
        try:
            tail = c.sock.recv(100)
        except ConnectionResetError:
            tail = b""
        assert tail == b"", f"unexpected bytes after the body: {tail!r}"
    finally:
        c.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_graceful_shutdown_completes_in_flight(kuai, bigroot, sig):
    root, sha = bigroot
    s = kuai("--shutdown-timeout", "20s", root=root)
    port = s.port

    idle = Conn(port)
    try:
        _graceful_body(s, port, idle, sig, sha)
    finally:
        idle.close()
    s.wait(timeout=10)
    s.check_clean()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_shutdown_with_idle_connections_is_prompt(kuai, sig):
    s = kuai("--idle-timeout", "30s")
    conns = []
    for _ in range(5):
        c = Conn(s.port)
        c.send(get("/index.html"))
        assert c.read_response().status == 200
        conns.append(c)
    never_sent = Conn(s.port)  # connected, no request yet
    t0 = time.monotonic()
    s.send_signal(sig)
    for c in conns + [never_sent]:
        c.expect_close(timeout=2.0)
        c.close()
    s.wait(timeout=3)
    took = time.monotonic() - t0
    s.check_clean()
    assert took < 3, f"exit took {took:.2f}s with only idle connections"


def test_shutdown_timeout_bounds_a_stalled_client(kuai, bigroot):
    """A client that stops reading cannot hold the server beyond --shutdown-timeout."""
    root, _ = bigroot
    s = kuai("--shutdown-timeout", "1s", root=root)
    c, _, _ = start_slow_download(s.port)  # and then never reads again
    t0 = time.monotonic()
    s.send_signal(signal.SIGTERM)
    s.wait(timeout=6)
    took = time.monotonic() - t0
    c.close()
    s.check_clean()
    assert 0.5 <= took <= 4, f"exited {took:.2f}s after SIGTERM with --shutdown-timeout 1s"


def test_request_in_progress_when_signalled(kuai):
    """A request whose head is half sent when the signal arrives: the server
    may answer it or close, but must exit 0 within the shutdown timeout."""
    s = kuai("--shutdown-timeout", "2s", "--header-timeout", "30s")
    c = Conn(s.port)
    c.send(b"GET /index.html HTTP/1.1\r\nHost: x\r\n")
    time.sleep(0.1)
    s.send_signal(signal.SIGTERM)
    c.send(b"\r\n", ignore_errors=True)
    try:
        r = c.read_response(timeout=4)
        assert r.status == 200, r
    except AssertionError as e:
        if "closed" not in str(e):
            raise
    c.close()
    s.wait(timeout=6)
    s.check_clean()


def test_graceful_shutdown_completes_in_flight_tls(kuai, bigroot):
    """The same over TLS: the download that started before SIGTERM arrives
    whole, encrypted to the end, then kuai exits 0."""
    root, sha = bigroot
    s = kuai("--shutdown-timeout", "20s", root=root, tls=True)
    c = Conn(s.port, timeout=30)
    try:
        c.send(get("/big50.bin"))
        deadline = time.monotonic() + 5
        while b"\r\n\r\n" not in c.buf:
            c._fill(deadline)
        s.send_signal(signal.SIGTERM)
        r = c.read_response(timeout=30)
        assert r.status == 200 and len(r.body) == BIG_SIZE, (r.status, len(r.body))
        assert hashlib.sha256(r.body).hexdigest() == sha
    finally:
        c.close()
    s.wait(timeout=10)
    s.check_clean()


def test_graceful_shutdown_completes_a_js_request(tmp_path):
    """A script's request in flight (its answer due in 1 s) when SIGTERM comes:
    answered whole, then kuai exits 0; new connections are refused meanwhile."""
    import subprocess
    from conftest import KUAI, SANITIZER_MARKERS, free_port
    script = tmp_path / "slow.js"
    script.write_text(
        "require('http').createServer((q, s) => setTimeout(() => s.end('late ' + q.url), 1000))"
        ".listen(Number(process.env.PORT), '127.0.0.1', () => console.log('LISTENING'));\n")
    port = free_port()
    proc = subprocess.Popen([KUAI, "--threads", "2", str(script)], env={**os.environ, "PORT": str(port)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(2):
            assert proc.stdout.readline().startswith("LISTENING")
        c = Conn(port, timeout=10)
        c.send(get("/in-flight"))
        time.sleep(0.2)  # the request is in the handler (its timer runs 1 s)
        proc.send_signal(signal.SIGTERM)
        assert connect_refused_within(port) is None, "new connections accepted after SIGTERM"
        r = c.read_response(timeout=10)
        assert r.status == 200 and r.body == b"late /in-flight", r
        assert r.has_token("Connection", "close"), r.headers
        c.close()
        assert proc.wait(timeout=15) == 0
        err = proc.stderr.read()
        assert not any(m in err for m in SANITIZER_MARKERS), err[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
