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
    callgrind_server "$@"
    node "$BENCH/driver.mjs" "http://127.0.0.1:$port" "$pid" "$MESSAGES"
    stop_all
    set -- $(callgrind_ir metrics_observe)
    echo "$label $(( $1 / MESSAGES )) $2"
}

echo "# $MESSAGES acked echoes per run, Ir per echo (server side, everything between -z and -d)"
run=1 # (lib.sh's helpers use $i)
while [ $run -le "$RUNS" ]; do
    measure "counted-$run" ./siolua --metrics
    measure "off-$run" build/nometrics/siolua
    run=$((run + 1))
done
