#!/bin/sh
# What TLS costs: siolua with --tls-cert/--tls-key against siolua on plain HTTP, with the Node
# reference on https.createServer and on http beside them, driven by build/bench/loadgen (--tls).
#
#   sh bench/tls/run.sh              3 runs of each scenario and target (~4 minutes)
#   RUNS=1 IDLE=1000 sh bench/tls/run.sh
#
# First, build/bench/session_mem: the heap an idle session holds by malloc's accounting, siolua's
# (src/tls.c) and the same OpenSSL set-up without SSL_MODE_RELEASE_BUFFERS. Then the scenarios
# (bench/run.sh's): idle (IDLE clients connected over WebSocket and held: RSS per
# client), echo (100 clients, closed loop of acked echoes: server CPU per round trip), bcast (1000
# receivers, a 100-byte broadcast: server CPU per delivered message). A fresh server per
# measurement, started on 127.0.0.1 with a free port and stopped by PID; targets alternate. The
# certificate is a P-256 one made here with the openssl CLI. JSON lines go to
# build/bench/tls-*.jsonl; the medians are written to bench/tls/RESULTS.md.
set -eu
cd "$(dirname "$0")/../.."

RUNS=${RUNS:-3}
IDLE=${IDLE:-5000}
DUR=${DUR:-4}
OUT=build/bench
mkdir -p "$OUT"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RES=$OUT/tls-$STAMP.jsonl
: >"$RES"

[ -x ./siolua ] || make siolua
make -s -C bench
COMMIT="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src || echo ' + uncommitted src changes')"
SIOLUA=$OUT/siolua-tls
cp ./siolua "$SIOLUA.tmp" && mv -f "$SIOLUA.tmp" "$SIOLUA"
LG=$OUT/loadgen

TMP=$(mktemp -d /tmp/siolua-bench-tls.XXXXXX)
SPID=""
cleanup() {
    [ -n "$SPID" ] && kill "$SPID" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$TMP/key.pem" -out "$TMP/cert.pem" \
    -days 2 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 2>/dev/null
TLSF="--tls-cert $TMP/cert.pem --tls-key $TMP/key.pem"
PING="--ping-interval 5000 --ping-timeout 5000"

# start TARGET: sets SPID and SPORT
start() {
    log=$TMP/server.log
    : >"$log"
    case $1 in
    siolua) $SIOLUA bench/app.lua --port 0 --max-connections 0 $PING 2>"$log" & ;;
    siolua-tls) $SIOLUA bench/app.lua --port 0 --max-connections 0 $PING $TLSF 2>"$log" & ;;
    node) node bench/node/server.js --port 0 $PING 2>"$log" & ;;
    node-tls) node bench/node/server.js --port 0 $PING $TLSF 2>"$log" & ;;
    esac
    SPID=$!
    SPORT=""
    i=0
    while [ -z "$SPORT" ] && [ $i -lt 100 ]; do
        sleep 0.1
        SPORT=$(sed -n 's/.*listening on https*:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log")
        i=$((i + 1))
    done
    [ -n "$SPORT" ] || { echo "bench/tls: $1 did not start:" >&2; cat "$log" >&2; exit 1; }
}

stop() {
    kill "$SPID" 2>/dev/null || true
    i=0
    while kill -0 "$SPID" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    kill -9 "$SPID" 2>/dev/null || true
    wait "$SPID" 2>/dev/null || true
    SPID=""
}

# measure TARGET RUN LOADGEN-ARGS...
measure() {
    t=$1 r=$2
    shift 2
    start "$t"
    case $t in *-tls) tls=--tls ;; *) tls= ;; esac
    line=$(timeout 180 $LG --port "$SPORT" --server-pid "$SPID" --target "$t" --run "$r" $tls "$@" ||
        echo "{\"target\":\"$t\",\"run\":$r,\"error\":\"loadgen failed\"}")
    stop
    echo "$line" | tee -a "$RES"
}

$OUT/session_mem "$TMP/cert.pem" "$TMP/key.pem" 2000 | tee -a "$RES"
for r in $(seq 1 "$RUNS"); do
    for t in siolua siolua-tls node node-tls; do
        measure $t "$r" --label idle --scenario idle --clients "$IDLE" --settle 1 --hold 3 --src 127.0.0.2-127.0.0.9
        measure $t "$r" --label echo --scenario echo --clients 100 --warmup 1 --duration "$DUR" --rate 2000 \
            --rate-duration "$DUR"
        measure $t "$r" --label bcast --scenario bcast --clients 1000 --payload 100 --window 8 --warmup 1 --duration "$DUR"
    done
done

python3 - "$RES" "$RUNS" "$IDLE" "$COMMIT" >bench/tls/RESULTS.md <<'EOF'
import json, statistics, subprocess, sys, time
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
runs, idle = sys.argv[2], sys.argv[3]
def med(label, target, key):
    v = [l[key] for l in lines if l.get("label", l.get("scenario")) == label and l["target"] == target and key in l]
    return statistics.median(v) if v else float("nan")
sm = next((l for l in lines if l.get("scenario") == "session_mem"), {})
def noise():
    v = [l.get("other_cpu_cores", 0) for l in lines if "other_cpu_cores" in l]
    return statistics.median(v) if v else 0
rows = [
    ("idle: RSS per connected client", "idle", "bytes_per_client", "{:,.0f} B"),
    ("echo: server CPU per acked round trip", "echo", "us_per_op", "{:.1f} us"),
    ("echo: p50 latency at 2000 echoes/s", "echo", "p50_us", "{:.0f} us"),
    ("bcast: server CPU per delivered message", "bcast", "us_per_delivered", "{:.2f} us"),
    ("bcast: deliveries per second", "bcast", "delivered_per_s", "{:,.0f}"),
]
commit = sys.argv[4]
print("# What TLS costs (bench/tls/run.sh)\n")
print("siolua over HTTPS/WSS (`--tls-cert/--tls-key`) against siolua on plain HTTP/WS, with the Node")
print("reference (socket.io on `https.createServer` / `http.createServer`) beside them. Median of %s run(s);" % runs)
print("idle: %s clients over WebSocket; echo: 100 clients; bcast: 1000 receivers, 100-byte payload." % idle)
print("Clients: build/bench/loadgen (`--tls`: OpenSSL, TLS 1.3, a P-256 certificate).")
print("Machine: %s, %s cores, shared with other work (median CPU of other processes during the runs: %.2f cores)." %
      (time.strftime("%Y-%m-%d", time.gmtime()), subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip(), noise()))
print("Commit %s.\n" % commit)
print("| measure | siolua | siolua TLS | Node | Node TLS |")
print("| --- | --- | --- | --- | --- |")
for name, label, key, fmt in rows:
    print("| %s | %s |" % (name, " | ".join(fmt.format(med(label, t, key)) for t in ("siolua", "siolua-tls", "node", "node-tls"))))
print("\nHeap held by one idle TLS server session, by malloc's accounting (build/bench/session_mem, %s"
      " sessions, %s): siolua's (src/tls.c, SSL_MODE_RELEASE_BUFFERS) **%s B**; the same OpenSSL set-up"
      " keeping its record buffers **%s B**. The RSS figures above also hold what the handshakes in"
      " flight used at their peak (the heap keeps it), and the plain connection's own cost." %
      (sm.get("sessions"), sm.get("protocol"), format(sm.get("siolua_bytes", 0), ",.0f"),
       format(sm.get("kept_buffers_bytes", 0), ",.0f")))
print("\nRaw lines: %s (not kept in the repository)." % sys.argv[1])
EOF
cat bench/tls/RESULTS.md
