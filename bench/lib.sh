# Shell helpers of the side-by-side benchmarks (bench/redis/run.sh, bench/hio/run.sh,
# bench/parsers/run.sh), sourced by them. They expect BENCH (a name for messages) and PIDS (the
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
