/* lvalue: see lvalue.h.
 *
 * lua-cjson (Debian's 2.1.0) does the JSON text both ways; this file only walks Lua values:
 *   decode: cjson.decode, then one walk that turns placeholders into binaries and integral floats
 *           into integers (cjson decodes every number as a float);
 *   encode: one walk that validates (type, depth, cycles, attachment count) and copies only the
 *           tables that need a substitution, then cjson.encode, then one pass over the output that
 *           swaps sentinel strings for what cjson 2.1.0 cannot write itself (see "Sentinels").
 * Every Lua error raised here leaves no C resource behind: the only C allocations (the attachment
 * rbufs) happen after the last call that can raise. */
#include "lvalue.h"

#include <assert.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <lauxlib.h>

/* lua-cjson 2.1.0 ships no header. Each call builds a new module table with its own
 * configuration (it is what cjson.new() does), so ours never shares settings with an app's
 * require "cjson". */
int luaopen_cjson(lua_State *l);

/* registry (the key's address): the state table { [ST_ENCODE] = cjson.encode, [ST_DECODE] =
 * cjson.decode, [ST_DEPTH] = the configured depth, cjson = the private instance }. Array slots:
 * every packet reads them. */
static const char STATE_KEY = 'v';
enum { ST_ENCODE = 1, ST_DECODE, ST_DEPTH };
#define MAX_SAFE 9007199254740992.0 /* 2^53: beyond it JS numbers are not all integers */
/* cjson prints numbers with "%.14g" (14 is the most encode_number_precision accepts), which
 * rounds integers of 15 digits or more. Those are written exactly instead (see "Sentinels"). */
#define EXACT_14G 1e14

/* ---------------------------------------------------------------------------------------------
 * The private cjson instance
 * ------------------------------------------------------------------------------------------- */

static void cjson_config(lua_State *L, int cj, const char *fn, int is_bool, int v)
{
    lua_getfield(L, cj, fn);
    if (is_bool)
        lua_pushboolean(L, v);
    else
        lua_pushinteger(L, v);
    lua_call(L, 1, 0);
}

/* Pushes the state table, creating it on first use (so the decoder works even before
 * lvalue_open, e.g. in the fuzz harness). [-0, +1, e] */
static int push_state(lua_State *L)
{
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &STATE_KEY) == LUA_TTABLE)
        return lua_gettop(L);
    lua_pop(L, 1);
    lua_createtable(L, 3, 1);
    int st = lua_gettop(L);
    lua_pushcfunction(L, luaopen_cjson);
    lua_call(L, 0, 1);
    int cj = lua_gettop(L);
    /* NaN, Infinity and hex are not JSON; JS's JSON.stringify would write null, we refuse. */
    cjson_config(L, cj, "encode_invalid_numbers", 1, 0);
    cjson_config(L, cj, "decode_invalid_numbers", 1, 0);
    cjson_config(L, cj, "encode_number_precision", 0, 14);
    lua_getfield(L, cj, "encode"); /* its functions keep their configuration as an upvalue */
    lua_rawseti(L, st, ST_ENCODE);
    lua_getfield(L, cj, "decode");
    lua_rawseti(L, st, ST_DECODE);
    lua_setfield(L, st, "cjson");
    lua_pushinteger(L, 0);
    lua_rawseti(L, st, ST_DEPTH);
    lua_pushvalue(L, st);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &STATE_KEY);
    return st;
}

/* Pushes cjson's encode (which = ST_ENCODE) or decode (ST_DECODE) function with the instance's
 * depth limits set to max_depth (a JSON text nesting depth: "[[1]]" is 2). The limit is a
 * per-call argument, so it is set only when it changes. [-0, +1, e] */
static void push_cjson(lua_State *L, int which, int max_depth)
{
    if (max_depth < 1)
        luaL_error(L, "max_depth must be at least 1");
    int st = push_state(L);
    lua_rawgeti(L, st, ST_DEPTH);
    lua_Integer cur = lua_tointeger(L, -1);
    lua_pop(L, 1);
    if (cur != max_depth) {
        lua_getfield(L, st, "cjson");
        int cj = lua_gettop(L);
        cjson_config(L, cj, "decode_max_depth", 0, max_depth);
        cjson_config(L, cj, "encode_max_depth", 0, max_depth);
        lua_pop(L, 1);
        lua_pushinteger(L, max_depth);
        lua_rawseti(L, st, ST_DEPTH);
    }
    lua_rawgeti(L, st, which);
    lua_remove(L, st);
}

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

/* Pushes the binary metatable, creating it on first use. [-0, +1, m] */
static void push_binary_mt(lua_State *L)
{
    if (!luaL_newmetatable(L, LVALUE_BINARY_MT)) /* sets __name on creation */
        return;
    luaL_setfuncs(L, binary_meta, 0);
    luaL_newlib(L, binary_methods);
    lua_setfield(L, -2, "__index");
}

/* Pushes the array metatable, creating it on first use. It is only a mark: cjson never looks at
 * metatables, the encode walk does. [-0, +1, m] */
static void push_array_mt(lua_State *L)
{
    luaL_newmetatable(L, LVALUE_ARRAY_MT);
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

void lvalue_open(lua_State *L)
{
    luaL_checkstack(L, 4, NULL);
    int mod = lua_gettop(L);
    push_binary_mt(L);
    push_array_mt(L);
    push_state(L);
    lua_settop(L, mod);
    lua_pushlightuserdata(L, NULL); /* what cjson.null is */
    lua_setfield(L, mod, "null");
    luaL_setfuncs(L, module_funcs, 0);
}

/* ---------------------------------------------------------------------------------------------
 * Decoding
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    rbuf_t *const *att; /* the packet's attachments, borrowed */
    size_t natt;
} dec_t;

/* If the table at t is a placeholder ({_placeholder = true, num = N}), pushes the binary built
 * from att[N] and returns 1. Like the reference's _reconstructPacket, `_placeholder === true`
 * makes it one, and then num must index an attachment ("illegal attachments" otherwise). */
static int dec_placeholder(lua_State *L, const dec_t *d, int t)
{
    if (lua_rawlen(L, t) > 0)
        return 0; /* a JSON array (cjson gives objects string keys only): every event's args */
    lua_pushliteral(L, "_placeholder");
    int is = lua_rawget(L, t) == LUA_TBOOLEAN && lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (!is)
        return 0;
    lua_pushliteral(L, "num");
    int isnum = lua_rawget(L, t) == LUA_TNUMBER;
    lua_Number num = lua_tonumber(L, -1);
    lua_pop(L, 1);
    if (!isnum || !(num >= 0) || num >= (lua_Number)d->natt || num != floor(num))
        luaL_error(L, "illegal attachments: bad placeholder num (%d attachments)", (int)d->natt);
    rbuf_t *b = d->att[(size_t)num];
    lvalue_push_binary(L, rbuf_payload(b), b->len);
    return 1;
}

/* JS has one number type: an integral value is an integer to Lua when it is exactly one. */
static int dec_integer(lua_State *L, int idx, lua_Integer *out)
{
    if (lua_isinteger(L, idx))
        return 0;
    lua_Number n = lua_tonumber(L, idx);
    if (n != floor(n) || fabs(n) > MAX_SAFE) /* also rejects NaN and inf */
        return 0;
    *out = (lua_Integer)n;
    return 1;
}

/* Fixes up, in place, every value inside the table at t. Depth is bounded by cjson's
 * decode_max_depth, so the recursion is too. Assigning to existing keys during lua_next is
 * allowed. */
static void dec_table(lua_State *L, const dec_t *d, int t)
{
    luaL_checkstack(L, 6, "JSON too deep");
    lua_pushnil(L);
    while (lua_next(L, t)) {                 /* key, value */
        int v = lua_gettop(L);
        lua_Integer i;
        if (lua_type(L, v) == LUA_TNUMBER && dec_integer(L, v, &i)) {
            lua_pushvalue(L, v - 1);
            lua_pushinteger(L, i);
            lua_rawset(L, t);
        } else if (lua_type(L, v) == LUA_TTABLE) {
            if (dec_placeholder(L, d, v)) { /* key, value, binary */
                lua_pushvalue(L, v - 1);
                lua_insert(L, -2);
                lua_rawset(L, t);
            } else {
                dec_table(L, d, v);
            }
        }
        lua_settop(L, v - 1);                /* key */
    }
}

void lvalue_push_json(lua_State *L, const char *json, size_t len, rbuf_t *const *att, size_t natt,
                      int max_depth)
{
    luaL_checkstack(L, 6, NULL);
    /* cjson 2.1.0 stops at a NUL as at the end of its input, so "[1]\0junk" would pass. A raw
     * NUL is never valid JSON (not even inside a string), so refusing it is exact. */
    if (memchr(json, '\0', len) != NULL)
        luaL_error(L, "invalid JSON: NUL byte");
    push_cjson(L, ST_DECODE, max_depth);
    lua_pushlstring(L, json, len);
    int rc = lua_pcall(L, 1, 1, 0);
    if (rc == LUA_ERRMEM)
        lua_error(L);
    if (rc != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        luaL_error(L, "invalid JSON: %s", msg ? msg : "?");
    }
    int v = lua_gettop(L);
    dec_t d = {att, natt};
    lua_Integer i;
    if (lua_type(L, v) == LUA_TNUMBER && dec_integer(L, v, &i)) {
        lua_pushinteger(L, i);
        lua_replace(L, v);
    } else if (lua_type(L, v) == LUA_TTABLE) {
        if (dec_placeholder(L, &d, v))
            lua_replace(L, v);
        else
            dec_table(L, &d, v);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Encoding
 *
 * Sentinels. cjson 2.1.0 cannot write three things we need:
 *   - an empty JSON array (it writes every empty table as {}),
 *   - an integer of 15+ digits exactly (its "%.14g" rounds 123456789012345 to 1.2345678901234e+14),
 *   - the placeholder object with Node's key order (Lua tables have no key order; their hash
 *     seed is random per state, so {"num":0,"_placeholder":true} would come out half the time).
 * The walk puts a sentinel string S..payload in their place, cjson encodes it as "S..payload",
 * and one pass over the output replaces each `"S..."` token by "[]", the integer's digits
 * (lua_Integer formatting: valid JSON, no leading zeros) or the fixed placeholder text.
 *
 * Why the replacement cannot hit user data. S = "~siolua" [tag] "~" with tag a decimal number
 * (none for 0), chosen so that no string in the value (keys included) contains S: the walk
 * records every "~siolua<digits>~" occurring in a string and tag is one more than the largest.
 * S and the payloads use only characters cjson copies verbatim (no '"', '\\', '/', control).
 * Take an occurrence of `"S` in the output. Its '~' cannot be outside a string (cjson writes
 * only []{},: digits .+-e true false null there), so `"` opens a string token, or is an escaped
 * \" inside one. In both cases the characters of S that follow contain no backslash, so they are
 * verbatim bytes of that string, which then contains S: only our sentinel tokens do.
 * ------------------------------------------------------------------------------------------- */

#define TAG_PREFIX "~siolua"
#define TAG_PREFIX_LEN (sizeof(TAG_PREFIX) - 1)
#define TAG_MAX_DIGITS 18 /* tags stay below 10^18 so they fit a lua_Integer */
#define PLACEHOLDER_HEAD "{\"_placeholder\":true,\"num\":"

enum { W_SAME, W_COPY, W_SENTINEL };

typedef struct {
    lua_State *L;
    int max_depth; /* JSON nesting limit; a binary's placeholder object counts as a level */
    int max_att;   /* attachments allowed; -1: binaries are refused */
    /* Stack slots holding nil until first needed (most payloads are a few strings: no table to
     * walk, nothing to fix up, no binary), then a table: */
    int visiting;  /* set of the tables on the current path (cycle check) */
    int fixups;    /* triples (table, key, payload) to set to S..payload */
    int bins;      /* the binaries, in attachment order */
    int nfix;      /* triples in fixups */
    int nbin;      /* binaries in bins */
    int tag_seen;  /* some string contains "~siolua<tag>~" */
    lua_Integer max_tag;
} enc_t;

/* The table in stack slot idx, created there on first use. [-0, +0, m] */
static int slot(lua_State *L, int idx)
{
    if (lua_type(L, idx) == LUA_TNIL) {
        lua_newtable(L);
        lua_replace(L, idx);
    }
    return idx;
}

/* Records the tags of the sentinel look-alikes in a user string. */
static void scan_string(enc_t *e, const char *s, size_t len)
{
    const char *end = s + len, *p = s;
    if (memchr(s, '~', len) == NULL) /* the common case, and much cheaper than memmem */
        return;
    while ((p = memmem(p, (size_t)(end - p), TAG_PREFIX, TAG_PREFIX_LEN)) != NULL) {
        p += TAG_PREFIX_LEN; /* no occurrence can start inside the prefix: it has one '~' */
        const char *q = p;
        lua_Integer tag = 0;
        for (; q < end && *q >= '0' && *q <= '9'; q++)
            if (q - p < TAG_MAX_DIGITS)
                tag = tag * 10 + (*q - '0');
        /* Tags are written without leading zeros, and 0 as nothing: other spellings never
         * equal S. Longer ones neither, since ours stay below 10^18. */
        if (q < end && *q == '~' && q - p <= TAG_MAX_DIGITS && !(q > p && *p == '0')) {
            if (!e->tag_seen || tag > e->max_tag)
                e->max_tag = tag;
            e->tag_seen = 1;
        }
    }
}

/* Appends the triple (stack[t], stack[k], stack[p]) to the fixups. */
static void add_fixup(enc_t *e, int t, int k, int p)
{
    lua_State *L = e->L;
    slot(L, e->fixups);
    lua_pushvalue(L, t);
    lua_rawseti(L, e->fixups, ++e->nfix * 3 - 2);
    lua_pushvalue(L, k);
    lua_rawseti(L, e->fixups, e->nfix * 3 - 1);
    lua_pushvalue(L, p);
    lua_rawseti(L, e->fixups, e->nfix * 3);
}

static int walk(enc_t *e, int idx, int depth);

static int is_array(lua_State *L, int idx)
{
    if (!lua_getmetatable(L, idx))
        return 0;
    luaL_getmetatable(L, LVALUE_ARRAY_MT);
    int r = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return r;
}

static void too_deep(enc_t *e)
{
    luaL_error(e->L, "value too deep to encode (max depth %d)", e->max_depth);
}

/* A new table with the same raw entries as the one at idx. [-0, +1, m] */
static void shallow_copy(lua_State *L, int idx)
{
    lua_Unsigned n = lua_rawlen(L, idx);
    lua_createtable(L, n < INT_MAX ? (int)n : 0, 0);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, -4);
    }
}

/* A table: copied (W_COPY) only when an entry needs a substitution; an empty array-marked
 * table becomes the "a" sentinel. */
static int walk_table(enc_t *e, int idx, int depth)
{
    lua_State *L = e->L;
    if (depth > e->max_depth)
        too_deep(e);
    luaL_checkstack(L, 8, "value too deep to encode");
    slot(L, e->visiting);
    lua_pushvalue(L, idx);
    if (lua_rawget(L, e->visiting) != LUA_TNIL)
        luaL_error(L, "cannot encode a table that contains itself");
    lua_pop(L, 1);
    lua_pushvalue(L, idx);
    lua_pushboolean(L, 1);
    lua_rawset(L, e->visiting);

    lua_pushnil(L); /* slot for the copy, made when the first substitution shows up */
    int copy = lua_gettop(L), copied = 0, empty = 1;
    lua_pushnil(L);
    while (lua_next(L, idx)) { /* key, value */
        int v = lua_gettop(L);
        empty = 0;
        int r = walk(e, v, depth + 1);
        if (r != W_SAME) {
            if (!copied) {
                shallow_copy(L, idx);
                lua_replace(L, copy);
                copied = 1;
            }
            lua_pushvalue(L, v - 1);
            lua_pushvalue(L, v + 1);
            lua_rawset(L, copy);
            if (r == W_SENTINEL)
                add_fixup(e, copy, v - 1, v + 1);
        }
        lua_settop(L, v - 1);
    }
    lua_pushvalue(L, idx);
    lua_pushnil(L);
    lua_rawset(L, e->visiting);
    if (empty && is_array(L, idx)) {
        lua_pushliteral(L, "a");
        lua_replace(L, copy);
        return W_SENTINEL;
    }
    if (copied)
        return W_COPY;
    lua_pushvalue(L, idx);
    lua_replace(L, copy);
    return W_SAME;
}

/* Integers of 15+ digits get the "n" sentinel, as do integral floats up to 2^53 (integers to
 * JS). Fractions and larger floats go through cjson's 14 significant digits. Returns 1 with
 * the payload pushed, or 0. */
static int walk_number(enc_t *e, int idx)
{
    lua_State *L = e->L;
    lua_Integer i;
    if (lua_isinteger(L, idx)) {
        i = lua_tointeger(L, idx);
        if (i > -EXACT_14G && i < EXACT_14G)
            return 0;
    } else {
        lua_Number n = lua_tonumber(L, idx);
        if (isnan(n) || isinf(n))
            luaL_error(L, "cannot encode NaN or infinity");
        if (n != floor(n) || fabs(n) < EXACT_14G || fabs(n) > MAX_SAFE)
            return 0;
        i = (lua_Integer)n;
    }
    lua_pushfstring(L, "n%I", (LUAI_UACINT)i);
    return 1;
}

/* Pushes what stands for the value at idx in the JSON: the value itself (W_SAME), a copy
 * (W_COPY) or a sentinel payload (W_SENTINEL). [-0, +1, e] */
static int walk(enc_t *e, int idx, int depth)
{
    lua_State *L = e->L;
    switch (lua_type(L, idx)) {
    case LUA_TNIL: /* only as an argument: emit("x", nil, 1) is ["x",null,1], as in JS */
        lua_pushlightuserdata(L, NULL);
        return W_SAME;
    case LUA_TBOOLEAN:
        break;
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) != NULL)
            luaL_error(L, "cannot encode a light userdata (only siolua.null)");
        break;
    case LUA_TNUMBER:
        if (walk_number(e, idx))
            return W_SENTINEL;
        break;
    case LUA_TSTRING: /* scanned (scan_value) only if a sentinel is needed */
        break;
    case LUA_TTABLE:
        return walk_table(e, idx, depth);
    case LUA_TUSERDATA: {
        binary_t *b = luaL_testudata(L, idx, LVALUE_BINARY_MT);
        if (b == NULL)
            luaL_error(L, "cannot encode a userdata value");
        if (e->max_att < 0)
            luaL_error(L, "cannot encode a binary here");
        if (depth > e->max_depth) /* its placeholder is an object */
            too_deep(e);
        if (e->nbin >= e->max_att)
            luaL_error(L, "too many binary attachments (max %d)", e->max_att);
        if (b->len > UINT32_MAX)
            luaL_error(L, "binary too large");
        lua_pushvalue(L, idx);
        lua_rawseti(L, slot(L, e->bins), ++e->nbin);
        lua_pushfstring(L, "b%d", e->nbin - 1);
        return W_SENTINEL;
    }
    default:
        luaL_error(L, "cannot encode a %s value", luaL_typename(L, idx));
    }
    lua_pushvalue(L, idx);
    return W_SAME;
}

/* Records the sentinel look-alikes of every string (keys included) in the value at idx, which
 * walk() accepted: no cycle, depth bounded. Only run when a sentinel is needed. */
static void scan_value(enc_t *e, int idx)
{
    lua_State *L = e->L;
    size_t n;
    const char *s;
    if (lua_type(L, idx) == LUA_TSTRING) {
        s = lua_tolstring(L, idx, &n);
        scan_string(e, s, n);
    } else if (lua_type(L, idx) == LUA_TTABLE) {
        luaL_checkstack(L, 4, "value too deep to encode");
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            int v = lua_gettop(L);
            if (lua_type(L, v - 1) == LUA_TSTRING) {
                s = lua_tolstring(L, v - 1, &n);
                scan_string(e, s, n);
            }
            scan_value(e, v);
            lua_pop(L, 1);
        }
    }
}

/* Replaces every `"S<payload>"` token of the JSON text at stack[j] (see "Sentinels") and
 * pushes the result. [-0, +1, m] */
static void unsentinel(lua_State *L, int j, const char *s, size_t slen, int expect)
{
    size_t len;
    const char *p = lua_tolstring(L, j, &len), *end = p + len, *q;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    int found = 0;
    while ((q = memmem(p, (size_t)(end - p), s, slen)) != NULL) {
        luaL_addlstring(&b, p, (size_t)(q - p));
        const char *v = q + slen, *close = memchr(v, '"', (size_t)(end - v));
        assert(close != NULL && close > v);
        if (*v == 'a') {
            luaL_addstring(&b, "[]");
        } else if (*v == 'n') {
            luaL_addlstring(&b, v + 1, (size_t)(close - v - 1));
        } else {
            assert(*v == 'b');
            luaL_addstring(&b, PLACEHOLDER_HEAD);
            luaL_addlstring(&b, v + 1, (size_t)(close - v - 1));
            luaL_addchar(&b, '}');
        }
        p = close + 1;
        found++;
    }
    luaL_addlstring(&b, p, (size_t)(end - p));
    luaL_pushresult(&b);
    assert(found == expect); /* every sentinel was put in the encoded value exactly once */
    (void)found;
    (void)expect;
}

/* encode()'s end: keeps only the text at the top, at base + 1, and returns nbin. */
static int result(lua_State *L, int base, int nbin)
{
    lua_replace(L, base + 1);
    lua_settop(L, base + 1);
    return nbin;
}

/* Encodes stack[first..first+n) as a JSON array (as_array) or stack[first] alone, pushes the
 * text and returns the number of binaries, whose rbufs go to att (allocated last). */
static int encode(lua_State *L, int first, int n, int as_array, rbuf_t **att, int max_att,
                  int max_depth)
{
    luaL_checkstack(L, 16, NULL);
    first = lua_absindex(L, first);
    int base = lua_gettop(L);
    push_cjson(L, ST_ENCODE, max_depth);
    enc_t e = {.L = L, .max_depth = max_depth, .max_att = max_att};
    lua_pushnil(L);
    e.visiting = lua_gettop(L);
    lua_pushnil(L);
    e.fixups = lua_gettop(L);
    lua_pushnil(L);
    e.bins = lua_gettop(L);

    if (as_array && n == 0) {
        lua_pushliteral(L, "[]"); /* cjson would write {} */
        return result(L, base, 0);
    } else if (as_array) {
        lua_createtable(L, n, 0);
        int arr = lua_gettop(L);
        for (int i = 0; i < n; i++) {
            int r = walk(&e, first + i, 2);
            if (r == W_SENTINEL) {
                lua_pushinteger(L, i + 1);
                add_fixup(&e, arr, lua_gettop(L), lua_gettop(L) - 1);
                lua_pop(L, 1);
            }
            lua_rawseti(L, arr, i + 1);
        }
    } else if (walk(&e, first, 1) == W_SENTINEL) {
        /* the value itself is an empty array or an exact integer (binaries are refused here):
         * its text is the payload's, no cjson needed */
        const char *v = lua_tostring(L, -1);
        if (*v == 'a')
            lua_pushliteral(L, "[]");
        else
            lua_pushstring(L, v + 1);
        return result(L, base, 0);
    }
    int value = lua_gettop(L); /* what cjson encodes */

    int s = 0;
    if (e.nfix > 0) {
        lua_Integer tag = 0;
        for (int i = 0; i < (as_array ? n : 1); i++)
            scan_value(&e, first + i);
        if (e.tag_seen) {
            if (e.max_tag >= 999999999999999999LL) /* 10^18 - 1: the next one is too long */
                luaL_error(L, "cannot encode: too many sentinel look-alikes in strings");
            tag = e.max_tag + 1;
        }
        if (tag == 0)
            lua_pushliteral(L, TAG_PREFIX "~");
        else
            lua_pushfstring(L, TAG_PREFIX "%I~", (LUAI_UACINT)tag);
        s = lua_gettop(L);
        for (int i = 1; i <= e.nfix; i++) {
            lua_rawgeti(L, e.fixups, i * 3 - 2);    /* table */
            lua_rawgeti(L, e.fixups, i * 3 - 1);    /* key */
            lua_pushvalue(L, s);
            lua_rawgeti(L, e.fixups, i * 3);        /* payload */
            lua_concat(L, 2);
            lua_rawset(L, -3);
            lua_pop(L, 1);
        }
    }

    lua_pushvalue(L, base + 1); /* cjson.encode */
    lua_pushvalue(L, value);
    lua_call(L, 1, 1); /* raises on what the walk leaves to cjson: bad keys, sparse arrays */
    if (e.nfix > 0) {
        lua_pushfstring(L, "\"%s", lua_tostring(L, s));
        size_t plen;
        const char *pat = lua_tolstring(L, -1, &plen);
        unsentinel(L, lua_gettop(L) - 1, pat, plen, e.nfix);
    }

    /* Nothing below can raise: the C allocations are safe from here on. */
    for (int i = 0; i < e.nbin; i++) {
        lua_rawgeti(L, e.bins, i + 1);
        const binary_t *b = lua_touserdata(L, -1);
        att[i] = rbuf_from(b->data, b->len);
        att[i]->flags |= RBUF_BINARY;
        lua_pop(L, 1);
    }
    return result(L, base, e.nbin);
}

int lvalue_encode_args(lua_State *L, int first, int n, rbuf_t **att, int max_att, int max_depth)
{
    assert(n >= 0);
    return encode(L, first, n, 1, att, max_att < 0 ? 0 : max_att, max_depth);
}

void lvalue_encode_value(lua_State *L, int idx, int max_depth)
{
    encode(L, idx, 1, 0, NULL, -1, max_depth);
}
