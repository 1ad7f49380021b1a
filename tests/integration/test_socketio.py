"""socket.io 4 (tests/apps/socketio_app.js) under kuai and under the pinned
node, driven by socket.io's own client (tests/apps/socketio_client.js, run
by node) over long-polling, websocket, and polling upgraded to websocket.
Long-polling keeps each session in the process that opened it, so with more
than one thread kuai runs with --sticky (a client's connections all reach
one reactor); websocket alone needs nothing. Needs tests/apps/node_modules."""

from __future__ import annotations

import subprocess

import pytest

from conftest import NODE, REPO
from script_harness import NO_SCRIPTING, ScriptProc, free_ports

APPS = REPO / "tests" / "apps"

pytestmark = [
    pytest.mark.skipif(NO_SCRIPTING is not None, reason=str(NO_SCRIPTING)),
    pytest.mark.skipif(not (APPS / "node_modules" / "socket.io-client").is_dir(),
                       reason="tests/apps not installed (npm ci)"),
]


def start(logdir, runtime, sticky):
    p = ScriptProc(runtime, APPS / "socketio_app.js", logdir, env={"PORT": str(free_ports(1)[0])},
                   cwd=str(APPS))
    if sticky:
        p.cmd.insert(1, "--sticky")
    p.start(count=p.threads)
    return p


@pytest.fixture(scope="module")
def servers(logdir):
    procs = {"node": start(logdir, "node", False), "kuai": start(logdir, "kuai", True)}
    yield procs
    for p in procs.values():
        assert p.stop() == []


def client(port, transports):
    r = subprocess.run([NODE, str(APPS / "socketio_client.js"), str(port), transports], cwd=str(APPS),
                       capture_output=True, text=True, timeout=30)
    return r.returncode, r.stdout.strip(), r.stderr[-2000:]


@pytest.mark.parametrize("transports", ["polling", "websocket", "polling,websocket"])
def test_socketio_as_node(servers, transports):
    for _ in range(3):  # new sessions, new connections (both reactors, kuai --threads 2)
        got = {name: client(p.port, transports) for name, p in servers.items()}
        assert got["node"][0] == 0, got["node"]
        assert got["kuai"][1] == got["node"][1], got
    last = got["node"][1]
    assert '"echo:first",200000,["room-1"]' in last and '"echo:29"' in last and '"echo:last"' in last, last
