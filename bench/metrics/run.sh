#!/bin/sh
# What counting costs per message: siolua with its metrics (--metrics) against the same code with
# the counting compiled out (-DSL_NO_METRICS), both under callgrind, RUNS runs each of the same
# load (bench/metrics/driver.mjs: MESSAGES acked echoes from 10 WebSocket clients, measured between
# callgrind_control -z and -d). Prints instructions (Ir) per echo for each side and the difference,
# and what metrics_observe (the handler-time histogram) takes of it. Writes nothing in the repo but
# build/nometrics/ and build/bench-metrics/.
#   sh bench/metrics/run.sh [MESSAGES] [RUNS]
set -eu
cd "$(dirname "$0")/../.."
BENCH=bench/metrics
PIDS=""
. bench/lib.sh
MESSAGES=${1:-20000}
RUNS=${2:-3}
OUTDIR=build/bench-metrics
mkdir -p "$OUTDIR"
trap stop_all EXIT

make -s siolua
make -s OUT=build/nometrics EXTRA_CFLAGS=-DSL_NO_METRICS build/nometrics/siolua

measure() { # label binary flags... -> Ir per echo on stdout
    label=$1; bin=$2; shift 2
    port=$(free_port)
    log="$OUTDIR/$label.log"
    : >"$log" # (before the server starts: wait_log must not read a previous run's)
    valgrind --tool=callgrind --callgrind-out-file="$OUTDIR/$label.%p" "$bin" bench/app.lua --port "$port" --no-watch "$@" >"$log" 2>&1 &
    pid=$!
    PIDS="$pid"
    wait_log "$log" "siolua listening on"
    node "$BENCH/driver.mjs" "http://127.0.0.1:$port" "$pid" "$MESSAGES"
    stop_all
    f=$(ls "$OUTDIR/$label.$pid".* 2>/dev/null | head -1)
    ir=$(sed -n 's/^summary: *\([0-9]*\).*/\1/p' "$f")
    obs=$(callgrind_annotate --inclusive=yes "$f" 2>/dev/null | awk '/metrics_observe/ { gsub(",", "", $1); print $1; exit }')
    echo "$label $(( ir / MESSAGES )) ${obs:-0}"
    rm -f "$OUTDIR/$label.$pid" "$OUTDIR/$label.$pid".*
}

echo "# $MESSAGES acked echoes per run, Ir per echo (server side, everything between -z and -d)"
run=1 # (lib.sh's helpers use $i)
while [ $run -le "$RUNS" ]; do
    measure "counted-$run" ./siolua --metrics
    measure "off-$run" build/nometrics/siolua
    run=$((run + 1))
done
