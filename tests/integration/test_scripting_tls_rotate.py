"""server.addContext() and server.setSecureContext() on a script's https
server, under kuai and the pinned node (tls_scripts/rotate.js): a name
added gets its certificate by SNI; after setSecureContext new handshakes
get the new certificate, a connection opened before keeps answering; wrong
arguments throw Node's errors."""

from __future__ import annotations

import socket
import ssl
import time

import pytest

from conftest import make_certs
from script_harness import NO_SCRIPTING, HERE, running_pair

pytestmark = pytest.mark.skipif(NO_SCRIPTING is not None, reason=str(NO_SCRIPTING))


def context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def connect(port, sni=None):
    return context().wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                                 server_hostname=sni)


def ask(tls, path):
    tls.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += tls.recv(65536)
    head, body = data.split(b"\r\n\r\n", 1)
    length = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0].split(b":")[1])
    while len(body) < length:
        body += tls.recv(65536)
    return body.decode()


def served_certificate(port, sni=None):
    with connect(port, sni) as tls:
        der = tls.getpeercert(binary_form=True)
        assert ask(tls, "/cert") == "hello /cert"
    return der


def der_of(path):
    return ssl.PEM_cert_to_DER_cert(path.read_text())


def test_set_secure_context_as_node(logdir, tmp_path):
    certs = make_certs(tmp_path / "certs")
    rotate = tmp_path / "rotate-now"
    env = {"CERT_A": str(certs.ecdsa), "KEY_A": str(certs.ecdsa_key), "CERT_B": str(certs.rsa),
           "KEY_B": str(certs.rsa_key), "ROTATE": str(rotate)}
    with running_pair(logdir, HERE / "tls_scripts" / "rotate.js", env=env) as pair:
        before = {p.runtime: connect(p.port) for p in pair.procs()}
        for p in pair.procs():
            for _ in range(4):  # new connections: both reactors under kuai
                assert served_certificate(p.port) == der_of(certs.ecdsa), p
                assert served_certificate(p.port, "localhost") == der_of(certs.ecdsa), p
                assert served_certificate(p.port, "other.test") == der_of(certs.rsa), p
            assert ask(p_tls := before[p.runtime], "/first") == "hello /first", p
            assert ask(p_tls, "/bad") == ("ERR_INVALID_ARG_TYPE ERR_INVALID_ARG_TYPE ERR_INVALID_ARG_TYPE "
                                          "ERR_TLS_REQUIRED_SERVER_NAME"), p
        rotate.write_text("now")
        for p in pair.procs():
            p.wait_lines(r"^rotated$", count=p.threads)
        for p in pair.procs():
            for _ in range(4):
                assert served_certificate(p.port) == der_of(certs.rsa), p
                assert served_certificate(p.port, "localhost") == der_of(certs.rsa), p
                assert served_certificate(p.port, "other.test") == der_of(certs.rsa), p
            # The connection from before the change still answers.
            assert ask(before[p.runtime], "/after") == "hello /after", p
            before[p.runtime].close()
            # Every reactor renewed to the same context: sessions resume on all.
            ctx = context()
            with ctx.wrap_socket(socket.create_connection(("127.0.0.1", p.port), timeout=5)) as first:
                assert ask(first, "/first") == "hello /first"
                session = first.session
            for i in range(16):  # both reactors under kuai
                with ctx.wrap_socket(socket.create_connection(("127.0.0.1", p.port), timeout=5),
                                           session=session) as tls:
                    assert ask(tls, f"/{i}") == f"hello /{i}"
                    assert tls.session_reused, (p, i)


def test_sessions_resume_on_every_reactor_as_node(logdir, tmp_path):
    """Every reactor's listener of one https server shares its TLS context
    (its session-ticket keys): a client's later connections resume whichever
    reactor they reach, as with node's one process."""
    certs = make_certs(tmp_path / "certs")
    env = {"CERT_A": str(certs.ecdsa), "KEY_A": str(certs.ecdsa_key), "CERT_B": str(certs.rsa),
           "KEY_B": str(certs.rsa_key), "ROTATE": str(tmp_path / "never")}
    ctx = ssl.create_default_context(cafile=str(certs.ca))
    with running_pair(logdir, HERE / "tls_scripts" / "rotate.js", env=env) as pair:
        for p in pair.procs():
            with ctx.wrap_socket(socket.create_connection(("127.0.0.1", p.port), timeout=5),
                                 server_hostname="localhost") as first:
                assert ask(first, "/first") == "hello /first"  # the tickets come after the handshake
                session = first.session
            resumed = []
            for i in range(12):  # new connections: both reactors under kuai
                with ctx.wrap_socket(socket.create_connection(("127.0.0.1", p.port), timeout=5),
                                     server_hostname="localhost", session=session) as tls:
                    assert ask(tls, f"/{i}") == f"hello /{i}"
                    resumed.append(tls.session_reused)
            assert all(resumed), (p, resumed)
