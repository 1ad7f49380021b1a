"""--sticky: every connection of one client address reaches the same reactor
(a classic BPF program on the listening sockets' SO_REUSEPORT group hashes
the source address), so apps that keep per-process session state (socket.io
long-polling) work with more than one thread; different clients still
spread over the reactors. Without it the kernel spreads one client's
connections. scripts/which_reactor.js answers with its environment's id;
the native listeners take the same program (checked here for serving)."""

from __future__ import annotations

import socket

import pytest

from script_harness import NO_SCRIPTING, SCRIPTS, ScriptProc, free_ports

needs_scripting = pytest.mark.skipif(NO_SCRIPTING is not None, reason=str(NO_SCRIPTING))

SOURCES = [f"127.0.0.{i}" for i in range(1, 17)]


def get(port, source="127.0.0.1", path="/"):
    """(head, body) of GET `path` on a new connection from `source`."""
    s = socket.socket()
    s.settimeout(5)
    try:
        s.bind((source, 0))
        s.connect(("127.0.0.1", port))
        s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    finally:
        s.close()
    head, body = data.split(b"\r\n\r\n", 1)
    return head, body


def reactor_of(port, source="127.0.0.1"):
    """The id of the reactor that answers a new connection from `source`."""
    head, body = get(port, source)
    assert head.startswith(b"HTTP/1.1 200"), (head, body)
    return body.decode()


def running(logdir, sticky, threads=4):
    p = ScriptProc("kuai", SCRIPTS / "which_reactor.js", logdir, threads=threads,
                   env={"PORT": str(free_ports(1)[0])})
    if sticky:
        p.cmd.insert(1, "--sticky")
    p.start(count=threads)
    return p


@pytest.fixture(scope="module")
def sticky(logdir):
    p = running(logdir, True)
    yield p
    assert p.stop() == []


@needs_scripting
def test_one_client_always_reaches_the_same_reactor(sticky):
    for source in ("127.0.0.1", "127.0.0.2", "127.0.0.3"):
        seen = {reactor_of(sticky.port, source) for _ in range(30)}
        assert len(seen) == 1, (source, seen)


@needs_scripting
def test_different_clients_spread_over_the_reactors(sticky):
    by_source = {source: reactor_of(sticky.port, source) for source in SOURCES}
    # 16 addresses over 4 reactors: the hash puts them on at least three.
    assert len(set(by_source.values())) >= 3, by_source


@needs_scripting
def test_without_sticky_one_client_is_spread(logdir):
    p = running(logdir, False)
    try:
        seen = {reactor_of(p.port) for _ in range(40)}
    finally:
        assert p.stop() == []
    # The kernel hashes address and port: 40 connections on one reactor of
    # four would be a 1 in 4^39 chance.
    assert len(seen) >= 2, seen


def test_native_listeners_with_sticky_serve_every_client(kuai, docroot):
    server = kuai("--sticky", "--respond", "/hi=hello", threads=4, tls=False)
    for source in SOURCES[:8]:
        for _ in range(3):
            head, body = get(server.port, source, "/hi")
            assert head.startswith(b"HTTP/1.1 200") and body == b"hello", (source, head, body)
