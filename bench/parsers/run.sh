#!/bin/sh
# The cost of the msgpack parser (issue 15): server CPU per acked echo and RSS, with the JSON parser
# and with --parser msgpack, for a text payload and one carrying a 1 KB binary, siolua and the Node
# reference (bench/node/server.js --parser msgpack) side by side.
#
#   sh bench/parsers/run.sh            RUNS=3 runs of each of the 8 combinations, 5 s each
#   RUNS=1 DURATION=3 sh bench/parsers/run.sh
#
# Each measurement starts a fresh server on 127.0.0.1 (free port), runs bench/parsers/driver.mjs
# (CLIENTS raw WebSocket clients, WINDOW echoes in flight each), and stops the server by its PID.
# One JSON line per measurement goes to build/bench/parsers-*.jsonl; the table at the end (medians)
# is what bench/notes.md quotes.
set -eu
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-3}
DURATION=${DURATION:-5}
CLIENTS=${CLIENTS:-50}
WINDOW=${WINDOW:-4}
OUT=build/bench
mkdir -p "$OUT"
RES=$OUT/parsers-$(date -u +%Y%m%dT%H%M%SZ).jsonl
[ -x ./siolua ] || make siolua
cp ./siolua $OUT/siolua-parsers.tmp && mv -f $OUT/siolua-parsers.tmp $OUT/siolua-parsers
BENCH=bench/parsers
PIDS=
. bench/lib.sh
trap stop_all EXIT INT TERM

for run in $(seq 1 "$RUNS"); do
    for target in siolua node; do
        for parser in json msgpack; do
            for payload in text binary; do
                log=$(mktemp /tmp/siolua-bench-parsers.XXXXXX)
                pflag=""
                [ $parser = msgpack ] && pflag="--parser msgpack"
                if [ $target = siolua ]; then
                    $OUT/siolua-parsers bench/app.lua --port 0 --no-watch $pflag >"$log" 2>&1 &
                else
                    node bench/node/server.js --port 0 $pflag >"$log" 2>&1 &
                fi
                PIDS=$!
                wait_log "$log" 'listening on'
                port=$(sed -n 's/.*listening on http:\/\/[^:]*:\([0-9]*\).*/\1/p' "$log" | head -n1)
                line=$(timeout $((DURATION + 60)) node bench/parsers/driver.mjs "http://127.0.0.1:$port" "$PIDS" \
                       $parser $payload "$DURATION" "$CLIENTS" "$WINDOW")
                stop_all
                rm -f "$log"
                echo "{\"target\":\"$target\",\"run\":$run,${line#\{}" | tee -a "$RES"
            done
        done
    done
done

# medians per combination
node -e '
const lines = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").map(JSON.parse);
const med = (a) => { a = [...a].sort((x, y) => x - y); return a[Math.floor(a.length / 2)]; };
const rows = {};
for (const l of lines) (rows[[l.target, l.parser, l.payload]] ||= []).push(l);
console.log("\n| target | parser | payload | request bytes | echoes/s | server CPU per echo (us) | server RSS (MB) |");
console.log("| --- | --- | --- | --- | --- | --- | --- |");
for (const [k, ls] of Object.entries(rows)) {
  const [t, p, pl] = k.split(",");
  console.log(`| ${t} | ${p} | ${pl} | ${ls[0].request_bytes} | ${med(ls.map((l) => l.echoes_per_s))} | ${med(ls.map((l) => l.cpu_us_per_echo))} | ${(med(ls.map((l) => l.rss_kb)) / 1024).toFixed(1)} |`);
}' "$RES"
echo "(medians of $RUNS runs; raw lines in $RES)"
