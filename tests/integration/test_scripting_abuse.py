"""Scripts that misbehave: each failure stays with its request or its thread's
environment, and kuai keeps serving."""
import os
import re
import socket
import subprocess
import threading
import time
import urllib.request

import pytest

from conftest import free_port

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SCRIPT = os.path.join(HERE, "abuse_scripts", "abuse.js")




class Server:
    def __init__(self, threads=1):
        kuai = os.environ.get("KUAI_BIN", os.path.join(ROOT, "bazel-bin", "kuai"))
        self.port = free_port()
        env = dict(os.environ, PORT=str(self.port))
        self.proc = subprocess.Popen(
            [kuai, "--threads", str(threads), "--cpu-budget", "1s", "--body-timeout", "1s",
             "--max-old-space-size=48", SCRIPT],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.out, self.err = [], []
        threading.Thread(target=self._read, args=(self.proc.stdout, self.out), daemon=True).start()
        threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True).start()
        deadline = time.time() + 15
        while sum("LISTENING" in l for l in self.out) < threads:
            assert self.proc.poll() is None, "".join(self.err)
            assert time.time() < deadline, "kuai did not start"
            time.sleep(0.05)

    @staticmethod
    def _read(stream, sink):
        for line in stream:
            sink.append(line)

    def get(self, path, timeout=15):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def stderr(self):
        return "".join(self.err)

    def stop(self):
        """SIGTERM; kuai must exit 0 with no sanitizer report."""
        self.proc.terminate()
        try:
            code = self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("kuai still running 10 s after SIGTERM")
        assert code == 0, f"kuai exited with {code} on SIGTERM:\n{self.stderr()[-3000:]}"
        from conftest import SANITIZER_MARKERS
        for marker in SANITIZER_MARKERS:
            assert marker not in self.stderr(), self.stderr()[-3000:]


@pytest.fixture
def server():
    s = Server()
    yield s
    s.stop()


def alive_id(server):
    status, body = server.get("/")
    assert status == 200, body
    m = re.match(r"alive (\d+)$", body)
    assert m, body
    return int(m.group(1))


def test_throw_gets_500_and_the_environment_stays(server):
    before = alive_id(server)
    assert server.get("/throw")[0] == 500
    # (stderr is read by a thread of ours: give it a moment to catch up.)
    deadline = time.time() + 5
    while "thrown by /throw" not in server.stderr() and time.time() < deadline:
        time.sleep(0.02)
    assert "thrown by /throw" in server.stderr()
    assert alive_id(server) == before


def test_reject_gets_500(server):
    before = alive_id(server)
    assert server.get("/reject")[0] == 500
    assert alive_id(server) == before


def test_infinite_loop_is_stopped_with_503_and_the_thread_serves_again(server):
    before = alive_id(server)
    t = time.time()
    status, _ = server.get("/loop")
    assert status == 503
    assert time.time() - t < 6
    after = alive_id(server)
    assert after != before  # a fresh environment
    assert "CPU budget" in server.stderr()


def test_huge_allocation_is_stopped_and_the_thread_serves_again(server):
    before = alive_id(server)
    status, _ = server.get("/alloc", timeout=30)
    assert status == 503
    assert alive_id(server) != before
    assert "heap" in server.stderr()


def test_uncaught_exception_replaces_only_that_environment(server):
    before = alive_id(server)
    assert server.get("/uncaught") == (200, "scheduled")
    deadline = time.time() + 5
    while "uncaught outside any request" not in server.stderr():
        assert time.time() < deadline, server.stderr()
        time.sleep(0.05)
    time.sleep(0.3)
    assert alive_id(server) != before
    assert server.proc.poll() is None


def test_slow_request_body_times_out_and_others_are_served(server):
    s = socket.create_connection(("127.0.0.1", server.port))
    s.sendall(b"POST /slow-body HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
    s.settimeout(5)
    t = time.time()
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    assert time.time() - t < 4
    assert data.startswith(b"HTTP/1.1 408")
    before = alive_id(server)  # still answering, and from the same environment
    assert alive_id(server) == before


def test_client_abort_mid_response(server):
    s = socket.create_connection(("127.0.0.1", server.port))
    s.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
    got = 0
    while got < 1 << 20:
        got += len(s.recv(65536))
    s.close()
    deadline = time.time() + 5
    while not any("big closed finished=false" in l for l in server.out):
        assert time.time() < deadline, server.out
        time.sleep(0.05)
    before = alive_id(server)
    assert alive_id(server) == before


def test_other_threads_keep_serving_while_one_loops():
    """While one thread is stuck, new connections keep being answered: by the
    other thread, or (those that landed on the stuck thread) with 503 once its
    handler is stopped. None is refused or left hanging, and afterwards every
    request is served."""
    s = Server(threads=2)
    try:
        hung = threading.Thread(target=lambda: s.get("/loop"))
        hung.start()
        time.sleep(0.2)
        statuses = [s.get("/", timeout=5)[0] for _ in range(20)]
        hung.join(10)
        assert set(statuses) <= {200, 503}, statuses
        assert statuses.count(200) >= 10, statuses
        assert all(s.get("/", timeout=5)[0] == 200 for _ in range(20))
    finally:
        s.stop()
