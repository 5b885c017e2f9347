#!/bin/sh
# Cross-node broadcast throughput through Redis: 2 siolua nodes (--redis) vs 2 Node socket.io
# servers with @socket.io/redis-adapter, side by side in one run.
#
#   sh bench/redis/run.sh                  3 runs per side, 5 s measured each (~1 min)
#   RUNS=5 DURATION=10 RECEIVERS=8 sh bench/redis/run.sh
#
# For every measurement: a fresh redis-server on a free loopback port (no persistence), node A and
# node B of one kind, then bench/redis/driver.mjs (one sender on A, RECEIVERS receivers on B, at
# most WINDOW broadcasts in flight), then everything is stopped by PID. Sides alternate
# (siolua, node, siolua, ...). JSON lines go to build/bench/redis-*.jsonl; the median of each side is
# printed as a Markdown table (and written to build/bench/REDIS-RESULTS.md).
set -eu
cd "$(dirname "$0")/../.."

RUNS=${RUNS:-3}
DURATION=${DURATION:-5}
RECEIVERS=${RECEIVERS:-4}
WINDOW=${WINDOW:-200}
OUT=build/bench
mkdir -p "$OUT"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RES=$OUT/redis-$STAMP.jsonl
: >"$RES"

command -v redis-server >/dev/null || { echo "bench/redis: redis-server is missing: run 'make setup'" >&2; exit 1; }
[ -f node_modules/@socket.io/redis-adapter/package.json ] || { echo "bench/redis: npm packages missing: run 'make setup'" >&2; exit 1; }
[ -x ./siolua ] || make siolua
SIOLUA=$OUT/siolua-redis
cp ./siolua "$SIOLUA.tmp" && mv -f "$SIOLUA.tmp" "$SIOLUA"

TMP=$(mktemp -d /tmp/siolua-bench-redis.XXXXXX)
PIDS=""
cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null || true; done
    sleep 0.2
    for p in $PIDS; do kill -9 "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

BENCH=bench/redis
. bench/lib.sh # free_port, wait_log, stop_all

measure() { # side run
    side=$1
    rport=$(free_port)
    redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$TMP" \
        --proc-title-template "{title} {listen-addr} siolua-bench" >"$TMP/redis.log" 2>&1 &
    rpid=$!
    PIDS="$rpid"
    wait_log "$TMP/redis.log" "Ready to accept connections"
    url="redis://127.0.0.1:$rport"
    for n in a b; do
        port=$(free_port)
        if [ "$side" = siolua ]; then
            "$SIOLUA" bench/redis/app.lua --port "$port" --redis "$url" --no-watch --log-level warn >"$TMP/$n.log" 2>&1 &
        else
            node bench/redis/server.js --port "$port" --redis "$url" >"$TMP/$n.log" 2>&1 &
        fi
        eval "pid_$n=$!; port_$n=$port"
        PIDS="$PIDS $!"
    done
    # both servers subscribed to the request channel: the cluster is complete
    i=0
    until [ "$(redis-cli -p "$rport" PUBSUB NUMSUB 'socket.io-request#/#' 2>/dev/null | tail -n 1)" = 2 ]; do
        i=$((i + 1))
        [ $i -gt 200 ] && { echo "bench/redis: $side nodes did not join the cluster" >&2; cat "$TMP"/a.log "$TMP"/b.log >&2; exit 1; }
        sleep 0.05
    done
    timeout -k 5 $((DURATION + 30)) node bench/redis/driver.mjs --a "$port_a" --b "$port_b" \
        --pids "$pid_a,$pid_b,$rpid" --receivers "$RECEIVERS" --window "$WINDOW" --duration "$DURATION" \
        --label "$side" | tee -a "$RES"
    stop_all
}

echo "bench/redis: $RUNS runs per side, $DURATION s each, $RECEIVERS receivers on node B, window $WINDOW"
r=1
while [ $r -le "$RUNS" ]; do
    measure siolua
    measure node
    r=$((r + 1))
done

node - "$RES" <<'JS' | tee "$OUT/REDIS-RESULTS.md"
const lines = require("fs").readFileSync(process.argv[2], "utf8").trim().split("\n").map(JSON.parse);
const med = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
const side = (l) => lines.filter((x) => x.label === l);
const row = (l) => {
  const xs = side(l);
  const cpu = (k) => med(xs.map((x) => x.cpu_us_per_broadcast[k]));
  return `| ${l} (2 nodes) | ${med(xs.map((x) => x.broadcasts_per_s))} | ${med(xs.map((x) => x.deliveries_per_s))} | ${cpu("a")} | ${cpu("b")} | ${cpu("redis")} |`;
};
const x0 = lines[0];
console.log(`Cross-node broadcast through Redis: 1 sender on node A, ${x0.receivers} receivers on node B, window ${x0.window}, 100-byte payload; median of ${side("siolua").length} runs of ${x0.seconds} s.\n`);
console.log("| cluster | broadcasts/s crossing | deliveries/s on B | CPU µs/broadcast node A (publish) | node B (receive + fan-out) | redis |");
console.log("| --- | ---: | ---: | ---: | ---: | ---: |");
console.log(row("siolua"));
console.log(row("node"));
JS
