#!/bin/sh
# Soak run (not in CI): thousands of clients connect, chat and leave for minutes while the server's
# RSS, open fds and Engine.IO timers are sampled; after the load stops they must come back flat.
#   sh bench/soak.sh [SECONDS]      (default 300; `make soak`)
# Load, in rounds until the time is up (all on 127.0.0.1, each loadgen bounded by `timeout`):
#   churn  16 lanes of connect + CONNECT + disconnect           (thousands of clients per round)
#   echo   100 clients sending acked messages
#   bcast  1 sender, 500 receivers in one namespace
#   idle   2,000 clients that connect, answer heartbeats and leave at the end of the round
# Prints one line per sample and a verdict: RSS within 10% (+1 MiB) of the first post-warm-up
# sample, and fds back to the idle baseline, once the load is gone.
set -u
cd "$(dirname "$0")/.." || exit 1
SECS=${1:-300}
LG=build/bench/loadgen
[ -x "$LG" ] || make -s -f bench/Makefile >/dev/null || { echo "soak: cannot build $LG"; exit 1; }
[ -x ./siolua ] || { echo "soak: build ./siolua first (make siolua)"; exit 1; }
tmp=$(mktemp -d)
trap 'kill $SRV 2>/dev/null; rm -rf "$tmp"' EXIT INT TERM
cp ./siolua "$tmp/siolua"
"$tmp/siolua" bench/app.lua --port 0 --ping-interval 2000 --ping-timeout 2000 --max-connections 0 \
  2>"$tmp/log" &
SRV=$!
i=0
while ! grep -q "listening on" "$tmp/log" 2>/dev/null; do
  i=$((i + 1)); [ $i -gt 100 ] && { echo "soak: server did not start"; cat "$tmp/log"; exit 1; }
  sleep 0.1
done
PORT=$(sed -n 's/.*listening on http:\/\/[^:]*:\([0-9]*\).*/\1/p' "$tmp/log" | head -n1)
# RSS is read from /proc: the server's own memory only
sample() { # label
  rss=$(awk '/VmRSS/ {print $2}' /proc/$SRV/status 2>/dev/null)
  fds=$(ls /proc/$SRV/fd 2>/dev/null | wc -l)
  echo "$(date +%T) $1 rss_kb=$rss fds=$fds"
}
sleep 1
base_fds=$(ls /proc/$SRV/fd | wc -l)
sample "start"
end=$(( $(date +%s) + SECS ))
round=0
first_rss=""
while [ "$(date +%s)" -lt "$end" ]; do
  round=$((round + 1))
  pids=""
  timeout 60 "$LG" --scenario churn --port "$PORT" --lanes 16 --warmup 1 --duration 8 >/dev/null 2>&1 &
  pids="$pids $!"
  timeout 60 "$LG" --scenario echo --port "$PORT" --clients 100 --warmup 1 --duration 8 --rate-duration 1 >/dev/null 2>&1 &
  pids="$pids $!"
  timeout 60 "$LG" --scenario bcast --port "$PORT" --clients 500 --warmup 1 --duration 8 >/dev/null 2>&1 &
  pids="$pids $!"
  timeout 60 "$LG" --scenario idle --port "$PORT" --clients 2000 --settle 2 --hold 6 >/dev/null 2>&1 &
  pids="$pids $!"
  for p in $pids; do wait "$p"; done # not the server, also a child of this shell
  kill -0 $SRV 2>/dev/null || { echo "soak: the server died"; cat "$tmp/log"; exit 1; }
  line=$(sample "round $round")
  echo "$line"
  [ -z "$first_rss" ] && [ $round -ge 2 ] && first_rss=$(echo "$line" | sed 's/.*rss_kb=\([0-9]*\).*/\1/')
done
sleep 5 # the last clients' sessions time out or close
final=$(sample "after")
echo "$final"
rss=$(echo "$final" | sed 's/.*rss_kb=\([0-9]*\).*/\1/')
fds=$(echo "$final" | sed 's/.*fds=\([0-9]*\).*/\1/')
first_rss=${first_rss:-$rss}
ok=1
[ "$rss" -le $(( first_rss + first_rss / 10 + 1024 )) ] || { echo "soak: RSS grew: $first_rss -> $rss KiB"; ok=0; }
[ "$fds" -le "$base_fds" ] || { echo "soak: fds not back to baseline: $base_fds -> $fds"; ok=0; }
if grep -qE "^\[error\]|Sanitizer|runtime error" "$tmp/log"; then echo "soak: the server log has errors:"; head -20 "$tmp/log"; ok=0; fi
[ $ok -eq 1 ] && echo "soak: flat after $round rounds (RSS $first_rss -> $rss KiB, fds $base_fds -> $fds)"
[ $ok -eq 1 ]
