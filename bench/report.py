#!/usr/bin/env python3
"""Turns bench/run.sh's JSON lines into the Markdown report (bench/RESULTS.md).

usage: report.py --meta META --warnings FILE --out OUT.md RESULTS.jsonl [MORE.jsonl ...]

Medians over runs per (scenario, target, figure); siolua/Node and siolua/floor ratios; the targets of
issue 5, each marked met or missed. If bench/notes.md exists, it is appended (observations written
by hand about the run: what looked wrong, profiles, why a target is missed).
"""
import argparse
import json
import os
import statistics
import sys

TARGETS = ["siolua", "node", "floor", "floor1w"]


def load(paths):
    rows = []
    for p in paths:
        with open(p) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    rows.append(json.loads(line))
    return rows


def med(rows, scen, target, key):
    vals = [r[key] for r in rows if r.get("scenario") == scen and r.get("target") == target
            and isinstance(r.get(key), (int, float)) and r[key] >= 0]
    if not vals:
        return None
    return statistics.median(vals)


def allv(rows, scen, target, key):
    return [r[key] for r in rows if r.get("scenario") == scen and r.get("target") == target
            and isinstance(r.get(key), (int, float))]


def fmt(v, digits=1):
    if v is None:
        return "–"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.{digits}f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


# (scenario, key, label, unit, lower_is_better)
FIGURES = [
    ("idle-1k", "bytes_per_client", "idle, 1k clients: RSS growth per client", "bytes", True),
    ("idle-10k", "bytes_per_client", "idle, 10k clients: RSS growth per client", "bytes", True),
    ("idle-10k", "connect_s", "idle, 10k clients: time to connect all", "s", True),
    ("idle-10k", "hold_cpu_ms", "idle, 10k clients: server CPU over the 5 s hold (heartbeats)", "ms", True),
    ("echo", "us_per_op", "echo, 100 clients closed loop: server CPU per acked round trip", "µs", True),
    ("echo", "ops_per_s", "echo, closed loop: round trips/s", "/s", False),
    ("echo", "rate_us_per_op", "echo at 2,000/s: server CPU per round trip", "µs", True),
    ("echo", "p50_us", "echo at 2,000/s: latency p50", "µs", True),
    ("echo", "p99_us", "echo at 2,000/s: latency p99", "µs", True),
    ("echo", "max_us", "echo at 2,000/s: latency max", "µs", True),
    ("bcast", "us_per_delivered", "broadcast 1→1,000, 100 B: server CPU per delivered message", "µs", True),
    ("bcast", "delivered_per_s", "broadcast: delivered messages/s", "/s", False),
    ("bcast", "server_rss_kb", "broadcast: server RSS at the end", "KB", True),
    ("churn", "cycles_per_cpu_s", "churn: connect+CONNECT+disconnect cycles per server CPU second", "/CPU s", False),
    ("churn", "cycles_per_s", "churn, 16 lanes: cycles/s", "/s", False),
    ("poll", "us_per_op", "polling echo, 100 clients: server CPU per round trip", "µs", True),
    ("poll", "ops_per_s", "polling echo: round trips/s", "/s", False),
    ("poll", "closed_p99_us", "polling echo: latency p99 (closed loop)", "µs", True),
]
SCENARIOS = ["idle-1k", "idle-10k", "echo", "bcast", "churn", "poll"]

# run.sh deflate: each label without compression and with it (label + "-z")
DEFLATE = [
    ("echo-2k", "us_per_op", "echo, 100 clients, 2 KB of text: server CPU per round trip", "µs"),
    ("echo-2k", "rate_us_per_op", "echo at 1,000/s: server CPU per round trip", "µs"),
    ("echo-2k", "p99_us", "echo at 1,000/s: latency p99", "µs"),
    ("bcast-2k", "us_per_delivered", "broadcast 1→1,000, 2 KB of text: server CPU per delivered message", "µs"),
    ("bcast-2k", "delivered_per_s", "broadcast 1→1,000: delivered messages/s", "/s"),
    ("bcast-2k", "server_rss_kb", "broadcast: server RSS at the end", "KB"),
    ("idle-1k-silent", "bytes_per_client", "idle, 1k clients that never sent a message: RSS per client", "bytes"),
    ("idle-1k-talked", "bytes_per_client", "idle, 1k clients that each sent (and got back) one 2 KB message: RSS per client", "bytes"),
]
DEFLATE_LABELS = {d[0] for d in DEFLATE} | {d[0] + "-z" for d in DEFLATE}


def deflate_section(rows, w):
    w("## Compression (perMessageDeflate, threshold 1024, context takeover as browsers and ws ask)")
    w("")
    w("Each figure without compression (off) and with it (on: server `--per-message-deflate` /")
    w("`perMessageDeflate: true`, loadgen `--deflate`); Δ = on − off.")
    w("")
    w("| figure | siolua off | siolua on | siolua Δ | Node off | Node on | Node Δ | on: siolua/Node |")
    w("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for scen, key, label, unit in DEFLATE:
        so, sz, no, nz = (med(rows, sc, t, key) for t in ("siolua", "node") for sc in (scen, scen + "-z"))
        if so is None and sz is None:
            continue
        d = lambda a, b: None if a is None or b is None else b - a
        w(f"| {label} ({unit}) | {fmt(so)} | {fmt(sz)} | {fmt(d(so, sz))} | {fmt(no)} | {fmt(nz)} | "
          f"{fmt(d(no, nz))} | {fmt(ratio(sz, nz), 3)} |")
    w("")
    w("Bytes the clients received in compressed frames, on the wire / once inflated (with compression on):")
    w("")
    for scen in ("echo-2k-z", "bcast-2k-z", "idle-1k-talked-z"):
        parts = []
        for t in ("siolua", "node"):
            zin, raw = med(rows, scen, t, "z_frames_in_bytes"), med(rows, scen, t, "z_frames_in_inflated")
            if zin is not None and raw:
                parts.append(f"{t} {fmt(zin / raw, 3)}")
        if parts:
            w(f"- {scen}: " + ", ".join(parts))
    w("")


def machine(meta, w):
    w("## Machine and run")
    w("")
    for m in meta:
        w(f"- {m}")
    w("")


def finish(a, out, notes, regenerate):
    """The raw lines' names, the notes written by hand (if any), and the file written."""
    out.append("Raw JSON lines: " + ", ".join(f"`{p}`" for p in a.results) + ". " + regenerate)
    out.append("")
    if os.path.exists(notes):
        out.append(open(notes).read().rstrip())
        out.append("")
    with open(a.out, "w") as f:
        f.write("\n".join(out) + "\n")


def loadgen_and_logs(a, rows, warns, cmds, w, out):
    """The report's end: what the load generator saw go wrong, the servers' logs, the commands."""
    # errors seen by the load generator
    bad = [r for r in rows if r.get("failed") or r.get("dropped") or r.get("error") or r.get("stalls")]
    w("## Failures, drops and stalls seen by the load generator")
    w("")
    if not bad:
        w("None: every client connected and none was dropped.")
    for r in bad:
        keys = ("failed", "fail_detail", "dropped", "drop_detail", "stalls", "error")
        w(f"- {r.get('scenario')} {r.get('target')} run {r.get('run')}: "
          + ", ".join(f"{k} {json.dumps(r[k])}" for k in keys if r.get(k)))
    w("")
    w("## What the servers logged (besides their banner)")
    w("")
    if warns:
        w("```")
        out.extend(warns[:60])
        if len(warns) > 60:
            w(f"... {len(warns) - 60} more lines")
        w("```")
    else:
        w("Nothing.")
    w("")
    w("## Commands")
    w("")
    w("```")
    out.extend(cmds)
    w("```")
    w("")




def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--meta")
    ap.add_argument("--warnings")
    ap.add_argument("--out", required=True)
    ap.add_argument("results", nargs="+")
    a = ap.parse_args()
    rows = load(a.results)
    meta = open(a.meta).read().strip().splitlines() if a.meta and os.path.exists(a.meta) else []
    cmds = open(a.meta + ".cmds").read().strip().splitlines() if a.meta and os.path.exists(a.meta + ".cmds") else []
    warns = open(a.warnings).read().strip().splitlines() if a.warnings and os.path.exists(a.warnings) else []
    here = os.path.dirname(os.path.abspath(__file__))

    out = []
    w = out.append
    if rows and all(r.get("scenario") in DEFLATE_LABELS for r in rows):
        w("# siolua benchmark: the cost of compression")
        w("")
        w("Generated by `sh bench/run.sh deflate` (bench/report.py): siolua and the Node reference, each with")
        w("and without perMessageDeflate, driven by `build/bench/loadgen`. Server CPU is utime+stime of the")
        w("server process from `/proc/PID/stat` over the measured phase, RSS is `VmRSS`; medians over runs,")
        w("every server started fresh for each measurement.")
        w("")
        machine(meta, w)
        deflate_section(rows, w)
        loadgen_and_logs(a, rows, warns, cmds, w, out)
        finish(a, out, os.path.join(here, "notes-deflate.md"), "Regenerate this file with `python3 bench/report.py "
               "--meta bench/results-deflate.meta --out bench/RESULTS-deflate.md bench/results-deflate.jsonl`.")
        return
    w("# siolua benchmark results (issue 5)")
    w("")
    w("Generated by `sh bench/run.sh` (bench/report.py). siolua (`./siolua bench/app.lua`) against the Node")
    w("reference (`node bench/node/server.js`, npm socket.io) and a bare libuv+wslay WebSocket floor")
    w("(`build/bench/floor --batch`), measured with `build/bench/loadgen` (C, libuv). Server CPU is")
    w("utime+stime of the server process (all threads) from `/proc/PID/stat` over the measured phase,")
    w("RSS is `VmRSS` from `/proc/PID/status`. Each figure is the median over the runs; every server is")
    w("started fresh for each run, the targets alternate within a run.")
    w("")
    machine(meta, w)
    w("## Figures (medians)")
    w("")
    w("| figure | siolua | Node | floor | siolua/Node | siolua/floor | runs (siolua) |")
    w("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for scen, key, label, unit, _ in FIGURES:
        s, n, f = (med(rows, scen, t, key) for t in ("siolua", "node", "floor"))
        if s is None and n is None:
            continue
        runs = ", ".join(fmt(v) for v in allv(rows, scen, "siolua", key))
        w(f"| {label} ({unit}) | {fmt(s)} | {fmt(n)} | {fmt(f)} | {fmt(ratio(s, n), 2)} | {fmt(ratio(s, f), 2)} | {runs} |")
    w("")
    noisy = []
    for scen in SCENARIOS:
        for t in TARGETS:
            for r in rows:
                if r.get("scenario") == scen and r.get("target") == t and r.get("other_cpu_cores", 0) > 0.15:
                    noisy.append(f"{scen} {t} run {r.get('run')}: {r['other_cpu_cores']:.2f}")
    w("The machine is shared with other sessions. `other_cpu_cores` (CPU used by every other process")
    w("during the measured phase, in cores) was above 0.15 in: " + ("; ".join(noisy) if noisy else "no run") + ".")
    w("Server CPU per operation is the least sensitive figure to that noise; throughput and latency the most.")
    w("")
    fw = [(scen, key) for scen, key in (("echo", "us_per_op"), ("bcast", "us_per_delivered"), ("echo", "ops_per_s"),
                                         ("bcast", "delivered_per_s")) if med(rows, scen, "floor1w", key) is not None]
    if fw:
        w("The floor batches each connection's output per loop iteration (one write per recipient for all")
        w("the frames of one read, as the issue suggests). The same floor writing every frame at once")
        w("(`floor --port 0`, siolua's current write strategy; one run):")
        w("")
        for scen, key in fw:
            w(f"- {scen} {key}: floor1w {fmt(med(rows, scen, 'floor1w', key))}, batched floor "
              f"{fmt(med(rows, scen, 'floor', key))}, siolua {fmt(med(rows, scen, 'siolua', key))}")
        w("")

    # scale
    sc = [r for r in rows if r.get("scenario") == "scale"]
    if sc:
        r = sc[-1]
        w("## Scale (one siolua process, idle WebSocket clients with heartbeats)")
        w("")
        w(f"- attempted {r.get('clients')} clients from {r.get('processes')} loadgen processes; "
          f"connected {r.get('connected')}, failed {r.get('failed')}, still connected at the end "
          f"{r.get('alive_end')} (dropped {r.get('dropped')}), after {fmt(r.get('hold_s'))} s of holding "
          f"({r.get('pings_hold')} pings answered)")
        w(f"- server RSS {fmt(r.get('rss_end_kb', 0) / 1024)} MB at the end "
          f"({fmt(r.get('bytes_per_client'))} bytes per client over the base)")
        w("- the limit: `ulimit -n` is 20,000 (hard) per process on this machine, so one server process can hold")
        w("  at most ~19,990 sockets; 100,000 clients cannot be reached here whatever the server's memory use")
        w("")

    # targets
    w("## Targets of issue 5")
    w("")
    w("| target | measured | met? |")
    w("| --- | --- | --- |")

    def row(name, measured, ok):
        w(f"| {name} | {measured} | {'**met**' if ok else ('**missed**' if ok is not None else 'not measured')} |")

    s, n, f = (med(rows, "bcast", t, "us_per_delivered") for t in ("siolua", "node", "floor"))
    rs = ratio(s, n)
    row("broadcast: ≤ 1/10 of Node's CPU per delivered message", f"{fmt(s, 2)} vs {fmt(n, 2)} µs = {fmt(rs, 3)}",
        None if rs is None else rs <= 0.1)
    rf = ratio(s, f)
    row("broadcast: within 1.5× of the floor", f"{fmt(s, 2)} vs {fmt(f, 2)} µs = {fmt(rf, 2)}×",
        None if rf is None else rf <= 1.5)
    s, n, f = (med(rows, "echo", t, "us_per_op") for t in ("siolua", "node", "floor"))
    rs, rf = ratio(s, n), ratio(s, f)
    row("echo: ≤ 1/2 of Node's CPU per acked round trip", f"{fmt(s)} vs {fmt(n)} µs = {fmt(rs, 2)}",
        None if rs is None else rs <= 0.5)
    row("echo: within 1.3× of the floor", f"{fmt(s)} vs {fmt(f)} µs = {fmt(rf, 2)}×", None if rf is None else rf <= 1.3)
    for scen in ("idle-10k", "idle-1k"):
        s, n = (med(rows, scen, t, "bytes_per_client") for t in ("siolua", "node"))
        if s is not None:
            break
    rs = ratio(s, n)
    row(f"memory: ≤ 2 KB RSS per idle WebSocket client ({scen})", f"{fmt(s)} bytes", None if s is None else s <= 2048)
    row(f"memory: < 1/7 of Node's ({scen})", f"{fmt(s)} vs {fmt(n)} bytes = {fmt(rs, 3)}",
        None if rs is None else rs < 1 / 7)
    s, n = (med(rows, "churn", t, "cycles_per_cpu_s") for t in ("siolua", "node"))
    rs = ratio(s, n)
    row("churn: ≥ 4× Node's cycles per CPU second", f"{fmt(s)} vs {fmt(n)} = {fmt(rs, 2)}×",
        None if rs is None else rs >= 4)
    s, n = (med(rows, "poll", t, "us_per_op") for t in ("siolua", "node"))
    rs = ratio(s, n)
    row("polling echo: ≤ 1/3 of Node's CPU per round trip", f"{fmt(s)} vs {fmt(n)} µs = {fmt(rs, 3)}",
        None if rs is None else rs <= 1 / 3)
    if sc:
        r = sc[-1]
        mb = r.get("rss_end_kb", 0) / 1024
        row("scale: 100,000 idle WebSocket clients with heartbeats, < 300 MB RSS",
            f"{r.get('alive_end')} held (fd limit ~19,990), {fmt(mb)} MB", False)
    else:
        row("scale: 100,000 idle WebSocket clients with heartbeats, < 300 MB RSS", "–", None)
    w("")

    if any(r.get("scenario") in DEFLATE_LABELS for r in rows):
        deflate_section(rows, w)
    loadgen_and_logs(a, rows, warns, cmds, w, out)
    finish(a, out, os.path.join(here, "notes.md"), "Regenerate this file with `python3 bench/report.py "
           "--meta bench/results.meta --out bench/RESULTS.md bench/results.jsonl`.")


if __name__ == "__main__":
    sys.exit(main())
