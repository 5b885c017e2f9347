#!/bin/sh
# Runs each unit-test executable; each prints "ok"/"not ok" lines and a "N passed, N failed" line.
# Prints the overall "N passed, N failed" and fails if any test failed. An executable that runs
# longer than UNIT_TIMEOUT seconds (120; each takes a few at most, even under ASan) is killed and
# counted as failed: a hang (a corrupted list walked forever) fails instead of stalling `make test`.
limit=${UNIT_TIMEOUT:-120}
pass=0; fail=0; status=0
for t in "$@"; do
  out=$(timeout -k 5 "$limit" "$t" 2>&1); rc=$?
  printf '%s\n' "$out" | grep -v '^ok ' || true
  p=$(printf '%s\n' "$out" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed.*/\1/p' | tail -n1)
  f=$(printf '%s\n' "$out" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed.*/\2/p' | tail -n1)
  [ $rc -ne 124 ] && [ $rc -ne 137 ] || { echo "not ok $t: killed after ${limit} s"; f=$((${f:-0}+1)); p=${p:-0}; }
  [ -n "$p" ] || { echo "not ok $t: crashed or printed no summary (exit $rc)"; f=$((f+1)); p=0; }
  [ $rc -eq 0 ] || status=1
  pass=$((pass+p)); fail=$((fail+${f:-0}))
done
echo "unit: $pass passed, $fail failed"
[ $fail -eq 0 ] && exit $status || exit 1
