#!/bin/sh
# Installs what building and testing siolua needs, on Debian 12 as root (or with sudo).
# Idempotent and fast when everything is already there: apt is only touched when a package is
# missing, npm only when node_modules is missing or older than package.json / package-lock.json.
#   sh scripts/setup.sh
set -eu

cd "$(dirname "$0")/.."

# Build: compiler, libuv, llhttp (C sources), wslay, Lua 5.4 + cjson (for apps), yajl (siolua's JSON
# parser), libcrypto, zlib and brotli (compression; brotli only at build time, for the client bundle).
# Tests: python-socketio client (Debian's, run with /usr/bin/python3), Chromium for the browser test,
# nginx-light for the sticky-session test, redis-server for the adapter tests, the openssl CLI (the
# TLS tests' CA), certutil (libnss3-tools: that CA in Chromium's NSS database) and pyOpenSSL (the
# hostile suite's TLS sessions that misbehave).
# Handlers that talk to the world: libcurl (siolua.fetch), SQLite (siolua.sqlite), libpq
# (siolua.pg); postgresql for their tests.
# Operations: python3-prometheus-client (its parser checks /metrics in tests/integration/ops_metrics);
# libcrypt-dev (libxcrypt: the Admin UI's bcrypt password check).
PKGS="build-essential pkg-config libuv1-dev node-llhttp libwslay-dev liblua5.4-dev lua-cjson-dev
libyajl-dev libssl-dev python3 python3-socketio python3-websocket python3-requests chromium fonts-dejavu-core clang
nginx-light openssl libnss3-tools python3-openssl
libhiredis-dev libmsgpack-dev redis-server
zlib1g-dev libbrotli-dev
libcurl4-openssl-dev libsqlite3-dev libpq-dev postgresql
python3-prometheus-client libcrypt-dev"
# Node comes from the machine when present; Debian's nodejs only on a machine that has none.
command -v node >/dev/null 2>&1 || PKGS="$PKGS nodejs"
command -v npm >/dev/null 2>&1 || PKGS="$PKGS npm"

missing=""
for p in $PKGS; do
  # "install ok installed" only: a package removed but not purged still has a dpkg entry.
  st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  case "$st" in
    *"ok installed") ;;
    *) missing="$missing $p" ;;
  esac
done

if [ -n "$missing" ]; then
  echo "setup: installing Debian packages:$missing"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  # shellcheck disable=SC2086 # word splitting of the package list is intended
  $SUDO apt-get install -y -q --no-install-recommends $missing
fi

# playwright-core (the browser test) needs Node >= 20; Debian 12's own nodejs is 18.
major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
[ "$major" -ge 20 ] || echo "setup: warning: node $(node --version 2>/dev/null) is older than 20: the browser test needs 20+"

# npm: socket.io-client (its dist/ bundle is embedded in the binary), socket.io (the Node
# reference), ws (raw WebSocket in tests), playwright-core (drives /usr/bin/chromium; it never
# downloads a browser of its own, and the variable below makes sure of it).
stale=0
stamp=node_modules/.package-lock.json   # written by npm after every successful install
if [ ! -f "$stamp" ] || [ ! -f node_modules/socket.io-client/dist/socket.io.min.js ]; then
  stale=1
elif [ -n "$(find package.json package-lock.json -newer "$stamp" 2>/dev/null)" ]; then
  stale=1
fi

if [ "$stale" -eq 1 ]; then
  export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
  if [ -f package-lock.json ]; then
    echo "setup: npm ci"
    npm ci --no-audit --no-fund
  else
    echo "setup: npm install"
    npm install --no-audit --no-fund
  fi
  touch "$stamp"
fi

echo "setup: ok"
