#!/bin/sh
# Bystanders' echo latency while one client sends handlers that never end (issue 12, item 1).
#
#   sh bench/stall/run.sh [BINARY...]     default ./siolua; give an older build to compare
#   DURATION=20 BYSTANDERS=50 MODES="none spin stall" sh bench/stall/run.sh ./siolua /tmp/old/siolua
#
# For each binary and mode: a fresh server (bench/stall/app.lua) on 127.0.0.1, a free port, short
# heartbeats (pingInterval 1000, pingTimeout 5000: a frozen loop shows as dropped clients, two
# back-to-back stalls of the 2 s budget do not),
# then bench/stall/driver.mjs, then the server is stopped by its PID. One JSON line per run
# (driver's figures plus the binary), also in build/bench/stall-*.jsonl.
set -eu
cd "$(dirname "$0")/../.."
DURATION=${DURATION:-10}
BYSTANDERS=${BYSTANDERS:-20}
MODES=${MODES:-none spin stall}
OUT=build/bench
mkdir -p "$OUT"
RES=$OUT/stall-$(date -u +%Y%m%dT%H%M%SZ).jsonl
[ $# -gt 0 ] || { [ -x ./siolua ] || make siolua; set -- ./siolua; }
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null || true; }
trap cleanup EXIT INT TERM

for bin in "$@"; do
    for mode in $MODES; do
        log=$(mktemp /tmp/siolua-bench-stall.XXXXXX)
        "$bin" bench/stall/app.lua --port 0 --no-watch --ping-interval 1000 --ping-timeout 5000 >"$log" 2>&1 &
        PID=$!
        i=0
        until grep -q 'listening on' "$log"; do
            i=$((i + 1)); [ $i -gt 200 ] && { echo "bench/stall: $bin did not start:" >&2; cat "$log" >&2; exit 1; }
            sleep 0.05
        done
        port=$(sed -n 's/.*listening on http:\/\/[^:]*:\([0-9]*\).*/\1/p' "$log" | head -n1)
        line=$(timeout $((DURATION + 90)) node bench/stall/driver.mjs "http://127.0.0.1:$port" "$mode" "$DURATION" "$BYSTANDERS")
        kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
        aborts=$(grep -c 'handler aborted' "$log" || true)
        rm -f "$log"
        echo "{\"binary\":\"$bin\",${line#\{}" | sed "s/}\$/,\"aborts_logged\":$aborts}/" | tee -a "$RES"
    done
done
