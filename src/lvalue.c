/* lvalue: see lvalue.h. This file holds the values' Lua side: the binary userdata, the siolua.*
 * functions and the marks (arrays, key order) with the walk every encoder uses to read them back
 * (lvalue_shape). The JSON text itself is in lvalue_json.c.
 *
 * Key order. A Lua table has no order, so a decoded object whose key order is not implied by its
 * keys (2+ keys that are not array indices) gets a metatable M that is its key list:
 * M = {k1, k2, ..., __pairs = ordered_pairs}. M is the mark (recognised by its __pairs), so
 * getmetatable(obj) shows it and pairs(obj) walks the keys in JS order; rawget, next, # and
 * indexing are untouched (M has no __index, __newindex or __len). Array-index keys are not listed:
 * JS orders them first, ascending, whatever order they came in. An object whose keys all still
 * are in M, none added, is walked along M (no sorting); otherwise the keys are sorted out once
 * (lvalue_shape's SH_LIST), array indices first, then M's keys, then the others in next() order.
 * The cost is one table per decoded object with 2+ such keys, none for arrays (one shared
 * metatable) or other objects. */
#include "lvalue.h"

#include <assert.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

/* ---------------------------------------------------------------------------------------------
 * Binary userdata: the bytes live inline after a length header, so a binary is one GC object.
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    size_t len; /* payload bytes */
    char data[];
} binary_t;

static binary_t *checkbinary(lua_State *L, int arg)
{
    return luaL_checkudata(L, arg, LVALUE_BINARY_MT);
}

/* string.sub/string.byte index rules: negative counts from the end, clamped to the bytes. */
static size_t startpos(lua_Integer pos, size_t len)
{
    if (pos > 0)
        return (size_t)pos;
    if (pos == 0 || pos < -(lua_Integer)len)
        return 1;
    return len - (size_t)(-pos) + 1;
}

static size_t endpos(lua_Integer pos, size_t len)
{
    if (pos > (lua_Integer)len)
        return len;
    if (pos >= 0)
        return (size_t)pos;
    if (pos < -(lua_Integer)len)
        return 0;
    return len - (size_t)(-pos) + 1;
}

static int bin_len(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)checkbinary(L, 1)->len);
    return 1;
}

/* Like Node's Buffer.toString(): the raw bytes (Lua strings are byte strings). */
static int bin_tostring(lua_State *L)
{
    binary_t *b = checkbinary(L, 1);
    lua_pushlstring(L, b->data, b->len);
    return 1;
}

static int bin_eq(lua_State *L)
{
    binary_t *a = luaL_testudata(L, 1, LVALUE_BINARY_MT), *b = luaL_testudata(L, 2, LVALUE_BINARY_MT);
    lua_pushboolean(L, a && b && a->len == b->len && memcmp(a->data, b->data, a->len) == 0);
    return 1;
}

/* b:byte([i [, j]]): the bytes b[i..j] as integers, like string.byte. */
static int bin_byte(lua_State *L)
{
    binary_t *b = checkbinary(L, 1);
    size_t i = startpos(luaL_optinteger(L, 2, 1), b->len);
    size_t j = endpos(luaL_optinteger(L, 3, (lua_Integer)i), b->len);
    if (i > j)
        return 0;
    if (j - i >= (size_t)INT_MAX)
        return luaL_error(L, "binary slice too long");
    int n = (int)(j - i) + 1;
    luaL_checkstack(L, n, "binary slice too long");
    for (int k = 0; k < n; k++)
        lua_pushinteger(L, (unsigned char)b->data[i - 1 + (size_t)k]);
    return n;
}

/* b:sub(i [, j]): a new binary with the bytes b[i..j], like string.sub. */
static int bin_sub(lua_State *L)
{
    binary_t *b = checkbinary(L, 1);
    size_t i = startpos(luaL_checkinteger(L, 2), b->len);
    size_t j = endpos(luaL_optinteger(L, 3, -1), b->len);
    if (i > j)
        lvalue_push_binary(L, "", 0);
    else
        lvalue_push_binary(L, b->data + i - 1, j - i + 1);
    return 1;
}

static const luaL_Reg binary_meta[] = {
    {"__len", bin_len},
    {"__tostring", bin_tostring},
    {"__eq", bin_eq},
    {NULL, NULL},
};

static const luaL_Reg binary_methods[] = {
    {"tostring", bin_tostring},
    {"byte", bin_byte},
    {"sub", bin_sub},
    {NULL, NULL},
};

/* Pushes the array metatable, creating it on first use. [-0, +1, m] */
static void push_array_mt(lua_State *L)
{
    luaL_newmetatable(L, LVALUE_ARRAY_MT);
}

/* Pushes the binary metatable, creating it on first use. [-0, +1, m] */
static void push_binary_mt(lua_State *L)
{
    if (!luaL_newmetatable(L, LVALUE_BINARY_MT)) /* sets __name on creation */
        return;
    luaL_setfuncs(L, binary_meta, 0);
    luaL_newlib(L, binary_methods);
    lua_setfield(L, -2, "__index");
}

void lvalue_push_binary(lua_State *L, const void *p, size_t n)
{
    if (n > SIZE_MAX - sizeof(binary_t))
        luaL_error(L, "binary too large");
    binary_t *b = lua_newuserdatauv(L, sizeof(binary_t) + n, 0);
    b->len = n;
    if (n > 0)
        memcpy(b->data, p, n);
    push_binary_mt(L);
    lua_setmetatable(L, -2);
}

const char *lvalue_tobinary(lua_State *L, int idx, size_t *len)
{
    binary_t *b = luaL_testudata(L, idx, LVALUE_BINARY_MT);
    if (b == NULL)
        return NULL;
    *len = b->len;
    return b->data;
}

/* ---------------------------------------------------------------------------------------------
 * siolua.* functions
 * ------------------------------------------------------------------------------------------- */

/* siolua.binary(str): a binary holding a copy of str (or of another binary). */
static int l_binary(lua_State *L)
{
    size_t n;
    const char *p = lvalue_tobinary(L, 1, &n);
    if (p == NULL)
        p = luaL_checklstring(L, 1, &n);
    lvalue_push_binary(L, p, n);
    return 1;
}

static int l_isbinary(lua_State *L)
{
    lua_pushboolean(L, luaL_testudata(L, 1, LVALUE_BINARY_MT) != NULL);
    return 1;
}

/* siolua.array([t]): marks t (or a new table) so that it encodes as a JSON array even when
 * empty, and returns it. */
static int l_array(lua_State *L)
{
    if (lua_isnoneornil(L, 1)) {
        lua_settop(L, 0);
        lua_newtable(L);
    } else {
        luaL_checktype(L, 1, LUA_TTABLE);
        lua_settop(L, 1);
    }
    push_array_mt(L);
    lua_setmetatable(L, 1);
    return 1;
}

static const luaL_Reg module_funcs[] = {
    {"binary", l_binary},
    {"isbinary", l_isbinary},
    {"array", l_array},
    {NULL, NULL},
};

void lvalue_mark_array(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    push_array_mt(L);
    lua_setmetatable(L, idx);
}

int lvalue_core_json_encode(lua_State *L)
{
    int flags = lua_toboolean(L, 2) ? LVALUE_RAW : 0;
    lua_settop(L, 1);
    lvalue_encode_value(L, 1, (int)lua_tointeger(L, lua_upvalueindex(1)), flags);
    return 1;
}

int lvalue_core_json_decode(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    lvalue_push_json(L, s, len, NULL, 0, (int)lua_tointeger(L, lua_upvalueindex(1)));
    return 1;
}

int lvalue_core_value_mark(lua_State *L)
{
    lua_pushboolean(L, lvalue_is_mark(L, 1));
    return 1;
}

void lvalue_open(lua_State *L)
{
    luaL_checkstack(L, 4, NULL);
    int mod = lua_gettop(L);
    push_binary_mt(L);
    push_array_mt(L);
    lua_settop(L, mod);
    lua_pushlightuserdata(L, NULL); /* siolua.null: what cjson.null is */
    lua_setfield(L, mod, "null");
    luaL_setfuncs(L, module_funcs, 0);
}

/* ---------------------------------------------------------------------------------------------
 * Key order
 * ------------------------------------------------------------------------------------------- */

static int ordered_pairs(lua_State *L);

int lvalue_array_index(lua_State *L, int idx, uint32_t *out)
{
    if (lua_type(L, idx) == LUA_TSTRING) {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        if (n == 0 || n > 10 || s[0] < '0' || s[0] > '9' || (s[0] == '0' && n > 1))
            return 0;
        uint64_t v = 0;
        for (size_t i = 0; i < n; i++) {
            if (s[i] < '0' || s[i] > '9')
                return 0;
            v = v * 10 + (uint64_t)(s[i] - '0');
        }
        if (v > 4294967294u)
            return 0;
        *out = (uint32_t)v;
        return 1;
    }
    if (lua_isinteger(L, idx)) {
        lua_Integer v = lua_tointeger(L, idx);
        if (v < 0 || v > 4294967294)
            return 0;
        *out = (uint32_t)v;
        return 1;
    }
    return 0;
}

/* 1 if the metatable at idx is a key list (M above). [-0, +0, -] */
static int is_keylist(lua_State *L, int idx)
{
    lua_pushliteral(L, "__pairs");
    int r = lua_rawget(L, idx < 0 ? idx - 1 : idx) == LUA_TFUNCTION && lua_tocfunction(L, -1) == ordered_pairs;
    lua_pop(L, 1);
    return r;
}

int lvalue_is_mark(lua_State *L, int idx)
{
    if (lua_type(L, idx) != LUA_TTABLE)
        return 0;
    idx = lua_absindex(L, idx);
    push_array_mt(L);
    int r = lua_rawequal(L, -1, idx);
    lua_pop(L, 1);
    return r || is_keylist(L, idx);
}

void lvalue_obj_begin(lua_State *L, lvalue_obj_t *o, int size_hint)
{
    luaL_checkstack(L, 6, "value too deep");
    lua_createtable(L, 0, size_hint > 0 ? size_hint : 0);
    lua_pushnil(L); /* work slot: the first key recorded, then the key list */
    o->t = lua_gettop(L) - 1;
    o->nkeys = 0;
}

void lvalue_obj_set(lua_State *L, lvalue_obj_t *o)
{
    int t = o->t, k = lua_gettop(L) - 1;
    uint32_t ix;
    if (lua_type(L, k) == LUA_TSTRING && !lvalue_array_index(L, k, &ix)) {
        lua_pushvalue(L, k);
        if (lua_rawget(L, t) == LUA_TNIL) { /* a duplicate keeps its first place */
            o->nkeys++;
            if (o->nkeys == 1) {
                lua_pushvalue(L, k);
                lua_replace(L, t + 1);
            } else if (o->nkeys == 2) {
                lua_createtable(L, 4, 1);
                lua_pushvalue(L, t + 1);
                lua_rawseti(L, -2, 1);
                lua_pushvalue(L, k);
                lua_rawseti(L, -2, 2);
                lua_replace(L, t + 1);
            } else {
                lua_pushvalue(L, k);
                lua_rawseti(L, t + 1, o->nkeys);
            }
        }
        lua_pop(L, 1);
    }
    lua_rawset(L, t);
}

void lvalue_obj_end(lua_State *L, lvalue_obj_t *o)
{
    if (o->nkeys >= 2) {
        lua_pushcfunction(L, ordered_pairs);
        lua_setfield(L, o->t + 1, "__pairs");
        lua_setmetatable(L, o->t);
    } else {
        lua_pop(L, 1);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Reading a table back: lvalue_shape
 * ------------------------------------------------------------------------------------------- */

enum {
    SH_NEXT, /* no order to restore: next() order (aux + 1 holds the last key) */
    SH_KEYS, /* along the key list at aux (every entry is in it, none is an array index) */
    SH_LIST, /* along a list of the keys made here, at aux */
};

/* An index key found by the first pass, for sorting. */
typedef struct {
    uint32_t ix;
    int pos; /* its place in the list of index keys */
} ixkey_t;

static int cmp_ix(const void *a, const void *b)
{
    const ixkey_t *x = a, *y = b;
    return x->ix < y->ix ? -1 : x->ix > y->ix ? 1 : x->pos - y->pos;
}

/* The slow path: builds at sh->aux the list of every key of the object at t in JS order. nidx
 * keys are array indices; keylist: the stack index of t's key list, or 0. */
static void build_list(lua_State *L, int t, lvalue_shape_t *sh, lua_Unsigned nidx, int keylist)
{
    int aux = sh->aux;
    lua_Integer n = 0;
    luaL_checkstack(L, 8, NULL);
    lua_createtable(L, (int)(sh->n < INT_MAX ? sh->n : 0), 0); /* the list */
    lua_replace(L, aux);
    if (nidx > 0) {
        /* the index keys, sorted by value (userdata: freed by the GC even if we raise) */
        ixkey_t *ix = lua_newuserdatauv(L, (size_t)nidx * sizeof *ix, 0);
        lua_createtable(L, (int)nidx, 0); /* their keys, by pos */
        int keys = lua_gettop(L);
        lua_Unsigned m = 0;
        lua_pushnil(L);
        while (lua_next(L, t)) {
            uint32_t v;
            if (lvalue_array_index(L, -2, &v) && m < nidx) {
                ix[m].ix = v;
                ix[m].pos = (int)m;
                lua_pushvalue(L, -2);
                lua_rawseti(L, keys, (lua_Integer)++m);
            }
            lua_pop(L, 1);
        }
        qsort(ix, (size_t)m, sizeof *ix, cmp_ix);
        for (lua_Unsigned i = 0; i < m; i++) {
            lua_rawgeti(L, keys, ix[i].pos + 1);
            lua_rawseti(L, aux, ++n);
        }
        lua_pop(L, 2);
    }
    int seen = 0;
    if (keylist) { /* the recorded keys still present, in their order; a set of them */
        lua_newtable(L);
        seen = lua_gettop(L);
        lua_Integer len = (lua_Integer)lua_rawlen(L, keylist);
        for (lua_Integer i = 1; i <= len; i++) {
            lua_rawgeti(L, keylist, i);
            lua_pushvalue(L, -1);
            if (lua_rawget(L, t) != LUA_TNIL) {
                lua_pop(L, 1);
                lua_pushvalue(L, -1);
                lua_rawseti(L, aux, ++n);
                lua_pushboolean(L, 1);
                lua_rawset(L, seen);
            } else {
                lua_pop(L, 2);
            }
        }
    }
    lua_pushnil(L); /* then the others, in next() order */
    while (lua_next(L, t)) {
        uint32_t v;
        lua_pop(L, 1);
        if (lvalue_array_index(L, -1, &v))
            continue;
        if (seen) {
            lua_pushvalue(L, -1);
            int listed = lua_rawget(L, seen) != LUA_TNIL;
            lua_pop(L, 1);
            if (listed)
                continue;
        }
        lua_pushvalue(L, -1);
        lua_rawseti(L, aux, ++n);
    }
    if (seen)
        lua_remove(L, seen);
    sh->mode = SH_LIST;
}

void lvalue_shape(lua_State *L, int idx, lvalue_shape_t *sh, int flags)
{
    int t = lua_absindex(L, idx);
    lua_Unsigned count = 0, nidx = 0;
    lua_Integer max = 0;
    int allint = 1;
    luaL_checkstack(L, 6, "value too deep");
    lua_pushnil(L);
    lua_pushnil(L);
    sh->aux = lua_gettop(L) - 1;
    sh->pos = 0;
    sh->mode = SH_NEXT;
    lua_pushnil(L);
    while (lua_next(L, t)) {
        lua_pop(L, 1);
        count++;
        int kt = lua_type(L, -1);
        if (kt == LUA_TNUMBER && lua_isinteger(L, -1)) {
            lua_Integer k = lua_tointeger(L, -1);
            if (k < 1)
                allint = 0;
            else if (k > max)
                max = k;
            if (k >= 0 && k <= 4294967294)
                nidx++;
        } else if (kt == LUA_TSTRING || kt == LUA_TNUMBER) {
            uint32_t v;
            allint = 0;
            if (kt == LUA_TSTRING && lvalue_array_index(L, -1, &v))
                nidx++;
        } else {
            luaL_error(L, "cannot encode a table key of type %s (keys are strings or numbers)", luaL_typename(L, -1));
        }
    }
    int mt = lua_getmetatable(L, t) ? lua_gettop(L) : 0;
    if (count == 0 || allint) {
        int marked = 0;
        if (mt) {
            push_array_mt(L);
            marked = lua_rawequal(L, -1, -2);
            lua_pop(L, 1);
        }
        int sparse = max > 10 && (lua_Unsigned)max > 2 * count; /* lua-cjson's rule, kept */
        if (sparse && !(flags & LVALUE_SPARSE_OBJECT))
            luaL_error(L, "cannot encode an excessively sparse array (%I entries, largest index %I)",
                       (LUAI_UACINT)count, (LUAI_UACINT)max);
        if ((count > 0 || marked) && !sparse) {
            sh->array = 1;
            sh->n = (lua_Unsigned)max;
            if (mt)
                lua_pop(L, 1);
            return;
        }
    }
    sh->array = 0;
    sh->n = count;
    int keylist = mt && is_keylist(L, mt) ? mt : 0;
    if (keylist && nidx == 0) {
        /* the fast path: every key is in the list? (count present ones) */
        lua_Unsigned present = 0;
        lua_Integer len = (lua_Integer)lua_rawlen(L, keylist);
        for (lua_Integer i = 1; i <= len; i++) {
            lua_rawgeti(L, keylist, i);
            if (lua_rawget(L, t) != LUA_TNIL)
                present++;
            lua_pop(L, 1);
        }
        if (present == count) {
            lua_replace(L, sh->aux); /* the key list itself */
            sh->mode = SH_KEYS;
            return;
        }
    }
    if (keylist || nidx > 0)
        build_list(L, t, sh, nidx, keylist);
    if (mt)
        lua_pop(L, 1);
}

int lvalue_shape_next(lua_State *L, int idx, lvalue_shape_t *sh)
{
    int t = lua_absindex(L, idx);
    if (sh->mode == SH_NEXT) {
        lua_pushvalue(L, sh->aux + 1);
        if (!lua_next(L, t))
            return 0;
        lua_pushvalue(L, -2);
        lua_replace(L, sh->aux + 1);
        return 1;
    }
    for (;;) {
        if (lua_rawgeti(L, sh->aux, ++sh->pos) == LUA_TNIL) {
            lua_pop(L, 1);
            return 0;
        }
        lua_pushvalue(L, -1);
        if (lua_rawget(L, t) != LUA_TNIL)
            return 1;
        lua_pop(L, 2); /* SH_KEYS: a key the app removed */
    }
}

/* __pairs of a decoded object: its entries in JS key order. The generic for gets a closure over
 * the key list made now (keys added during the loop are not visited; clearing fields is fine, as
 * with next). A table that became an array is walked with next. */
static int ordered_iter(lua_State *L)
{
    lua_Integer pos = lua_tointeger(L, lua_upvalueindex(2));
    for (;;) {
        if (lua_rawgeti(L, lua_upvalueindex(1), ++pos) == LUA_TNIL)
            return 1;
        lua_pushvalue(L, -1);
        if (lua_rawget(L, 1) != LUA_TNIL) {
            lua_pushinteger(L, pos);
            lua_replace(L, lua_upvalueindex(2));
            return 2;
        }
        lua_pop(L, 2);
    }
}

static int raw_next(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 2);
    if (lua_next(L, 1))
        return 2;
    lua_pushnil(L);
    return 1;
}

static int ordered_pairs(lua_State *L)
{
    lvalue_shape_t sh;
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    lvalue_shape(L, 1, &sh, LVALUE_SPARSE_OBJECT);
    if (sh.array || sh.mode == SH_NEXT) {
        lua_pushcfunction(L, raw_next);
        lua_pushvalue(L, 1);
        lua_pushnil(L);
        return 3;
    }
    lua_pushvalue(L, sh.aux);
    lua_pushinteger(L, 0);
    lua_pushcclosure(L, ordered_iter, 2);
    lua_pushvalue(L, 1);
    lua_pushnil(L);
    return 3;
}
