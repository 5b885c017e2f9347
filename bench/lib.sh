# Shell helpers of the side-by-side benchmarks (bench/redis/run.sh, bench/hio/run.sh,
# bench/parsers/run.sh, bench/metrics/run.sh, bench/admin/run.sh), sourced by them. They expect BENCH (a name for messages) and PIDS (the
# processes started, stopped by PID).

# free_port: a free TCP port on 127.0.0.1 (bound, then released)
free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }

# wait_log FILE REGEX: until the file has a matching line (10 s at most)
wait_log() {
    i=0
    until grep -Eq "$2" "$1" 2>/dev/null; do
        i=$((i + 1))
        [ $i -gt 200 ] && { echo "$BENCH: timed out waiting for /$2/ in $1:" >&2; cat "$1" >&2; exit 1; }
        sleep 0.05
    done
}

# stop_all: SIGTERM to every process in PIDS, SIGKILL after 2 s; PIDS is emptied
stop_all() {
    for p in $PIDS; do kill "$p" 2>/dev/null || true; done
    for p in $PIDS; do
        i=0
        while kill -0 "$p" 2>/dev/null && [ $i -lt 40 ]; do sleep 0.05; i=$((i + 1)); done
        kill -9 "$p" 2>/dev/null || true
    done
    PIDS=""
}

# callgrind_server LABEL BINARY FLAGS...: BINARY runs bench/app.lua under callgrind on a free port
# (sets port and pid, PIDS="$pid"), its log in $OUTDIR/LABEL.log; returns once it listens. After
# stop_all, callgrind_ir prints the instructions it counted (between callgrind_control -z and -d,
# the driver's job) and removes its output.
callgrind_server() {
    label=$1; bin=$2; shift 2
    port=$(free_port)
    log="$OUTDIR/$label.log"
    : >"$log" # (before the server starts: wait_log must not read a previous run's)
    valgrind --tool=callgrind --callgrind-out-file="$OUTDIR/$label.%p" "$bin" bench/app.lua --port "$port" --no-watch "$@" >"$log" 2>&1 &
    pid=$!
    PIDS="$pid"
    wait_log "$log" "siolua listening on"
}
# callgrind_ir [FUNCTION]: the summary's Ir, and with FUNCTION the Ir inclusive in it, as "IR FN_IR"
callgrind_ir() {
    f=$(ls "$OUTDIR/$label.$pid".* 2>/dev/null | head -1)
    ir=$(sed -n 's/^summary: *\([0-9]*\).*/\1/p' "$f")
    fn_ir=0
    if [ -n "${1:-}" ]; then
        fn_ir=$(callgrind_annotate --inclusive=yes "$f" 2>/dev/null | awk -v fn="$1" '$0 ~ fn { gsub(",", "", $1); print $1; exit }')
    fi
    rm -f "$OUTDIR/$label.$pid" "$OUTDIR/$label.$pid".*
    echo "$ir ${fn_ir:-0}"
}
