#!/bin/sh
# Runs build/siolua under valgrind (memcheck): `make valgrind` points the integration tests at this
# wrapper. A leak or an invalid access makes valgrind print "ERROR SUMMARY: N errors" with N > 0 in
# the server log, which the tests treat as a failure; timeouts are generous but a few timing-bound
# tests may still be slower than their budget under valgrind.
exec valgrind --quiet --error-exitcode=99 --leak-check=full --show-leak-kinds=definite \
  --errors-for-leak-kinds=definite "$(dirname "$0")/../build/siolua" "$@"
