#!/bin/sh
# Runs each libFuzzer harness for a bounded time: sh tests/fuzz/run.sh SECONDS NAME...
# (build/fuzz/fuzz_NAME, built by `make fuzz`). The working corpus is build/fuzz/corpus/NAME, seeded
# from tests/fuzz/corpus/NAME; a crash leaves build/fuzz/crash-* (replay: build/fuzz/fuzz_NAME FILE).
# The harnesses run two at a time (two lanes: the machines this runs on have two cores or more),
# each for the whole SECONDS. Ends with one line: "fuzz: N passed, N failed".
secs=$1
shift
cd "$(dirname "$0")/../.." || exit 1

# One harness: its verdict line(s) in build/fuzz/NAME.result.
run_one() {
  name=$1
  mkdir -p "build/fuzz/corpus/$name"
  log="build/fuzz/$name.log"
  if "build/fuzz/fuzz_$name" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix=build/fuzz/ "build/fuzz/corpus/$name" "tests/fuzz/corpus/$name" > "$log" 2>&1; then
    echo "ok fuzz_$name: $(grep -o 'Done [0-9]* runs in [0-9]* second(s)' "$log" | tail -n 1)"
  else
    echo "not ok fuzz_$name (see $log):"
    grep -E 'ERROR|SUMMARY|runtime error|Test unit written' "$log" | head -n 8 | sed 's/^/  /'
  fi > "build/fuzz/$name.result"
}

# Lane k (0 or 1) runs the harnesses at even or odd positions, one after the other.
lane() {
  i=0
  for name in $names; do
    [ $((i % 2)) -eq "$1" ] && run_one "$name"
    i=$((i + 1))
  done
}

names="$*"
for name in $names; do rm -f "build/fuzz/$name.result"; done
lane 0 &
lane 1 &
wait
pass=0
fail=0
for name in $names; do
  if [ -f "build/fuzz/$name.result" ]; then
    cat "build/fuzz/$name.result"
  else
    echo "not ok fuzz_$name: no verdict"
  fi
  if head -n 1 "build/fuzz/$name.result" 2>/dev/null | grep -q '^ok '; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
  fi
done
echo "fuzz: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
