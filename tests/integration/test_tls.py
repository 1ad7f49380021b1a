"""TLS termination: curl over HTTPS, openssl s_client checks (ALPN, SNI,
protocol versions, resumption, ciphers, OCSP stapling), what reaches the TLS
port that is not TLS, stalled and concurrent handshakes, SIGHUP certificate
reload, startup errors, and a testssl.sh scan. Every test runs on both
backends. (The HTTP behaviour tests of the other modules also run over TLS:
see TLS_MODULES in conftest.py.)"""

import concurrent.futures
import hashlib
import json
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import HELLO_BODY, base_args, run_kuai
from httpraw import ConnectionClosed, Conn, get


@pytest.fixture
def scheme():
    """Every server of this module speaks TLS: `server` is the shared https
    one, `kuai` adds the test certificates unless told tls=False."""
    return "https"


def der(pem_path):
    return ssl.PEM_cert_to_DER_cert(Path(pem_path).read_text())


def hello(c):
    """One GET /hello on an open connection; checks the answer."""
    c.send(get("/hello"))
    r = c.read_response()
    assert r.status == 200 and r.body == HELLO_BODY.encode(), r
    return r


# --------------------------------------------------------------------------
# curl
# --------------------------------------------------------------------------

def curl(server, *args, timeout=30):
    p = subprocess.run(["curl", "-sS", "--max-time", str(timeout), *server.curl_tls, *args],
                       capture_output=True, text=True, timeout=timeout + 10)
    assert p.returncode == 0, f"curl {' '.join(args)} -> {p.returncode}: {p.stderr[-2000:]}"
    return p.stdout


def test_curl_keep_alive_one_connection(server):
    paths = ["/index.html", "/hello", "/style.css", "/missing.txt"]
    out = curl(server, "-w", "%{num_connects} %{http_code} %{ssl_verify_result} %{scheme}\\n",
               *[x for p in paths for x in ("-o", "/dev/null", f"{server.url}{p}")])
    lines = out.splitlines()
    assert len(lines) == len(paths), out
    connects = [int(line.split()[0]) for line in lines]
    assert connects == [1, 0, 0, 0], f"expected one connection for all URLs:\n{out}"
    assert [line.split()[1] for line in lines] == ["200", "200", "200", "404"], out
    assert all(line.split()[2:] == ["0", "HTTPS"] for line in lines), out


def test_curl_big_file_sha256(server, docroot, tmp_path):
    out = tmp_path / "big.out"
    w = curl(server, "--fail", "-o", str(out), "-w", "%{http_code} %{size_download}",
             f"{server.url}/big.bin")
    assert w == f"200 {docroot.big_size}", w
    assert hashlib.sha256(out.read_bytes()).hexdigest() == docroot.big_sha


@pytest.mark.parametrize("name", ["other.test", "kuai.test", "localhost"])
def test_curl_sni_names_verify(server, name):
    """curl checks the certificate against the name it asked for: other.test
    must get the RSA leaf, the others the ECDSA one."""
    port = int(server.port)
    out = curl(server, "--resolve", f"{name}:{port}:127.0.0.1", "-o", "/dev/null",
               "-w", "%{http_code} %{ssl_verify_result}", f"https://{name}:{port}/hello")
    assert out == "200 0", out


# --------------------------------------------------------------------------
# openssl s_client
# --------------------------------------------------------------------------

HANDSHAKE_RE = re.compile(r"^(New|Reused), (TLSv[\d.]+|\(NONE\)), Cipher is (\S+)", re.M)
REQUEST = b"GET /hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"


def s_client(certs, port, *args, send=b"", ign_eof=False, timeout=15):
    """Runs openssl s_client against port; stdin is `send` (then EOF, which
    ends the session unless ign_eof: then it lasts until the server closes)."""
    cmd = ["openssl", "s_client", "-connect", f"127.0.0.1:{int(port)}",
           "-CAfile", str(certs.ca), *args]
    if ign_eof:
        cmd.append("-ign_eof")
    try:
        p = subprocess.run(cmd, input=send, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{' '.join(cmd)} still running after {timeout}s")
    out = p.stdout.decode("utf-8", "replace")
    err = p.stderr.decode("utf-8", "replace")
    m = HANDSHAKE_RE.search(out)
    cn = re.search(r"^subject=.*?CN\s*=\s*([^,\n]+)", out, re.M)
    return SimpleNamespace(
        cmd=" ".join(cmd), rc=p.returncode, out=out, err=err, text=out + err,
        kind=m and m.group(1), version=m and m.group(2), cipher=m and m.group(3),
        cn=cn and cn.group(1).strip(),
        verified="Verify return code: 0 (ok)" in out,
    )


def describe(r):
    return f"{r.cmd}\nstdout:\n{r.out[-2500:]}\nstderr:\n{r.err[-1500:]}"


def test_alpn_selects_h2_then_http11(server, certs):
    for offer, chosen in [("http/1.1", "http/1.1"), ("h2,http/1.1", "h2"), ("http/1.1,h2", "h2"), ("h2", "h2")]:
        r = s_client(certs, server.port, "-alpn", offer)
        assert f"ALPN protocol: {chosen}\n" in r.out, describe(r)


def test_alpn_without_http2_selects_http11(kuai, certs):
    s = kuai("--respond", "/hello=hi", "--no-http2")
    r = s_client(certs, s.port, "-alpn", "h2,http/1.1")
    assert "ALPN protocol: http/1.1\n" in r.out, describe(r)


def test_alpn_in_python_client(server):
    with Conn(server.port) as c:
        assert c.tls.selected_alpn_protocol() == "http/1.1"
        hello(c)


@pytest.mark.parametrize("sni,cn,bits", [
    ("other.test", "other.test", 2048),
    ("localhost", "localhost", 256),
    ("kuai.test", "localhost", 256),
    ("unknown.example", "localhost", 256),
    (None, "localhost", 256),
], ids=["other.test", "localhost", "kuai.test", "unknown", "no-sni"])
def test_sni_selects_certificate(server, certs, sni, cn, bits):
    args = ["-servername", sni] if sni else ["-noservername"]
    r = s_client(certs, server.port, *args)
    assert r.kind == "New", describe(r)
    assert r.cn == cn, describe(r)
    assert f"Server public key is {bits} bit" in r.out, describe(r)
    assert r.verified, describe(r)


def test_sni_in_raw_helper(server, certs):
    """The raw helper sends SNI and checks the name: both leaves, HTTP on each."""
    with Conn(server.port, sni="other.test") as c:
        assert c.peer_cert() == der(certs.rsa)
        hello(c)
    with Conn(server.port, sni="kuai.test") as c:
        assert c.peer_cert() == der(certs.ecdsa)
        hello(c)


@pytest.mark.parametrize("flag,version", [("-tls1_3", "TLSv1.3"), ("-tls1_2", "TLSv1.2")])
def test_protocol_version_negotiated(server, certs, flag, version):
    r = s_client(certs, server.port, flag, send=REQUEST, ign_eof=True)
    assert r.kind == "New" and r.version == version, describe(r)
    assert re.search(rf"^\s*Protocol\s*:\s*{re.escape(version)}$", r.out, re.M), describe(r)
    assert "HTTP/1.1 200 OK" in r.out and HELLO_BODY in r.out, describe(r)


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3],
                         ids=["tls1_2", "tls1_3"])
def test_http_over_each_version(server, certs, docroot, version):
    ctx = ssl.create_default_context(cafile=str(certs.ca))
    ctx.minimum_version = ctx.maximum_version = version
    with Conn(server.port, tls=ctx, timeout=20) as c:
        assert c.tls_version == ("TLSv1.2" if version == ssl.TLSVersion.TLSv1_2 else "TLSv1.3")
        c.send(get("/big.bin") + get("/hello"))
        r = c.read_response()
        assert r.status == 200 and hashlib.sha256(r.body).hexdigest() == docroot.big_sha, r
        assert c.read_response().body == HELLO_BODY.encode()


@pytest.mark.parametrize("flag", ["-tls1", "-tls1_1"])
def test_old_protocol_versions_refused(server, certs, flag):
    # SECLEVEL=0 so that the local OpenSSL really offers the old version.
    r = s_client(certs, server.port, flag, "-cipher", "DEFAULT@SECLEVEL=0")
    assert r.version == "(NONE)", f"{flag} must not negotiate:\n{describe(r)}"
    assert "alert protocol version" in r.text, describe(r)


@pytest.mark.parametrize("cipher", ["AES128-SHA", "AES256-SHA", "ECDHE-RSA-AES128-SHA",
                                    "AES128-GCM-SHA256"])
def test_weak_ciphers_refused(server, certs, cipher):
    """CBC/SHA-1 suites and RSA key exchange (no forward secrecy) are refused."""
    r = s_client(certs, server.port, "-tls1_2", "-servername", "other.test",
                 "-cipher", f"{cipher}@SECLEVEL=0")
    assert r.version == "(NONE)", f"{cipher} must be refused:\n{describe(r)}"
    assert "handshake failure" in r.text, describe(r)


def test_strong_cipher_accepted(server, certs):
    r = s_client(certs, server.port, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256")
    assert r.version == "TLSv1.2" and r.cipher == "ECDHE-ECDSA-AES128-GCM-SHA256", describe(r)


@pytest.mark.parametrize("flags,version", [
    (["-tls1_3"], "TLSv1.3"),
    (["-tls1_2"], "TLSv1.2"),
    (["-tls1_2", "-no_ticket"], "TLSv1.2"),
], ids=["tls1_3-ticket", "tls1_2-ticket", "tls1_2-session-cache"])
def test_session_resumption(server, certs, tmp_path, flags, version):
    sess = tmp_path / "sess.pem"
    # A request read to the end, so that a TLS 1.3 ticket has arrived.
    r1 = s_client(certs, server.port, *flags, "-sess_out", str(sess), send=REQUEST, ign_eof=True)
    assert r1.kind == "New" and r1.version == version, describe(r1)
    assert "HTTP/1.1 200 OK" in r1.out, describe(r1)
    assert sess.exists() and sess.stat().st_size > 0, describe(r1)
    r2 = s_client(certs, server.port, *flags, "-sess_in", str(sess), send=REQUEST, ign_eof=True)
    assert r2.kind == "Reused" and r2.version == version, describe(r2)
    assert "HTTP/1.1 200 OK" in r2.out and HELLO_BODY in r2.out, describe(r2)


def test_resumption_in_python_client(server):
    """A TLS 1.2 session of the raw helper is resumed on the next connection."""
    ctx = ssl.create_default_context(cafile=str(server.certs.ca))
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with Conn(server.port, tls=ctx) as c:
        hello(c)
        session = c.tls.session
        assert not c.tls.session_reused
    with Conn(server.port, tls=ctx, session=session) as c:
        assert c.tls.session_reused
        hello(c)


def make_ocsp_response(certs, out_dir: Path):
    """A real, signed OCSP response ("good") for the ECDSA leaf, made with
    `openssl ocsp` acting as the CA's responder."""
    serial = subprocess.run(["openssl", "x509", "-in", str(certs.ecdsa), "-noout", "-serial"],
                            capture_output=True, text=True, check=True).stdout
    serial = serial.strip().split("=", 1)[1]
    index = out_dir / "index.txt"
    index.write_text(f"V\t351231235959Z\t\t{serial}\tunknown\t/O=kuai/CN=localhost\n")
    req, resp = out_dir / "req.der", out_dir / "ocsp.der"
    subprocess.run(["openssl", "ocsp", "-issuer", str(certs.ca), "-cert", str(certs.ecdsa),
                    "-no_nonce", "-reqout", str(req)], capture_output=True, check=True)
    subprocess.run(["openssl", "ocsp", "-index", str(index), "-rsigner", str(certs.ca),
                    "-rkey", str(certs.ca_key), "-CA", str(certs.ca), "-reqin", str(req),
                    "-respout", str(resp), "-ndays", "7"], capture_output=True, check=True)
    assert resp.stat().st_size > 0
    return resp


def test_ocsp_stapling(kuai, certs, tmp_path):
    resp = make_ocsp_response(certs, tmp_path)
    s = kuai("--tls-cert", str(certs.ecdsa), "--tls-key", str(certs.ecdsa_key),
             "--tls-ocsp", str(resp), tls=False)
    for flag in ["-tls1_3", "-tls1_2"]:
        r = s_client(certs, s.port, flag, "-status")
        assert r.kind == "New", describe(r)
        assert "OCSP Response Status: successful" in r.out, describe(r)
        assert "Cert Status: good" in r.out, describe(r)
    with Conn(s.port) as c:
        c.send(get("/index.html"))
        assert c.read_response().status == 200


def test_no_ocsp_without_flag(server, certs):
    r = s_client(certs, server.port, "-status")
    assert r.kind == "New", describe(r)
    assert "OCSP response: no response sent" in r.out, describe(r)


# --------------------------------------------------------------------------
# Not TLS, broken TLS, stalled TLS
# --------------------------------------------------------------------------

def test_plain_http_gets_clear_text_400(server):
    with Conn(server.port, tls=False) as c:
        c.send(get("/hello"))
        r = c.read_response()
        assert r.version == "HTTP/1.1" and r.status == 400, r
        assert r.has_token("Connection", "close"), r
        c.expect_close()
    with Conn(server.port) as c:  # TLS still served
        hello(c)


GARBAGE = {
    "binary": bytes(range(256)) * 4,
    "bad-record-length": b"\x16\x03\x01\xff\xff" + b"\x01" * 64,
    "appdata-before-hello": b"\x17\x03\x03\x00\x20" + b"\xaa" * 32,
    "alert-record": b"\x15\x03\x03\x00\x02\x02\x28",
    "sslv2-hello": b"\x80\x2e\x01\x00\x02\x00\x15\x00\x00\x00\x10" + b"\x07\x00\xc0" * 7
                   + b"\x11" * 16,
    "hello-then-garbage": None,  # a real ClientHello followed by junk records
}


def client_hello(certs, sni="localhost"):
    """The bytes of a real ClientHello from Python's ssl module."""
    ctx = ssl.create_default_context(cafile=str(certs.ca))
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=sni)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return out.read()


@pytest.mark.parametrize("name", list(GARBAGE))
def test_garbage_closes_only_that_connection(server, certs, name):
    payload = GARBAGE[name]
    if payload is None:
        payload = client_hello(certs) + b"\x16\x03\x03\x00\x10" + b"\xee" * 16 + b"\xff" * 100
    with Conn(server.port) as other:  # an open TLS connection beside it
        hello(other)
        with Conn(server.port, tls=False) as c:
            c.send(payload, ignore_errors=True)
            t0 = time.monotonic()
            data = c.read_until_close(timeout=5)
            assert time.monotonic() - t0 < 4
            assert b"HTTP/1.1 200" not in data, data[:300]
        hello(other)
    with Conn(server.port) as c:
        hello(c)


@pytest.mark.parametrize("sent", ["nothing", "half-hello", "full-hello"])
def test_stalled_handshake_closed_after_header_timeout(kuai, certs, sent):
    s = kuai("--header-timeout", "1s", "--idle-timeout", "30s", "--body-timeout", "30s")
    hello_bytes = client_hello(certs)
    payload = {"nothing": b"", "half-hello": hello_bytes[:len(hello_bytes) // 2],
               "full-hello": hello_bytes}[sent]
    with Conn(s.port, tls=False, timeout=8) as c:
        t0 = time.monotonic()
        if payload:
            c.send(payload)
        # The server is not blocked by the stalled client meanwhile.
        with Conn(s.port) as ok:
            ok.send(get("/index.html"))
            assert ok.read_response().status == 200
        data = c.read_until_close(timeout=6)
        elapsed = time.monotonic() - t0
    assert 0.6 <= elapsed <= 4, f"stalled handshake ({sent}) closed after {elapsed:.2f}s"
    assert b"HTTP/" not in data, data[:300]


def test_truncated_hello_then_fin(server, certs):
    """A ClientHello cut short by the client closing: the server closes too."""
    h = client_hello(certs)
    with Conn(server.port, tls=False) as c:
        c.send(h[:40])
        c.shutdown_write()
        c.read_until_close(timeout=3)
    with Conn(server.port) as c:
        hello(c)


def test_concurrent_handshakes(server, certs):
    n = 50

    def one(i):
        sni = "other.test" if i % 2 else "localhost"
        with Conn(server.port, sni=sni, timeout=30) as c:
            want = der(certs.rsa) if i % 2 else der(certs.ecdsa)
            assert c.peer_cert() == want, f"connection {i} ({sni}): wrong certificate"
            c.send(get("/hello"))
            r = c.read_response()
            assert r.status == 200 and r.body == HELLO_BODY.encode(), f"#{i}: {r!r}"
        return i

    with concurrent.futures.ThreadPoolExecutor(max_workers=n) as pool:
        done = sorted(pool.map(one, range(n)))
    assert done == list(range(n))


@pytest.mark.parametrize("path", ["/hello", "/big.bin"])
def test_tls13_half_close_after_request(server, docroot, path):
    """TLS 1.3 allows a half-close (RFC 8446 6.1): a client that sends its
    request, then close_notify and FIN, still gets the whole response, as it
    does after a bare FIN or a bare close_notify (Connection::onEof: "finish
    the answers")."""
    with Conn(server.port, timeout=20) as c:
        assert c.tls_version == "TLSv1.3"
        c.send(get(path, headers=[("Connection", "close")]))
        c.shutdown_write()
        data = c.read_until_close(timeout=20)
    assert data.startswith(b"HTTP/1.1 200 "), data[:200]
    want = HELLO_BODY.encode() if path == "/hello" else None
    head, body = data.split(b"\r\n\r\n", 1)
    if want is not None:
        assert body == want, data[:300]
    else:
        assert len(body) == docroot.big_size, \
            f"response cut short: {len(body)} of {docroot.big_size} body bytes"
        assert hashlib.sha256(body).hexdigest() == docroot.big_sha


@pytest.mark.parametrize("how", ["fin", "close_notify"])
def test_half_close_one_signal(server, docroot, how):
    """Only FIN, or only close_notify, after the request: the response comes."""
    with Conn(server.port, timeout=20) as c:
        c.send(get("/big.bin", headers=[("Connection", "close")]))
        if how == "fin":
            c.sock.shutdown(socket.SHUT_WR)
        else:
            c.close_notify()
        data = c.read_until_close(timeout=20)
    head, body = data.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 ") and len(body) == docroot.big_size, \
        f"{len(body)} of {docroot.big_size} body bytes"


# --------------------------------------------------------------------------
# SIGHUP reload
# --------------------------------------------------------------------------

def put(src, dst: Path):
    """Replaces dst with the bytes of src (a Path or bytes) by renaming over it,
    the way deploy tools do."""
    tmp = dst.with_suffix(dst.suffix + ".tmp")
    tmp.write_bytes(src.read_bytes() if isinstance(src, Path) else src)
    tmp.replace(dst)


def sighup(s, expect, count):
    """Sends SIGHUP; waits for the count-th stderr line holding expect."""
    s.proc.send_signal(signal.SIGHUP)  # not s.send_signal: that marks it stopping
    deadline = time.monotonic() + 5
    while s.stderr().count(expect) < count:
        assert s.alive(), f"kuai died on SIGHUP:\n{s.stderr()[-2000:]}"
        assert time.monotonic() < deadline, \
            f"no {expect!r} (#{count}) on stderr after SIGHUP:\n{s.stderr()[-2000:]}"
        time.sleep(0.05)


def test_sighup_reload(kuai, certs, tmp_path):
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    put(certs.ecdsa, cert)
    put(certs.ecdsa_key, key)
    s = kuai("--tls-cert", str(cert), "--tls-key", str(key), "--respond", f"/hello={HELLO_BODY}",
             tls=False)
    ok, failed = "kuai: SIGHUP: certificates reloaded", "keeping the old certificates"

    old = Conn(s.port, timeout=5)  # keep-alive connection across all reloads
    with old:
        hello(old)
        assert old.peer_cert() == der(certs.ecdsa)

        # Swap in the RSA pair (same paths) and reload.
        put(certs.rsa, cert)
        put(certs.rsa_key, key)
        sighup(s, ok, 1)
        with Conn(s.port, sni="other.test") as c:
            assert c.peer_cert() == der(certs.rsa), "new connection still gets the old cert"
            hello(c)
        with pytest.raises(ConnectionClosed, match="certificate verify failed"):
            Conn(s.port, sni="localhost")  # the RSA leaf is not valid for localhost
        hello(old)
        assert old.peer_cert() == der(certs.ecdsa)

        # A broken certificate file: the RSA pair stays in use.
        put(b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n", cert)
        sighup(s, failed, 1)
        assert str(cert) in s.stderr().split(failed)[-1].split("\n")[0], s.stderr()[-1000:]
        with Conn(s.port, sni="other.test") as c:
            assert c.peer_cert() == der(certs.rsa)
            hello(c)

        # A key that does not match the certificate: kept too.
        put(certs.ecdsa, cert)
        put(certs.rsa_key, key)
        sighup(s, failed, 2)
        with Conn(s.port, sni="other.test") as c:
            assert c.peer_cert() == der(certs.rsa)
            hello(c)

        # Both files good again: the ECDSA pair is back.
        put(certs.ecdsa_key, key)
        sighup(s, ok, 2)
        with Conn(s.port) as c:
            assert c.peer_cert() == der(certs.ecdsa)
            hello(c)
        hello(old)
    assert s.alive()


def test_sighup_without_tls_is_harmless(kuai):
    s = kuai(tls=False)
    sighup(s, "kuai: SIGHUP: nothing to reload", 1)
    with Conn(s.port) as c:
        c.send(get("/index.html"))
        assert c.read_response().status == 200


# --------------------------------------------------------------------------
# Startup errors
# --------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["missing-cert", "missing-key", "key-mismatch", "cert-not-pem",
                                  "cert-without-key", "key-without-cert", "ocsp-without-cert",
                                  "ocsp-missing", "ocsp-not-der"])
def test_startup_errors(io, docroot, certs, tmp_path, case):
    missing = str(tmp_path / "nope.pem")
    junk = tmp_path / "junk.txt"
    junk.write_text("this is not a certificate\n")
    ecdsa, ecdsa_key, rsa_key = str(certs.ecdsa), str(certs.ecdsa_key), str(certs.rsa_key)
    args, named = {
        "missing-cert": (["--tls-cert", missing, "--tls-key", ecdsa_key], [missing]),
        "missing-key": (["--tls-cert", ecdsa, "--tls-key", missing], [missing]),
        "key-mismatch": (["--tls-cert", ecdsa, "--tls-key", rsa_key], [rsa_key]),
        "cert-not-pem": (["--tls-cert", str(junk), "--tls-key", ecdsa_key], [str(junk)]),
        "cert-without-key": (["--tls-cert", ecdsa], ["--tls-key"]),
        "key-without-cert": (["--tls-key", ecdsa_key], ["--tls-key"]),
        "ocsp-without-cert": (["--tls-ocsp", str(junk)], ["--tls-ocsp"]),
        "ocsp-missing": (["--tls-cert", ecdsa, "--tls-key", ecdsa_key, "--tls-ocsp", missing],
                         [missing]),
        "ocsp-not-der": (["--tls-cert", ecdsa, "--tls-key", ecdsa_key, "--tls-ocsp", str(junk)],
                         [str(junk)]),
    }[case]
    p = run_kuai(*base_args(docroot.root, io), *args)
    assert p.returncode != 0, f"{case}: kuai started (stdout {p.stdout!r})"
    assert "https://" not in p.stdout and "http://" not in p.stdout, p.stdout
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kuai: "), \
        f"{case}: expected one 'kuai: ' line, got {p.stderr!r}"
    for word in named:
        assert word in lines[0], f"{case}: {word!r} not named in {lines[0]!r}"


# --------------------------------------------------------------------------
# testssl.sh
# --------------------------------------------------------------------------

TESTSSL = shutil.which("testssl.sh") or shutil.which("testssl")
# Findings about the generated test certificates, not about kuai: they carry
# no CRL or OCSP URI (tools/gen-test-certs makes them that way).
TESTSSL_ALLOWED = {"cert_revocation"}


@pytest.mark.skipif(TESTSSL is None, reason="testssl.sh not installed (Debian package "
                                              "testssl.sh; tools/setup installs it)")
def test_testssl_no_high_findings(server, certs, tmp_path):
    """Protocols, cipher categories, vulnerabilities and server defaults
    (-p -s -U -S, about 30 s); no HIGH or CRITICAL finding allowed."""
    report = tmp_path / "testssl.json"
    cmd = [TESTSSL, "--quiet", "--color", "0", "--warnings", "off", "--nodns", "none",
           "--add-ca", str(certs.ca), "--connect-timeout", "5", "--openssl-timeout", "5",
           "--jsonfile", str(report), "-p", "-s", "-U", "-S",
           f"127.0.0.1:{int(server.port)}"]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    except subprocess.TimeoutExpired:
        pytest.fail(f"testssl.sh still running after 240 s: {' '.join(cmd)}")
    assert report.exists(), f"no JSON report ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-1000:]}"
    findings = json.loads(report.read_text())
    by_id = {f["id"]: f for f in findings}
    # The scan really reached the server.
    for pid in ["TLS1_2", "TLS1_3"]:
        assert pid in by_id and by_id[pid]["finding"].startswith("offered"), \
            f"{pid}: {by_id.get(pid)}\n{p.stdout[-3000:]}"
    for pid in ["SSLv2", "SSLv3", "TLS1", "TLS1_1"]:
        assert pid in by_id and "not offered" in by_id[pid]["finding"], by_id.get(pid)
    bad = [f for f in findings if f["severity"] in ("HIGH", "CRITICAL", "FATAL")
           and f["id"] not in TESTSSL_ALLOWED]
    assert not bad, "testssl.sh findings:\n" + "\n".join(
        f"{f['severity']} {f['id']}: {f['finding']}" for f in bad)
