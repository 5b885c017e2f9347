#!/bin/sh
# The side-by-side benchmark of issue 5: siolua vs the Node socket.io reference vs a bare C
# WebSocket floor, driven by build/bench/loadgen (bench/loadgen.c).
#
#   sh bench/run.sh                 full run (3 runs of each scenario, ~9 minutes on 2 cores)
#   sh bench/run.sh quick           1 short run of each, 1k idle clients, no scale scenario (~2 min)
#   sh bench/run.sh [quick] idle bcast ...   only these scenarios (idle echo bcast churn poll scale)
#   sh bench/run.sh deflate         compression (perMessageDeflate) against none, siolua and Node:
#                                   report in bench/RESULTS-deflate.md
#   RUNS=5 sh bench/run.sh          more runs
#   BENCH_ROOMS=1 sh bench/run.sh   join/bcast through rooms in both servers (once siolua has them)
#
# Every server is started fresh for every measurement, on 127.0.0.1 with a free port, and stopped
# by its PID; every loadgen is bounded by `timeout`. Targets are run alternately (siolua, node,
# floor, then again). The server's CPU (utime+stime) and RSS are sampled by the loadgen from
# /proc/PID at the edges of the measured phase. One JSON line per scenario, target and run goes to
# stdout and to build/bench/results-*.jsonl; bench/report.py turns them into Markdown: a full run of
# every scenario writes bench/RESULTS.md (and its raw lines to bench/results.jsonl), anything else
# build/bench/RESULTS-partial.md.
set -eu
cd "$(dirname "$0")/.."

MODE=full
case "${1:-}" in quick) MODE=quick; shift ;; full) shift ;; esac
ALL="idle echo bcast churn poll scale"
SCEN="${*:-$ALL}"
for s in $SCEN; do
    case " $ALL deflate " in *" $s "*) ;; *) echo "run.sh: unknown scenario $s (one of: $ALL deflate)" >&2; exit 2 ;; esac
done

if [ $MODE = quick ]; then
    RUNS=${RUNS:-1}; DUR=2; IDLE_SIZES="1000"
else
    RUNS=${RUNS:-3}; DUR=5; IDLE_SIZES="1000 10000"
fi
PING_INTERVAL=5000
PING_TIMEOUT=5000
OUT=build/bench
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RES=$OUT/results-$STAMP.jsonl
META=$OUT/meta-$STAMP.txt
WARN=$OUT/server-warnings-$STAMP.txt
LG=$OUT/loadgen

command -v node >/dev/null || { echo "run.sh: node is needed for the reference server" >&2; exit 1; }
[ -f node_modules/socket.io/package.json ] || { echo "run.sh: npm socket.io is missing: run 'make setup'" >&2; exit 1; }
[ -x ./siolua ] || make siolua
make -s -C bench
: >"$RES"
: >"$WARN"
: >"$META.cmds"

# The run uses a snapshot of ./siolua: the binary may be rebuilt while the benchmark runs.
SIOLUA=$OUT/siolua
cp ./siolua $SIOLUA.tmp && mv -f $SIOLUA.tmp $SIOLUA
SIOLUA_FLAGS="--ping-interval $PING_INTERVAL --ping-timeout $PING_TIMEOUT"
# Connection caps would stop the idle/scale scenarios before the machine does (Node has none).
if $SIOLUA --help 2>&1 | grep -q -- '--max-connections '; then
    SIOLUA_FLAGS="$SIOLUA_FLAGS --max-connections 0"
fi
NODE_FLAGS="--ping-interval $PING_INTERVAL --ping-timeout $PING_TIMEOUT"
{
    echo "# servers (each started fresh per measurement; loadgen gets the port and the PID)"
    echo "$SIOLUA bench/app.lua --port 0 $SIOLUA_FLAGS      # a copy of ./siolua"
    echo "node bench/node/server.js --port 0 $NODE_FLAGS"
    echo "$OUT/floor --port 0 --batch      # floor; floor1w: the same without --batch"
    case " $SCEN " in *" deflate "*) echo "# load (labels ending in -z: both servers also get --per-message-deflate)" ;;
    *) echo "# load" ;; esac
} >>"$META.cmds"

SPID=""
LGPIDS=""
cleanup() {
    for p in $LGPIDS $SPID; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_server TARGET: sets SPID and SPORT. $SERVER_EXTRA: more flags for siolua and node.
SERVER_EXTRA=""
start_server() {
    log=$OUT/server-$1.log
    : >"$log" # here, not in the child: the port must not be read from the previous run's log
    case $1 in
    siolua) $SIOLUA bench/app.lua --port 0 $SIOLUA_FLAGS $SERVER_EXTRA 2>"$log" & ;;
    node) node bench/node/server.js --port 0 $NODE_FLAGS $SERVER_EXTRA 2>"$log" & ;;
    floor) $OUT/floor --port 0 --batch 2>"$log" & ;;
    floor1w) $OUT/floor --port 0 2>"$log" & ;;
    esac
    SPID=$!
    SPORT=""
    i=0
    while [ $i -lt 100 ]; do
        SPORT=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log")
        [ -n "$SPORT" ] && break
        kill -0 $SPID 2>/dev/null || break
        sleep 0.1
        i=$((i + 1))
    done
    if [ -z "$SPORT" ]; then
        echo "run.sh: $1 did not start:" >&2
        cat "$log" >&2
        exit 1
    fi
}

# stop_server TARGET SCENARIO RUN: stops SPID; keeps what the server logged besides its banner.
stop_server() {
    if kill -0 $SPID 2>/dev/null; then
        kill $SPID 2>/dev/null || true
        i=0
        while kill -0 $SPID 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
        kill -9 $SPID 2>/dev/null || true
    else
        echo "run.sh: $1 (pid $SPID) had exited during $2 run $3" | tee -a "$WARN" >&2
    fi
    wait $SPID 2>/dev/null || true
    SPID=""
    grep -v 'listening on\|received, shutting down' "$OUT/server-$1.log" |
        sed "s/^/[$1 $2 run $3] /" | head -20 >>"$WARN" || true
}

# The machine is shared (other sessions run their tests on it): before each measurement, wait up
# to 30 s for half a second in which the other processes use less than 15% of one core; at most
# QUIET_BUDGET seconds of waiting in all (default 90), then measure regardless (the JSON lines
# carry other_cpu_cores, and the report lists the noisy runs).
busy_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9; exit}' /proc/stat; }
QUIET_BUDGET=${QUIET_BUDGET:-90}
quiet_wait() {
    i=0
    while [ $i -lt 60 ] && [ $((WAITED / 2)) -lt $QUIET_BUDGET ]; do
        WAITED=$((WAITED + 1))
        b0=$(busy_ticks)
        sleep 0.5
        b1=$(busy_ticks)
        # ticks are 1/100 s: 0.5 s x 15% = 7.5 ticks
        [ $((b1 - b0)) -le 7 ] && return 0
        i=$((i + 1))
    done
    echo "run.sh: the machine is busy (other processes); measuring anyway" >&2
    NOISY=$((NOISY + 1))
}
NOISY=0
WAITED=0 # half seconds

# measure TARGET RUN LABEL LOADGEN-ARGS...: one fresh server, one loadgen, one JSON line.
measure() {
    t=$1 r=$2 label=$3
    shift 3
    quiet_wait
    start_server "$t"
    if [ "$r" = 1 ] && [ "$t" = siolua ]; then
        echo "$label: $LG --port PORT --server-pid PID --target T --run R --label $label $*" >>"$META.cmds"
    fi
    line=$(timeout 180 $LG --port $SPORT --server-pid $SPID --target "$t" --run "$r" --label "$label" "$@" ||
        echo "{\"scenario\":\"$label\",\"target\":\"$t\",\"run\":$r,\"error\":\"loadgen failed\"}")
    stop_server "$t" "$label" "$r"
    echo "$line" | tee -a "$RES"
}

echo "run.sh: $MODE mode, $RUNS run(s), scenarios: $SCEN; results in $RES" >&2
T0=$(date +%s)

for s in $SCEN; do
    case $s in
    idle)
        for n in $IDLE_SIZES; do
            label=idle-$((n / 1000))k
            for r in $(seq 1 $RUNS); do
                for t in siolua node floor; do
                    measure $t $r $label --scenario idle --clients $n --settle 1 --hold 5 \
                        --src 127.0.0.2-127.0.0.9 --connect-timeout 60
                done
            done
        done
        ;;
    echo)
        for r in $(seq 1 $RUNS); do
            for t in siolua node floor; do
                measure $t $r echo --scenario echo --clients 100 --warmup 1 --duration $DUR \
                    --rate 2000 --rate-duration $DUR
            done
            # one write per frame (siolua's current write strategy), for reference
            if [ "$r" = 1 ]; then
                measure floor1w $r echo --scenario echo --clients 100 --warmup 1 --duration $DUR \
                    --rate 2000 --rate-duration $DUR
            fi
        done
        ;;
    bcast)
        for r in $(seq 1 $RUNS); do
            for t in siolua node floor; do
                measure $t $r bcast --scenario bcast --clients 1000 --payload 100 --window 8 --warmup 1 --duration $DUR
            done
            if [ "$r" = 1 ]; then
                measure floor1w $r bcast --scenario bcast --clients 1000 --payload 100 --window 8 \
                    --warmup 1 --duration $DUR
            fi
        done
        ;;
    churn)
        for r in $(seq 1 $RUNS); do
            for t in siolua node floor; do
                measure $t $r churn --scenario churn --lanes 16 --warmup 1 --duration $DUR --src 127.0.0.2-127.0.0.254
            done
        done
        ;;
    poll)
        for r in $(seq 1 $RUNS); do
            for t in siolua node; do
                measure $t $r poll --scenario poll --clients 100 --warmup 1 --duration $DUR
            done
        done
        ;;
    deflate)
        # Compression's cost: the same load with and without perMessageDeflate (threshold 1024,
        # the defaults), payloads of random words (a new one per message), on both servers.
        # label suffix -z: server --per-message-deflate, loadgen --deflate (context takeover both
        # ways, as browsers and ws; the loadgen compresses its messages of 1024 bytes or more)
        for r in $(seq 1 $RUNS); do
            for z in "" -z; do
                SERVER_EXTRA=""
                ZL=""
                if [ "$z" = -z ]; then SERVER_EXTRA="--per-message-deflate"; ZL="--deflate"; fi
                for t in siolua node; do
                    measure $t $r echo-2k$z --scenario echo --clients 100 --payload 2048 --text $ZL \
                        --warmup 1 --duration $DUR --rate 1000 --rate-duration $DUR
                    measure $t $r bcast-2k$z --scenario bcast --clients 1000 --payload 2048 --text $ZL \
                        --window 8 --warmup 1 --duration $DUR
                    measure $t $r idle-1k-silent$z --scenario idle --clients 1000 $ZL --settle 1 --hold 3 \
                        --src 127.0.0.2-127.0.0.9 --connect-timeout 60
                    measure $t $r idle-1k-talked$z --scenario idle --clients 1000 --warm-echo 2048 $ZL \
                        --settle 1 --hold 3 --src 127.0.0.2-127.0.0.9 --connect-timeout 60
                done
            done
        done
        SERVER_EXTRA=""
        ;;
    scale)
        if [ $MODE = quick ]; then
            echo "run.sh: scale is skipped in quick mode" >&2
            continue
        fi
        # Up to 25,000 clients from 2 loadgen processes (each process may hold ~19,990 fds); one siolua
        # process can hold at most ~19,990 sockets here (ulimit -n), so the figure is what it reaches.
        SCALE_N=${SCALE_N:-25000}
        half=$((SCALE_N / 2))
        quiet_wait
        start_server siolua
        echo "scale: 2 x $LG --scenario idle --clients $half --src 127.0.0.10-127.0.0.40 --sample-at NOW+40s" >>"$META.cmds"
        at=$(($(date +%s) * 1000 + 40000))
        for k in 1 2; do
            timeout 120 $LG --port $SPORT --server-pid $SPID --target siolua --run $k --label scale-part \
                --scenario idle --clients $half --settle 1 --sample-at $at --connect-timeout 30 --hs-timeout 15 \
                --src 127.0.0.$((10 + (k - 1) * 16))-127.0.0.$((25 + (k - 1) * 16)) >$OUT/scale-$k.json &
            LGPIDS="$LGPIDS $!"
        done
        for p in $LGPIDS; do wait $p || true; done
        LGPIDS=""
        stop_server siolua scale 1
        python3 bench/parts.py scale siolua "$OUT/scale-1.json" "$OUT/scale-2.json" | tee -a "$RES"
        ;;
    esac
done

T1=$(date +%s)
{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "nproc: $(nproc)"
    echo "cpu: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
    echo "kernel: $(uname -r)"
    echo "memory: $(sed -n 's/^MemTotal: *//p' /proc/meminfo)"
    echo "ulimit_n: $(ulimit -n)"
    echo "node: $(node --version), socket.io $(node -p 'require("socket.io/package.json").version')"
    echo "siolua: $($SIOLUA --version 2>&1 | head -1), commit $(git rev-parse --short HEAD 2>/dev/null || echo ?)$(git diff --quiet HEAD -- src 2>/dev/null || echo ' + uncommitted src changes'), binary md5 $(md5sum <$SIOLUA | cut -c1-12)"
    echo "mode: $MODE, runs: $RUNS, scenarios: $SCEN, duration: ${DUR}s, ping: $PING_INTERVAL/$PING_TIMEOUT ms"
    echo "rooms: ${BENCH_ROOMS:-0}"
    echo "elapsed: $((T1 - T0)) s; measurements started on a busy machine after waiting 30 s: $NOISY"
    echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$META"

if [ "$SCEN" = deflate ]; then
    REPORT=bench/RESULTS-deflate.md
    cp "$RES" bench/results-deflate.jsonl
    cp "$META" bench/results-deflate.meta
    cp "$META.cmds" bench/results-deflate.meta.cmds
    RES=bench/results-deflate.jsonl
    META=bench/results-deflate.meta
elif [ $MODE = full ] && [ "$SCEN" = "$ALL" ]; then
    REPORT=bench/RESULTS.md
    # the raw lines and the run's description behind RESULTS.md (build/ is not kept)
    cp "$RES" bench/results.jsonl
    cp "$META" bench/results.meta
    cp "$META.cmds" bench/results.meta.cmds
    RES=bench/results.jsonl
    META=bench/results.meta
else
    REPORT=$OUT/RESULTS-partial.md
fi
python3 bench/report.py --meta "$META" --warnings "$WARN" --out "$REPORT" "$RES"
echo "run.sh: done in $((T1 - T0)) s; report: $REPORT" >&2
