"""Running the cases: the binaries, the docroot, TLS and JS set-up, wrk
runs and the RSS measurement, and the loops over cases, rounds and servers."""
import glob
import gzip
import http.client
import json
import os
import random
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time

from . import common
from .common import (BENCH, CASES, CLIENT_CPU, CLK_TCK, ENCODED, H2_STREAMS, HELLO, JS_DIR, JS_PACKAGES, NPM,
                     PINNED_NODE, PROXY_POOL, ROOT, SERVER_CPU, TLS_GROUP, TLS_PROTOCOL,
                     TLS_SUITE, client_env, cpu_ticks, log, readline_timeout, rss_kib, spawn,
                     stop, tail)
from .peers import PROXY_CLASSES, JsServer, Origin
from .report import fmt_lat


def supports(server, case):
    kind, tls = CASES[case][1], CASES[case][4]
    if tls and not server.tls_capable:
        return False
    return case == "rss" or kind == "hello" or server.static


# ---------------------------------------------------------------- wrk

WRK_RE = re.compile(r"BENCH (.*)")


def run_wrk(server, case, duration, measure=True):
    _, kind, conns, script, tls = CASES[case]
    if tls == "h2":
        return run_h2load(server, case, duration, measure)
    scheme = "https" if tls else "http"
    url = f"{scheme}://127.0.0.1:{server.port}{server.path_for(kind)}"
    cmd = ["taskset", "-c", CLIENT_CPU, "wrk", "-t1", f"-c{conns}", f"-d{duration}s",
           "--timeout", "5s", "-s", os.path.join(BENCH, script)]
    if tls == "handshake":
        cmd += ["-H", "Connection: close"]  # wrk reconnects after every response
    if case in ENCODED:
        cmd += ["-H", f"Accept-Encoding: {ENCODED[case]}"]
    cmd.append(url)
    run = run_client(server, case, "wrk", cmd, client_env(case) if tls else None, duration + 10)
    if run is None:
        return None
    text, wall, ru, cpu, ocpu = run
    m = WRK_RE.search(text)
    if not m:
        log(f"no BENCH line from wrk on {server.name}/{case}:\n{text[-800:]}")
        return None
    r = {k: int(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
    if not measure:
        return r
    reqs = r["requests"]
    r["rps"] = reqs / (r["duration_us"] / 1e6) if r["duration_us"] else 0.0
    r["server_cpu_us_per_req"] = (cpu * 1e6 / CLK_TCK / reqs) if reqs else None
    r["server_cpu_util"] = cpu / CLK_TCK / wall
    if ocpu is not None:
        r["origin_cpu_us_per_req"] = (ocpu * 1e6 / CLK_TCK / reqs) if reqs else None
    r["wrk_cpu"] = (ru.ru_utime + ru.ru_stime) / wall
    # The receiving side's cost: what the server puts on the wire (segment
    # sizes, wake-ups) shows here, where one wrk core is the limit.
    r["client_cpu_us_per_req"] = (ru.ru_utime + ru.ru_stime) * 1e6 / reqs if reqs else None
    if "bytes" in r and reqs:
        r["bytes_per_req"] = r["bytes"] / reqs  # what came back per response, head included
    r["errors"] = sum(r[k] for k in r if k.startswith("err_"))
    return r


def run_client(server, case, tool, cmd, env, limit):
    """Runs a load generator's command with its output in a file, measuring
    the server's CPU ticks (and a proxy case's origin's) over the run. Returns
    (output, wall seconds, the client's rusage, server ticks, origin ticks or
    None), or None when it overran `limit` seconds and was killed."""
    outpath = os.path.join(server.tmp, f"{tool}.out")
    origin = getattr(server, "origin", None)  # proxy cases: the origin's CPU too
    cpu0 = cpu_ticks(server.pids())
    ocpu0 = cpu_ticks(origin.pids()) if origin else 0
    t0 = time.monotonic()
    with open(outpath, "wb") as out:
        p = spawn(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = t0 + limit  # wrk 4.1 occasionally hangs at exit
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            p.returncode = os.waitstatus_to_exitcode(status)
            common.children.discard(p)
            break
        if time.monotonic() > deadline:
            log(f"{tool} overran on {server.name}/{case}; killing it")
            stop(p)
            return None
        time.sleep(0.02)
    wall = time.monotonic() - t0
    cpu = cpu_ticks(server.pids()) - cpu0
    ocpu = cpu_ticks(origin.pids()) - ocpu0 if origin else None
    text = open(outpath, errors="replace").read()
    if p.returncode != 0:
        text += f"\n({tool} exited with {p.returncode})"
    return text, wall, ru, cpu, ocpu


# ---------------------------------------------------------------- h2load

H2_REQUESTS_RE = re.compile(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                            r"(\d+) failed, (\d+) errored, (\d+) timeout")
H2_FINISHED_RE = re.compile(r"finished in ([\d.]+)(m?s)")
H2_STATUS_RE = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")


def run_h2load(server, case, duration, measure=True):
    """One h2load run (HTTP/2 over TLS by ALPN, pinned like wrk): the same
    result keys as run_wrk. Latencies come from h2load's per-request log."""
    _, kind, conns, _, _ = CASES[case]
    url = f"https://127.0.0.1:{server.port}{server.path_for(kind)}"
    # h2load appends to its log: a fresh file per run.
    reqlog = os.path.join(server.tmp, f"h2load-{server.tag}-{case}.log")
    if os.path.exists(reqlog):
        os.unlink(reqlog)
    cmd = ["taskset", "-c", CLIENT_CPU, "h2load", "-t1", f"-c{conns}", f"-m{H2_STREAMS[case]}",
           "-D", str(duration), "--log-file", reqlog, url]
    run = run_client(server, case, "h2load", cmd, client_env(case), duration + 20)
    if run is None:
        return None
    text, wall, ru, cpu, ocpu = run
    m, f, st = H2_REQUESTS_RE.search(text), H2_FINISHED_RE.search(text), H2_STATUS_RE.search(text)
    if not (m and f and st) or "h2" not in text.split("Application protocol:")[-1][:8]:
        log(f"no usable h2load result on {server.name}/{case}:\n{text[-800:]}")
        return None
    if not measure:
        return {}
    ok = int(m.group(4))
    secs = float(f.group(1)) / (1000 if f.group(2) == "ms" else 1)
    lat = []
    with open(reqlog, errors="replace") as lf:
        for line in lf:
            parts = line.split()
            if len(parts) == 3:
                lat.append(int(parts[2]))
    lat.sort()
    pct = (lambda q: lat[min(len(lat) - 1, int(len(lat) * q))] if lat else None)
    r = {"requests": ok, "duration_us": int(secs * 1e6), "rps": ok / secs if secs else 0.0,
         "p50_us": pct(0.50), "p90_us": pct(0.90), "p99_us": pct(0.99),
         "server_cpu_us_per_req": (cpu * 1e6 / CLK_TCK / ok) if ok else None,
         "server_cpu_util": cpu / CLK_TCK / wall,
         "wrk_cpu": (ru.ru_utime + ru.ru_stime) / wall,
         "errors": int(m.group(5)) + int(m.group(6)) + int(m.group(7)) + int(st.group(3)) +
         int(st.group(4)) + (int(m.group(3)) - ok if int(m.group(3)) > ok else 0)}
    if ocpu is not None:
        r["origin_cpu_us_per_req"] = (ocpu * 1e6 / CLK_TCK / ok) if ok else None
    return r


# ---------------------------------------------------------------- RSS case

def measure_rss(server, n):
    """Starts a fresh server, warms it, opens n idle keep-alive connections."""
    if not server.start():
        return None
    try:
        run_wrk(server, "hello", 1, measure=False)
        time.sleep(0.5)
        base = rss_kib(server.pids())
        cmd = ["taskset", "-c", CLIENT_CPU, sys.executable, os.path.join(BENCH, "idle_conns.py"),
               "127.0.0.1", str(server.port), server.hello_path, str(n), "90"]
        p = spawn(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            ready = readline_timeout(p, 120)
            m = re.match(r"READY ok=(\d+) failed=(\d+)", ready or "")
            if not m:
                log(f"idle client on {server.name} said {ready!r}")
                return None
            ok = int(m.group(1))
            time.sleep(1.0)  # let the server settle
            pids = server.pids()
            loaded = rss_kib(pids)
            p.stdin.write("CHECK\n")
            p.stdin.flush()
            alive_line = readline_timeout(p, 60) or ""
            alive = int(alive_line.split()[1]) if alive_line.startswith("ALIVE") else None
            p.stdin.write("QUIT\n")
            p.stdin.flush()
        finally:
            try:
                p.stdin.close()
            except OSError:
                pass
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                pass
            stop(p)
        return {"rss_base_kib": base, "rss_kib": loaded, "ok": ok, "alive": alive,
                "processes": len(pids),
                "kib_per_conn": (loaded - base) / ok if ok else None}
    finally:
        server.stop()


def compressible_text(size):
    """Deterministic JavaScript-like text (compresses about 4:1 with gzip)."""
    rng = random.Random(size)
    words = ["function", "return", "const", "let", "this", "value", "render", "props", "state",
             "document", "element", "=>", "{", "}", "(", ")", ";", "=", "+", "null", "true"]
    out = []
    n = 0
    while n < size:
        line = " ".join(rng.choice(words) for _ in range(rng.randint(3, 12))) + \
            f" // {rng.randint(0, 99999)}\n"
        out.append(line)
        n += len(line)
    return "".join(out).encode()[:size]


def make_docroot(tmp):
    """tmp/docroot with the files the static cases ask for."""
    docroot = os.path.join(tmp, "docroot")
    os.makedirs(docroot)
    os.chmod(docroot, 0o755)
    with open(os.path.join(docroot, "hello.txt"), "wb") as f:
        f.write(HELLO)
    head = "<!doctype html>\n<html><head><title>small</title></head><body>\n"
    foot = "</body></html>\n"
    para = "<p>kuai benchmark: a small static HTML page.</p>\n"
    body = ""
    while len(head + body + para + foot) <= 600:
        body += para
    body += " " * (600 - len(head + body + foot) - 1) + "\n"
    with open(os.path.join(docroot, "small.html"), "w") as f:
        f.write(head + body + foot)  # exactly 600 bytes
    with open(os.path.join(docroot, "4k.bin"), "wb") as f:
        f.write(os.urandom(4096))
    with open(os.path.join(docroot, "1m.bin"), "wb") as f:
        f.write(os.urandom(1 << 20))
    with open(os.path.join(docroot, "100m.bin"), "wb") as f:
        for _ in range(100):
            f.write(os.urandom(1 << 20))
    for name, size in (("4k.txt", 4096), ("64k.txt", 65536)):
        text = compressible_text(size)
        with open(os.path.join(docroot, name), "wb") as f:
            f.write(text)
        # The gzip-static-* cases: the same text with its .gz (level 9, as a
        # build step would make it) beside it, older than nothing it shadows.
        pre = os.path.join(docroot, name.replace(".txt", "-pre.txt"))
        with open(pre, "wb") as f:
            f.write(text)
        with open(pre + ".gz", "wb") as f:
            f.write(gzip.compress(text, compresslevel=9, mtime=0))
    for name in os.listdir(docroot):
        os.chmod(os.path.join(docroot, name), 0o644)
    return docroot


def build(servers, no_build, tmp, shim=False):
    """Builds kuai and sol (and with shim, wrk's libnoresume.so) with -c opt and
    copies them to tmp/bin, so that a concurrent build (another config flips
    bazel-bin) cannot change them mid-run. kuai-old is neither built nor copied:
    it runs where it lies, beside its own tls/ and kuai.node."""
    targets = {"kuai": ("//:kuai", "kuai"), "sol": ("//bench:sol", "bench/sol"),
               "noresume": ("//bench:libnoresume.so", "bench/libnoresume.so")}
    wanted = [s for s in servers if s in targets] + (["noresume"] if shim else [])
    notes = []
    os.makedirs(os.path.join(tmp, "bin"))
    ok = set()
    for s in wanted:
        label, rel = targets[s]
        if not no_build:
            log(f"bazel build -c opt {label}")
            try:
                r = subprocess.run(["bazel", "build", "-c", "opt", label], cwd=ROOT,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   timeout=1800)
            except subprocess.TimeoutExpired:
                notes.append(f"{s} left out: `bazel build -c opt {label}` timed out.")
                continue
            if r.returncode != 0:
                log(f"build of {label} failed:\n{r.stdout[-2000:]}")
                notes.append(f"{s} left out: `bazel build -c opt {label}` failed.")
                continue
        # bazel-bin follows the last build's configuration; -c opt outputs live here.
        src = os.path.join(ROOT, "bazel-out", "k8-opt", "bin", rel)
        if not os.path.exists(src):
            src = os.path.join(ROOT, "bazel-bin", rel)
        if not os.path.exists(src):
            notes.append(f"{s} left out: no -c opt binary at bazel-out/k8-opt/bin/{rel}.")
            continue
        shutil.copy(src, os.path.join(tmp, "bin", os.path.basename(rel)))
        if s == "kuai":  # kuai dlopens its TLS library from bin/tls/ (HTTPS cases)
            lib = os.path.join(os.path.dirname(src), "tls", "libkuai_tls.so")
            if os.path.exists(lib):
                os.makedirs(os.path.join(tmp, "bin", "tls"), exist_ok=True)
                shutil.copy(lib, os.path.join(tmp, "bin", "tls", "libkuai_tls.so"))
            # For scripts kuai runs the pinned node (its runfiles) with the
            # addon kuai.node beside it.
            addon = os.path.join(os.path.dirname(src), "kuai.node")
            if os.path.exists(addon) and os.path.exists(PINNED_NODE):
                shutil.copy(addon, os.path.join(tmp, "bin", "kuai.node"))
                runfiles = os.path.join(tmp, "bin", "kuai.runfiles", "node", "bin")
                os.makedirs(runfiles)
                os.symlink(PINNED_NODE, os.path.join(runfiles, "node"))
        ok.add(s)
    return [s for s in servers if s not in targets or s in ok], "noresume" in ok, notes


def run_cases(cases, servers, objs, rounds, duration, runs, notes):
    """Starts objs[s] for s in servers, runs each case's warm-up and rounds
    (interleaved across servers) into runs[case][s], then stops them."""
    if not cases:
        return
    live = []
    for s in servers:
        if objs[s].start():
            live.append(s)
        else:
            notes.append(f"{objs[s].tag} left out: it did not start or failed its health check "
                         f"(GET {objs[s].hello_path} must return 200 \"Hello, World!\").")
    dead = set()
    for case in cases:
        for s in live:
            if objs[s].proc.poll() is None or objs[s].name in dead:
                continue
            dead.add(s)
            log(f"{s} has exited; log tail:\n{tail(objs[s].logfile)}")
            notes.append(f"{s} exited during the run (before case {case}); later cases lack it.")
        here = [s for s in live if supports(objs[s], case) and s not in dead]
        run_rounds(case, here, objs, rounds, duration, runs, notes)
    for s in live:
        objs[s].stop()


def run_proxy_cases(cases, servers, tmp, docroot, rounds, duration, runs, notes, meta, tls=False):
    """Starts the origin, then the proxies in front of it (tls: HTTPS, h2 by
    ALPN), and runs the proxy cases on them like any other case."""
    origin = Origin("origin", tmp, docroot)
    if not origin.start():
        notes.append("proxy cases left out: the origin (nginx) did not start or failed its "
                     "health check.")
        return
    try:
        objs = {s: PROXY_CLASSES[s](s, tmp, docroot, origin, tls=tls) for s in servers}
        run_cases(cases, servers, objs, rounds, duration, runs, notes)
    finally:
        origin.stop()
    cpu = []
    for case in cases:
        per = [(s, statistics.median([r["origin_cpu_us_per_req"] for r in runs[case][s]
                                      if r and r.get("origin_cpu_us_per_req") is not None]))
               for s in runs.get(case, {})
               if any(r and r.get("origin_cpu_us_per_req") is not None for r in runs[case][s])]
        if per:
            cpu.append(f"{case}: " + ", ".join(f"{s} {v:.2f}" for s, v in per))
    meta["proxy"] = {"origin_cpu": common.ORIGIN_CPU, "pool": PROXY_POOL}
    notes.append(
        "Proxy cases: every proxy (one worker/reactor, pinned to CPU "
        f"{SERVER_CPU}) forwards to the same origin, an nginx with one worker pinned to CPU "
        f"{common.ORIGIN_CPU} (`return 200` for /hello, the docroot with open_file_cache for /4k.bin, "
        "no request limit per connection). The proxies keep a pool of up to "
        f"{PROXY_POOL} idle upstream connections: kuai `keepalive: {{maxIdle: {PROXY_POOL}, "
        "idleTimeout: 60s, maxRequests: 1000}`; nginx `upstream { keepalive "
        f"{PROXY_POOL}; keepalive_timeout 60s; keepalive_requests 1000; }}` with "
        "`proxy_http_version 1.1`, `proxy_set_header Connection \"\"` and the "
        "X-Forwarded-For/-Proto/-Host and Via headers kuai adds; h2o `proxy.reverse.url` with "
        "`proxy.timeout.keepalive: 60000` (its own x-forwarded-for/-proto and via). "
        "*server CPU µs/req* is the proxy's alone; the origin's CPU µs/req per proxy "
        + ("(it shares the proxy's core, so req/s counts its work too): "
           if common.ORIGIN_CPU == SERVER_CPU else
           "(it shares wrk's core, so the proxy has its core to itself; wrk CPU shows how "
           "close that core is to saturation): ")
        + ("; ".join(cpu) if cpu else "not measured") + ".")


def run_rounds(case, here, objs, rounds, duration, runs, notes):
    """Warms objs[s] for s in here, then runs the case's rounds interleaved
    across them into runs[case][s]."""
    runs[case] = {s: [] for s in here}
    for s in here:  # warm-up
        run_wrk(objs[s], case, 1, measure=False)
    for rnd in range(rounds):
        for s in here:
            r = run_wrk(objs[s], case, duration)
            if r is None and objs[s].proc.poll() is None:
                log(f"{case} round {rnd + 1} on {s} failed; retrying once")
                notes.append(f"{case}: round {rnd + 1} on {s} was rerun (wrk hung or "
                             "gave no result the first time).")
                r = run_wrk(objs[s], case, duration)
            if r is None:
                alive = objs[s].proc.poll() is None
                notes.append(f"{case}: a round on {s} failed"
                             + ("" if alive else " (the server had exited)") + ".")
            runs[case][s].append(r)
            if r:
                cpu = r["server_cpu_us_per_req"]
                log(f"{case:8} round {rnd + 1}/{rounds} {s:9} {r['rps']:>12,.0f} req/s  "
                    f"p99 {fmt_lat(r['p99_us']):>9}  cpu "
                    f"{'–' if cpu is None else f'{cpu:.2f}'} µs/req  "
                    f"wrk {r['wrk_cpu'] * 100:.0f}%  err {r['errors']}")
            else:
                log(f"{case:8} round {rnd + 1}/{rounds} {s:9} FAILED")


# ---------------------------------------------------------------- JS cases

def js_installed():
    return all(os.path.isfile(os.path.join(JS_DIR, "node_modules", p, "package.json"))
               for p in JS_PACKAGES)


def js_runnable(cmd):
    try:
        r = subprocess.run(cmd + ["--version"], stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    out = (r.stdout + r.stderr).strip()
    return out.splitlines()[0] if r.returncode == 0 and out else None


def find_js_binary(name):
    """(path, version) of Bun's or Deno's native binary from bench/js/node_modules:
    the .bin link (set by the packages' postinstall), the file it replaces, or
    the platform package's binary; (None, None) if none runs."""
    nm = os.path.join(JS_DIR, "node_modules")
    if name == "bun":
        cands = [os.path.join(nm, ".bin", "bun"), os.path.join(nm, "bun", "bin", "bun.exe")] + \
            sorted(glob.glob(os.path.join(nm, "@oven", "bun-linux-*", "bin", "bun")))
    else:
        cands = [os.path.join(nm, ".bin", "deno"), os.path.join(nm, "deno", "deno")] + \
            sorted(glob.glob(os.path.join(nm, "@deno", "linux-*", "deno")))
    for c in cands:
        if not os.path.isfile(c):
            continue
        try:
            with open(c, "rb") as f:
                if f.read(4) != b"\x7fELF":  # a placeholder or a Node wrapper script
                    continue
        except OSError:
            continue
        v = js_runnable([c])
        if v:
            return os.path.realpath(c), v
    return None, None


def setup_js(have_kuai, tmp):
    """Installs bench/js (npm ci) when missing and finds the runtimes. Returns
    ({runtime: argv prefix}, {runtime: why it is missing}, versions text)."""
    cmds, missing, versions = {}, {}, []
    if have_kuai:
        cmds["kuai"] = [os.path.join(tmp, "bin", "kuai"), "--threads", "1"]
    else:
        missing["kuai"] = "kuai was not built (see the notes)"
    # Node itself: the version kuai's scripts run on (tools/setup's pin).
    node_v = js_runnable([PINNED_NODE]) if os.path.exists(PINNED_NODE) else None
    if node_v:
        cmds["node"] = [PINNED_NODE]
        versions.append(f"node {node_v}")
    else:
        missing["node"] = f"no pinned node at {PINNED_NODE} (run tools/setup)"
    if common.KUAI_OLD:
        v = subprocess.run([common.KUAI_OLD, "--threads", "1", "-e",
                            "console.log(process.version)"],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=60).stdout.strip()
        if v:
            cmds["kuai-old"] = [common.KUAI_OLD, "--threads", "1"]
            versions.append(f"kuai-old on node {v}")
        else:
            missing["kuai-old"] = f"{common.KUAI_OLD} -p process.version printed nothing"
    install_err = None
    if not js_installed():
        if not NPM:
            install_err = "bench/js/node_modules is missing and there is no `npm` to install it"
        else:
            # npm ci installs exactly package-lock.json; if it refuses (a registry
            # mirror lacking another platform's optional package makes it think
            # the lock is out of sync), npm install --no-save still follows the lock.
            for cmd in ([NPM, "ci"], [NPM, "install", "--no-save"]):
                log(f"{' '.join(cmd)} in bench/js")
                try:
                    r = subprocess.run(cmd + ["--no-audit", "--no-fund"], cwd=JS_DIR,
                                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True, timeout=900)
                    install_err = None
                    if r.returncode != 0 or not js_installed():
                        install_err = f"`{' '.join(cmd)}` in bench/js failed:\n{r.stdout[-1500:]}"
                except subprocess.TimeoutExpired:
                    install_err = f"`{' '.join(cmd)}` in bench/js timed out"
                if install_err is None:
                    break
                log(install_err)
        if install_err:
            log(install_err)
    for name in ("bun", "deno"):
        if install_err:
            missing[name] = install_err
            continue
        path, v = find_js_binary(name)
        if path is None and NPM:
            # The binaries are put in place by the packages' postinstall scripts.
            log(f"no runnable {name} binary in bench/js/node_modules; npm rebuild {name}")
            subprocess.run([NPM, "rebuild", name], cwd=JS_DIR, stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=300)
            path, v = find_js_binary(name)
        if path is None:
            missing[name] = f"no runnable {name} binary in bench/js/node_modules"
            continue
        cmds[name] = [path] if name == "bun" else [path, "run", "-A"]
        versions.append(f"{name} {v.split('(')[0].strip().replace(name + ' ', '')}")
    if install_err is None:
        for pkg in ("koa", "@koa/router"):
            try:
                with open(os.path.join(JS_DIR, "node_modules", pkg, "package.json")) as f:
                    versions.append(f"{pkg} {json.load(f)['version']}")
            except (OSError, ValueError, KeyError):
                pass
    return cmds, missing, "; ".join(versions)


def run_js_cases(cases, variants, cmds, missing, tmp, rounds, duration, runs, js, notes):
    """For each JS case: starts its selected variants (all of them at once, idle
    while the others run), runs the rounds, reads every server's RSS after the
    last round, and stops them. js[case][server] gets the command, RSS, and
    the error if it failed."""
    koa_missing = None if js_installed() else "bench/js/node_modules is missing"
    for case in cases:
        js[case] = {}
        objs, here = {}, []
        for name, runtime, script in variants[case]:
            info = js[case][name] = {"runtime": runtime, "script": script}
            why = missing.get(runtime)
            if why is None and script == "app-koa.js" and koa_missing:
                why = koa_missing
            if why:
                info["failed"] = why
                notes.append(f"{case}: {name} left out: {why.splitlines()[0]}")
                continue
            o = objs[name] = JsServer(name, tmp, case, runtime, script, cmds[runtime])
            info["command"] = " ".join(shlex.quote(c) for c in o.command())
            if o.start():
                here.append(name)
            else:
                info["failed"] = f"did not start or failed its check: {o.error}"
        run_rounds(case, here, objs, rounds, duration, runs, notes)
        for name in here:
            o = objs[name]
            if o.proc.poll() is None:
                js[case][name]["rss_kib"] = rss_kib(o.pids())
                js[case][name]["processes"] = len(o.pids())
                try:  # still answering correctly after the load?
                    bad = o.check()
                except (OSError, http.client.HTTPException) as e:
                    bad = f"{type(e).__name__}: {e}"
                if bad:
                    o.fail(f"wrong answer after the run: {bad}")
                    js[case][name]["failed"] = o.error
            else:
                o.fail(f"exited during the run with status {o.proc.returncode}")
                js[case][name]["failed"] = o.error
            o.stop()
        for name, info in js[case].items():
            if "failed" in info:
                log(f"{case}: {name} FAILED: {info['failed']}")


def setup_tls(tmp):
    """Certificates (tools/gen-test-certs) and the clients' pinning config."""
    d = os.path.join(tmp, "certs")
    r = subprocess.run([os.path.join(ROOT, "tools", "gen-test-certs"), d],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    if r.returncode != 0:
        log(f"tools/gen-test-certs failed:\n{r.stdout[-1000:]}")
        return False
    for name in os.listdir(d):
        os.chmod(os.path.join(d, name), 0o644)  # nginx reads the key as root, h2o may drop to nobody
    conf = os.path.join(tmp, "openssl-client.cnf")
    with open(conf, "w") as f:
        f.write(f"""# generated by bench/run: pins wrk and openssl s_client
openssl_conf = bench_init
[bench_init]
ssl_conf = bench_ssl
[bench_ssl]
system_default = bench_tls
[bench_tls]
MinProtocol = {TLS_PROTOCOL}
MaxProtocol = {TLS_PROTOCOL}
Ciphersuites = {TLS_SUITE}
Groups = {TLS_GROUP}
""")
    common.TLS.update(cert=os.path.join(d, "ecdsa.pem"), key=os.path.join(d, "ecdsa.key"),
                      ca=os.path.join(d, "ca.pem"), client_conf=conf,
                      noresume=os.path.join(tmp, "bin", "libnoresume.so"))
    return True
