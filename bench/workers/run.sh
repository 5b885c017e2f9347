#!/bin/sh
# --workers (issue 18) side by side with Node's way to use several cores (the cluster module,
# @socket.io/sticky in the primary, @socket.io/cluster-adapter): echo and broadcast throughput
# with 1 and 2 workers, the cost of a broadcast that crosses workers, idle clients held (RSS of
# all the processes together per client), driven by build/bench/loadgen (bench/loadgen.c).
#
#   sh bench/workers/run.sh                 RUNS=3, 5 s measured per point (~6 minutes)
#   RUNS=1 DUR=3 WORKERS="1 2 4" IDLE=20000 sh bench/workers/run.sh
#   sh bench/workers/run.sh held [TARGET]   connections held: HELD (100000) idle WebSocket clients with
#                                           heartbeats on HELD_WORKERS (6) workers of TARGET (siolua or
#                                           node), from several loadgen processes of at most 16,000
#                                           clients each (a process may hold ~19,990 fds here), all
#                                           sampled HELD_AT (90) s after the start
#
# Targets: siolua-N (bench/app.lua, --workers N; N = 1 is one process, no flag) and node-N
# (bench/node/server.js; --workers N > 1 is the cluster). Every server is started fresh for each
# measurement on 127.0.0.1 and stopped by PID; the loadgen sums the CPU time and RSS of the server's
# processes (its PID and its children's, listed once it is listening). One JSON line per point goes
# to build/bench/workers-*.jsonl and a Markdown table to build/bench/WORKERS-RESULTS.md.
set -eu
cd "$(dirname "$0")/../.."

RUNS=${RUNS:-3}
DUR=${DUR:-5}
WORKERS=${WORKERS:-1 2}
IDLE=${IDLE:-10000}
OUT=build/bench
mkdir -p "$OUT"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RES=$OUT/workers-$STAMP.jsonl
: >"$RES"
LG=$OUT/loadgen
BENCH=bench/workers
. bench/lib.sh # stop_all

[ -f node_modules/@socket.io/sticky/package.json ] || { echo "$BENCH: npm packages missing: run 'make setup'" >&2; exit 1; }
[ -x ./siolua ] || make siolua
make -s -C bench
SIOLUA=$OUT/siolua-workers
cp ./siolua "$SIOLUA.tmp" && mv -f "$SIOLUA.tmp" "$SIOLUA"
FLAGS="--ping-interval 5000 --ping-timeout 5000"

SPID=""
cleanup() { [ -z "$SPID" ] || kill "$SPID" 2>/dev/null || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# start TARGET N: sets SPID, SPORT and PIDLIST (the server's processes, comma-separated)
start() {
    log=$OUT/workers-server.log
    : >"$log"
    if [ "$1" = siolua ]; then
        if [ "$2" = 1 ]; then w=""; else w="--workers $2"; fi
        # shellcheck disable=SC2086
        $SIOLUA bench/app.lua --port 0 $FLAGS --max-connections 0 --no-watch $w 2>"$log" &
    else
        if [ "$2" = 1 ]; then w=""; else w="--workers $2"; fi
        # shellcheck disable=SC2086
        node bench/node/server.js --port 0 $FLAGS $w 2>"$log" &
    fi
    SPID=$!
    SPORT=""
    i=0
    while [ $i -lt 200 ] && [ -z "$SPORT" ]; do
        SPORT=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log" | head -n 1)
        kill -0 "$SPID" 2>/dev/null || break
        [ -n "$SPORT" ] || sleep 0.1
        i=$((i + 1))
    done
    [ -n "$SPORT" ] || { echo "$BENCH: $1-$2 did not start:" >&2; cat "$log" >&2; exit 1; }
    PIDLIST=$SPID
    for c in $(pgrep -P "$SPID" || true); do PIDLIST="$PIDLIST,$c"; done
}

stop() {
    PIDS=$SPID
    SPID=""
    stop_all
}

# measure TARGET N RUN LABEL LOADGEN-ARGS...
measure() {
    t=$1 n=$2 r=$3 label=$4
    shift 4
    start "$t" "$n"
    line=$(timeout 180 "$LG" --port "$SPORT" --server-pid "$PIDLIST" --target "$t-$n" --run "$r" --label "$label" "$@" ||
        echo "{\"scenario\":\"$label\",\"target\":\"$t-$n\",\"run\":$r,\"error\":\"loadgen failed\"}")
    stop
    echo "$line" | tee -a "$RES"
}

# held TARGET: HELD clients from ceil(HELD / 16000) loadgens with source addresses of their own,
# sampling at the same wall-clock time; one JSON line with the sums
held() {
    t=$1
    n=${HELD:-100000}
    k=$(((n + 15999) / 16000))
    per=$((n / k))
    FLAGS="" # the reference's heartbeats (25 s / 20 s): 100,000 pings every 5 s would measure the loadgens
    start "$t" "${HELD_WORKERS:-6}"
    at=$(($(date +%s) * 1000 + ${HELD_AT:-90} * 1000))
    parts=""
    pids=""
    for i in $(seq 1 $k); do
        # 8 source addresses per loadgen: ports are no limit
        timeout $((${HELD_AT:-90} + 60)) "$LG" --port "$SPORT" --server-pid "$PIDLIST" --target "$t-${HELD_WORKERS:-6}" \
            --run "$i" --label held-part --scenario idle --clients "$per" --settle 1 --sample-at "$at" \
            --connect-timeout "${HELD_AT:-90}" --hs-timeout 30 --src "127.0.1.$((i * 8))-127.0.1.$((i * 8 + 7))" \
            >"$OUT/held-$i.json" &
        pids="$pids $!"
        parts="$parts $OUT/held-$i.json"
    done
    for p in $pids; do wait "$p" || true; done
    stop
    # shellcheck disable=SC2086
    python3 bench/parts.py held "$t-${HELD_WORKERS:-6}" $parts | tee -a "$RES"
}

if [ "${1:-}" = held ]; then
    held "${2:-siolua}"
    exit 0
fi

echo "$BENCH: $RUNS run(s), $DUR s each, workers: $WORKERS; results in $RES" >&2
for r in $(seq 1 "$RUNS"); do
    for n in $WORKERS; do
        for t in siolua node; do
            measure $t "$n" "$r" echo --scenario echo --clients 200 --warmup 1 --duration "$DUR" --rate 2000 --rate-duration 2
            measure $t "$n" "$r" bcast --scenario bcast --clients 200 --payload 100 --window 8 --warmup 1 --duration "$DUR"
        done
    done
done
for n in $WORKERS; do
    for t in siolua node; do
        measure $t "$n" 1 "idle-$((IDLE / 1000))k" --scenario idle --clients "$IDLE" --settle 1 --hold 5 \
            --connect-timeout 60 --hs-timeout 30 --src 127.0.0.2-127.0.0.60
    done
done
python3 bench/workers/report.py "$RES" | tee "$OUT/WORKERS-RESULTS.md"
