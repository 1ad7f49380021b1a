"""https.createServer with client certificates and an encrypted key, under
kuai and under node (tls_scripts/mtls_server.js): requestCert with ca, with
rejectUnauthorized on (a client without a valid certificate fails the
handshake) and off (it is served; socket.authorized false and
authorizationError say why), getPeerCertificate() in Node's shape,
getPeerX509Certificate(), getProtocol(), alpnProtocol, servername; a key
encrypted with a passphrase, and a PKCS#12 archive (pfx)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from script_harness import NO_SCRIPTING, running_pair

pytestmark = pytest.mark.skipif(NO_SCRIPTING is not None, reason=str(NO_SCRIPTING))

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "tls_scripts" / "mtls_server.js"


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(certs, tmp_path_factory):
    """A client certificate the test CA signed, one signed by nobody known,
    and the server's key encrypted with a passphrase."""
    d = tmp_path_factory.mktemp("mtls")
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(d / "client.key"), "-out", str(d / "client.csr"),
            "-subj", "/CN=client one/O=Acme")
    (d / "ext").write_text("extendedKeyUsage=clientAuth\n")
    openssl("x509", "-req", "-in", str(d / "client.csr"), "-CA", str(certs.ca), "-CAkey", str(certs.ca_key),
            "-CAcreateserial", "-days", "2", "-out", str(d / "client.pem"), "-extfile", str(d / "ext"))
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(d / "stranger.key"), "-out", str(d / "stranger.pem"), "-days", "2",
            "-subj", "/CN=stranger")
    openssl("pkey", "-in", str(certs.ecdsa_key), "-aes256", "-passout", "pass:open sesame",
            "-out", str(d / "server-encrypted.key"))
    openssl("pkcs12", "-export", "-in", str(certs.ecdsa), "-inkey", str(certs.ecdsa_key),
            "-certfile", str(certs.ca), "-passout", "pass:open sesame", "-out", str(d / "server.pfx"))
    return d


def curl(port, certs, client=None, key=None):
    cmd = ["curl", "-sS", "--cacert", str(certs.ca), f"https://localhost:{port}/"]
    if client:
        cmd += ["--cert", str(client), "--key", str(key)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    if r.returncode != 0:
        return "refused"  # the handshake failed
    return json.loads(r.stdout)


def env(certs, reject, key=None, passphrase=None, pfx=None):
    e = {"CERT": str(certs.ecdsa), "KEY": str(key or certs.ecdsa_key), "CA": str(certs.ca),
         "REJECT": "1" if reject else "0"}
    if passphrase:
        e["PASSPHRASE"] = passphrase
    if pfx:
        e["PFX"] = str(pfx)
    return e


@pytest.fixture(scope="module", params=[False, True], ids=["served", "refused"])
def pair(request, logdir, certs):
    with running_pair(logdir, SCRIPT, env=env(certs, request.param)) as p:
        p.reject = request.param
        yield p


def probe_all(p, certs, pki):
    return {
        "trusted client": curl(p.port, certs, pki / "client.pem", pki / "client.key"),
        "no certificate": curl(p.port, certs),
        "unknown issuer": curl(p.port, certs, pki / "stranger.pem", pki / "stranger.key"),
    }


def test_client_certificates_as_node(pair, certs, pki):
    got = {p.runtime: probe_all(p, certs, pki) for p in pair.procs()}
    kuai = got["kuai"]
    if pair.node is not None:
        assert kuai == got["node"], f"kuai: {kuai}\nnode: {got['node']}"
    trusted = kuai["trusted client"]
    assert trusted["authorized"] is True and trusted["authorizationError"] is None, trusted
    assert trusted["subject"] == {"CN": "client one", "O": "Acme"}, trusted
    assert "fingerprint256" in trusted["legacyFields"] and "raw" in trusted["legacyFields"], trusted
    assert trusted["x509Subject"] == "CN=client one\nO=Acme", trusted
    assert trusted["protocol"] == "TLSv1.3" and trusted["alpn"] == "http/1.1", trusted
    assert trusted["servername"] == "localhost" and trusted["encrypted"] is True, trusted
    if pair.reject:
        assert kuai["no certificate"] == "refused" and kuai["unknown issuer"] == "refused", kuai
    else:
        none = kuai["no certificate"]
        assert none["authorized"] is False and none["authorizationError"] == "UNABLE_TO_GET_ISSUER_CERT", none
        assert none["legacyFields"] == [] and none["x509Subject"] is None, none
        stranger = kuai["unknown issuer"]
        assert stranger["authorized"] is False, stranger
        assert stranger["authorizationError"] == "DEPTH_ZERO_SELF_SIGNED_CERT", stranger


@pytest.mark.parametrize("form", ["encrypted key", "pfx"])
def test_encrypted_key_with_its_passphrase(logdir, certs, pki, form):
    if form == "pfx":
        e = env(certs, False, passphrase="open sesame", pfx=pki / "server.pfx")
    else:
        e = env(certs, False, key=pki / "server-encrypted.key", passphrase="open sesame")
    with running_pair(logdir, SCRIPT, env=e) as p:
        got = {q.runtime: curl(q.port, certs, pki / "client.pem", pki / "client.key") for q in p.procs()}
    assert got["kuai"]["authorized"] is True, got
    if "node" in got:
        assert got["kuai"] == got["node"]
