#!/bin/sh
# The layering check (issue 13): every module of src/ has a layer in the table below (the README's
# Internals table, bottom up), and no module depends on a higher layer's, neither by an #include
# nor by a call (an undefined symbol of its object that another module's object defines). A
# module may use one of its own layer. Fails on a file of src/ missing from the table, and on
# every upward dependency, naming both ends.
#   sh scripts/layers.sh [OBJDIR]   OBJDIR: the objects to read calls from (build/obj); without
#                                   objects only the #include lines are checked.
set -eu
cd "$(dirname "$0")/.."
OBJ=${1:-build/obj}

# layer  modules (a module is a file name without .c/.h)
TABLE='
0 buf log tq utf8 jsnum embed zip tls net metrics
1 pmd http ws
2 eio_packet eio
3 sio_packet sio rooms rstore
4 rconn adapter_redis wbus
5 lvm lvalue lvalue_json lvalue_msgpack lemitter
6 options
7 lenv lreq lconn lengine lnsp lsocket lsio ltimer ladapter_redis ladmin lwait lredis lfetch lsqlite lpg lhttp
8 lapp
9 reload
10 server ops
11 main supervisor
'

layer_file=$(mktemp)
deps=$(mktemp)
trap 'rm -f "$layer_file" "$deps"' EXIT
echo "$TABLE" | awk 'NF { for (i = 2; i <= NF; i++) print $i, $1 }' > "$layer_file"

status=0
for f in src/*.c src/*.h; do
    m=$(basename "$f"); m=${m%.*}
    if ! grep -q "^$m " "$layer_file"; then
        echo "layers: $f has no layer in scripts/layers.sh's table" >&2
        status=1
    fi
done

# Dependencies by #include: "file module included-module".
for f in src/*.c src/*.h; do
    m=$(basename "$f"); m=${m%.*}
    sed -n 's/^#include "\([^"]*\)\.h".*/\1/p' "$f" | while read -r d; do
        echo "$f $m $d"
    done
done > "$deps"

# Dependencies by call: an object's undefined symbols defined by another object of src/.
if ls "$OBJ"/*.o > /dev/null 2>&1; then
    defs=$(mktemp)
    trap 'rm -f "$layer_file" "$deps" "$defs"' EXIT
    for o in "$OBJ"/*.o; do
        m=$(basename "$o" .o)
        [ -f "src/$m.c" ] || continue
        nm -g --defined-only "$o" | awk -v m="$m" 'NF == 3 { print $3, m }'
    done | sort > "$defs"
    for o in "$OBJ"/*.o; do
        m=$(basename "$o" .o)
        [ -f "src/$m.c" ] || continue
        nm -u "$o" | awk '{ print $2 }' | sort | join - "$defs" |
            awk -v m="$m" '{ print "src/" m ".c:calls:" $1, m, $2 }'
    done >> "$deps"
fi

awk -v status="$status" '
    FILENAME == ARGV[1] { layer[$1] = $2; next }
    !($3 in layer) { next }                 # a header outside src/ (generated prelude)
    layer[$3] > layer[$2] {
        printf "layers: %s (layer %d) depends on %s (layer %d, higher)\n", $1, layer[$2], $3, layer[$3] > "/dev/stderr"
        status = 1
    }
    END { exit status }' "$layer_file" "$deps"
echo "layers: no dependency goes up ($(wc -l < "$deps") checked)"
