#!/bin/sh
# What the Admin UI costs per message: the acked-echo load of bench/metrics (its driver.mjs:
# MESSAGES echoes from 10 WebSocket clients, measured between callgrind_control -z and -d) against
#   base      the branch point's siolua (git merge-base HEAD main, built in build/bench-admin/base)
#   off       this siolua, no Admin UI
#   prod      --admin-ui-no-auth --admin-ui-mode production (no UI connected)
#   dev       --admin-ui-no-auth (development mode, no UI connected)
#   dev-ui    the same with one UI connected (bench/admin/ui.mjs reads every notification)
# RUNS runs each, under callgrind; prints the server's instructions (Ir) per echo. Writes nothing in
# the repo but build/bench-admin/.
#   sh bench/admin/run.sh [MESSAGES] [RUNS]
set -eu
cd "$(dirname "$0")/../.."
BENCH=bench/admin
PIDS=""
. bench/lib.sh
MESSAGES=${1:-20000}
RUNS=${2:-3}
OUTDIR=build/bench-admin
mkdir -p "$OUTDIR"
trap stop_all EXIT

make -s siolua
base=$(git merge-base HEAD main)
if [ ! -x "$OUTDIR/base/siolua" ] || [ "$(cat "$OUTDIR/base/.commit" 2>/dev/null)" != "$base" ]; then
    rm -rf "$OUTDIR/base"
    mkdir -p "$OUTDIR/base"
    git archive "$base" | tar -x -C "$OUTDIR/base"
    ln -s "$(pwd)/node_modules" "$OUTDIR/base/node_modules"
    make -s -C "$OUTDIR/base" siolua >/dev/null
    echo "$base" > "$OUTDIR/base/.commit"
fi

measure() { # label binary [ui] flags... -> "label Ir-per-echo"
    label=$1; bin=$2; ui=$3; shift 3
    callgrind_server "$label" "$bin" "$@"
    if [ "$ui" = ui ]; then
        : >"$OUTDIR/$label.ui"
        node "$BENCH/ui.mjs" "http://127.0.0.1:$port" >"$OUTDIR/$label.ui" 2>&1 &
        PIDS="$PIDS $!"
        wait_log "$OUTDIR/$label.ui" "ui connected"
    fi
    node bench/metrics/driver.mjs "http://127.0.0.1:$port" "$pid" "$MESSAGES"
    stop_all
    set -- $(callgrind_ir)
    echo "$label $(( $1 / MESSAGES ))"
}

echo "# $MESSAGES acked echoes per run, server Ir per echo (between callgrind_control -z and -d)"
run=1
while [ $run -le "$RUNS" ]; do
    measure "base-$run" "$OUTDIR/base/siolua" -
    measure "off-$run" ./siolua -
    measure "prod-$run" ./siolua - --admin-ui-no-auth --admin-ui-mode production
    measure "dev-$run" ./siolua - --admin-ui-no-auth
    measure "dev-ui-$run" ./siolua ui --admin-ui-no-auth
    run=$((run + 1))
done
