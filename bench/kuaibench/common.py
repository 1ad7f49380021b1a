"""Paths, the cases and their constants, and the process helpers every other
module uses.

The few settings that change at run time (KUAI_OLD, ORIGIN_CPU, TLS, and
JS_VARIANTS, which --kuai-old extends) live here only. Other modules read them
as `common.X`, not through `from .common import X`, so that they see what
cli.main() or setup_tls() set."""
import http.client
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys

BENCH = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(BENCH)
RESULTS = os.path.join(BENCH, "results")
PEER_CONFIGS = os.path.join(BENCH, "peers")  # nginx and h2o config templates
CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVER_CPU = "0"
CLIENT_CPU = "1"
HELLO = b"Hello, World!"

ALL_SERVERS = ["kuai", "nginx", "nginx-ofc", "h2o", "sol"]
PEERS = ["nginx", "nginx-ofc", "h2o"]  # "best of nginx/h2o"

# name -> (description, path kind, connections, lua script, tls)
# tls: None (plain HTTP), "keep-alive" (HTTPS, connections kept open),
# "handshake" (HTTPS, `Connection: close`: one full handshake per request) or
# "h2" (HTTP/2 over TLS by ALPN, measured with h2load; streams per connection
# in H2_STREAMS).
CASES = {
    "hello":    ("native hello, c16",            "hello", 16,  "report.lua", None),
    "pipeline": ("native hello, 16 pipelined, c16", "hello", 16, "pipeline.lua", None),
    "c64":      ("native hello, c64",            "hello", 64,  "report.lua", None),
    "c256":     ("native hello, c256",           "hello", 256, "report.lua", None),
    "small":    ("static small.html (600 B), c16", "/small.html", 16, "report.lua", None),
    "4k":       ("static 4k.bin (4 KiB), c16",   "/4k.bin", 16, "report.lua", None),
    "1m":       ("static 1m.bin (1 MiB), c16",   "/1m.bin", 16, "report.lua", None),
    "100m":     ("static 100m.bin (100 MiB), c4", "/100m.bin", 4, "report.lua", None),
    # Compression: text files asked for with Accept-Encoding (ENCODED), each
    # server compressing as configured (nginx gzip only: no brotli in Debian's).
    "gzip-4k":  ("static 4k.txt with Accept-Encoding: gzip, c16", "/4k.txt", 16, "report.lua", None),
    "gzip-64k": ("static 64k.txt with Accept-Encoding: gzip, c16", "/64k.txt", 16, "report.lua", None),
    "br-4k":    ("static 4k.txt with Accept-Encoding: br, c16", "/4k.txt", 16, "report.lua", None),
    "br-64k":   ("static 64k.txt with Accept-Encoding: br, c16", "/64k.txt", 16, "report.lua", None),
    # The same text with a precompressed .gz beside it (nginx gzip_static, h2o
    # send-compressed, kuai's precompressed siblings).
    "gzip-static-4k":  ("static 4k-pre.txt with a .gz beside it, Accept-Encoding: gzip, c16",
                        "/4k-pre.txt", 16, "report.lua", None),
    "gzip-static-64k": ("static 64k-pre.txt with a .gz beside it, Accept-Encoding: gzip, c16",
                        "/64k-pre.txt", 16, "report.lua", None),
    "https-hello": ("HTTPS native hello, c16",    "hello", 16, "report.lua", "keep-alive"),
    "https-4k": ("HTTPS static 4k.bin, c16",      "/4k.bin", 16, "report.lua", "keep-alive"),
    "handshakes": ("HTTPS hello, new connection and full handshake per request, c16",
                   "hello", 16, "report.lua", "handshake"),
    # Reverse proxy cases: each proxy (PROXY_CLASSES) forwards to the same
    # origin through a keep-alive pool of upstream connections.
    "proxy":    ("reverse proxy, hello from the origin, keep-alive pool, c16", "hello", 16,
                 "report.lua", None),
    "proxy-4k": ("reverse proxy, 4k.bin from the origin, keep-alive pool, c16", "/4k.bin", 16,
                 "report.lua", None),
    "rss":      ("RSS with 10,000 idle keep-alive connections", None, 0, None, None),
    # HTTP/2 (h2load, TLS 1.3): c connections, m concurrent streams on each.
    "h2-hello":     ("h2 native hello, c16 m16", "hello", 16, None, "h2"),
    "h2-hello-c64": ("h2 native hello, c64 m1", "hello", 64, None, "h2"),
    "h2-4k":        ("h2 static 4k.bin, c16 m16", "/4k.bin", 16, None, "h2"),
    "h2-4k-c64":    ("h2 static 4k.bin, c64 m1", "/4k.bin", 64, None, "h2"),
    "h2-1m":        ("h2 static 1m.bin, c16 m1", "/1m.bin", 16, None, "h2"),
    # c8 m4: 32 requests in flight, as many as the proxies' upstream pools keep.
    "h2-proxy":     ("h2 reverse proxy (HTTP/1.1 pool upstream), hello, c8 m4", "hello", 8,
                     None, "h2"),
    # JavaScript cases (bench/js/): each has its own servers, one per runtime
    # and script (JS_VARIANTS); the path is the URL path wrk asks for.
    "js-hello": ("node:http hello, c16", "/hello", 16, "report.lua", None),
    "js-json":  ("node:http JSON.stringify hello, c16", "/hello", 16, "report.lua", None),
    "app":      ("3 middlewares + router, GET /users/42 -> JSON, c16", "/users/42", 16,
                 "report.lua", None),
    "h2-js-hello": ("node:http2 createSecureServer hello over h2, c16 m16", "/hello", 16, None,
                    "h2"),
    "fastify":  ("Fastify 5 app: 3 hooks + route, GET /users/42 -> JSON, c16", "/users/42", 16,
                 "report.lua", None),
    # Fetch-style modules (export default { fetch }), each served unchanged by
    # kuai, `deno serve` and Bun.
    "fetch-hello": ("fetch handler hello (export default { fetch }), c16", "/hello", 16,
                    "report.lua", None),
    "fetch-json":  ("fetch handler Response.json hello, c16", "/hello", 16, "report.lua", None),
    "hono":        ("Hono 4 app: 3 middlewares + route, GET /users/42 -> JSON, c16", "/users/42",
                    16, "report.lua", None),
}
ENCODED = {"gzip-4k": "gzip", "gzip-64k": "gzip", "br-4k": "br", "br-64k": "br",
           "gzip-static-4k": "gzip", "gzip-static-64k": "gzip"}
# nginx's keepalive_requests in the h2 cases (h2load does not reconnect).
H2_KEEPALIVE_REQUESTS = 100_000_000
H2_STREAMS = {"h2-hello": 16, "h2-hello-c64": 1, "h2-4k": 16, "h2-4k-c64": 1, "h2-1m": 1,
              "h2-proxy": 4, "h2-js-hello": 16}
CASE_ORDER = list(CASES)
IDLE_CONNS = 10000
PROXY_CASES = ["proxy", "proxy-4k", "h2-proxy"]
ORIGIN_CPU = SERVER_CPU  # the proxy cases' origin; see README ("Proxy cases")
PROXY_POOL = 32  # idle upstream connections each proxy keeps (nginx `keepalive 32`)

JS_DIR = os.path.join(BENCH, "js")
JS_PACKAGES = ["koa", "@koa/router", "fastify", "hono", "bun", "deno"]  # bench/js/package.json
JS_RUNTIMES = ["kuai", "node", "bun", "deno", "kuai-old"]
PINNED_NODE = os.path.join(ROOT, ".deps", "node", "bin", "node")
# npm as tools/setup installs it (run by the pinned node), else the PATH's.
NPM = (os.path.join(ROOT, ".deps", "bin", "npm") if os.path.exists(os.path.join(ROOT, ".deps", "bin", "npm"))
       else shutil.which("npm"))
# --kuai-old: another kuai build (an earlier runtime, an earlier commit) run
# beside this one: as `kuai-old` in the native and proxy cases, and with the
# JS scripts (KUAI_OLD_VARIANTS).
KUAI_OLD = None
# case -> [(server name, runtime, script in bench/js)]. Every server runs one
# process with one reactor / event loop, pinned to CPU 0 like the native ones.
JS_VARIANTS = {
    "js-hello": [("kuai", "kuai", "hello.js"), ("node", "node", "hello.js"),
                 ("bun", "bun", "hello.js"), ("bun-serve", "bun", "hello-bun.js"),
                 ("deno", "deno", "hello.js"), ("deno-serve", "deno", "hello-deno.js")],
    "js-json":  [("kuai", "kuai", "json.js"), ("node", "node", "json.js"),
                 ("bun", "bun", "json.js"), ("bun-serve", "bun", "json-bun.js"),
                 ("deno", "deno", "json.js"), ("deno-serve", "deno", "json-deno.js")],
    "app":      [("kuai-app", "kuai", "app-kuai.js"), ("kuai-koa", "kuai", "app-koa.js"),
                 ("node-koa", "node", "app-koa.js"), ("bun-koa", "bun", "app-koa.js"),
                 ("deno-koa", "deno", "app-koa.js")],
    "h2-js-hello": [("kuai", "kuai", "hello-h2.js"), ("node", "node", "hello-h2.js"),
                    ("bun", "bun", "hello-h2.js"), ("deno", "deno", "hello-h2.js"),
                    ("deno-serve", "deno", "hello-deno-h2.js")],
    "fastify": [("kuai-fastify", "kuai", "app-fastify.js"), ("node-fastify", "node", "app-fastify.js"),
                ("bun-fastify", "bun", "app-fastify.js"), ("deno-fastify", "deno", "app-fastify.js")],
    "fetch-hello": [("kuai", "kuai", "fetch-hello.mjs"), ("bun-serve", "bun", "fetch-hello.mjs"),
                    ("deno-serve", "deno", "fetch-hello.mjs")],
    "fetch-json": [("kuai", "kuai", "fetch-json.mjs"), ("bun-serve", "bun", "fetch-json.mjs"),
                   ("deno-serve", "deno", "fetch-json.mjs")],
    "hono": [("kuai-hono", "kuai", "hono.mjs"), ("bun-hono", "bun", "hono.mjs"),
             ("deno-hono", "deno", "hono.mjs")],
}
# With --kuai-old, the same scripts on that build too.
KUAI_OLD_VARIANTS = {
    "js-hello": [("kuai-old", "kuai-old", "hello.js")],
    "js-json": [("kuai-old", "kuai-old", "json.js")],
    "app": [("kuai-old-app", "kuai-old", "app-kuai.js"), ("kuai-old-koa", "kuai-old", "app-koa.js")],
    "h2-js-hello": [],
    "fastify": [("kuai-old-fastify", "kuai-old", "app-fastify.js")],
    "fetch-hello": [("kuai-old", "kuai-old", "fetch-hello.mjs")],
    "fetch-json": [("kuai-old", "kuai-old", "fetch-json.mjs")],
    "hono": [("kuai-old-hono", "kuai-old", "hono.mjs")],
}
JS_CASES = list(JS_VARIANTS)
JS_JSON = {"message": "Hello, World!"}
# The peers each JS case is compared with ("vs best peer"), and the targets the
# project tracks: (case, kuai server, peers, minimum req/s ratio).
JS_PEERS = {"js-hello": ["bun", "bun-serve", "deno", "deno-serve"],
            "js-json": ["bun", "bun-serve", "deno", "deno-serve"],
            "app": ["node-koa", "bun-koa", "deno-koa"],
            "h2-js-hello": ["node", "bun", "deno", "deno-serve"],
            "fastify": ["node-fastify", "bun-fastify", "deno-fastify"],
            "fetch-hello": ["bun-serve", "deno-serve"],
            "fetch-json": ["bun-serve", "deno-serve"],
            "hono": ["bun-hono", "deno-hono"]}
JS_PEER_LABEL = {"js-hello": "best Bun/Deno", "js-json": "best Bun/Deno", "app": "best Koa peer",
                 "h2-js-hello": "best Node/Bun/Deno", "fastify": "best Fastify peer",
                 "fetch-hello": "best Bun/Deno",
                 "fetch-json": "best Bun/Deno", "hono": "best Bun/Deno"}
JS_TARGETS = [("js-hello", "kuai", 1.3), ("js-json", "kuai", 1.3),
              ("app", "kuai-koa", 1.5), ("app", "kuai-app", 3.0),
              ("fastify", "kuai-fastify", 2.5), ("fetch-hello", "kuai", 1.3), ("fetch-json", "kuai", 1.3), ("hono", "kuai-hono", 1.3)]

# HTTPS: every server gets the same ECDSA P-256 leaf (tools/gen-test-certs), and
# each side is pinned to one protocol, suite and group: the servers where they
# can be configured (nginx), the client (wrk, openssl) always, through an
# OpenSSL config file in OPENSSL_CONF. runner.setup_tls() fills TLS with the paths.
TLS_PROTOCOL = "TLSv1.3"
TLS_SUITE = "TLS_AES_128_GCM_SHA256"
TLS_GROUP = "X25519"
TLS = {}  # cert, key, ca, client_conf, noresume (LD_PRELOAD shim for wrk)

children = set()  # every Popen we started and have not reaped


def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- processes

def spawn(cmd, **kw):
    kw.setdefault("start_new_session", True)  # own process group; Ctrl-C is ours to handle
    p = subprocess.Popen(cmd, **kw)
    children.add(p)
    return p


def stop(p, grace=3.0):
    """Stops p and everything in its process group."""
    if p is None:
        return
    try:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        # Whatever is left of the group (nginx workers, stragglers).
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            p.wait(2)
        except subprocess.TimeoutExpired:
            pass
    finally:
        children.discard(p)


def stop_all():
    for p in list(children):
        stop(p, grace=2.0)


def descendants(pid):
    """pid and all its descendants, from /proc."""
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        kids.setdefault(int(rest[1]), []).append(int(d))
    out, todo = [], [pid]
    while todo:
        q = todo.pop()
        out.append(q)
        todo.extend(kids.get(q, []))
    return out


def cpu_ticks(pids):
    """utime+stime (clock ticks) summed over pids; threads are included."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
            total += int(rest[11]) + int(rest[12])
        except (OSError, IndexError):
            pass
    return total


def rss_kib(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port, path, timeout=2.0, tls=False):
    if tls:
        ctx = ssl.create_default_context(cafile=TLS["ca"])  # verifies the 127.0.0.1 SAN
        c = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=ctx)
    else:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def http_get_full(port, path, timeout=5.0, tls=False):
    if tls:
        ctx = ssl.create_default_context(cafile=TLS["ca"])
        c = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=ctx)
    else:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def client_env(case=None):
    """Environment for TLS clients: the pinning OpenSSL config, and for the
    handshakes case the shim that stops wrk from resuming sessions."""
    env = dict(os.environ, OPENSSL_CONF=TLS["client_conf"])
    if case is not None and CASES[case][4] == "handshake":
        env["LD_PRELOAD"] = TLS["noresume"]
    return env


def tls_check(port):
    """Connects with openssl s_client (pinned like wrk) and checks what was
    negotiated. Returns (summary, None) or (summary, error)."""
    try:
        r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-brief",
                            "-CAfile", TLS["ca"], "-verify_return_error"],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=10, env=client_env())
    except subprocess.TimeoutExpired:
        return None, "openssl s_client timed out"
    out = r.stdout + r.stderr
    got = {}
    for key in ("Protocol version", "Ciphersuite", "Server Temp Key", "Signature type",
                "Verification"):
        m = re.search(rf"^{key}: (.*)$", out, re.M)
        got[key] = m.group(1).strip() if m else "?"
    seen = (f"{got['Protocol version']} {got['Ciphersuite']}, "
            f"{got['Server Temp Key'].split(',')[0]}, {got['Signature type']}")
    want = (TLS_PROTOCOL, TLS_SUITE, TLS_GROUP, "ECDSA")
    have = (got["Protocol version"], got["Ciphersuite"], got["Server Temp Key"].split(",")[0],
            got["Signature type"])
    if r.returncode != 0 or have != want or got["Verification"] != "OK":
        return seen, f"TLS check: negotiated {seen}, verification {got['Verification']} " \
                     f"(want {' '.join(want)}); s_client said:\n{out[-600:]}"
    return seen, None


def readline_timeout(p, timeout):
    import selectors
    sel = selectors.DefaultSelector()
    sel.register(p.stdout, selectors.EVENT_READ)
    try:
        if sel.select(timeout):
            return p.stdout.readline().strip()
        return None
    finally:
        sel.close()


def tail(path, n=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""
