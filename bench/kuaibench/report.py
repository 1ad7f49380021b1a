"""What bench/run writes: RESULTS.md (the tables and notes, also printed),
the charts (gnuplot) and the machine's description."""
import datetime
import math
import os
import platform
import shutil
import subprocess

from . import common
from .common import (CASE_ORDER, CLIENT_CPU, ENCODED, IDLE_CONNS, JS_CASES, PEERS, PROXY_CASES, ROOT,
                     SERVER_CPU, log)
from .stats import best_peer, kuai_vs_old


def fmt_rps(x):
    return f"{x:,.0f}" if x is not None else "–"


def fmt_lat(us):
    if us is None:
        return "–"
    return f"{us:.0f} µs" if us < 1000 else f"{us / 1000:.2f} ms"


def render_js(summary, js, targets, lines):
    lines.append("")
    lines.append("| JS case | server | runtime, script | req/s | vs best peer | p50 | p99 | "
                 "server CPU µs/req | wrk CPU | RSS after |")
    lines.append("|---|---|---|--:|--:|--:|--:|--:|--:|--:|")
    for case in JS_CASES:
        if case not in js:
            continue
        per = summary.get(case, {})
        _, best = best_peer(summary, case)
        for srv, info in js[case].items():
            what = f"{info['runtime']} `{info['script']}`"
            s = per.get(srv)
            if "failed" in info or s is None:
                lines.append(f"| {case} | {srv} | {what} | **failed** | | | | | | "
                             f"{info['rss_kib'] / 1024:.1f} MiB |" if info.get("rss_kib")
                             else f"| {case} | {srv} | {what} | **failed** | | | | | | |")
                continue
            mark = ("*" if s["client_bound"] else "") + ("!" if s["errors"] else "")
            vs = f"{s['rps'] / best:.2f}×" if best else "–"
            cpu = f"{s['cpu_us']:.2f}" if s["cpu_us"] is not None else "–"
            r = f"{info['rss_kib'] / 1024:.1f} MiB" if info.get("rss_kib") else "–"
            lines.append(f"| {case} | {srv} | {what} | {fmt_rps(s['rps'])}{mark} | {vs} | "
                         f"{fmt_lat(s['p50_us'])} | {fmt_lat(s['p99_us'])} | {cpu} | "
                         f"{s['wrk_cpu'] * 100:.0f}% | {r} |")
    if targets:
        lines.append("")
        lines.append("Targets (JS):")
        lines.append("")
        for t in targets:
            if t.get("rss"):
                head = f"RSS of {t['server']} with the app loaded ≤ {t['peer']}'s"
                if "failed" in t:
                    lines.append(f"- {head}: not measured ({t['failed']})")
                else:
                    lines.append(f"- {head}: {t['rss_kib'] / 1024:.1f} MiB vs "
                                 f"{t['peer_rss_kib'] / 1024:.1f} MiB ({t['ratio']:.2f}×): "
                                 f"**{'met' if t['met'] else 'not met'}**")
                continue
            head = f"{t['case']}: {t['server']} ≥ {t['want']:g}× {t['peers']}"
            if "failed" in t:
                why = t["failed"].split("; its output ends")[0].splitlines()[0]
                lines.append(f"- {head}: **failed** ({why}; see below)")
                continue
            cpu = (f"; by CPU µs/req {t['cpu_ratio']:.2f}× ({t['cpu_peer']})"
                   if "cpu_ratio" in t else "")
            cb = " (client-bound: compare CPU µs/req)" if t["client_bound"] else ""
            lines.append(f"- {head}: {t['ratio']:.2f}× ({t['peer']}){cb}{cpu}: "
                         f"**{'met' if t['met'] else 'not met'}**")


def render(summary, rss, servers, meta, notes, js=None, targets=None):
    lines = []
    lines.append("# kuai benchmark results\n")
    lines.append(f"- Machine: {meta['cpu']} ({meta['ncpu']} CPUs), kernel {meta['kernel']}, "
                 f"load average at start {meta['loadavg']}")
    lines.append(f"- Date: {meta['date']}")
    lines.append(f"- Command: `{meta['command']}`")
    lines.append(f"- Rounds: {meta['rounds']} × {meta['duration']} s per case and server, "
                 f"interleaved across servers, medians quoted; 1 s warm-up per server per case")
    lines.append(f"- Servers pinned to CPU {SERVER_CPU} with one worker/thread; "
                 f"`wrk -t1` pinned to CPU {CLIENT_CPU}; 127.0.0.1 only")
    lines.append(f"- Versions: {meta['versions']}")
    native = [c for c in CASE_ORDER if c != "rss" and c not in JS_CASES and c in summary]
    if native:
        lines.append("")
        lines.append("| case | server | req/s | vs nginx | vs best nginx/h2o | p50 | p99 | "
                     "server CPU µs/req | wrk CPU | wrk CPU µs/req |")
        lines.append("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|")
    any_cb = any(s["client_bound"] for c in summary for s in summary[c].values())
    any_err = any(s["errors"] for c in summary for s in summary[c].values())
    for case in native:
        per = summary[case]
        nginx = per.get("nginx", {}).get("rps")
        peers = [per[p]["rps"] for p in PEERS if p in per and per[p]["rps"]]
        best = max(peers) if peers else None
        for srv in servers:
            if srv not in per:
                continue
            s = per[srv]
            mark = ("*" if s["client_bound"] else "") + ("!" if s["errors"] else "")
            vs_n = f"{s['rps'] / nginx:.2f}×" if nginx else "–"
            vs_b = f"{s['rps'] / best:.2f}×" if best else "–"
            cpu = f"{s['cpu_us']:.2f}" if s["cpu_us"] is not None else "–"
            ccpu = f"{s['client_cpu_us']:.2f}" if s.get("client_cpu_us") is not None else "–"
            lines.append(f"| {case} | {srv} | {fmt_rps(s['rps'])}{mark} | {vs_n} | {vs_b} | "
                         f"{fmt_lat(s['p50_us'])} | {fmt_lat(s['p99_us'])} | {cpu} | "
                         f"{s['wrk_cpu'] * 100:.0f}% | {ccpu} |")
    encoded = [c for c in native if c in ENCODED]
    if encoded:
        lines.append("")
        lines.append("Bytes per response (head included) in the compression cases: " + "; ".join(
            f"{c}: " + ", ".join(f"{srv} {summary[c][srv]['bytes_per_req']:,.0f}" for srv in servers
                                 if srv in summary[c] and summary[c][srv].get("bytes_per_req"))
            for c in encoded) + ".")
    compared = kuai_vs_old(summary, native) if "kuai-old" in servers else []
    if compared:
        lines.append("")
        for case, new, was, pct in compared:
            sign = "−" if pct < 0 else "+"
            lines.append(f"- {case}: kuai vs kuai-old: {sign}{abs(pct):.1f}% CPU/req "
                         f"({new:.2f} vs {was:.2f} µs)")
    if rss:
        lines.append("")
        lines.append(f"| RSS, {IDLE_CONNS:,} idle keep-alive connections | server | RSS idle | "
                     f"RSS with connections | KiB per connection | connections alive |")
        lines.append("|---|---|--:|--:|--:|--:|")
        for srv in servers:
            r = rss.get(srv)
            if not r:
                continue
            kpc = f"{r['kib_per_conn']:.2f}" if r["kib_per_conn"] is not None else "–"
            lines.append(f"| rss | {srv} | {r['rss_base_kib'] / 1024:.1f} MiB | "
                         f"{r['rss_kib'] / 1024:.1f} MiB | {kpc} | {r['alive']} of {r['ok']} |")
    if js:
        render_js(summary, js, targets, lines)
    lines.append("")
    lines.append("Notes:")
    lines.append("")
    lines.append("- *req/s*: median over rounds of wrk's completed requests / its duration."
                 + (" *vs nginx*: ratio to plain nginx (open_file_cache off); *vs best "
                    "nginx/h2o*: ratio to the fastest of nginx, nginx-ofc and h2o in that case."
                    if native else ""))
    lines.append("- *server CPU µs/req*: delta of utime+stime from /proc/PID/stat, summed over the "
                 "server's processes (threads included), divided by the requests wrk completed. "
                 "Lower is better; it shows efficiency even when the client is the bottleneck.")
    lines.append("- *wrk CPU*: wrk's own utime+stime over wall time (one core = 100%).")
    if any_cb:
        lines.append("- `*` client-bound: in at least one round wrk used more than 90% of its "
                     "core, so req/s measures wrk as much as the server; compare CPU µs/req.")
    if any_err:
        lines.append("- `!` wrk reported errors (connect/read/write/timeout or non-2xx/3xx) "
                     "in at least one round; see results.json.")
    if [c for c in native if c not in PROXY_CASES] or rss:
        lines.append("- nginx: `sendfile on`, `keepalive_requests 1000` (kuai's default "
                     "--max-requests is also 1000), `open_file_cache off`. kuai caches open files "
                     "itself, so **nginx-ofc** (`open_file_cache max=1000`) is the fair peer for "
                     "the static cases.")
        lines.append("- h2o: `num-threads: 1`, no access log, `http1-request-timeout: 75`; h2o "
                     "2.2.5 has no limit on requests per keep-alive connection (unlimited).")
        if any(c in ENCODED for c in native):
            lines.append("- Compression cases (gzip-*, br-*): wrk sends `Accept-Encoding: gzip` or `br` for "
                         "JavaScript-like text (`4k.txt`, `64k.txt`). kuai: defaults (br 5, gzip 6; a file "
                         "is compressed once and kept in its per-reactor cache); nginx: `gzip on; "
                         "gzip_comp_level 6` (compresses every response; Debian's nginx has no brotli, "
                         "so br-* get the identity bytes); h2o: `compress: {gzip: 6, br: 5}` "
                         "(compresses every response).")
        lines.append("- sol (`bench/sol.cc`) is a single-thread io_uring responder that answers "
                     "every request with a fixed 13-byte body: the speed-of-light floor for the "
                     "native hello cases; it serves no files.")
    if rss:
        lines.append("- RSS: sum of VmRSS over the server's processes (nginx master + worker, so "
                     "shared pages count twice), read on a freshly started server after a 1 s "
                     "warm-up (*RSS idle*) and again with the connections open; kernel socket "
                     "buffers are not in RSS.")
    if js:
        lines.append("- JS cases: the apps are in `bench/js/` (Koa, @koa/router, Bun and Deno "
                     "from `bench/js/package-lock.json`). Each server is one process with one "
                     "event loop (kuai: `kuai --threads 1 script.js`, one reactor; `node "
                     "script.js`; `bun script.js`; `deno run -A script.js`), pinned to CPU "
                     f"{SERVER_CPU}; runtime helper threads (GC, JIT) are pinned with it and "
                     "counted in its CPU. `js-hello`/`js-json` run the same node:http script "
                     "everywhere; `bun-serve`/`deno-serve` use `Bun.serve`/`Deno.serve`. "
                     "`app` is one definition (`app-def.js`: timer middleware setting "
                     "x-response-time, a header middleware, an error wrapper, then a router; "
                     "`GET /users/42` → JSON) built with kuai's App/Router (`kuai-app`) or Koa 3 "
                     "+ @koa/router 13 (`*-koa`). NODE_ENV=production for all.")
        lines.append("- *vs best peer*: ratio to the best of Bun and Deno (both APIs) for "
                     "js-hello/js-json, to the best Koa peer (node-koa, bun-koa, deno-koa) for "
                     "app. *RSS after*: VmRSS summed over the server's processes, read after "
                     "the case's last round (wrk has just closed its connections).")
        lines.append("- Keep-alive: kuai closes a connection after 1000 requests (its default "
                     "--max-requests); Node, Bun and Deno keep it open.")
    load1 = float(meta["loadavg"].split()[0])
    if load1 > 0.5:
        lines.append(f"- **The machine was not idle**: load average {load1} at start (other work "
                     "was running), so these numbers are noisy; rerun on a quiet machine.")
    for n in notes:
        lines.append(f"- {n}")
    failed = [(c, srv, i["failed"]) for c in JS_CASES if c in (js or {})
              for srv, i in js[c].items() if "failed" in i]
    if failed:
        lines.append("")
        lines.append("JS servers that failed:")
        for c, srv, why in failed:
            lines.append("")
            lines.append(f"- {c} / {srv}:")
            lines.append("")
            lines.append("  ```")
            lines.extend("  " + l for l in why.splitlines())
            lines.append("  ```")
    return "\n".join(lines) + "\n"


def chart(summary, servers, path, tmp, cases,
          title="req/s per case, median (higher is better; log scale). "
                "Server on 1 core, wrk -t1 on the other"):
    shown = [s for s in servers if any(s in summary[c] for c in cases)]
    if not cases or not shown or not shutil.which("gnuplot"):
        return False
    dat = os.path.join(tmp, "chart.dat")
    with open(dat, "w") as f:  # one row per case, one column per server
        for c in cases:
            vals = [summary[c][s]["rps"] if s in summary[c] else None for s in shown]
            f.write(c + " " + " ".join("NaN" if v is None else f"{v:.0f}" for v in vals) + "\n")
    colors = {"kuai": "#d62728", "nginx": "#2ca02c", "nginx-ofc": "#98df8a",
              "h2o": "#1f77b4", "sol": "#7f7f7f", "kuai-app": "#d62728", "kuai-koa": "#ff9896",
              "node": "#2ca02c", "node-koa": "#2ca02c", "bun": "#e0a030", "bun-serve": "#f5d08a",
              "bun-koa": "#e0a030", "deno": "#1f77b4", "deno-serve": "#aec7e8",
              "deno-koa": "#1f77b4", "kuai-old": "#9467bd", "kuai-old-app": "#9467bd",
              "kuai-old-koa": "#c5b0d5", "kuai-hono": "#d62728", "bun-hono": "#e0a030",
              "deno-hono": "#1f77b4", "kuai-old-hono": "#9467bd", "kuai-fastify": "#d62728",
              "node-fastify": "#2ca02c", "bun-fastify": "#e0a030", "deno-fastify": "#1f77b4",
              "kuai-old-fastify": "#9467bd"}
    k, gap = len(shown), 1
    allv = [summary[c][s]["rps"] for c in cases for s in shown if s in summary[c] and summary[c][s]["rps"]]
    ylo = 10 ** math.floor(math.log10(min(allv) * 0.9)) if allv else 1
    yhi = max(allv) * 3 if allv else 10

    def tick_label(v):
        for div, suf in ((1e6, "M"), (1e3, "k")):
            if v >= div:
                return f"{v / div:g}{suf}"
        return f"{v:g}"
    steps = (1, 2, 5) if yhi / ylo < 1e4 else (1,)
    ticks = [m * 10 ** e for e in range(int(math.log10(ylo)), int(math.log10(yhi)) + 1)
             for m in steps if ylo <= m * 10 ** e <= yhi]
    ytics = ", ".join(f'"{tick_label(v)}" {v}' for v in ticks)
    plots, labels = [], []
    for j, s in enumerate(shown):
        col = j + 2
        plots.append(f"'{dat}' using {col}:xtic(1) title '{s}' lc rgb '{colors.get(s, '#000000')}'")
        # value label above each bar (bar j of cluster i sits at i + (j-(k-1)/2)/(k+gap))
        x = f"($0 + {(j - (k - 1) / 2) / (k + gap):.4f})"
        labels.append(f"'{dat}' using {x}:(valid({col}) ? ${col} * 1.08 : NaN):"
                      f"(valid({col}) ? human(${col}) : '') with labels rotate by 90 left "
                      f"font ',9' notitle")
    gp = f"""
set terminal pngcairo size 1400,700 font 'sans,12'
set output '{path}'
set title '{title}'
set style data histograms
set style histogram clustered gap {gap}
set style fill solid 0.9 border rgb '#333333'
set boxwidth 0.9
set logscale y
set ytics ({ytics})
set grid ytics
set key outside right top
set xrange [-0.6:{len(cases) - 0.4}]
set yrange [{ylo * 0.999}:{yhi}]
set xtics nomirror
set datafile missing 'NaN'
human(v) = v >= 1e6 ? sprintf('%.2fM', v/1e6) : (v >= 1e4 ? sprintf('%.0fk', v/1e3) : sprintf('%.1fk', v/1e3))
plot {', '.join(plots)}, \\
     {', '.join(labels)}
"""
    gpfile = os.path.join(tmp, "chart.gp")
    with open(gpfile, "w") as f:
        f.write(gp)
    r = subprocess.run(["gnuplot", gpfile], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        log(f"gnuplot failed: {r.stderr}")
        return False
    return True


def machine_meta(args_cmd, rounds, duration):
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def ver(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (r.stdout + r.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"
    kuai = "kuai git " + ver(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])
    if common.KUAI_OLD:
        kuai += f", kuai-old `{common.KUAI_OLD}`"
    return {
        "cpu": cpu, "ncpu": os.cpu_count(), "kernel": platform.release(),
        "loadavg": " ".join(open("/proc/loadavg").read().split()[:3]),
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "command": args_cmd, "rounds": rounds, "duration": duration,
        "versions": f"{kuai}; {ver(['nginx', '-v'])}; {ver(['h2o', '--version'])}; "
                    f"{ver(['wrk', '-v']).split(' Copyright')[0]}; {ver(['openssl', 'version'])} "
                    "(wrk, s_client)",
    }
