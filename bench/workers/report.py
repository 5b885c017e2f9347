"""bench/workers/run.sh's JSON lines -> Markdown: the median of each target and point."""
import json
import statistics
import sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {}
for r in rows:
    by.setdefault((r["scenario"], r["target"]), []).append(r)


def med(key, rs):
    v = [r[key] for r in rs if key in r]
    return statistics.median(v) if v else None


def fmt(v, f="{:.0f}"):
    return "-" if v is None else f.format(v)


targets = sorted({t for _, t in by}, key=lambda t: (int(t.split("-")[1]), t))
print("| scenario | target | runs | throughput | server CPU per op (all processes) | p50 / p99 at 2000/s | other CPU (cores) |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for scen in ("echo", "bcast"):
    for t in targets:
        rs = [r for r in by.get((scen, t), []) if "error" not in r]
        if not rs:
            continue
        if scen == "echo":
            thr = fmt(med("ops_per_s", rs)) + " round trips/s"
            cpu = fmt(med("us_per_op", rs), "{:.1f}") + " µs"
            lat = fmt(med("p50_us", rs)) + " / " + fmt(med("p99_us", rs)) + " µs"
        else:
            thr = fmt(med("delivered_per_s", rs)) + " deliveries/s"
            cpu = fmt(med("us_per_delivered", rs), "{:.2f}") + " µs"
            lat = "-"
        print(f"| {scen} | {t} | {len(rs)} | {thr} | {cpu} | {lat} | {fmt(med('other_cpu_cores', rs), '{:.2f}')} |")
print()
print("| idle clients | target | connected | RSS of all processes, base -> held | per client |")
print("| --- | --- | --- | --- | --- |")
for (scen, t), rs in sorted(by.items(), key=lambda x: (x[0][0], targets.index(x[0][1]))):
    if not scen.startswith("idle"):
        continue
    r = rs[0]
    if "error" in r:
        print(f"| {scen} | {t} | error | - | - |")
        continue
    print(f"| {scen} | {t} | {r['connected']} | {r['rss_base_kb'] / 1024:.1f} -> {r['rss_end_kb'] / 1024:.1f} MB | "
          f"{r['bytes_per_client'] / 1024:.2f} KB |")
