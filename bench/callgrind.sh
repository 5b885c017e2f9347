#!/bin/sh
# Server instructions per operation under valgrind's callgrind: instruction counts do not depend on
# how loaded the machine is, so two binaries can be compared on a shared machine (bench/notes.md).
#
#   sh bench/callgrind.sh [BINARY...]       (default ./siolua)
#
# For each binary and scenario the server runs bench/app.lua under callgrind twice, with a short and
# a long measured phase of build/bench/loadgen; the per-operation figure is the difference of the
# two runs' total instructions over the difference of their operation counts, so start-up, the
# connects and the shutdown cancel out. The scenarios are made deterministic per operation:
#   echo    1 client, one acked "echo" in flight: every echo is a loop turn of its own
#   bcast   20 receivers (BCAST_CLIENTS), --window 1: every broadcast is delivered to all before the next is sent;
#           the figure is per delivered message (one broadcast = 20 deliveries)
# With WORKERS=N the servers run with --workers N and callgrind follows the workers
# (--trace-children): the figures are the instructions of every process together, so a broadcast
# whose receivers are spread over the workers gives the cost of the cross-worker path.
# Servers listen on 127.0.0.1, are bounded by `timeout`, and are stopped by their PID.
set -eu
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || set -- ./siolua
make -s -C bench >/dev/null
OUT=build/bench/callgrind
mkdir -p $OUT
LG=build/bench/loadgen
SHORT=${SHORT:-2}
LONG=${LONG:-8}

# run BIN SCENARIO SECS: prints "instructions ops"
run() {
    bin=$1 scen=$2 secs=$3
    log=$OUT/server.log
    cg=$OUT/cg.out
    : >"$log"
    rm -f "$cg" "$cg".*
    if [ "${WORKERS:-1}" -gt 1 ]; then
        timeout 600 valgrind --tool=callgrind --trace-children=yes --callgrind-out-file="$cg.%p" "$bin" bench/app.lua \
            --port 0 --no-watch --ping-interval 600000 --ping-timeout 600000 --workers "$WORKERS" 2>"$log" &
    else
        timeout 600 valgrind --tool=callgrind --callgrind-out-file=$cg "$bin" bench/app.lua --port 0 --no-watch \
            --ping-interval 600000 --ping-timeout 600000 2>"$log" &
    fi
    spid=$!
    port=""
    i=0
    while [ $i -lt 600 ] && [ -z "$port" ]; do
        port=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log")
        kill -0 $spid 2>/dev/null || break
        [ -n "$port" ] || sleep 0.1
        i=$((i + 1))
    done
    [ -n "$port" ] || { echo "callgrind.sh: $bin did not start" >&2; cat "$log" >&2; exit 1; }
    case $scen in
    echo) args="--scenario echo --clients 1 --rate-duration 0" ;;
    bcast) args="--scenario bcast --clients ${BCAST_CLIENTS:-20} --window 1 --payload 100" ;;
    esac
    line=$(timeout 300 $LG --port "$port" --server-pid $spid --warmup 0 --duration "$secs" --hs-timeout 60 $args)
    kill $spid
    wait $spid || true
    if [ "${WORKERS:-1}" -gt 1 ]; then
        i=0 # the workers write their files once they have exited
        while [ "$(cat "$cg".* 2>/dev/null | grep -c '^summary:')" -lt $((WORKERS + 1)) ] && [ $i -lt 300 ]; do
            sleep 0.1
            i=$((i + 1))
        done
        ins=$(cat "$cg".* | sed -n 's/^summary: *//p' | awk '{ t += $1 } END { print t }')
    else
        ins=$(sed -n 's/^summary: *//p' "$cg")
    fi
    ops=$(echo "$line" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(int(d.get("ops", d.get("delivered", 0))))')
    echo "$ins $ops"
}

for bin in "$@"; do
    for scen in echo bcast; do
        set -- $(run "$bin" $scen $SHORT)
        i1=$1 o1=$2
        set -- $(run "$bin" $scen $LONG)
        i2=$1 o2=$2
        python3 -c "
i1, o1, i2, o2 = $i1, $o1, $i2, $o2
print('%s %s: %d instructions per %s (%d -> %d ops)' % ('$bin', '$scen', round((i2 - i1) / (o2 - o1)),
      'acked echo' if '$scen' == 'echo' else 'delivered message', o1, o2))"
    done
done
