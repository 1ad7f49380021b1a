"""From the rounds' results to what the table quotes: medians per case and
server, the best JS peer, the JS targets, and kuai beside kuai-old."""
import statistics

from .common import JS_PEER_LABEL, JS_PEERS, JS_TARGETS


def med(rows, key):
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def summarize(runs):
    """runs[case][server] = [round results] -> medians."""
    out = {}
    for case, per in runs.items():
        out[case] = {}
        for srv, rows in per.items():
            rows = [r for r in rows if r]
            if not rows:
                continue
            out[case][srv] = {
                "rps": med(rows, "rps"),
                "p50_us": med(rows, "p50_us"),
                "p99_us": med(rows, "p99_us"),
                "cpu_us": med(rows, "server_cpu_us_per_req"),
                "origin_cpu_us": med(rows, "origin_cpu_us_per_req"),
                "server_util": med(rows, "server_cpu_util"),
                "wrk_cpu": med(rows, "wrk_cpu"),
                "client_cpu_us": med(rows, "client_cpu_us_per_req"),
                "bytes_per_req": med(rows, "bytes_per_req"),
                "client_bound": sum(1 for r in rows if r["wrk_cpu"] > 0.9),
                "errors": sum(r["errors"] for r in rows),
                "rounds": len(rows),
                "all_rps": [round(r["rps"]) for r in rows],
            }
    return out


def best_peer(summary, case, key="rps"):
    """(server, value) of the best JS peer in a case: the highest req/s, or
    with key="cpu_us" the lowest CPU µs/req."""
    per = summary.get(case, {})
    vals = [(p, per[p][key]) for p in JS_PEERS[case] if p in per and per[p][key]]
    if not vals:
        return None, None
    return (max if key == "rps" else min)(vals, key=lambda pv: pv[1])


def js_targets(summary, js):
    """The targets the project tracks, measured: req/s ratios to the best peer
    (CPU µs/req ratios beside them), and RSS with the app loaded vs Bun's."""
    out = []
    for case, srv, want in JS_TARGETS:
        if case not in js:
            continue
        t = {"case": case, "server": srv, "want": want, "peers": JS_PEER_LABEL[case]}
        s = summary.get(case, {}).get(srv)
        peer, prps = best_peer(summary, case)
        cpeer, pcpu = best_peer(summary, case, "cpu_us")
        if s is None or "failed" in js[case].get(srv, {}):
            t["failed"] = js[case].get(srv, {}).get("failed", "no result")
        elif prps:
            t.update(peer=peer, ratio=s["rps"] / prps, met=s["rps"] / prps >= want,
                     client_bound=bool(s["client_bound"]))
            if pcpu and s["cpu_us"]:
                t.update(cpu_peer=cpeer, cpu_ratio=pcpu / s["cpu_us"])
        else:
            t["failed"] = "no peer result"
        out.append(t)
    if "app" in js:
        bun = js["app"].get("bun-koa", {}).get("rss_kib")
        for srv in ("kuai-koa", "kuai-app"):
            t = {"case": "app", "server": srv, "rss": True, "peer": "bun-koa"}
            mine = js["app"].get(srv, {}).get("rss_kib")
            if mine and bun:
                t.update(rss_kib=mine, peer_rss_kib=bun, ratio=mine / bun, met=mine <= bun)
            else:
                t["failed"] = "no RSS for " + ("bun-koa" if mine else srv)
            out.append(t)
    return out


def kuai_vs_old(summary, cases):
    """[(case, kuai CPU µs/req, kuai-old's, change in %)] for the cases where
    both ran: negative means this build spends less CPU per request."""
    out = []
    for case in cases:
        new = summary.get(case, {}).get("kuai", {}).get("cpu_us")
        old = summary.get(case, {}).get("kuai-old", {}).get("cpu_us")
        if new and old:
            out.append((case, new, old, (new / old - 1) * 100))
    return out
