#!/bin/sh
# The hostile-input suite (tests/hostile/hostile.py) against the ASan/UBSan build, or $SIOLUA_BIN.
# Starts its own servers on 127.0.0.1 (free ports), stops them by PID, and ends with one line:
# "hostile: N passed, N failed" (exit 1 if anything failed). Server logs: build/hostile/.
#   sh tests/hostile/run.sh [-v] [-k SUBSTRING]
cd "$(dirname "$0")/../.." || exit 1
SIOLUA_BIN=${SIOLUA_BIN:-./build/asan/siolua}
export SIOLUA_BIN
if [ ! -x "$SIOLUA_BIN" ]; then
  echo "hostile: no executable at $SIOLUA_BIN (build it with 'make asan')"
  echo "hostile: 0 passed, 1 failed"
  exit 1
fi
timeout -k 5 300 /usr/bin/python3 tests/hostile/hostile.py "$@"
st=$?
if [ $st -ge 124 ]; then # killed by the timeout, or the interpreter crashed: no summary line was printed
  echo "hostile: the suite did not finish (exit status $st)"
  echo "hostile: 0 passed, 1 failed"
fi
exit $st
