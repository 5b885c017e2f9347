"""The JSON lines of several loadgen processes that measured one server together (idle clients
sampled at one wall-clock time, --sample-at) -> one line with the sums: bench/run.sh's scale,
bench/workers/run.sh's held. Usage: python3 bench/parts.py SCENARIO TARGET FILE..."""
import json
import sys

parts = [json.loads(open(f).read() or "{}") for f in sys.argv[3:]]
parts = [p for p in parts if "connected" in p]
out = {"scenario": sys.argv[1], "target": sys.argv[2], "run": 1, "processes": len(parts)}
for k in ("clients", "connected", "failed", "dropped", "alive_end", "pings_hold"):
    out[k] = sum(p.get(k, 0) for p in parts)
out["rss_base_kb"] = min((p["rss_base_kb"] for p in parts), default=-1)
out["rss_end_kb"] = max((p["rss_end_kb"] for p in parts), default=-1)
out["bytes_per_client"] = round((out["rss_end_kb"] - out["rss_base_kb"]) * 1024 / max(out["alive_end"], 1), 1)
out["hold_s"] = min((p["hold_s"] for p in parts), default=0)
out["connect_s"] = max((p["connect_s"] for p in parts), default=0)
out["fail_detail"] = [p.get("fail_detail") for p in parts]
print(json.dumps(out, separators=(",", ":")))
