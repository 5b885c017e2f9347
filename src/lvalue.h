/* lvalue: how Socket.IO payloads map to Lua values, both ways (README "Values").
 *   JSON null        <-> siolua.null (lua-cjson's null, a light userdata)
 *   array            <-> sequence table (siolua.array(t) marks one so that it encodes as [] even
 *                        when empty; lua-cjson 2.1.0 decodes [] and {} alike, to a plain empty table)
 *   object           <-> table with string keys (an unmarked empty table encodes as {})
 *   number           <-> integer when integral and |x| <= 2^53, else float (integers are written
 *                        exactly, floats with 14 significant digits; NaN/inf raise)
 *   binary (Buffer)  <-> siolua.binary userdata (metatable "siolua.binary"), at any depth:
 *                        placeholders {"_placeholder":true,"num":N} are replaced on input and
 *                        produced on output, the bytes travel as attachments.
 * JSON text is produced and parsed by lua-cjson only. Every function here may raise a Lua error
 * (bad input, too deep): call them inside lhost_call(). They hold no C resource while raising. */
#ifndef SL_LVALUE_H
#define SL_LVALUE_H

#include <lua.h>

#include "buf.h"

#define LVALUE_BINARY_MT "siolua.binary"
#define LVALUE_ARRAY_MT "siolua.array"

/* Registers the metatables and adds to the table at the top of the stack (the `siolua` module):
 * null, binary(str), isbinary(v), array([t]).
 * [-0, +0, e] */
void lvalue_open(lua_State *L);

/* Decodes `json` (len bytes) and pushes the value, with placeholders replaced by binaries built
 * from att[0..natt). Raises on invalid JSON, on a placeholder whose num is out of range, or when
 * nesting exceeds max_depth. [-0, +1, e] */
void lvalue_push_json(lua_State *L, const char *json, size_t len, rbuf_t *const *att, size_t natt,
                      int max_depth);

/* Pushes a new binary userdata holding a copy of p[0..n). [-0, +1, m] */
void lvalue_push_binary(lua_State *L, const void *p, size_t n);
/* The bytes of the binary at idx, or NULL if it is not one. [-0, +0, -] */
const char *lvalue_tobinary(lua_State *L, int idx, size_t *len);

/* Encodes the n values at stack[first..first+n) as one JSON array (an event's arguments), binaries
 * replaced by placeholders. Pushes the JSON text as a Lua string and returns the number of
 * attachments; when that is > 0, also fills att[0..ret) with new rbufs (refs = 1, RBUF_BINARY)
 * that the caller owns, allocated only after encoding succeeded. Raises on values JSON cannot carry
 * (functions, cycles, too deep). max_att bounds the attachments (raises beyond).
 * [-0, +1, e] */
int lvalue_encode_args(lua_State *L, int first, int n, rbuf_t **att, int max_att, int max_depth);

/* Same for a single value (a CONNECT_ERROR's data, handshake reply): pushes its JSON text.
 * Binaries are not allowed there (raises). [-0, +1, e] */
void lvalue_encode_value(lua_State *L, int idx, int max_depth);

#endif
