"""https.createServer under kuai: BoringSSL on the reactor, Node's crypto and
Node's own https client (OpenSSL 3) in the same process."""
import hashlib
import json
import os
import shutil
import subprocess

import pytest

from conftest import free_port

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))




@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    subprocess.run([os.path.join(ROOT, "tools", "gen-test-certs"), str(d)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return str(d)


@pytest.fixture(scope="module")
def https_server(certs):
    kuai = os.environ.get("KUAI_BIN", os.path.join(ROOT, "bazel-bin", "kuai"))
    port = free_port()
    p = subprocess.Popen([kuai, "--threads", "2", os.path.join(HERE, "tls_scripts", "https_server.js"),
                          certs, str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    assert line.startswith("listening"), (line, p.stderr.read() if p.poll() is not None else "")
    yield port, certs
    p.terminate()
    code = p.wait(10)
    err = p.stderr.read()
    assert code == 0, f"kuai exited with {code} on SIGTERM:\n{err[-3000:]}"
    assert not any(m in err for m in ("AddressSanitizer", "runtime error", "LeakSanitizer")), err[-3000:]


def curl(url, certs):
    r = subprocess.run(["curl", "-sS", "--cacert", os.path.join(certs, "ca.pem"), "-w", "\n%{http_code}",
                        url], capture_output=True, text=True, timeout=20)
    body, _, code = r.stdout.rpartition("\n")
    return int(code or 0), body


def test_https_create_server_with_node_crypto(https_server):
    port, certs = https_server
    code, body = curl(f"https://localhost:{port}/", certs)
    assert code == 200
    data = json.loads(body)
    assert data["encrypted"] is True
    assert data["digest"] == hashlib.sha256(b"kuai").hexdigest()


def test_node_https_client_and_kuai_tls_in_one_process(https_server):
    port, certs = https_server
    code, body = curl(f"https://localhost:{port}/self", certs)
    assert code == 200, body
    assert body.startswith("inner 200 ")
    assert json.loads(body[len("inner 200 "):])["encrypted"] is True


def test_https_keep_alive_reuses_the_connection(https_server):
    port, certs = https_server
    r = subprocess.run(["curl", "-sS", "--cacert", os.path.join(certs, "ca.pem"), "-o", "/dev/null",
                        "-o", "/dev/null", "-w", "%{num_connects}\n", f"https://localhost:{port}/",
                        f"https://localhost:{port}/"],
                       capture_output=True, text=True, timeout=20)
    assert r.stdout.split() == ["1", "0"]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_https_alpn_and_tls13(https_server):
    port, _ = https_server
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-alpn", "http/1.1",
                        "-servername", "localhost", "-tls1_3"], input="", capture_output=True, text=True,
                       timeout=20)
    assert "ALPN protocol: http/1.1" in r.stdout
    assert "TLSv1.3" in r.stdout
