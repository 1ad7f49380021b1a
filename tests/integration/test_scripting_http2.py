"""http2.createServer / createSecureServer in a script, served by kuai's
HTTP/2 (nghttp2 on the reactor): the same script runs under the pinned node
and under kuai, and each answer (status, fields in order, body; date aside),
each request as the handler sees it, and each error a handler gets must be
the same. Clients: Python's h2 (frame level), curl, and Node's own http2
client."""
import hashlib
import json
import os
import re
import subprocess
import time

import h2.events
import h2.settings
import pytest

from conftest import NODE
from h2client import H2Client
from script_harness import SCRIPTS, running_pair

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def certdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("h2certs")
    subprocess.run([os.path.join(ROOT, "tools", "gen-test-certs"), str(d)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return d


@pytest.fixture(scope="module")
def pair(logdir, certdir):
    with running_pair(logdir, SCRIPTS / "http2_api.js", args=(str(certdir),),
                      ready=r"^LISTENING (\d+) (\d+) (\d+)") as p:
        for proc in p.procs():
            ports = proc.lines(r"^LISTENING")[0].split()[1:]
            proc.h2c, proc.both, proc.only = (int(x) for x in ports)
        yield p


def ask(port, path, method="GET", body=None, extra=(), authority="example.test", order=None):
    # Push off, as browsers and curl have it (kuai offers no server push).
    c = H2Client(port, settings={h2.settings.SettingCodes.ENABLE_PUSH: 0})
    try:
        sid = c.request(path, method=method, end_stream=body is None, extra=extra, scheme="http",
                        authority=authority, order=order)
        if body is not None:
            c.send_body(sid, body)
        headers, data, ended = c.response(sid, ordered=True)
        assert ended, f"{path}: the response did not end"
        return headers, data
    finally:
        c.close()


def without_date(headers):
    assert [v for k, v in headers if k == "date"], headers
    return [(k, v) for k, v in headers if k != "date"]


@pytest.mark.parametrize("path", ["/", "/fields", "/flat", "/chunks", "/connection", "/length",
                                  "/many", "/no-content", "/errors", "/missing"])
def test_compat_answers_as_node(pair, path):
    node = ask(pair.node.h2c, path)
    kuai = ask(pair.kuai.h2c, path)
    assert without_date(kuai[0]) == without_date(node[0])
    assert kuai[1] == node[1]


def test_status_message_and_connection_field_warn_as_node(pair):
    for path in ("/fields", "/connection"):
        ask(pair.kuai.h2c, path)
        ask(pair.node.h2c, path)
    for text in ("UnsupportedWarning: Status message is not supported by HTTP/2",
                 "UnsupportedWarning: The provided connection header is not valid"):
        assert text in pair.node.stderr()
        assert text in pair.kuai.stderr()


def echo(port, **kw):
    headers, data = ask(port, "/echo", **kw)
    assert dict(headers)[":status"] == "200"
    return json.loads(data)


def test_request_as_node_shows_it(pair):
    body = os.urandom(300_000)
    extra = [("user-agent", "ua1"), ("cookie", "a=1"), ("x-dup", "1"), ("cookie", "b=2"),
             ("x-dup", "2"), ("user-agent", "ua2"), ("content-type", "application/octet-stream")]
    node = echo(pair.node.h2c, method="POST", body=body, extra=extra)
    kuai = echo(pair.kuai.h2c, method="POST", body=body, extra=extra)
    assert kuai == node
    assert kuai["request"] == "Http2ServerRequest" and kuai["httpVersion"] == "2.0"
    assert kuai["headers"]["cookie"] == "a=1; b=2"
    assert kuai["bodySha256"] == hashlib.sha256(body).hexdigest()


def test_pseudo_headers_in_the_order_sent_as_node(pair):
    order = [":authority", ":scheme", ":method", ":path"]
    node = echo(pair.node.h2c, extra=[("x-after", "1")], order=order)
    kuai = echo(pair.kuai.h2c, extra=[("x-after", "1")], order=order)
    assert kuai["rawHeaders"] == node["rawHeaders"]
    assert kuai["rawHeaders"][0:8:2] == order, kuai["rawHeaders"]


def test_host_field_without_authority(pair):
    extra = [("host", "from-host.test")]
    node = echo(pair.node.h2c, authority=None, extra=extra)
    kuai = echo(pair.kuai.h2c, authority=None, extra=extra)
    assert kuai == node
    assert kuai["authority"] == "from-host.test"
    assert ":authority" not in kuai["headers"]


def curl(args, timeout=20):
    return subprocess.run(["curl", "-sS", "--max-time", str(timeout), *args], capture_output=True,
                          timeout=timeout + 10)


def secure_echo(proc, certdir, port, *flags):
    p = curl(["--cacert", str(certdir / "ca.pem"), "--resolve", f"localhost:{port}:127.0.0.1", *flags,
              f"https://localhost:{port}/echo"])
    assert p.returncode == 0, p.stderr.decode()
    return json.loads(p.stdout)


def comparable(e):
    """An echo without what depends on the client's port."""
    e = dict(e)
    for k in ("authority", "headers", "rawHeaders"):
        e.pop(k)
    return e


def test_secure_server_alpn_h2_and_allow_http1(pair, certdir):
    for flag, want in (("--http2", ("Http2ServerRequest", "Http2ServerResponse", "2.0")),
                       ("--http1.1", ("IncomingMessage", "ServerResponse", "1.1"))):
        got = {}
        for proc in pair.procs():
            e = secure_echo(proc, certdir, proc.both, flag)
            assert (e["request"], e["response"], e["httpVersion"]) == want, (proc, e)
            assert e["encrypted"] is True
            got[proc.runtime] = comparable(e)
        assert got["kuai"] == got["node"]


def test_secure_server_without_allow_http1_speaks_only_h2(pair, certdir):
    for proc in pair.procs():
        e = secure_echo(proc, certdir, proc.only, "--http2")
        assert e["httpVersion"] == "2.0" and e["scheme"] == "https"
        p = curl(["--cacert", str(certdir / "ca.pem"), "--resolve", f"localhost:{proc.only}:127.0.0.1",
                  "--http1.1", "-o", "/dev/null", "-w", "%{http_code}", f"https://localhost:{proc.only}/"])
        assert p.returncode != 0 and p.stdout != b"200", (proc, p.stdout, p.stderr)


def test_clear_text_server_refuses_http1(pair):
    for proc in pair.procs():
        p = curl(["--http1.1", "-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{proc.h2c}/"])
        assert p.returncode != 0 and p.stdout != b"200", (proc, p.stdout, p.stderr)
        # The server goes on: h2 with prior knowledge still works.
        assert ask(proc.h2c, "/")[1] == b"hello"


def test_large_response_with_backpressure(pair):
    want = hashlib.sha256(b"".join(bytes([i]) * 16384 for i in range(64))).hexdigest()
    for proc in pair.procs():
        p = curl(["--http2-prior-knowledge", f"http://127.0.0.1:{proc.h2c}/big"], timeout=30)
        assert p.returncode == 0, p.stderr.decode()
        assert hashlib.sha256(p.stdout).hexdigest() == want, proc


NODE_CLIENT = r"""
const http2 = require('http2');
const [port, n] = process.argv.slice(1).map(Number);
const session = http2.connect(`http://127.0.0.1:${port}`);
let left = n;
const out = [];
for (let i = 0; i < n; ++i) {
  const req = session.request({ ':path': '/echo', ':method': 'POST', 'x-i': String(i) });
  let status;
  const chunks = [];
  req.on('response', (h) => { status = h[':status']; });
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const e = JSON.parse(Buffer.concat(chunks));
    out[i] = [status, e.headers['x-i'], e.bodyLength];
    if (--left === 0) {
      console.log(JSON.stringify(out));
      session.close();
    }
  });
  req.end(Buffer.alloc(1000 * i, 'x'));
}
"""


def test_node_http2_client_many_streams_on_one_session(pair):
    p = subprocess.run([NODE, "-e", NODE_CLIENT, str(pair.kuai.h2c), "50"], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == [[200, str(i), 1000 * i] for i in range(50)]


# ---- the core API: server.on('stream') ----

STREAM_SCRIPT = r"""
const http2 = require('http2');
const server = http2.createServer();
server.on('stream', (stream, headers, flags) => {
  const path = headers[':path'];
  if (path === '/echo') {
    let n = 0;
    stream.on('data', (c) => { n += c.length; });
    stream.on('end', () => {
      stream.respond({ ':status': 200, 'content-type': 'text/plain' });
      stream.end(`${headers[':method']} ${n} ${stream.pushAllowed}`);
    });
    return;
  }
  if (path === '/file') {
    stream.respondWithFile(__filename, { 'content-type': 'text/javascript' });
    return;
  }
  if (path === '/missing') {
    stream.respondWithFile('/nonexistent/file', {}, {
      onError(e) { stream.respond({ ':status': 404 }); stream.end(e.code); },
    });
    return;
  }
  if (path === '/forbidden') {
    let code = 'none';
    try { stream.respond({ connection: 'close' }); } catch (e) { code = e.code; }
    stream.respond({ ':status': 500 });
    stream.end(code);
    return;
  }
  stream.on('close', () => console.log(`CLOSED ${path}`));
  stream.respond({ ':status': 200, 'x-flags': String(flags), 'set-cookie': ['a=1', 'b=2'] });
  stream.write('hello ');
  stream.end('stream');
});
server.listen(Number(process.env.PORT), () => console.log(`LISTENING ${server.address().port}`));
"""


@pytest.fixture(scope="module")
def stream_pair(logdir, tmp_path_factory):
    script = tmp_path_factory.mktemp("h2stream") / "stream.js"
    script.write_text(STREAM_SCRIPT)
    with running_pair(logdir, script) as p:
        yield p, script


@pytest.mark.parametrize("path", ["/", "/file", "/missing", "/forbidden"])
def test_stream_api_answers_as_node(stream_pair, path):
    p, _ = stream_pair
    node = ask(p.node.port, path)
    kuai = ask(p.kuai.port, path)
    assert without_date(kuai[0]) == without_date(node[0])
    assert kuai[1] == node[1]


def test_stream_api_reads_the_body_and_closes(stream_pair):
    p, _ = stream_pair
    body = os.urandom(200_000)
    for proc in p.procs():
        headers, data = ask(proc.port, "/echo", method="PUT", body=body)
        assert data == b"PUT 200000 false", proc
    ask(p.kuai.port, "/")
    ask(p.node.port, "/")
    p.node.wait_lines(r"^CLOSED /$", count=1, timeout=5)
    p.kuai.wait_lines(r"^CLOSED /$", count=1, timeout=5)


def test_served_by_kuais_engine(pair):
    """The script's server is kuai's HTTP/2 (its SETTINGS: 100 streams, RFC
    9218 priorities), not Node's own http2 module on a socket of its own."""
    c = H2Client(pair.kuai.h2c)
    try:
        evs, _ = c.events(lambda e: any(isinstance(x, h2.events.RemoteSettingsChanged) for x in e))
    finally:
        c.close()
    changed = next(x for x in evs if isinstance(x, h2.events.RemoteSettingsChanged)).changed_settings
    assert changed[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS].new_value == 100
    assert changed[0x9].new_value == 1  # SETTINGS_NO_RFC7540_PRIORITIES


# ------------------------------------------------------------------ the core API

@pytest.fixture(scope="module")
def api_pair(logdir):
    with running_pair(logdir, SCRIPTS / "http2_stream_api.js", ready=r"^LISTENING (\d+) (\d+)") as p:
        for proc in p.procs():
            proc.core, proc.compat = (int(x) for x in proc.lines(r"^LISTENING")[0].split()[1:])
        yield p


NOW = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d \w{3} 2\d{3} [\d:]{8} GMT$")


def frames(port, path, method="GET", body=None, trailers=None):
    """What the client sees of one stream: 1xx heads, the head (a date of
    now shown as such), the body, trailing fields and a reset's code. (Where
    an empty DATA frame carries END_STREAM does not count.)"""
    c = H2Client(port, settings={h2.settings.SettingCodes.ENABLE_PUSH: 0})
    try:
        sid = c.request(path, method=method, end_stream=body is None and trailers is None, scheme="http",
                        authority="example.test")
        if body is not None:
            c.conn.send_data(sid, body, end_stream=trailers is None)
            c.flush()
        if trailers:
            c.conn.send_headers(sid, trailers, end_stream=True)
            c.flush()
        evs, _ = c.events(lambda e: any(isinstance(x, (h2.events.StreamEnded, h2.events.StreamReset))
                                        and x.stream_id == sid for x in e))
    finally:
        c.close()
    out = {"info": [], "head": None, "body": b"", "trailers": None, "reset": None, "ended": False}
    for e in evs:
        if getattr(e, "stream_id", None) != sid:
            continue
        if isinstance(e, h2.events.InformationalResponseReceived):
            out["info"].append(list(e.headers))
        elif isinstance(e, h2.events.ResponseReceived):
            out["head"] = [(k, "(now)" if k == "date" and NOW.match(v) else v) for k, v in e.headers]
        elif isinstance(e, h2.events.DataReceived):
            out["body"] += e.data
        elif isinstance(e, h2.events.TrailersReceived):
            out["trailers"] = list(e.headers)
        elif isinstance(e, h2.events.StreamReset):
            out["reset"] = int(e.error_code)
        elif isinstance(e, h2.events.StreamEnded):
            out["ended"] = True
    return out


@pytest.mark.parametrize("path", [
    "/trailers", "/no-trailer-listener", "/close", "/close-after-write", "/early-hints", "/file-range",
    "/file-statcheck", "/file-statcheck-false", "/file-directory", "/file-trailers", "/fd",
    "/fd-statcheck", "/errors", "/no-date", "/own-date"])
def test_core_stream_api_as_node(api_pair, path):
    node = frames(api_pair.node.core, path)
    kuai = frames(api_pair.kuai.core, path)
    assert kuai == node
    assert node["ended"] or node["reset"] is not None, node


def test_core_stream_api_details(api_pair):
    # Trailers after the body, then END_STREAM with them; a reset's own code.
    t = frames(api_pair.kuai.core, "/trailers")
    assert t["body"] == b"body done" and t["trailers"] == [("x-sum", "abc"), ("x-two", "1"), ("x-two", "2")]
    assert frames(api_pair.kuai.core, "/close")["reset"] == 8
    assert frames(api_pair.kuai.core, "/close-after-write")["reset"] == 7
    assert frames(api_pair.kuai.core, "/early-hints")["info"] == [[(":status", "103"), ("link", "</a.css>; rel=preload")]]
    src = (SCRIPTS / "http2_stream_api.js").read_bytes()
    assert frames(api_pair.kuai.core, "/file-range")["body"] == src[10:30]
    assert frames(api_pair.kuai.core, "/fd-statcheck")["body"] == src[2:5]
    for proc in api_pair.procs():
        proc.wait_lines(r"^TRAILERS ERR_HTTP2_INVALID_PSEUDOHEADER: .* \| ERR_HTTP2_TRAILERS_ALREADY_SENT", 1, timeout=5)
        proc.wait_lines(r"^STREAMERROR ERR_HTTP2_STREAM_ERROR Stream closed with error code NGHTTP2_REFUSED_STREAM$",
                        1, timeout=5)
        proc.wait_lines(r"^CLOSED 7 true true$", 1, timeout=5)


def test_request_trailers_reach_the_stream_and_request(api_pair):
    trailers = [("x-req", "v"), ("x-other", "w")]
    for port_of, path in ((lambda p: p.core, "/request-trailers"), (lambda p: p.compat, "/request-trailers")):
        node = frames(port_of(api_pair.node), path, method="POST", body=b"abc", trailers=trailers)
        kuai = frames(port_of(api_pair.kuai), path, method="POST", body=b"abc", trailers=trailers)
        assert kuai == node
    got = json.loads(frames(api_pair.kuai.core, "/request-trailers", method="POST", body=b"abc",
                            trailers=trailers)["body"])
    assert got == {"n": 3, "trailers": {"x-req": "v", "x-other": "w"}}
    got = json.loads(frames(api_pair.kuai.compat, "/request-trailers", method="POST", body=b"abcd",
                            trailers=trailers)["body"])
    assert got == {"before": "{}", "after": {"x-req": "v", "x-other": "w"},
                   "raw": ["x-req", "v", "x-other", "w"]}


def test_client_reset_reaches_the_stream_as_node(api_pair):
    """A client's RST_STREAM mid-upload: 'aborted', then 'close' with the
    client's code in stream.rstCode, and (for codes other than CANCEL, to an
    'error' listener) ERR_HTTP2_STREAM_ERROR, as node."""
    seen = {}
    for name, proc in (("node", api_pair.node), ("kuai", api_pair.kuai)):
        got = []
        for i, (code, listen) in enumerate(((8, "1"), (2, "1"), (8, "0"))):
            k = f"{name}-{i}"
            c = H2Client(proc.core, settings={h2.settings.SettingCodes.ENABLE_PUSH: 0})
            try:
                sid = c.request("/client-reset", method="POST", end_stream=False, scheme="http",
                                authority="example.test", extra=[("x-k", k), ("x-listen", listen)])
                c.conn.send_data(sid, b"x" * 1000)
                c.flush()
                time.sleep(0.1)
                c.conn.reset_stream(sid, code)
                c.flush()
                line = proc.wait_lines(rf"^CLIENTRESET {k} ", 1, timeout=5)[0]
            finally:
                c.close()
            got.append(json.loads(line.split(" ", 2)[2]))
        seen[name] = got
    assert seen["kuai"] == seen["node"]
    assert seen["kuai"][1] == {"rec": ["aborted", "error:ERR_HTTP2_STREAM_ERROR"], "rstCode": 2, "aborted": True}
    assert seen["kuai"][0]["rstCode"] == 8 and "Uncaught" not in api_pair.kuai.stderr()


def test_session_and_stream_facts_as_node(api_pair):
    # Two streams on one connection share a session; the ids are the client's.
    def two(port):
        c = H2Client(port, settings={h2.settings.SettingCodes.ENABLE_PUSH: 0})
        try:
            a = c.request("/facts", scheme="http", authority="example.test")
            b = c.request("/facts", scheme="http", authority="example.test")
            # A body with no content-length: HEADERS without END_STREAM.
            p = c.request("/facts", method="POST", end_stream=False, scheme="http", authority="example.test")
            c.send_body(p, b"unsized body")
            return [json.loads(c.response(sid)[1]) for sid in (a, b, p)]
        finally:
            c.close()
    node, kuai = two(api_pair.node.core), two(api_pair.kuai.core)
    assert [f["id"] for f in kuai] == [1, 3, 5]
    assert [f["flags"] for f in kuai] == [5, 5, 4]
    assert kuai[1]["sameSession"] is True
    for f in node + kuai:
        f.pop("sessionStreams")  # counted across tests, in each server's order
    assert kuai == node
    assert two(api_pair.kuai.compat) == two(api_pair.node.compat)


@pytest.mark.parametrize("path", ["/add-trailers", "/set-trailer", "/trailers-no-body", "/early-hints",
                                  "/information", "/no-date", "/own-date"])
def test_compat_trailers_and_informational_as_node(api_pair, path):
    node = frames(api_pair.node.compat, path)
    kuai = frames(api_pair.kuai.compat, path)
    assert kuai == node
    if path == "/add-trailers":
        assert kuai["trailers"] == [("x-sum", "abc"), ("x-two", "1"), ("x-two", "2")]
    if path == "/early-hints":
        assert kuai["info"] == [[(":status", "103"), ("x-hint", "a"), ("link", "</s.css>; rel=preload; as=style")]]
