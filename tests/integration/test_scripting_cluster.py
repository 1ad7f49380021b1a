"""Scripts of their own on every reactor: each reactor's environment is a
cluster worker (scripts/cluster.js, written for Node's cluster module, runs
its worker branch on every reactor and never forks), and a script's own
net.Server (TCP or Unix socket) and dgram.Socket listen on every reactor as
cluster workers share their primary's sockets: connections and datagrams
reach every reactor, port 0 is one port, a port held elsewhere gives the
'error' a single node process gives (scripts/shared_ports.js)."""

from __future__ import annotations

import json
import os
import socket
import time

import pytest

from httpraw import Conn, build
from script_harness import (NO_SCRIPTING, SCRIPTS, ScriptProc, assert_same, free_ports,
                            running_pair)

pytestmark = pytest.mark.skipif(NO_SCRIPTING is not None, reason=str(NO_SCRIPTING))

TRIES = 40  # fresh connections per check: all on one worker would be 2**-39


@pytest.fixture(scope="module")
def pair(logdir):
    with running_pair(logdir, SCRIPTS / "cluster.js") as p:
        for proc in p.procs():
            # node: the primary forks two workers; kuai: two reactors.
            line = proc.wait_lines(r"^LISTENING", 2)[0].split()
            proc.tcp, proc.udp, proc.unix = int(line[2]), int(line[3]), line[4]
        yield p


def http_get(port, path):
    with Conn(port, timeout=5) as c:
        c.send(build("GET", path))
        _, r = c.read_final()
    return r.body.decode()


def tcp_read(port):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        return s.recv(100).decode()


def unix_read(path):
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(path)
        return s.recv(100).decode()


def udp_ask(port):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(b"hi", ("127.0.0.1", port))
        return s.recv(100).decode()


ASK = {
    "http": lambda p: http_get(p.port, "/"),
    "tcp": lambda p: tcp_read(p.tcp),
    "unix": lambda p: unix_read(p.unix),
    "udp": lambda p: udp_ask(p.udp),
}


def udp_burst(port, n=8):
    """n datagrams from n sockets sent at once, then their answers: node's
    workers all read one shared socket, and a single datagram at a time goes
    to whichever worker wakes first (often the same one); a burst gives each
    of them one to read."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(n)]
    try:
        for s in socks:
            s.settimeout(5)
            s.sendto(b"hi", ("127.0.0.1", port))
        return [s.recv(100).decode() for s in socks]
    finally:
        for s in socks:
            s.close()


def workers_seen(proc, what):
    if what == "udp":
        answers = [a for _ in range(TRIES // 8) for a in udp_burst(proc.udp)]
    else:
        answers = [ASK[what](proc) for _ in range(TRIES)]
    seen = set()
    for answer in answers:
        assert answer.startswith(f"{what} worker " if what != "http" else "worker "), answer
        seen.add(answer.split()[2 if what != "http" else 1].rstrip(":"))
    return seen


def test_the_worker_branch_runs_as_under_node(pair):
    """cluster.isPrimary false, no fork(), cluster.worker with Node's fields."""
    got = assert_same(pair, lambda p: json.loads(http_get(p.port, "/shape")), "cluster shape")
    assert got["isWorker"] and not got["isPrimary"] and got["state"] == "listening", got
    # kuai never forked: no node child process.
    kids = os.popen(f"pgrep -P {pair.kuai.proc.pid}").read().split()
    assert kids == [], kids


def test_each_worker_listens_on_the_same_ports(pair):
    for proc in pair.procs():
        lines = {tuple(l.split()[1:]) for l in proc.lines(r"^LISTENING")}
        assert len(lines) == 1, (proc, lines)  # port 0: one port for every worker


@pytest.mark.parametrize("what", ["http", "tcp", "unix", "udp"])
def test_every_worker_answers(pair, what):
    got = assert_same(pair, lambda p: workers_seen(p, what), what)
    assert got == {"1", "2"}, got


def test_a_killed_worker_is_replaced(pair):
    """worker.kill(): under node the primary forks a new worker; under kuai
    the reactor starts a fresh environment. Two workers answer afterwards,
    on every socket."""
    for proc in pair.procs():
        before = len(proc.lines(r"^LISTENING"))
        assert http_get(proc.port, "/kill") == "bye"
        proc.wait_lines(r"^LISTENING", before + 1)
        for what in ASK:
            assert len(workers_seen(proc, what)) == 2, (proc, what)


def test_the_unix_socket_goes_when_kuai_stops(logdir):
    port = free_ports(1)[0]
    proc = ScriptProc("kuai", SCRIPTS / "cluster.js", logdir, env={"PORT": str(port)})
    proc.start(count=2)
    path = proc.lines(r"^LISTENING")[0].split()[4]
    try:
        assert os.path.exists(path)
        assert unix_read(path).startswith("unix worker")
    finally:
        problems = proc.stop()
    assert problems == []
    assert not os.path.exists(path)


@pytest.fixture(scope="module")
def taken(tmp_path_factory):
    """A TCP port, a UDP port and a Unix socket held by this process."""
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    path = str(tmp_path_factory.mktemp("taken") / "held.sock")
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(path)
    unix.listen()
    yield {"TAKEN_TCP": str(tcp.getsockname()[1]), "TAKEN_UDP": str(udp.getsockname()[1]),
           "TAKEN_UNIX": path}
    for s in (tcp, udp, unix):
        s.close()


@pytest.fixture(scope="module")
def ports_pair(logdir, taken):
    with running_pair(logdir, SCRIPTS / "shared_ports.js", env=taken) as p:
        yield p


def test_a_port_held_elsewhere_is_reported_as_by_node(ports_pair):
    def errors(proc):
        lines = proc.lines(r"^ERROR")
        if proc.runtime == "kuai":
            # Each reactor reports the same three.
            assert len(lines) == 2 * 3 and len(set(lines)) == 3, lines
        return sorted(set(lines))
    got = assert_same(ports_pair, errors, "errors")
    assert [l.split()[1:3] for l in got] == [["tcp", "EADDRINUSE"], ["udp", "EADDRINUSE"],
                                              ["unix", "EADDRINUSE"]], got


def test_port_0_is_one_port_on_every_reactor(ports_pair):
    proc = ports_pair.kuai
    lines = {tuple(l.split()[1:]) for l in proc.lines(r"^LISTENING")}
    assert len(lines) == 1, lines
    _, tcp, udp = next(iter(lines))
    for _ in range(10):
        assert tcp_read(int(tcp)) == "tcp"
        assert udp_ask(int(udp)) == "hi"
