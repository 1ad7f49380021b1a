"""A server's connections as Node's http.Server shows them
(scripts/connections.js, under node and under kuai with one reactor: a
server's close() is its own environment's, as a cluster worker's is):
'connection' with the socket, the socket's 'close'; socket.end() and
socket.destroy() between requests close the connection, as do
closeIdleConnections() and closeAllConnections(); close() closes the idle
connections at once and emits 'close' only once the connection answering a
request has ended too. http-terminator, stoppable and graceful-shutdown code
rely on these."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from script_harness import NO_SCRIPTING, SCRIPTS, ScriptProc, free_ports

pytestmark = pytest.mark.skipif(NO_SCRIPTING is not None, reason=str(NO_SCRIPTING))


def get(s, path):
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
    s.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        assert chunk, f"GET {path}: the connection closed before the response"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(l.split(b":")[1]) for l in head.split(b"\r\n")
                  if l.lower().startswith(b"content-length:"))
    while len(body) < length:
        body += s.recv(4096)
    return body.decode()


def closed_within(s, seconds):
    """The server closed the connection (EOF) within `seconds`."""
    s.settimeout(seconds)
    try:
        return s.recv(100) == b""
    except socket.timeout:
        return False


def run(proc):
    line = proc.lines(r"^LISTENING")[0].split()
    a, b = int(line[1]), int(line[2])
    out = {}
    for path in ("/end", "/destroy", "/close-idle", "/close-all"):
        with socket.create_connection(("127.0.0.1", b)) as s:
            out[path] = (get(s, path), closed_within(s, 2))
    idle = socket.create_connection(("127.0.0.1", b))
    get(idle, "/")
    slow = socket.create_connection(("127.0.0.1", b))
    answer = {}
    t = threading.Thread(target=lambda: answer.setdefault("slow", get(slow, "/slow")))
    t.start()
    time.sleep(0.1)
    control = socket.create_connection(("127.0.0.1", a))
    out["close-b"] = get(control, "/close-b")
    out["idle closed at once"] = closed_within(idle, 1)
    t.join()
    out["slow answered"] = answer.get("slow")
    time.sleep(0.3)
    out["before the slow connection ends"] = json.loads(get(control, "/events"))
    slow.close()
    deadline = time.monotonic() + 5
    while True:
        events = json.loads(get(control, "/events"))
        if any(e.startswith("b close") for e in events) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    out["after"] = events
    for s in (idle, control):
        s.close()
    return out


@pytest.fixture(scope="module")
def results(logdir):
    got = {}
    for runtime in ("node", "kuai"):
        port = free_ports(1)[0]
        proc = ScriptProc(runtime, SCRIPTS / "connections.js", logdir, env={"PORT": str(port)},
                          threads=1)
        proc.start()
        try:
            got[runtime] = run(proc)
        finally:
            assert proc.stop() == []
    return got


@pytest.mark.parametrize("path", ["/end", "/destroy", "/close-idle", "/close-all"])
def test_an_idle_connection_is_closed(results, path):
    assert results["kuai"][path] == results["node"][path] == ("b", True)


def test_close_closes_idle_connections_and_waits_for_the_others(results):
    kuai, node = results["kuai"], results["node"]
    for r in (node, kuai):
        assert r["close-b"] == "closing" and r["idle closed at once"], r
        assert r["slow answered"] == "slow", r
        # 'close' waits for the connection that was answering a request.
        assert not any(e.startswith("b close") for e in r["before the slow connection ends"]), r
        assert "b close after the slow request" in r["after"], r
    # The same events ('connection' for each connection, each socket's
    # 'close'), the order of the first ones aside (timing).
    assert sorted(kuai["after"]) == sorted(node["after"])
    # The server's 'close' before its last socket's, as under node.
    for r in (node, kuai):
        assert r["after"][-2:] == ["b close after the slow request", r["after"][-1]], r
        assert r["after"][-1].startswith("b socket close"), r
