"""Request bodies under kuai's JS layer: a handler that stops reading stops the
connection's reads (backpressure), and every byte still arrives in order."""
import hashlib
import os
import socket
import subprocess
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


@pytest.fixture(scope="module", params=["uring", "epoll"])
def server(request):
    kuai = os.environ.get("KUAI_BIN", os.path.join(ROOT, "bazel-bin", "kuai"))
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    p = subprocess.Popen([kuai, "--threads", "1", "--io", request.param, "--max-body", "64m",
                          os.path.join(HERE, "abuse_scripts", "body.js")],
                         env=dict(os.environ, PORT=str(port)), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    assert "LISTENING" in p.stdout.readline()
    yield port
    p.terminate()
    code = p.wait(10)
    err = p.stderr.read()
    assert code == 0, f"kuai exited with {code} on SIGTERM:\n{err[-3000:]}"
    assert not any(m in err for m in ("AddressSanitizer", "runtime error", "LeakSanitizer")), err[-3000:]


def exchange(port, head, body, timeout=30):
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(timeout)
    s.sendall(head + body)
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(65536)
    headers, _, rest = data.partition(b"\r\n\r\n")
    length = int([l for l in headers.split(b"\r\n") if l.lower().startswith(b"content-length:")][0]
                 .split(b":")[1])
    while len(rest) < length:
        rest += s.recv(65536)
    return s, headers, rest


def test_paused_request_body_arrives_whole(server):
    body = os.urandom(8 * 1024 * 1024)
    head = (b"POST /slow-reader HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
    t = time.time()
    s, headers, rest = exchange(server, head, body)
    assert headers.startswith(b"HTTP/1.1 200")
    n, digest = rest.decode().split()
    assert int(n) == len(body)
    assert digest == hashlib.sha256(body).hexdigest()
    assert time.time() - t >= 0.3
    s.close()


def test_unread_body_is_drained_and_the_connection_goes_on(server):
    body = os.urandom(256 * 1024)
    head = b"POST /ignore HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
    s, headers, rest = exchange(server, head, body)
    assert rest == b"ignored"
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while not data.endswith(b"ok"):
        chunk = s.recv(4096)
        assert chunk, data
        data += chunk
    assert data.startswith(b"HTTP/1.1 200")
    s.close()
