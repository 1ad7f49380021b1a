"""The servers bench/run measures: how each is started, configured and checked.

nginx's and h2o's configurations are templates in bench/peers/, filled with
string.Template ($port, $docroot, ...; `$$` is a literal `$`). The *-tls
files are the TLS lines that go into the main file for the HTTPS servers."""
import http.client
import json
import os
import shlex
import string
import subprocess
import time

from . import common
from .common import (CASES, H2_KEEPALIVE_REQUESTS, HELLO, JS_DIR, JS_JSON, PEER_CONFIGS, PROXY_POOL, SERVER_CPU,
                     TLS_GROUP, TLS_PROTOCOL, TLS_SUITE, descendants, free_port, http_get,
                     http_get_full, log, spawn, stop, tail, tls_check)


def fill(template, **values):
    """The text of bench/peers/TEMPLATE with its placeholders filled."""
    with open(os.path.join(PEER_CONFIGS, template)) as f:
        return string.Template(f.read()).substitute(values)


def write_config(path, template, **values):
    with open(path, "w") as f:
        f.write(fill(template, **values))
    return path


class Server:
    label = None
    hello_path = "/hello"
    hello_note = ""
    static = True  # serves the static cases
    tls_capable = True  # can serve the HTTPS cases
    cpu = None  # pinned to this CPU (default SERVER_CPU)

    def __init__(self, name, tmp, docroot, tls=False):
        self.name, self.tmp, self.docroot, self.tls = name, tmp, docroot, tls
        self.tag = name + ("-tls" if tls else "")  # names its config and log files
        self.proc = None
        self.port = None
        self.tls_seen = None  # what openssl s_client negotiated, for the notes
        self.logfile = os.path.join(tmp, f"{self.tag}.log")

    def command(self):
        raise NotImplementedError

    def path_for(self, kind):
        return self.hello_path if kind == "hello" else kind

    def start(self):
        self.port = free_port()
        cmd = ["taskset", "-c", self.cpu or SERVER_CPU] + self.command()
        log(f"start {self.tag}: {' '.join(shlex.quote(c) for c in cmd)}")
        out = open(self.logfile, "ab")
        self.proc = spawn(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd=self.tmp)
        out.close()
        deadline = time.monotonic() + 15
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                status, body = http_get(self.port, self.hello_path, tls=self.tls)
                if status == 200 and body == HELLO:
                    if self.static:
                        status, body = http_get(self.port, "/4k.bin", tls=self.tls)
                        if status != 200 or len(body) != 4096:
                            last = f"/4k.bin gave {status}, {len(body)} bytes"
                            break
                    if not self.tls:
                        return True
                    self.tls_seen, last = tls_check(self.port)
                    if last is None:
                        return True
                    break
                last = f"{self.hello_path} gave {status} {body[:60]!r}"
                break
            except OSError as e:
                last = str(e)
                time.sleep(0.1)
        log(f"{self.tag} failed its health check: {last}; log tail:\n"
            + tail(self.logfile))
        self.stop()
        return False

    def pids(self):
        return descendants(self.proc.pid)

    def stop(self):
        stop(self.proc)
        self.proc = None


class Kuai(Server):
    label = "kuai"

    @property
    def binary(self):
        return os.path.join(self.tmp, "bin", "kuai")

    def command(self):
        return [self.binary, "serve", self.docroot,
                "--host", "127.0.0.1", "--port", str(self.port), "--threads", "1",
                "--idle-timeout", "75s", "--respond", "/hello=Hello, World!"] + (
                    ["--tls-cert", common.TLS["cert"], "--tls-key", common.TLS["key"]]
                    if self.tls else [])


class KuaiOld(Kuai):
    """--kuai-old: the same command line on an earlier build, run where it
    lies (it loads its TLS library from beside itself)."""
    label = "kuai-old"

    @property
    def binary(self):
        return common.KUAI_OLD


class Nginx(Server):
    label = "nginx"
    open_file_cache = False
    keepalive_requests = 1000

    def command(self):
        conf = os.path.join(self.tmp, f"{self.tag}.conf")
        t = os.path.join(self.tmp, f"{self.tag}-temp")
        os.makedirs(t, exist_ok=True)
        ofc = ("open_file_cache max=1000 inactive=60s;\n    open_file_cache_valid 60s;"
               if self.open_file_cache else "open_file_cache off;")
        # Same cert, protocol, suite and group as every other server; session
        # cache and tickets are nginx's defaults (wrk never resumes anyway).
        tls_conf = "\n" + fill("nginx-tls.conf", cert=common.TLS["cert"],
                               key=common.TLS["key"], protocol=TLS_PROTOCOL,
                               group=TLS_GROUP, suite=TLS_SUITE).rstrip("\n") \
            if self.tls else ""
        write_config(conf, "nginx.conf", tmp=self.tmp, tag=self.tag,
                     keepalive_requests=self.keepalive_requests, open_file_cache=ofc, temp=t,
                     port=self.port, ssl=" ssl http2" if self.tls else "", tls=tls_conf,
                     docroot=self.docroot)
        return ["nginx", "-p", self.tmp, "-c", conf, "-e", f"{self.tmp}/{self.tag}-error.log"]


class NginxOfc(Nginx):
    label = "nginx-ofc"
    open_file_cache = True


class H2o(Server):
    label = "h2o"
    hello_note = ("h2o's hello is an mruby handler (`mruby.handler`; h2o 2.2.5 has no built-in "
                  "fixed-response directive). h2o's idle crash-handler helper (a perl process) is "
                  "left out of its CPU and RSS sums.")

    def pids(self):
        out = []
        for pid in descendants(self.proc.pid):
            try:
                with open(f"/proc/{pid}/comm") as f:
                    if f.read().strip() == "perl":
                        continue
            except OSError:
                continue
            out.append(pid)
        return out

    def command(self):
        conf = os.path.join(self.tmp, f"{self.tag}.yaml")
        # h2o 2.2.5 can pin TLS 1.2 ciphers only (cipher-suite); the client pins 1.3.
        tls_conf = "\n" + fill("h2o-tls.yaml", cert=common.TLS["cert"],
                               key=common.TLS["key"]).rstrip("\n") if self.tls else ""
        write_config(conf, "h2o.yaml", tmp=self.tmp, tag=self.tag, port=self.port,
                     tls=tls_conf, docroot=self.docroot)
        return ["h2o", "-c", conf]


class Sol(Server):
    label = "sol"
    static = False
    tls_capable = False

    def command(self):
        return [os.path.join(self.tmp, "bin", "sol"), str(self.port)]


# kuai-old is only chosen with --kuai-old (cli.main()).
SERVER_CLASSES = {"kuai": Kuai, "kuai-old": KuaiOld, "nginx": Nginx, "nginx-ofc": NginxOfc,
                  "h2o": H2o, "sol": Sol}


# ---------------------------------------------------------------- proxy cases

class Origin(NginxOfc):
    """The upstream every proxy forwards to: nginx with one worker, `return 200
    "Hello, World!"` for /hello and the docroot (open_file_cache on) for the
    rest, pinned to ORIGIN_CPU. It never closes a kept-alive connection first
    (no request limit, 75 s idle), so each proxy's own pool settings decide."""
    label = "origin"
    keepalive_requests = 1000000

    @property
    def cpu(self):
        return common.ORIGIN_CPU  # --origin-cpu


class ProxyServer(Server):
    """A server of the proxy cases: forwards every request to the origin through
    a keep-alive pool; `origin` is the running Origin."""
    def __init__(self, name, tmp, docroot, origin, tls=False):
        super().__init__(name, tmp, docroot, tls=tls)
        self.origin = origin
        self.tag = f"{name}-proxy" + ("-tls" if tls else "")
        self.logfile = os.path.join(tmp, f"{self.tag}.log")

    @property
    def upstream(self):
        return f"127.0.0.1:{self.origin.port}"


class KuaiProxy(ProxyServer):
    label = "kuai"

    @property
    def binary(self):
        return os.path.join(self.tmp, "bin", "kuai")

    def command(self):
        conf = os.path.join(self.tmp, f"{self.tag}.json")
        with open(conf, "w") as f:
            json.dump({
                "threads": 1,
                "listen": [{"host": "127.0.0.1", "port": self.port, **(
                    {"tls": {"cert": common.TLS["cert"], "key": common.TLS["key"]}}
                    if self.tls else {})}],
                "routes": [{"match": "/", "proxy": {
                    "upstreams": [self.upstream],
                    "keepalive": {"maxIdle": PROXY_POOL, "idleTimeout": "60s",
                                  "maxRequests": 1000}}}],
            }, f, indent=1)
        return [self.binary, "--config", conf]


class KuaiOldProxy(KuaiProxy):
    label = "kuai-old"

    @property
    def binary(self):
        return common.KUAI_OLD


class NginxProxy(ProxyServer):
    label = "nginx"

    def command(self):
        conf = os.path.join(self.tmp, f"{self.tag}.conf")
        t = os.path.join(self.tmp, f"{self.tag}-temp")
        os.makedirs(t, exist_ok=True)
        tls_conf = "\n" + fill("nginx-tls.conf", cert=common.TLS["cert"],
                               key=common.TLS["key"], protocol=TLS_PROTOCOL,
                               group=TLS_GROUP, suite=TLS_SUITE).rstrip("\n") \
            if self.tls else ""
        # h2load never reconnects: over h2 nginx must not end connections
        # after keepalive_requests (kuai and h2o set no such limit on h2).
        write_config(conf, "nginx-proxy.conf", tmp=self.tmp, tag=self.tag, temp=t,
                     keepalive_requests=H2_KEEPALIVE_REQUESTS if self.tls else 1000,
                     upstream=self.upstream, pool=PROXY_POOL, port=self.port,
                     ssl=" ssl http2" if self.tls else "", tls=tls_conf)
        return ["nginx", "-p", self.tmp, "-c", conf, "-e", f"{self.tmp}/{self.tag}-error.log"]


class H2oProxy(ProxyServer, H2o):
    label = "h2o"
    hello_note = ""

    def command(self):
        conf = os.path.join(self.tmp, f"{self.tag}.yaml")
        tls_conf = "\n" + fill("h2o-tls.yaml", cert=common.TLS["cert"],
                               key=common.TLS["key"]).rstrip("\n") if self.tls else ""
        write_config(conf, "h2o-proxy.yaml", tmp=self.tmp, tag=self.tag, port=self.port,
                     upstream=self.upstream, tls=tls_conf)
        return ["h2o", "-c", conf]


PROXY_CLASSES = {"kuai": KuaiProxy, "kuai-old": KuaiOldProxy, "nginx": NginxProxy,
                 "h2o": H2oProxy}


# ---------------------------------------------------------------- JS cases

class JsServer(Server):
    """One JS runtime running one script of bench/js (cwd bench/js, so that
    require() finds bench/js/node_modules); the port and host come in the PORT
    and HOST environment variables."""
    static = False
    tls_capable = False

    def __init__(self, name, tmp, case, runtime, script, runtime_cmd):
        super().__init__(name, tmp, None)
        self.case, self.runtime, self.script = case, runtime, script
        self.runtime_cmd = runtime_cmd  # argv prefix, the script goes after it
        self.tag = f"{case}-{name}"
        self.logfile = os.path.join(tmp, f"{self.tag}.log")
        self.error = None  # why it failed, for the results
        self.hello_path = CASES[case][1]
        self.tls = bool(CASES[case][4])  # HTTPS (h2 by ALPN, HTTP/1.1 for the check)

    def command(self):
        script = os.path.join(JS_DIR, self.script)
        if self.script.endswith(".mjs") and self.runtime == "deno":
            # A fetch-style module: `deno serve` (kuai and Bun serve its
            # default export from the module's own port and hostname).
            return [self.runtime_cmd[0], "serve", "-A", "--port", str(self.port),
                    "--host", "127.0.0.1", script]
        return self.runtime_cmd + [script]

    def path_for(self, kind):
        return kind

    def check(self):
        """None if the response to the case's request is right, else what is wrong."""
        status, headers, body = http_get_full(self.port, self.hello_path, tls=self.tls)
        if status != 200:
            return f"GET {self.hello_path} gave {status} {body[:200]!r}"
        if self.case in ("js-hello", "h2-js-hello", "fetch-hello"):
            return None if body == HELLO else f"body {body[:200]!r}, want {HELLO!r}"
        try:
            doc = json.loads(body)
        except ValueError:
            return f"body is not JSON: {body[:200]!r}"
        if not headers.get("content-type", "").startswith("application/json"):
            return f"content-type {headers.get('content-type')!r}, want application/json"
        if self.case in ("js-json", "fetch-json"):
            return None if doc == JS_JSON else f"body {doc!r}, want {JS_JSON!r}"
        if not (isinstance(doc, dict) and doc.get("id") == 42 and doc.get("name") == "user 42"):
            return f"body {doc!r}, want id 42 and name 'user 42'"
        for h in ("x-response-time", "x-powered-by"):
            if h not in headers:
                return f"no {h} header (the middlewares did not run)"
        return None

    def start(self):
        self.port = free_port()
        cmd = ["taskset", "-c", SERVER_CPU] + self.command()
        env = dict(os.environ, PORT=str(self.port), HOST="127.0.0.1", NODE_ENV="production",
                   DENO_NO_UPDATE_CHECK="1", DENO_NO_PROMPT="1", NO_COLOR="1")
        if self.tls:
            env.update(TLS_CERT=common.TLS["cert"], TLS_KEY=common.TLS["key"])
        log(f"start {self.tag}: PORT={self.port} {' '.join(shlex.quote(c) for c in cmd)}")
        out = open(self.logfile, "ab")
        self.proc = spawn(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                          cwd=JS_DIR, env=env)
        out.close()
        deadline = time.monotonic() + 30  # Deno and Bun compile on first start
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                last = f"exited with status {self.proc.returncode}"
                break
            try:
                last = self.check()
                if last is None:
                    return True
                break
            except (OSError, http.client.HTTPException) as e:
                last = f"{type(e).__name__}: {e}"
                time.sleep(0.1)
        else:
            last = f"not ready within 30 s ({last})"
        self.fail(last)
        log(f"{self.tag} failed its check: {self.error}")
        self.stop()
        return False

    def fail(self, why):
        out = tail(self.logfile, 25).strip()
        self.error = why + (f"; its output ends:\n{out}" if out else "; no output")
