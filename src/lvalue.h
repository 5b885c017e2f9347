/* lvalue: Socket.IO payloads <-> Lua values, both ways, so that a value a client sends and the app
 * passes on untouched reaches the other side as the Node reference would deliver it (README
 * "Values"):
 *   JSON null  <-> siolua.null (a NULL light userdata, the value lua-cjson's null has)
 *   array      <-> sequence table; decoded arrays carry the shared siolua.array metatable, so an
 *                  empty one (or one the app empties) goes out as []. An app marks its own empty
 *                  arrays with siolua.array(); an unmarked table with only keys 1..n is an array
 *   object     <-> table with string keys. A decoded object with 2+ keys that are not array
 *                  indices keeps their order (JSON.parse's) in its metatable (see "Key order")
 *   number     <-> integer when integral and |x| <= 2^53, else float. Integers are written with
 *                  all their digits, floats as JavaScript writes them (jsnum.h); NaN and +-inf as
 *                  null (1e400 decodes to math.huge), as JSON.stringify does
 *   string     <-> string: bytes. "\ud800" (a lone surrogate) decodes to its WTF-8 bytes
 *                  (utf8.h) and is written back as the escape; other invalid UTF-8 is written as
 *                  U+FFFD (the wire is always valid UTF-8), except with LVALUE_RAW (hot reload)
 *   binary     <-> siolua.binary userdata (immutable), at any depth: in a packet that has
 *                  attachments, {"_placeholder":true,"num":N} becomes attachment N (one shared
 *                  userdata per attachment, however many placeholders name it), and a binary goes
 *                  out as a placeholder plus an attachment. Elsewhere such objects are data.
 * Key order (JS's): array-index keys ("0".."4294967294") first, ascending, then the others in the
 * order they came in; a duplicate key keeps its first place and its last value. Keys the app adds
 * to a decoded object go after the recorded ones; objects the app builds have no recorded order.
 * JSON is parsed by yajl (SAX, building Lua values directly) and written by this module.
 * Every function here may raise a Lua error (bad input, too deep): call them inside lvm_call() or lvm_protect().
 * They hold no C resource while raising. */
#ifndef SL_LVALUE_H
#define SL_LVALUE_H

#include <lua.h>

#include "buf.h"

#define LVALUE_BINARY_MT "siolua.binary"
#define LVALUE_ARRAY_MT  "siolua.array"
#define LVALUE_MAX_DEPTH 256 /* the largest max_depth accepted */

enum {
    LVALUE_RAW = 1,           /* encode: strings as they are (no U+FFFD), for siolua's own use (reload) */
    LVALUE_SPARSE_OBJECT = 2, /* lvalue_shape: an excessively sparse array is an object */
};

/* Registers the metatables and adds to the table at the top of the stack (the `siolua` module):
 * null, binary(str), isbinary(v), array([t]). [-0, +0, e] */
void lvalue_open(lua_State *L);

/* The prelude's primitives (lapp's core list), with the depth limit as upvalue 1:
 *   core.json_encode(v [, raw]) / core.json_decode(s): siolua's value mapping; raw keeps strings'
 *     bytes as they are (a hot reload hands them to the next VM unchanged); without it the text is
 *     valid UTF-8, as on the wire
 *   core.value_mark(mt): true if mt is one of the marks (an array, a decoded object's key order),
 *     which the copies made for a hot reload keep */
int lvalue_core_json_encode(lua_State *L);
int lvalue_core_json_decode(lua_State *L);
int lvalue_core_value_mark(lua_State *L);

/* ------------------------------------------------------------------------------ JSON */

/* Decodes `json` (len bytes) and pushes the value. When natt > 0 (a binary packet), placeholders
 * are replaced by binaries made from att[0..natt). Raises on invalid JSON, on a placeholder whose
 * num is not an attachment's, or when nesting exceeds max_depth. [-0, +1, e] */
void lvalue_push_json(lua_State *L, const char *json, size_t len, rbuf_t *const *att, size_t natt, int max_depth);
/* The same for an event's arguments: the JSON must be an array; its elements are pushed (no table
 * is made) and their number returned. [-0, +n, e] */
int lvalue_push_json_args(lua_State *L, const char *json, size_t len, rbuf_t *const *att, size_t natt, int max_depth);

/* Encodes the n values at stack[first..first+n) as one JSON array (an event's arguments), binaries
 * replaced by placeholders. Pushes the JSON text as a Lua string and returns the number of
 * attachments; when that is > 0, also fills att[0..ret) with new rbufs (refs = 1, RBUF_BINARY)
 * that the caller owns, allocated only after encoding succeeded. Raises on values JSON cannot carry
 * (functions, cycles, too deep). max_att bounds the attachments (raises beyond).
 * [-0, +1, e] */
int lvalue_encode_args(lua_State *L, int first, int n, rbuf_t **att, int max_att, int max_depth);

/* Same for a single value (a CONNECT_ERROR's data, reload, cluster messages): pushes its JSON
 * text. Binaries are not allowed there (raises). flags: LVALUE_RAW or 0. [-0, +1, e] */
void lvalue_encode_value(lua_State *L, int idx, int max_depth, int flags);

/* ------------------------------------------------------------------------------ msgpack
 * (lvalue_msgpack.c: notepack.io's mapping, for the Redis adapter and the msgpack parser) */
struct msgpack_object;

/* Encodes the n values at stack[first..first+n) as msgpack: one array of them (as_array; an
 * event's arguments), or each after the other (n = 1: one value). Binaries are msgpack bin.
 * Pushes the bytes as a Lua string. Raises on values msgpack cannot carry (functions, cycles, too
 * deep). [-0, +1, e] */
void lvalue_encode_msgpack(lua_State *L, int first, int n, int as_array, int max_depth);
/* Decodes s[0..len) (one msgpack value, nothing after it) and pushes it, returning 0; or pushes an
 * error message and returns -1. [-0, +1, m] */
int lvalue_push_msgpack(lua_State *L, const char *s, size_t len);
/* Pushes the value of o (borrowed: an unpacked tree); ext values push nothing and return 0, any
 * other 1. [-0, +(0|1), m] */
int lvalue_push_msgpack_object(lua_State *L, const struct msgpack_object *o);
/* Pushes the elements of the msgpack array arr (an event's arguments) and returns their number.
 * [-0, +n, m] */
int lvalue_push_msgpack_args(lua_State *L, const struct msgpack_object *arr);
/* The prelude's primitives (lapp's core list; the depth limit is upvalue 1, 64 without it):
 *   core.msgpack_encode(v): the bytes, as a string; raises on what msgpack cannot carry
 *   core.msgpack_decode(bytes): the value, or nil + an error for invalid input (never raises) */
int lvalue_core_msgpack_encode(lua_State *L);
int lvalue_core_msgpack_decode(lua_State *L);

/* ------------------------------------------------------------------------------ binaries */

/* Pushes a new binary userdata holding a copy of p[0..n). [-0, +1, m] */
void lvalue_push_binary(lua_State *L, const void *p, size_t n);
/* The bytes of the binary at idx, or NULL if it is not one. [-0, +0, -] */
const char *lvalue_tobinary(lua_State *L, int idx, size_t *len);

/* ------------------------------------------------------------------------------ marks
 * Shared with the msgpack mapping (lvalue_msgpack.c), so that every carrier keeps them. */

/* Marks the table at idx as an array (the siolua.array metatable). [-0, +0, m] */
void lvalue_mark_array(lua_State *L, int idx);

/* 1 if the value at idx is one of the marks above: the array metatable or a key list. [-0, +0, -] */
int lvalue_is_mark(lua_State *L, int idx);

/* Building a decoded object with its key order. begin pushes the table and one work slot;
 * set takes the key (any type; strings are recorded) and the value at the top and stores them;
 * end attaches the order and pops the work slot, leaving the table at the top. */
typedef struct {
    int t;     /* stack index of the table */
    int nkeys; /* keys recorded (string keys that are not array indices) */
} lvalue_obj_t;
void lvalue_obj_begin(lua_State *L, lvalue_obj_t *o, int size_hint); /* [-0, +2, m] */
void lvalue_obj_set(lua_State *L, lvalue_obj_t *o);                  /* [-2, +0, m] */
void lvalue_obj_end(lua_State *L, lvalue_obj_t *o);                  /* [-1, +0, m] */

/* How a table goes out: an array of n elements (1..n, nil ones as null), or an object whose
 * entries lvalue_shape_next gives in JS key order. lvalue_shape pushes two work slots, which the
 * caller pops after the last lvalue_shape_next. Raises on keys JSON cannot carry (booleans,
 * tables...) and on excessively sparse arrays (n > 10 and n > 2 x entries: lua-cjson's rule), which
 * with LVALUE_SPARSE_OBJECT are objects instead (their keys written as strings, as a peer's map
 * with integer keys re-encodes). [-0, +2, e] */
typedef struct {
    int array;       /* 1: an array of n elements */
    lua_Unsigned n;  /* array: its length; object: its number of entries */
    int mode;        /* object: how lvalue_shape_next walks it */
    int aux;         /* stack index of the first work slot */
    lua_Integer pos; /* position in the key list */
} lvalue_shape_t;
void lvalue_shape(lua_State *L, int idx, lvalue_shape_t *sh, int flags);
/* Object: pushes the next key and its value and returns 1, or returns 0 at the end.
 * [-0, +(2|0), m] */
int lvalue_shape_next(lua_State *L, int idx, lvalue_shape_t *sh);

/* 1 if the key at idx (a string or an integer) is an array index as JS defines it (an integer in
 * [0, 2^32 - 2], as a canonical decimal string or a Lua integer), with its value in *out.
 * [-0, +0, -] */
int lvalue_array_index(lua_State *L, int idx, uint32_t *out);

#endif
