/* lmsgpack: msgpack <-> Lua values, the Redis adapter's encoding (the Node adapter's notepack.io):
 *   nil, siolua.null <-> nil            boolean <-> boolean        string <-> str
 *   integer, integral float within 2^53 -> int, other floats -> float64; int/float -> number, an
 *   integer beyond 2^53 a float as in JS (the Node peers have only doubles)
 *   siolua.binary <-> bin (a Node Buffer)
 *   tables: arrays and objects as the JSON mapping has them (lvalue_shape: marked arrays, key
 *   order, integer keys written as strings, as JS object keys are); decoded arrays get the array
 *   mark and maps their key order (lvalue_obj_*), so values cross nodes as they cross JSON.
 *   notepack's `undefined` (fixext 1, type 0) and other ext values decode to nil (a map drops the
 *   key).
 * Nesting is bounded (the JSON depth limit on encoding, msgpack-c's own stack on decoding), and a
 * message whose containers declare more elements than it has bytes is refused before msgpack-c
 * reads it (see lmsgpack.c). Pure: no server, no VM state. */
#ifndef SL_LMSGPACK_H
#define SL_LMSGPACK_H

#include <lua.h>

/* The prelude's primitives (lapp's core list; the depth limit is upvalue 1, 64 without it):
 *   core.msgpack_encode(v): the bytes, as a string; raises on what msgpack cannot carry
 *   core.msgpack_decode(bytes): the value, or nil + an error for invalid input (never raises) */
int lmsgpack_encode(lua_State *L);
int lmsgpack_decode(lua_State *L);

#endif
