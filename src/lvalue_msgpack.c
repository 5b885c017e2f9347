/* lvalue_msgpack: msgpack <-> Lua values (see lvalue.h), the mapping notepack.io's peers expect:
 * the Redis adapter's messages (Node's @socket.io/redis-adapter) and the msgpack parser's packets
 * (socket.io-msgpack-parser). Through msgpack-c.
 *   nil, siolua.null <-> nil            boolean <-> boolean        string <-> str
 *   integer, integral float within 2^53 -> int, other floats -> float64; int/float -> number, an
 *   integer beyond 2^53 a float as in JS (the Node peers have only doubles)
 *   siolua.binary <-> bin (a Node Buffer)
 *   tables: arrays and objects as the JSON mapping has them (lvalue_shape: marked arrays, key
 *   order, integer keys written as strings, as JS object keys are); decoded arrays get the array
 *   mark and maps their key order (lvalue_obj_*), so values cross msgpack as they cross JSON; a
 *   map's integer keys (notepack writes none) are strings too, as a JS object's keys are.
 *   notepack's `undefined` (fixext 1, type 0) and other ext values decode to nil (a map drops the
 *   key, an array holds null).
 * Nesting is bounded (max_depth on encoding, msgpack-c's own stack on decoding). */
#include <lauxlib.h>
#include <math.h>
#include <msgpack.h>
#include <stdio.h>
#include <string.h>

#include "lvalue.h"
#include "sio_packet.h"

#define MAX_SAFE_INT 9007199254740992LL /* 2^53 */

/* ---------------------------------------------------------------- encoding */

static int buf_gc(lua_State *L)
{
    buf_free(lua_touserdata(L, 1));
    return 0;
}

/* A userdata that owns a buf_t (freed by __gc, so a raise while encoding leaks nothing). [-0,+1,m] */
static buf_t *new_box(lua_State *L)
{
    buf_t *b = lua_newuserdatauv(L, sizeof(*b), 0);
    *b = (buf_t)BUF_INIT;
    if (luaL_newmetatable(L, "siolua.msgpack_buffer")) {
        lua_pushcfunction(L, buf_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    return b;
}

static int box_write(void *data, const char *p, size_t n)
{
    buf_append(data, p, n);
    return 0;
}

/* Packs stack[idx]. Raises on functions, threads, other userdata, too deep (cycles). */
static void pack_value(lua_State *L, msgpack_packer *pk, int idx, int depth, int maxd)
{
    idx = lua_absindex(L, idx);
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        msgpack_pack_nil(pk);
        return;
    case LUA_TBOOLEAN:
        if (lua_toboolean(L, idx))
            msgpack_pack_true(pk);
        else
            msgpack_pack_false(pk);
        return;
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) {
            msgpack_pack_int64(pk, (int64_t)lua_tointeger(L, idx));
        } else {
            double d = lua_tonumber(L, idx);
            if (d == floor(d) && fabs(d) <= 9007199254740992.0)
                msgpack_pack_int64(pk, (int64_t)d);
            else
                msgpack_pack_double(pk, d);
        }
        return;
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        msgpack_pack_str(pk, n);
        msgpack_pack_str_body(pk, s, n);
        return;
    }
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == NULL) { /* siolua.null */
            msgpack_pack_nil(pk);
            return;
        }
        break;
    case LUA_TUSERDATA: {
        size_t n;
        const char *p = lvalue_tobinary(L, idx, &n);
        if (p != NULL) {
            msgpack_pack_bin(pk, n);
            msgpack_pack_bin_body(pk, p, n);
            return;
        }
        break;
    }
    case LUA_TTABLE: {
        lvalue_shape_t sh; /* arrays and key order as in JSON (lvalue.h) */
        if (depth >= maxd)
            luaL_error(L, "value too deep to encode (max depth %d)", maxd);
        lvalue_shape(L, idx, &sh, LVALUE_SPARSE_OBJECT); /* a peer's map {98: x} re-encodes */
        if (sh.n > UINT32_MAX)
            luaL_error(L, "table too large to encode");
        if (sh.array) {
            msgpack_pack_array(pk, (size_t)sh.n);
            for (lua_Unsigned i = 1; i <= sh.n; i++) {
                lua_rawgeti(L, idx, (lua_Integer)i);
                pack_value(L, pk, -1, depth + 1, maxd);
                lua_pop(L, 1);
            }
        } else {
            msgpack_pack_map(pk, (size_t)sh.n);
            while (lvalue_shape_next(L, idx, &sh)) {
                if (lua_type(L, -2) == LUA_TNUMBER) { /* JS object keys are strings */
                    size_t kn;
                    lua_pushvalue(L, -2);
                    const char *ks = lua_tolstring(L, -1, &kn);
                    msgpack_pack_str(pk, kn);
                    msgpack_pack_str_body(pk, ks, kn);
                    lua_pop(L, 1);
                } else {
                    pack_value(L, pk, -2, depth + 1, maxd);
                }
                pack_value(L, pk, -1, depth + 1, maxd);
                lua_pop(L, 2);
            }
        }
        lua_pop(L, 2); /* lvalue_shape's slots */
        return;
    }
    default:
        break;
    }
    luaL_error(L, "cannot encode a %s value as msgpack", luaL_typename(L, idx));
}

void lvalue_encode_msgpack(lua_State *L, int first, int n, int as_array, int max_depth)
{
    msgpack_packer pk;
    buf_t *b;
    first = lua_absindex(L, first);
    b = new_box(L);
    msgpack_packer_init(&pk, b, box_write);
    if (as_array)
        msgpack_pack_array(&pk, (size_t)n);
    for (int i = 0; i < n; i++)
        pack_value(L, &pk, first + i, as_array, max_depth);
    lua_pushlstring(L, b->base ? b->base : "", b->len);
    buf_free(b);
    lua_remove(L, -2); /* the box */
}

/* ---------------------------------------------------------------- decoding */

int lvalue_push_msgpack_object(lua_State *L, const struct msgpack_object *o)
{
    luaL_checkstack(L, 4, "msgpack value too deep");
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        lua_pushlightuserdata(L, NULL); /* siolua.null */
        return 1;
    case MSGPACK_OBJECT_BOOLEAN:
        lua_pushboolean(L, o->via.boolean);
        return 1;
    case MSGPACK_OBJECT_POSITIVE_INTEGER: /* the JSON mapping's rule: beyond 2^53, a float (a JS number) */
        if (o->via.u64 > (uint64_t)MAX_SAFE_INT)
            lua_pushnumber(L, (lua_Number)o->via.u64);
        else
            lua_pushinteger(L, (lua_Integer)o->via.u64);
        return 1;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        if (o->via.i64 < -MAX_SAFE_INT)
            lua_pushnumber(L, (lua_Number)o->via.i64);
        else
            lua_pushinteger(L, (lua_Integer)o->via.i64);
        return 1;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: {
        double d = o->via.f64;
        /* the JSON mapping's rule: integral values within 2^53 are integers */
        if (d == floor(d) && fabs(d) <= 9007199254740992.0)
            lua_pushinteger(L, (lua_Integer)d);
        else
            lua_pushnumber(L, d);
        return 1;
    }
    case MSGPACK_OBJECT_STR:
        lua_pushlstring(L, o->via.str.ptr, o->via.str.size);
        return 1;
    case MSGPACK_OBJECT_BIN:
        lvalue_push_binary(L, o->via.bin.ptr, o->via.bin.size);
        return 1;
    case MSGPACK_OBJECT_ARRAY:
        lua_createtable(L, (int)(o->via.array.size < 4096 ? o->via.array.size : 4096), 0);
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            if (!lvalue_push_msgpack_object(L, &o->via.array.ptr[i]))
                lua_pushlightuserdata(L, NULL); /* undefined inside an array: null, as JSON has it */
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        lvalue_mark_array(L, -1);
        return 1;
    case MSGPACK_OBJECT_MAP: {
        lvalue_obj_t ob;
        lvalue_obj_begin(L, &ob, (int)(o->via.map.size < 4096 ? o->via.map.size : 4096));
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            const msgpack_object_kv *kv = &o->via.map.ptr[i];
            if (kv->key.type != MSGPACK_OBJECT_STR && kv->key.type != MSGPACK_OBJECT_POSITIVE_INTEGER &&
                kv->key.type != MSGPACK_OBJECT_NEGATIVE_INTEGER)
                continue;
            if (kv->key.type == MSGPACK_OBJECT_STR) {
                lua_pushlstring(L, kv->key.via.str.ptr, kv->key.via.str.size);
            } else { /* a JS object's key is a string */
                char num[24];
                if (kv->key.type == MSGPACK_OBJECT_POSITIVE_INTEGER)
                    snprintf(num, sizeof(num), "%llu", (unsigned long long)kv->key.via.u64);
                else
                    snprintf(num, sizeof(num), "%lld", (long long)kv->key.via.i64);
                lua_pushstring(L, num);
            }
            if (!lvalue_push_msgpack_object(L, &kv->val)) {
                lua_pop(L, 1); /* key: undefined drops it, as JSON.stringify does */
                continue;
            }
            lvalue_obj_set(L, &ob); /* keeps the map's key order */
        }
        lvalue_obj_end(L, &ob);
        return 1;
    }
    default:
        return 0; /* ext: notepack's undefined (type 0) or something we do not map */
    }
}

int lvalue_push_msgpack_args(lua_State *L, const struct msgpack_object *arr)
{
    uint32_t n = arr->type == MSGPACK_OBJECT_ARRAY ? arr->via.array.size : 0;
    luaL_checkstack(L, (int)(n < 1000000 ? n : 1000000) + 4, "too many arguments");
    for (uint32_t i = 0; i < n; i++)
        if (!lvalue_push_msgpack_object(L, &arr->via.array.ptr[i]))
            lua_pushlightuserdata(L, NULL);
    return (int)n;
}

typedef struct {
    msgpack_unpacked u;
    int live;
} unpacked_box_t;

static int unpacked_gc(lua_State *L)
{
    unpacked_box_t *b = lua_touserdata(L, 1);
    if (b->live)
        msgpack_unpacked_destroy(&b->u);
    b->live = 0;
    return 0;
}

int lvalue_push_msgpack(lua_State *L, const char *s, size_t len)
{
    size_t off = 0;
    if (!sio_msgpack_sizes_fit(s, len)) {
        lua_pushstring(L, "a msgpack container declares more elements than the message holds");
        return -1;
    }
    /* the unpacked tree is boxed: a memory error while pushing frees it */
    unpacked_box_t *b = lua_newuserdatauv(L, sizeof(*b), 0);
    b->live = 0;
    if (luaL_newmetatable(L, "siolua.msgpack_unpacked")) {
        lua_pushcfunction(L, unpacked_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    msgpack_unpacked_init(&b->u);
    b->live = 1;
    msgpack_unpack_return rc = msgpack_unpack_next(&b->u, s, len, &off);
    if (rc != MSGPACK_UNPACK_SUCCESS || off != len) {
        msgpack_unpacked_destroy(&b->u);
        b->live = 0;
        lua_pop(L, 1);
        lua_pushstring(L, rc == MSGPACK_UNPACK_SUCCESS ? "trailing bytes after the msgpack value"
                                                       : "invalid or truncated msgpack");
        return -1;
    }
    if (!lvalue_push_msgpack_object(L, &b->u.data))
        lua_pushnil(L);
    msgpack_unpacked_destroy(&b->u);
    b->live = 0;
    lua_remove(L, -2); /* the box */
    return 0;
}

/* ------------------------------------------------------------------------------ the prelude's primitives */

/* The depth limit: upvalue 1 (lapp's core list gives it), 64 without it. */
static int core_depth(lua_State *L)
{
    lua_Integer d = lua_tointeger(L, lua_upvalueindex(1));
    return d > 0 ? (int)d : 64;
}

int lvalue_core_msgpack_encode(lua_State *L)
{
    luaL_checkany(L, 1);
    lua_settop(L, 1);
    lvalue_encode_msgpack(L, 1, 1, 0, core_depth(L));
    return 1;
}

int lvalue_core_msgpack_decode(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    if (lvalue_push_msgpack(L, s, len) != 0) {
        lua_pushnil(L);
        lua_insert(L, -2);
        return 2;
    }
    return 1;
}
