/* lmsgpack: see lmsgpack.h. */
#include "lmsgpack.h"

#include <lauxlib.h>
#include <math.h>
#include <msgpack.h>
#include <stdlib.h>

#include "buf.h"
#include "lvalue.h"

#define DEFAULT_DEPTH 64

/* ---------------------------------------------------------------- encoding */

typedef struct {
    buf_t b;
} box_t;

static int box_gc(lua_State *L)
{
    box_t *box = lua_touserdata(L, 1);
    buf_free(&box->b);
    return 0;
}

/* A userdata that owns a buf_t (freed by __gc, so a raise while encoding leaks nothing). [-0,+1,m] */
static box_t *new_box(lua_State *L)
{
    box_t *box = lua_newuserdatauv(L, sizeof(*box), 0);
    box->b = (buf_t)BUF_INIT;
    if (luaL_newmetatable(L, "siolua.msgpack_buffer")) {
        lua_pushcfunction(L, box_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    return box;
}

static int box_write(void *data, const char *p, size_t n)
{
    buf_append(&((box_t *)data)->b, p, n);
    return 0;
}

/* The nesting limit: upvalue 1 (lapp's core list gives every primitive the JSON depth limit), or
 * the default. */
static int max_depth(lua_State *L)
{
    lua_Integer d = lua_tointeger(L, lua_upvalueindex(1));
    return d > 0 && d <= LVALUE_MAX_DEPTH ? (int)d : DEFAULT_DEPTH;
}

#define MAX_SAFE_INT 9007199254740992LL /* 2^53 */

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
    luaL_error(L, "cannot encode a %s value in a cluster message", luaL_typename(L, idx));
}

/* core.msgpack_encode(v): the msgpack bytes of v, as a string. */
int lmsgpack_encode(lua_State *L)
{
    msgpack_packer pk;
    box_t *box;
    luaL_checkany(L, 1);
    lua_settop(L, 1);
    box = new_box(L);
    msgpack_packer_init(&pk, box, box_write);
    pack_value(L, &pk, 1, 0, max_depth(L));
    lua_pushlstring(L, box->b.base ? box->b.base : "", box->b.len);
    buf_free(&box->b);
    return 1;
}

/* ---------------------------------------------------------------- decoding */

/* Big-endian k-byte integer at p. */
static size_t be_size(const unsigned char *p, int k)
{
    size_t v = 0;
    for (int i = 0; i < k; i++)
        v = v << 8 | p[i];
    return v;
}

/* msgpack-c allocates a container's elements from its declared count before reading them (five
 * bytes declaring 2^32 elements ask for ~100 GB), and has no limit to set in its C API. Every
 * element is a token of its own, at least one byte, so a message whose containers declare more
 * elements in all than it has bytes cannot be valid: this refuses it before unpacking, which then
 * allocates at most ~24 bytes per input byte. A linear walk over the tokens (msgpack is a flat,
 * pre-order token stream, so no stack is needed). Returns 1 if the sizes fit; a truncated token
 * ends the walk (the unpacker reports it). */
static int declared_sizes_fit(const unsigned char *p, size_t n)
{
    static const uint8_t fixed[] = {4, 8, 1, 2, 4, 8, 1, 2, 4, 8};
    size_t i = 0, elements = 0;
    while (i < n) {
        unsigned c = p[i++];
        size_t count = 0, skip = 0;
        int hdr = 0; /* bytes of length or count after the type byte */
        if (c >= 0x80 && c <= 0x8f)
            count = 2 * (c & 0x0f);
        else if (c >= 0x90 && c <= 0x9f)
            count = c & 0x0f;
        else if (c >= 0xa0 && c <= 0xbf)
            skip = c & 0x1f;
        else if (c >= 0xca && c <= 0xd3) /* float32/64, uint8-64, int8-64 */
            skip = fixed[c - 0xca];
        else if (c >= 0xd4 && c <= 0xd8) /* fixext 1-16: type byte + data */
            skip = 1 + ((size_t)1 << (c - 0xd4));
        else if (c >= 0xc4 && c <= 0xc9) /* bin8-32, ext8-32 (+ a type byte) */
            hdr = 1 << ((c - 0xc4) % 3);
        else if (c >= 0xd9 && c <= 0xdb) /* str8-32 */
            hdr = 1 << (c - 0xd9);
        else if (c >= 0xdc && c <= 0xdf) /* array16/32, map16/32 */
            hdr = c == 0xdc || c == 0xde ? 2 : 4;
        if (hdr > 0) {
            size_t v;
            if ((size_t)hdr > n - i)
                return 1;
            v = be_size(p + i, hdr);
            i += (size_t)hdr;
            if (c >= 0xdc)
                count = c >= 0xde ? 2 * v : v;
            else
                skip = v + (c >= 0xc7 && c <= 0xc9);
        }
        if (count > n - elements || (elements += count) > n)
            return 0;
        if (skip > n - i)
            return 1;
        i += skip;
    }
    return 1;
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

/* Pushes the Lua value of o; ext values push nothing and return 0 (1 otherwise). [-0, +(0|1), m] */
static int push_object(lua_State *L, const msgpack_object *o)
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
            if (!push_object(L, &o->via.array.ptr[i]))
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
            if (!push_object(L, &kv->key))
                continue;
            if (!push_object(L, &kv->val)) {
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

/* core.msgpack_decode(bytes): the value, or nil + error for invalid input. */
int lmsgpack_decode(lua_State *L)
{
    size_t len, off = 0;
    const char *s = luaL_checklstring(L, 1, &len);
    if (!declared_sizes_fit((const unsigned char *)s, len)) {
        lua_pushnil(L);
        lua_pushstring(L, "a msgpack container declares more elements than the message holds");
        return 2;
    }
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
        lua_pushnil(L);
        lua_pushstring(L, rc == MSGPACK_UNPACK_SUCCESS ? "trailing bytes after the msgpack value"
                                                       : "invalid or truncated msgpack");
        return 2;
    }
    if (!push_object(L, &b->u.data))
        lua_pushnil(L);
    msgpack_unpacked_destroy(&b->u);
    b->live = 0;
    return 1;
}
