"""bench/run's command line: the options, then bench(), which runs the chosen
cases and writes the results."""
import argparse
import json
import os
import resource
import shlex
import shutil
import signal
import sys
import tempfile

from . import common
from .common import (ALL_SERVERS, CASE_ORDER, CASES, CLIENT_CPU, H2_KEEPALIVE_REQUESTS, IDLE_CONNS, JS_CASES,
                     JS_RUNTIMES, KUAI_OLD_VARIANTS, PROXY_CASES, RESULTS, SERVER_CPU,
                     TLS_GROUP, TLS_PROTOCOL, TLS_SUITE, log, stop_all)
from .peers import PROXY_CLASSES, SERVER_CLASSES
from .report import chart, machine_meta, render
from .runner import (build, make_docroot, measure_rss, run_cases, run_js_cases,
                     run_proxy_cases, setup_js, setup_tls)
from .stats import js_targets, summarize


def main(doc=None):
    """bench/run; doc is its docstring, the text --help starts with."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 round of 2 s per case (development)")
    ap.add_argument("--only", help="comma-separated cases: " + ",".join(CASE_ORDER))
    ap.add_argument("--servers", help="comma-separated servers: " + ",".join(ALL_SERVERS)
                    + "; for the JS cases also runtimes (kuai,node,bun,deno) or JS server "
                    "names (bun-serve, kuai-koa, ...)")
    ap.add_argument("--rounds", type=int, help="rounds per case (default 5, --quick 1)")
    ap.add_argument("--duration", type=int, help="wrk seconds per run (default 5, --quick 2)")
    ap.add_argument("--no-build", action="store_true", help="use the existing bazel-bin binaries")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (configs, logs)")
    ap.add_argument("--out", default=RESULTS, help="results directory (default bench/results)")
    ap.add_argument("--origin-cpu", choices=["server", "client"], default="server",
                    help="proxy cases: the origin shares the proxy's CPU (default) or wrk's")
    ap.add_argument("--kuai-old", metavar="BIN",
                    help="also run this kuai binary (an earlier build, e.g. on another "
                         "runtime) beside kuai: as kuai-old in the native and proxy cases, as "
                         "kuai-old, kuai-old-app, kuai-old-koa in the JS cases")
    args = ap.parse_args()
    defaults = ALL_SERVERS
    if args.kuai_old:
        common.KUAI_OLD = os.path.abspath(args.kuai_old)
        if not (os.path.isfile(common.KUAI_OLD) and os.access(common.KUAI_OLD, os.X_OK)):
            ap.error(f"--kuai-old {args.kuai_old}: no such executable")
        for c, vs in KUAI_OLD_VARIANTS.items():
            common.JS_VARIANTS[c] = common.JS_VARIANTS[c][:1] + vs + common.JS_VARIANTS[c][1:]
        # Right after kuai, so that each round runs the two one after the other.
        i = ALL_SERVERS.index("kuai") + 1
        defaults = ALL_SERVERS[:i] + ["kuai-old"] + ALL_SERVERS[i:]
    cmdline = "bench/run" + "".join(" " + shlex.quote(a) for a in sys.argv[1:])
    common.ORIGIN_CPU = SERVER_CPU if args.origin_cpu == "server" else CLIENT_CPU

    rounds = args.rounds or (1 if args.quick else 5)
    duration = args.duration or (2 if args.quick else 5)
    cases = args.only.split(",") if args.only else CASE_ORDER
    for c in cases:
        if c not in CASES:
            ap.error(f"unknown case {c!r}; cases: {','.join(CASE_ORDER)}")
    js_names = [v[0] for c in JS_CASES for v in common.JS_VARIANTS[c]]
    known = list(dict.fromkeys(ALL_SERVERS + JS_RUNTIMES + js_names))
    chosen = args.servers.split(",") if args.servers else None
    for s in chosen or []:
        if s not in known:
            ap.error(f"unknown server {s!r}; servers: {','.join(known)}")
    if "kuai-old" in (chosen or []) and not common.KUAI_OLD:
        ap.error("--servers kuai-old needs --kuai-old BIN")
    # Native servers serve the native cases; a JS case runs the variants named
    # in --servers by their server name or their runtime (default: all).
    servers = [s for s in (chosen or defaults) if s in SERVER_CLASSES]
    if all(c in JS_CASES for c in cases):
        servers = []
    js_variants = {c: [v for v in common.JS_VARIANTS[c]
                       if not chosen or v[0] in chosen or v[1] in chosen]
                   for c in cases if c in JS_CASES}
    needs = {t for t in ["nginx", "h2o"] if any(s.startswith(t) for s in servers)}
    if any(c in PROXY_CASES for c in cases):
        needs.add("nginx")  # the proxy cases' origin
    if any(CASES[c][4] == "h2" for c in cases):
        needs.add("h2load")
    for tool in ["wrk", "taskset"] + sorted(needs):
        if not shutil.which(tool):
            ap.error(f"{tool} not found; run tools/setup")
    if os.cpu_count() < 2:
        ap.error("needs at least 2 CPUs (server on CPU 0, wrk on CPU 1)")

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 20000 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    if want < IDLE_CONNS + 1000 and "rss" in cases:
        log(f"warning: RLIMIT_NOFILE hard limit {hard} is below {IDLE_CONNS + 1000}; rss may fail")

    def on_signal(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    tmp = tempfile.mkdtemp(prefix="kuai-bench-")
    os.chmod(tmp, 0o755)  # nginx workers may run as nobody
    try:
        return bench(args, cmdline, rounds, duration, cases, servers, js_variants, tmp)
    except KeyboardInterrupt:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # a second signal must not cut the clean-up short
        log("interrupted; stopping servers")
        return 130
    finally:
        stop_all()
        if args.keep_tmp:
            log(f"temp dir kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def bench(args, cmdline, rounds, duration, cases, servers, js_variants, tmp):
    meta = machine_meta(cmdline, rounds, duration)
    tls_cases = [c for c in cases if CASES[c][4]]
    js_cases = [c for c in cases if c in JS_CASES]
    want_kuai = any(v[1] == "kuai" for vs in js_variants.values() for v in vs)
    built, have_shim, notes = build(servers + (["kuai"] if want_kuai and "kuai" not in servers
                                               else []),
                                    args.no_build, tmp, shim="handshakes" in cases)
    have_kuai = "kuai" in built and os.path.exists(os.path.join(tmp, "bin", "kuai.node"))
    servers = [s for s in servers if s in built]
    if "handshakes" in cases and not have_shim:
        notes.append("handshakes left out: no libnoresume.so, and without it wrk resumes "
                     "sessions instead of doing full handshakes.")
        cases = [c for c in cases if c != "handshakes"]
        tls_cases.remove("handshakes")
    if tls_cases and not setup_tls(tmp):
        notes.append("HTTPS cases left out: tools/gen-test-certs failed.")
        cases = [c for c in cases if c not in tls_cases]
        tls_cases = []

    docroot = make_docroot(tmp)
    objs = {s: SERVER_CLASSES[s](s, tmp, docroot) for s in servers}
    tls_objs = {s: SERVER_CLASSES[s](s, tmp, docroot, tls=True) for s in servers
                if SERVER_CLASSES[s].tls_capable}
    runs = {}
    # Plain HTTP cases on one set of servers, then the HTTPS ones on a second
    # set started with the certificate (a kuai port is either HTTP or HTTPS).
    run_cases([c for c in cases if c != "rss" and not CASES[c][4] and c not in PROXY_CASES],
              servers, objs, rounds, duration, runs, notes)
    run_cases([c for c in tls_cases if c not in PROXY_CASES and c not in JS_CASES and
               CASES[c][4] != "h2"],
              [s for s in servers if s in tls_objs], tls_objs, rounds, duration, runs, notes)
    # HTTP/2 on a third set: the same TLS servers, nginx without its request
    # limit per connection (h2load never reconnects).
    h2_objs = {s: SERVER_CLASSES[s](s, tmp, docroot, tls=True) for s in tls_objs}
    for o in h2_objs.values():
        o.tag += "-h2"
        o.logfile = os.path.join(tmp, f"{o.tag}.log")
        if hasattr(o, "keepalive_requests"):
            o.keepalive_requests = H2_KEEPALIVE_REQUESTS
    run_cases([c for c in tls_cases if c not in PROXY_CASES and c not in JS_CASES and
               CASES[c][4] == "h2"],
              list(h2_objs), h2_objs, rounds, duration, runs, notes)
    proxy_servers = [s for s in servers if s in PROXY_CLASSES]
    for tls in (False, True):
        proxy_cases = [c for c in cases if c in PROXY_CASES and bool(CASES[c][4]) == tls]
        if proxy_cases and proxy_servers:
            run_proxy_cases(proxy_cases, proxy_servers, tmp, docroot, rounds, duration, runs,
                            notes, meta, tls=tls)
    js = {}
    if js_cases:
        cmds, missing, js_versions = setup_js(have_kuai, tmp)
        meta["js_versions"] = js_versions
        meta["versions"] += f"; JS: {js_versions}" if js_versions else ""
        run_js_cases(js_cases, js_variants, cmds, missing, tmp, rounds, duration, runs, js,
                     notes)
    seen = {}
    for group in (tls_objs, h2_objs):
        seen.update({s: o.tls_seen for s, o in group.items() if o.tls_seen})
    if seen:
        meta["tls"] = seen
        notes.append("HTTPS: every server had the same ECDSA P-256 certificate "
                     "(tools/gen-test-certs) and negotiated, checked with openssl s_client "
                     "at start: " + "; ".join(f"{s}: {v}" for s, v in seen.items()) + ". "
                     f"The clients (wrk, s_client) are pinned to {TLS_PROTOCOL} {TLS_SUITE} "
                     f"and group {TLS_GROUP} by an OpenSSL config in OPENSSL_CONF; nginx is "
                     "pinned too (`ssl_protocols`, `ssl_conf_command Ciphersuites`, "
                     "`ssl_ecdh_curve`); kuai and h2o 2.2.5 have no TLS 1.3 suite setting. "
                     "Session cache and tickets are each server's default; no kTLS, so "
                     "nginx's sendfile does not apply.")
    h2_run = [c for c in runs if CASES[c][4] == "h2"]
    if h2_run:
        notes.append(
            "HTTP/2 cases (" + ", ".join(h2_run) + "): `h2load -t1 -cC -mM -D SECONDS "
            "--log-file FILE https://...` (Debian nghttp2-client) pinned like wrk, the same TLS "
            "1.3 pinning through OPENSSL_CONF, h2 chosen by ALPN; *wrk CPU* is h2load's, "
            "p50/p99 come from h2load's per-request log, errors are failed, errored and timed-out "
            "requests and 4xx/5xx. Every TLS server offers h2 by ALPN (nginx `listen ... ssl "
            f"http2`); in these cases nginx has `keepalive_requests {H2_KEEPALIVE_REQUESTS}` "
            "because h2load never reconnects (kuai and h2o end no h2 connection after a number "
            "of requests). h2-proxy: HTTPS/h2 in front, the same HTTP/1.1 keep-alive pools to "
            "the origin as the proxy cases; h2-js-hello: `bench/js/hello-h2.js` "
            "(node:http2 `createSecureServer`) on each runtime, `hello-deno-h2.js` for Deno.serve.")
    if "handshakes" in runs:
        notes.append("handshakes: wrk sends `Connection: close`, so every request is a new "
                     "connection; req/s is full TLS handshakes/s and server CPU µs/req is µs "
                     "per handshake (accept, handshake, one request, close). wrk 4.1 would "
                     "resume the session on reconnect (it keeps it across SSL_clear), so it "
                     "runs with LD_PRELOAD=libnoresume.so (`bench/noresume.cc`), which drops "
                     "it. The client does the costlier half (ECDSA verify), so this case is "
                     "usually client-bound: compare CPU µs per handshake.")

    rss = {}
    if "rss" in cases:
        for s in servers:
            log(f"rss: {s} with {IDLE_CONNS} idle connections")
            r = measure_rss(objs[s], IDLE_CONNS)
            if r:
                rss[s] = r
                log(f"rss: {s} idle {r['rss_base_kib']} KiB, loaded {r['rss_kib']} KiB, "
                    f"alive {r['alive']}/{r['ok']}")
            else:
                notes.append(f"{s}: RSS measurement failed.")

    if any(objs[s].hello_note for s in servers) and \
            any(c in runs for c in CASE_ORDER if c not in PROXY_CASES and c not in JS_CASES):
        notes.extend(objs[s].hello_note for s in servers if objs[s].hello_note)
    if "kuai-old" in rss or any("kuai-old" in runs[c] for c in runs if c not in JS_CASES):
        notes.append(f"kuai-old is `{common.KUAI_OLD}`, an earlier kuai build, run from where "
                     "it lies with kuai's command line (in the proxy cases, kuai's config).")
    summary = summarize(runs)
    targets = js_targets(summary, js)
    md = render(summary, rss, servers, meta, notes, js, targets)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "RESULTS.md"), "w") as f:
        f.write(md)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"meta": meta, "summary": summary, "rss": rss, "js": js, "targets": targets,
                   "runs": runs, "notes": notes}, f, indent=1)
    native = [c for c in CASE_ORDER if c != "rss" and c not in JS_CASES and c in summary]
    if native and chart(summary, servers, os.path.join(args.out, "chart.png"), tmp, native):
        log(f"chart: {os.path.join(args.out, 'chart.png')}")
    jsc = [c for c in JS_CASES if c in summary and summary[c]]
    js_shown = list(dict.fromkeys(v[0] for c in jsc for v in js_variants[c]))
    if jsc and chart(summary, js_shown, os.path.join(args.out, "chart-js.png"), tmp, jsc,
                     title="JS cases: req/s, median (higher is better; log scale). "
                           "Server on 1 core, wrk -t1 on the other"):
        log(f"chart: {os.path.join(args.out, 'chart-js.png')}")
    print(md)
    return 0
