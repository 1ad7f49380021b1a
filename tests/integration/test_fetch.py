"""Fetch-style handlers (scripting/js/fetch_server.js): a module whose default
export has fetch(request, info), served by `kuai --port P app.mjs` as `deno
serve` and Bun serve it; require('kuai').serve(); config app routes with such
a module; a Hono app exported as is.

The same module (fetch_scripts/handlers.mjs) runs under kuai, Deno and Bun
(tests/apps/node_modules, from npm); each request gets the same answer from
kuai as from Deno (status, body, content type, framing, the handler's own
fields) and, where Bun agrees with Deno, from Bun (status and body)."""

from __future__ import annotations

import glob
import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import KUAI, KuaiServer, no_scripting_reason
from h2client import H2Client
from httpraw import Conn, build
from script_harness import free_ports

if no_scripting_reason():
    pytest.skip(f"fetch handlers need the scripting addon: {no_scripting_reason()}",
                allow_module_level=True)

HERE = Path(__file__).resolve().parent
SCRIPTS = HERE / "fetch_scripts"
HANDLERS = SCRIPTS / "handlers.mjs"
APPS = HERE.parent / "apps"
MODULES = APPS / "node_modules"


def native_binary(name):
    """Deno's or Bun's executable from tests/apps/node_modules (npm)."""
    if name == "bun":
        cands = [MODULES / ".bin" / "bun", MODULES / "bun" / "bin" / "bun.exe"] + \
            [Path(p) for p in sorted(glob.glob(str(MODULES / "@oven" / "bun-linux-*" / "bin" / "bun")))]
    else:
        cands = [MODULES / ".bin" / "deno", MODULES / "deno" / "deno"] + \
            [Path(p) for p in sorted(glob.glob(str(MODULES / "@deno" / "linux-*" / "deno")))]
    for c in cands:
        try:
            with open(c, "rb") as f:
                if f.read(4) == b"\x7fELF":
                    return str(c)
        except OSError:
            continue
    pytest.fail(f"no {name} binary under {MODULES} (run tools/setup)")


class Proc:
    """A server process; ready once its port accepts connections."""

    def __init__(self, name, cmd, port, logdir, env=None, cwd=None):
        self.name = name
        self.cmd = [str(c) for c in cmd]
        self.port = port
        self.out = Path(logdir) / f"fetch-{name}-{port}.out"
        self.err = Path(logdir) / f"fetch-{name}-{port}.err"
        with open(self.out, "wb") as o, open(self.err, "wb") as e:
            self.proc = subprocess.Popen(self.cmd, stdout=o, stderr=e, stdin=subprocess.DEVNULL,
                                         env={**os.environ, "NO_COLOR": "1", **(env or {})}, cwd=cwd)
        deadline = time.monotonic() + 30  # Deno and Bun compile on first start
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.kill()
                    pytest.fail(f"{name} did not start: {' '.join(self.cmd)}\n{self.stderr()[-2000:]}")
                time.sleep(0.05)

    def stderr(self):
        return self.err.read_bytes().decode("utf-8", "replace")

    def alive(self):
        return self.proc.poll() is None

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self):
        """SIGTERM; kuai must exit 0."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
                return [f"{self.name} did not stop on SIGTERM"]
        if self.name.startswith("kuai"):
            problems = []
            if self.proc.returncode != 0:
                problems.append(f"{self.name} exited with {self.proc.returncode}")
            for marker in ("AddressSanitizer", "runtime error", "LeakSanitizer"):
                if marker in self.stderr():
                    problems.append(f"{self.name}: {marker} in stderr")
            return problems
        return []


def start_kuai(logdir, script, threads=1, args=(), name="kuai"):
    port = free_ports(1)[0]
    return Proc(name, [KUAI, "--threads", str(threads), "--port", str(port), *args, script], port, logdir)


def start_deno(logdir, script, cwd=None):
    port = free_ports(1)[0]
    return Proc("deno", [native_binary("deno"), "serve", "-A", "--port", str(port),
                         "--host", "127.0.0.1", script], port, logdir, cwd=cwd)


def start_bun(logdir, script):
    port = free_ports(1)[0]
    return Proc("bun", [native_binary("bun"), script], port, logdir,
                env={"PORT": str(port), "NODE_ENV": "production"})


def running(starts):
    """Starts each (name, start()) in turn; yields {name: Proc}; stops them all
    (kuai must exit cleanly)."""
    procs = {}
    try:
        for name, start in starts:
            procs[name] = start()
        yield procs
    finally:
        problems = []
        for p in procs.values():
            problems += p.stop()
        if problems:
            pytest.fail("\n".join(problems))


@pytest.fixture(scope="module")
def servers(logdir):
    yield from running([("kuai", lambda: start_kuai(logdir, HANDLERS)),
                        ("deno", lambda: start_deno(logdir, HANDLERS)),
                        ("bun", lambda: start_bun(logdir, HANDLERS))])


def ask(port, req, head=False):
    with Conn(port, timeout=10) as c:
        c.send(req)
        _, r = c.read_final(head=head)
    return r


def view(r):
    """What must match Deno: status, body, content type, the handler's own
    fields (x-*, set-cookie, location; names lower-cased) and the framing."""
    own = sorted((k.lower(), v) for k, v in r.headers
                 if k.lower().startswith("x-") or k.lower() in ("set-cookie", "location"))
    return {
        "status": r.status,
        "body": r.body,
        "type": r.header("content-type"),
        "own": own,
        "length": r.header("content-length"),
        "chunked": (r.header("transfer-encoding") or "").lower() == "chunked",
    }


FORM = b"name=kuai&list=a%2Cb&sp=two+words"
JSON_IN = b'{"a":[1,2],"b":"x"}'
BIG = bytes(range(256)) * 4096 * 2  # 2 MiB


def post(path, body, ctype="application/octet-stream", headers=()):
    return build("POST", path, headers=[("Content-Type", ctype), ("Content-Length", str(len(body))),
                                        *headers], body=body, host="example.test")


def get(path, headers=()):
    return build("GET", path, headers=list(headers), host="example.test")


# (id, request, status, compare with Bun too)
CASES = [
    ("hello", get("/"), 200, True),
    ("json", get("/json"), 200, True),
    ("json-status", get("/json-status"), 201, True),
    ("url", get("/url?x=1&y=%20z"), 200, True),
    ("echo", post("/echo", b"some text", "text/x-mine"), 200, True),
    ("json-echo", post("/json-echo", JSON_IN, "application/json"), 200, True),
    ("bytes", get("/bytes"), 200, True),
    ("array-buffer", post("/array-buffer", BIG), 200, True),
    ("stream-body", post("/stream-body", BIG), 200, True),
    ("chunked-body", build("POST", "/stream-body", host="example.test", headers=[
        ("Transfer-Encoding", "chunked")], body=b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"), 200, True),
    ("headers", get("/headers", [("X-Rep", "1"), ("X-Rep", "2")]), 200, True),
    ("header-list", get("/header-list"), 200, True),
    ("has", get("/has", [("X-One", "1"), ("X-Two", "2")]), 200, True),
    ("status", get("/status"), 201, True),
    ("no-content", get("/no-content"), 204, True),
    ("empty", get("/empty"), 200, True),
    ("stream", get("/stream"), 200, True),
    ("slow-stream", get("/slow-stream"), 200, True),
    ("blob", get("/blob"), 200, True),
    ("search", get("/search"), 200, True),
    ("form", post("/form", FORM, "application/x-www-form-urlencoded"), 200, True),
    ("redirect", get("/redirect"), 307, True),
    ("instance", get("/instance"), 200, True),
    ("clone", post("/clone", b"cloned", "text/plain"), 200, True),
    ("rewrap", post("/rewrap", b"again", "text/plain"), 200, True),
    ("response-clone", get("/response-clone"), 200, True),
    ("response-read", get("/response-read"), 200, False),  # Bun: json;charset=utf-8
    ("remote", get("/remote"), 200, False),  # Bun's second argument is the server
    ("not-found", get("/no/such/thing"), 404, True),
]


# Deno streams a Blob (chunked); Bun and kuai send it with its length.
FRAMING_AS_BUN = {"blob"}


@pytest.mark.parametrize("name,req,status,with_bun", CASES, ids=[c[0] for c in CASES])
def test_same_as_deno_and_bun(servers, name, req, status, with_bun):
    for p in servers.values():
        assert p.alive(), f"{p.name} died earlier:\n{p.stderr()[-2000:]}"
    got = view(ask(servers["kuai"].port, req))
    deno = view(ask(servers["deno"].port, req))
    if name in FRAMING_AS_BUN:
        bun = view(ask(servers["bun"].port, req))
        assert (got["length"], got["chunked"]) == (bun["length"], bun["chunked"]), (got, bun)
        for k in ("length", "chunked"):
            got.pop(k), deno.pop(k)
    assert got == deno, f"{name}: kuai differs from Deno\n  deno: {deno!r}\n  kuai: {got!r}"
    assert got["status"] == status, got
    if with_bun:
        bun = view(ask(servers["bun"].port, req))
        assert (bun["status"], bun["body"]) == (got["status"], got["body"]), \
            f"{name}: kuai differs from Bun\n  bun: {bun!r}\n  kuai: {got!r}"


def test_head_same_as_deno(servers):
    for path in ("/", "/json", "/stream"):
        got = view(ask(servers["kuai"].port, build("HEAD", path, host="example.test"), head=True))
        deno = view(ask(servers["deno"].port, build("HEAD", path, host="example.test"), head=True))
        assert got["status"] == deno["status"] == 200
        assert got["body"] == deno["body"] == b""
        assert got["type"] == deno["type"]


def test_bodies_are_the_bytes_sent(servers):
    r = ask(servers["kuai"].port, post("/stream-body", BIG))
    assert r.body == f"{len(BIG)} {sum(BIG) % 65521}".encode()
    r = ask(servers["kuai"].port, post("/echo", b"\x00\xffbinary", "application/x-bin"))
    assert r.body.decode("utf-8", "replace").startswith("\x00")


@pytest.mark.parametrize("path", ["/throw", "/reject"])
def test_handler_errors_answer_500(servers, path):
    for name in ("kuai", "deno", "bun"):
        r = ask(servers[name].port, get(path))
        assert r.status == 500, (name, r.status)
    r = ask(servers["kuai"].port, get(path))
    assert r.body == b"Internal Server Error"
    assert "on purpose" in servers["kuai"].stderr()  # the error is logged
    assert ask(servers["kuai"].port, get("/")).body == b"Hello, World!"


def test_not_a_response_is_a_500_not_a_crash(servers):
    r = ask(servers["kuai"].port, get("/not-a-response"))
    assert r.status == 500
    assert "must be a response" in servers["kuai"].stderr()
    assert ask(servers["kuai"].port, get("/")).status == 200


@pytest.mark.parametrize("name", ["kuai", "deno", "bun"])
def test_client_abort_aborts_the_signal(servers, name):
    port = servers[name].port
    before = int(ask(port, get("/aborted")).body)
    c = Conn(port, timeout=5)
    c.send(get("/wait"))
    time.sleep(0.2)
    c.close()
    deadline = time.monotonic() + 5
    while int(ask(port, get("/aborted")).body) != before + 1:
        assert time.monotonic() < deadline, f"{name}: request.signal did not abort"
        time.sleep(0.05)


def test_many_requests_on_one_connection(servers):
    with Conn(servers["kuai"].port, timeout=10) as c:
        for i in range(200):
            c.send(get(f"/url?i={i}"))
            _, r = c.read_final()
            assert r.body == f"GET http://example.test/url?i={i} ?i={i}".encode()


# ---------------------------------------------------------------- backpressure

STREAMS = """
let pulled = 0;
export default {
  fetch(request) {
    const path = new URL(request.url).pathname;
    if (path === '/pulled') return new Response(String(pulled));
    if (path === '/big') {
      const chunk = new Uint8Array(65536).fill(120);
      let left = 1024;  // 64 MiB
      return new Response(new ReadableStream({
        pull(c) {
          pulled++;
          if (left-- === 0) c.close();
          else c.enqueue(chunk);
        },
      }));
    }
    if (path === '/upload') {
      // Reads the body slowly: the client must be held back, not buffered.
      return (async () => {
        const reader = request.body.getReader();
        let n = 0;
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          n += value.byteLength;
          await new Promise((r) => setTimeout(r, 1));
        }
        return new Response(String(n));
      })();
    }
    return new Response('?', { status: 404 });
  },
};
"""


@pytest.fixture
def streams(tmp_path, logdir):
    script = tmp_path / "streams.mjs"
    script.write_text(STREAMS)
    p = start_kuai(logdir, script)
    yield p
    problems = p.stop()
    assert not problems, problems


def test_streamed_response_waits_for_a_slow_client(streams):
    s = socket.create_connection(("127.0.0.1", streams.port))
    s.sendall(get("/big"))
    s.recv(1000)  # the head and a little of the body
    time.sleep(0.5)
    pulled = int(ask(streams.port, get("/pulled")).body)
    assert pulled < 200, f"{pulled} chunks of 64 KiB pulled for a client that reads nothing"
    total = 0
    s.settimeout(10)
    buf = b""
    while True:
        d = s.recv(1 << 20)
        if not d:
            break
        buf += d if len(buf) < 4096 else b""
        total += len(d)
        if total > 64 * 1024 * 1024:
            break
    s.close()
    assert total > 64 * 1024 * 1024 - 1000


def test_request_body_stream_has_backpressure(streams):
    body = b"y" * (16 * 1024 * 1024)
    r = ask(streams.port, post("/upload", body))
    assert r.status == 200 and r.body == str(len(body)).encode()


# ----------------------------------------------------------- require('kuai').serve

SERVE_API = """
const { serve } = require('kuai');
const controller = new AbortController();
const server = serve({
  port: 0,
  hostname: '127.0.0.1',
  signal: controller.signal,
  onListen: (addr) => console.log(`LISTENING ${addr.port} ${addr.hostname} ${addr.transport}`),
  onError: (err) => new Response(`handled: ${err.message}`, { status: 503 }),
  async fetch(req, info) {
    const path = new URL(req.url).pathname;
    if (path === '/fail') throw new Error('custom');
    if (path === '/stop') {
      setTimeout(() => controller.abort(), 10);
      return new Response('stopping');
    }
    if (path === '/addr') return Response.json(server.addr);
    return new Response(`${req.method} ${path} from ${info.remoteAddr.hostname}`);
  },
});
server.finished.then(() => console.log('FINISHED'));
"""


def test_serve_api(tmp_path, logdir):
    script = tmp_path / "serve_api.js"
    script.write_text(SERVE_API)
    out = tmp_path / "serve.out"
    with open(out, "wb") as o:
        proc = subprocess.Popen([KUAI, "--threads", "1", str(script)], stdout=o,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while "LISTENING" not in out.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.05)
        _, port, host, transport = out.read_text().split()[:4]
        port = int(port)
        assert (host, transport) == ("127.0.0.1", "tcp")
        assert ask(port, get("/x")).body == b"GET /x from 127.0.0.1"
        assert json.loads(ask(port, get("/addr")).body) == {"transport": "tcp", "hostname": "127.0.0.1",
                                                             "port": port}
        r = ask(port, get("/fail"))
        assert (r.status, r.body) == (503, b"handled: custom")
        assert ask(port, get("/stop")).body == b"stopping"
        deadline = time.monotonic() + 5
        while "FINISHED" not in out.read_text():
            assert time.monotonic() < deadline, "server.finished did not resolve after the signal"
            time.sleep(0.05)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_serve_port_in_use_throws(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        script = tmp_path / "busy.js"
        script.write_text(
            "const { serve } = require('kuai');\n"
            f"try {{ serve({{ port: {port}, hostname: '127.0.0.1', fetch: () => new Response('x') }}); }}\n"
            "catch (e) { console.log('CAUGHT', e.code); process.exit(0); }\n")
        r = subprocess.run([KUAI, "--threads", "1", str(script)], capture_output=True, text=True, timeout=20)
        assert "CAUGHT EADDRINUSE" in r.stdout, (r.stdout, r.stderr)


def test_module_port_and_command_line(tmp_path, logdir):
    """`export default { port, fetch }` listens on its port unless --port says otherwise."""
    port, other = free_ports(2)
    script = tmp_path / "own_port.mjs"
    script.write_text(f"export default {{ port: {port}, fetch: () => new Response('own port') }};\n")
    p = Proc("kuai-own", [KUAI, "--threads", "2", script], port, logdir)
    try:
        assert ask(port, get("/")).body == b"own port"
    finally:
        assert not p.stop()
    p = start_kuai(logdir, script, threads=2)
    try:
        assert ask(p.port, get("/")).body == b"own port"
    finally:
        assert not p.stop()


def test_commonjs_module_exports_fetch(tmp_path, logdir):
    script = tmp_path / "cjs.js"
    script.write_text("module.exports = { fetch: (req) => new Response('cjs ' + req.method) };\n")
    p = start_kuai(logdir, script, threads=2)
    try:
        assert ask(p.port, build("DELETE", "/", host="x")).body == b"cjs DELETE"
    finally:
        assert not p.stop()


# ---------------------------------------------------------- config app routes

def test_config_app_route_with_fetch_module(tmp_path, logdir):
    (tmp_path / "public").mkdir()
    (tmp_path / "public" / "a.txt").write_text("static a\n")
    (tmp_path / "api.mjs").write_text(
        "export default {\n"
        "  async fetch(request) {\n"
        "    const u = new URL(request.url);\n"
        "    if (request.method === 'POST') return Response.json(await request.json(), { status: 201 });\n"
        "    return Response.json({ path: u.pathname, q: u.searchParams.get('q') });\n"
        "  },\n"
        "};\n")
    cfg = {"threads": 2, "listen": [{"port": 0}],
           "routes": [{"match": "/api/", "app": "./api.mjs"}, {"match": "/", "static": "./public"}]}
    (tmp_path / "kuai.config.json").write_text(json.dumps(cfg))
    k = KuaiServer(["--config", str(tmp_path / "kuai.config.json")], logdir).start()
    try:
        r = ask(k.port, get("/api/items?q=7"))
        assert r.status == 200 and json.loads(r.body) == {"path": "/api/items", "q": "7"}
        r = ask(k.port, post("/api/items", JSON_IN, "application/json"))
        assert r.status == 201 and json.loads(r.body) == json.loads(JSON_IN)
        assert ask(k.port, get("/a.txt")).body == b"static a\n"
    finally:
        k.stop()
    k.check_clean()


# ------------------------------------------------------------------ Hono

HONO_APP = APPS / "hono_fetch.mjs"
HONO_CASES = [
    ("root", get("/"), 200),
    ("params", get("/users/42?q=x"), 200),
    ("json-in", post("/echo", JSON_IN, "application/json"), 201),
    ("stream", get("/stream"), 200),
    ("redirect", get("/redirect"), 301),
    ("http-exception", get("/fail"), 418),
    ("not-found", get("/nope"), 404),
    ("middleware-headers", get("/headers", [("X-Rep", "a")]), 200),
]


@pytest.fixture(scope="module")
def hono(logdir):
    if not (MODULES / "hono").is_dir():
        pytest.fail(f"{MODULES}: hono is missing (run tools/setup)")
    yield from running([("kuai", lambda: start_kuai(logdir, HONO_APP, threads=2)),
                        ("deno", lambda: start_deno(logdir, HONO_APP, cwd=APPS))])


@pytest.mark.parametrize("name,req,status", HONO_CASES, ids=[c[0] for c in HONO_CASES])
def test_hono_app_same_as_deno(hono, name, req, status):
    got = view(ask(hono["kuai"].port, req))
    deno = view(ask(hono["deno"].port, req))
    assert got == deno, f"hono {name}: kuai differs from Deno\n  deno: {deno!r}\n  kuai: {got!r}"
    assert got["status"] == status
    assert ("x-powered", "hono") in got["own"]


# ------------------------------------------------------------- TLS and HTTP/2

SERVE_TLS = """
const fs = require('fs');
const { serve } = require('kuai');
serve({
  port: 0,
  hostname: '127.0.0.1',
  cert: fs.readFileSync(process.env.CERT),
  key: fs.readFileSync(process.env.KEY),
  onListen: ({ port }) => console.log(`LISTENING ${port}`),
  async fetch(req) {
    const body = req.method === 'POST' ? await req.text() : '';
    return Response.json({ url: req.url, method: req.method, body, host: req.headers.get('host'),
                           cookie: req.headers.get('cookie') });
  },
});
"""


@pytest.mark.parametrize("proto", ["--http1.1", "--http2", "h2-no-length"])
def test_serve_tls_http1_and_h2(tmp_path, certs, proto):
    script = tmp_path / "serve_tls.js"
    script.write_text(SERVE_TLS)
    out = tmp_path / "tls.out"
    with open(out, "wb") as o:
        proc = subprocess.Popen([KUAI, "--threads", "2", str(script)], stdout=o, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL,
                                env={**os.environ, "CERT": str(certs.ecdsa), "KEY": str(certs.ecdsa_key)})
    try:
        deadline = time.monotonic() + 15
        while out.read_text().count("LISTENING") < 2:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.05)
        port = int(out.read_text().split()[1])
        if proto == "h2-no-length":
            # HTTP/2 DATA frames with no content-length field: the body ends
            # with the stream, and request.text() must still see all of it.
            # Cookies in fields of their own (as browsers send them over
            # HTTP/2) are one cookie field for the handler, "; " between
            # (RFC 9113 section 8.2.3; Deno and Bun too), not ", ".
            c = H2Client(port, tls_ca=certs.ca)
            try:
                sid = c.request("/p?q=1", method="POST", end_stream=False,
                                authority=f"localhost:{port}",
                                extra=[("cookie", "a=1"), ("x-other", "o"), ("cookie", "b=2")])
                c.send_body(sid, b"over tls")
                headers, data, ended = c.response(sid)
            finally:
                c.close()
            assert headers[":status"] == "200" and ended, headers
            body = data.decode()
        else:
            r = subprocess.run(["curl", "-sS", proto, "--cacert", str(certs.ca), "-w", "\n%{http_version}",
                                "--data-binary", "over tls", f"https://localhost:{port}/p?q=1"],
                               capture_output=True, text=True, timeout=20)
            body, version = r.stdout.rsplit("\n", 1)
            assert version == ("2" if proto == "--http2" else "1.1"), (r.stdout, r.stderr)
        assert json.loads(body) == {"url": f"https://localhost:{port}/p?q=1", "method": "POST",
                                    "body": "over tls", "host": f"localhost:{port}",
                                    "cookie": "a=1; b=2" if proto == "h2-no-length" else None}
    finally:
        proc.terminate()
        assert proc.wait(timeout=15) == 0


WORKER = """
// A Cloudflare Workers-style module: fetch(request, env, ctx).
let background = 0;
export default {
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    if (url.pathname === '/background') return new Response(String(background));
    ctx.passThroughOnException();
    ctx.waitUntil(new Promise((resolve) => setTimeout(() => { background++; resolve(); }, 20)));
    return new Response(`worker ${request.method} ${url.pathname}`, {
      headers: { 'cache-control': 'max-age=60' },
    });
  },
};
"""


def test_workers_style_module(tmp_path, logdir):
    script = tmp_path / "worker.mjs"
    script.write_text(WORKER)
    p = start_kuai(logdir, script)
    try:
        r = ask(p.port, get("/page"))
        assert (r.status, r.body, r.header("cache-control")) == (200, b"worker GET /page", "max-age=60")
        deadline = time.monotonic() + 5
        while ask(p.port, get("/background")).body != b"1":
            assert time.monotonic() < deadline, "ctx.waitUntil's work did not run"
            time.sleep(0.02)
    finally:
        assert not p.stop()
