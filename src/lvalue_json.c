/* lvalue_json: JSON text <-> Lua values (the mapping is in lvalue.h).
 *
 * Decoding: yajl (Debian's libyajl, a SAX parser) calls us for each token and we build the Lua
 * values on the stack as they come: no tree in between, numbers from their text (JS semantics),
 * keys in order (lvalue_obj_*), arrays marked, placeholders swapped for their attachment's binary
 * as each object closes. yajl is strict JSON (no comments, trailing garbage, NaN, leading zeros,
 * single quotes) with two differences from JSON.parse that a pass before it takes care of:
 *   - it takes \v and \f for whitespace: text that holds either byte is refused (JSON.parse
 *     refuses it: neither is whitespace, nor allowed raw inside a string);
 *   - it cannot keep a lone surrogate escape ("\ud800" without its pair becomes '?'): such escapes
 *     are rewritten into their WTF-8 bytes (utf8.h), which yajl copies as they are
 *     (yajl_dont_validate_strings). That pass is not a parser: it only tells an escape's backslash
 *     from an escaped one, pairwise from the left, and runs only when the text has a backslash.
 * Lua errors (a memory error, too deep, a bad placeholder) are raised from inside yajl's callbacks;
 * the parse runs under lua_pcall so that the yajl handle is freed on every path.
 *
 * Encoding: a walk of the Lua values that writes JSON as JSON.stringify writes it (no library
 * writes JS-exact JSON: shortest numbers in ECMAScript's layout, lone surrogates as escapes,
 * invalid UTF-8 replaced, a given key order). One function per JSON type; the text grows in a
 * C-stack buffer, then in a userdata (collected if we raise). */
#include <assert.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <yajl/yajl_parse.h>

#include "jsnum.h"
#include "lvalue.h"
#include "utf8.h"

#define MAX_SAFE 9007199254740992.0 /* 2^53: beyond it JS numbers are not all integers */

static void check_depth(lua_State *L, int max_depth)
{
    if (max_depth < 1 || max_depth > LVALUE_MAX_DEPTH)
        luaL_error(L, "max_depth must be in 1..%d", LVALUE_MAX_DEPTH);
}

/* ---------------------------------------------------------------------------------------------
 * Decoding: the pass before yajl
 * ------------------------------------------------------------------------------------------- */

static int hexval(const char *p, uint32_t *out)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (uint32_t)(c - 'A' + 10);
        else
            return 0;
    }
    *out = v;
    return 1;
}

/* The escape at p[0..end) (p[0] is a backslash): its length, and in *lone the code unit of a
 * surrogate escape that is not half of a pair (0 otherwise). */
static size_t escape_at(const char *p, const char *end, uint32_t *lone)
{
    uint32_t u, v;
    *lone = 0;
    if (end - p < 6 || p[1] != 'u' || !hexval(p + 2, &u))
        return end - p >= 2 ? 2 : 1;
    if (u < 0xD800 || u > 0xDFFF)
        return 6;
    if (u <= 0xDBFF && end - p >= 12 && p[6] == '\\' && p[7] == 'u' && hexval(p + 8, &v) && v >= 0xDC00 && v <= 0xDFFF)
        return 12; /* a pair: yajl joins it */
    *lone = u;
    return 6;
}

/* Refuses \v and \f, and rewrites lone surrogate escapes (see the top). *json and *len change
 * to the rewritten text, pushed on the stack, when there is one. [-0, +(0|1), e] */
static void prepare(lua_State *L, const char **json, size_t *len)
{
    const char *p = *json, *end = p + *len, *bs = memchr(p, '\\', *len), *q;
    uint32_t lone = 0;
    if (memchr(p, '\v', *len) != NULL || memchr(p, '\f', *len) != NULL)
        luaL_error(L, "invalid JSON: a vertical tab or form feed byte");
    if (bs == NULL)
        return;
    for (q = bs; q < end && !lone;) { /* is there a lone surrogate escape at all? */
        size_t n = escape_at(q, end, &lone);
        if (lone)
            break;
        q += n;
        q = q < end ? memchr(q, '\\', (size_t)(end - q)) : NULL;
        if (q == NULL)
            return;
    }
    if (!lone)
        return;
    luaL_Buffer b;
    luaL_buffinitsize(L, &b, *len);
    luaL_addlstring(&b, p, (size_t)(q - p));
    while (q < end) {
        if (*q != '\\') {
            const char *next = memchr(q, '\\', (size_t)(end - q));
            if (next == NULL)
                next = end;
            luaL_addlstring(&b, q, (size_t)(next - q));
            q = next;
            continue;
        }
        size_t n = escape_at(q, end, &lone);
        if (lone) {
            char w[4];
            luaL_addlstring(&b, w, utf8_put(w, lone));
        } else {
            luaL_addlstring(&b, q, n);
        }
        q += n;
    }
    luaL_pushresult(&b);
    *json = lua_tolstring(L, -1, len);
}

/* ---------------------------------------------------------------------------------------------
 * Decoding: building the values (yajl callbacks)
 * ------------------------------------------------------------------------------------------- */

enum { K_ARRAY, K_OBJECT, K_ARGS };

typedef struct {
    lua_Integer n;    /* K_ARRAY, K_ARGS: elements so far */
    lvalue_obj_t o;   /* K_OBJECT */
    char kind;        /* K_* */
    char placeholder; /* K_OBJECT: has a "_placeholder" key (only looked at when natt > 0) */
} level_t;

typedef struct {
    lua_State *L;
    yajl_handle h;
    const char *json;
    size_t len;
    int max_depth, depth;
    int args;           /* the root must be an array, whose elements stay on the stack */
    int done;           /* args: the root array is closed */
    rbuf_t *const *att; /* the packet's attachments (borrowed) */
    size_t natt;
    int bins; /* stack index: attachment num + 1 -> its binary, made on first use */
    level_t lv[LVALUE_MAX_DEPTH + 1];
} dec_t;

/* The value at the top goes into its container (or stays: the root, an argument). */
static int add(dec_t *d)
{
    lua_State *L = d->L;
    if (d->depth == 0) {
        if (d->args)
            luaL_error(L, "invalid JSON: the arguments are not an array");
        return 1;
    }
    level_t *l = &d->lv[d->depth];
    switch (l->kind) {
    case K_ARRAY:
        lua_rawseti(L, -2, ++l->n);
        break;
    case K_OBJECT:
        lvalue_obj_set(L, &l->o);
        break;
    default: /* K_ARGS */
        l->n++;
        luaL_checkstack(L, 8, "too many arguments");
        break;
    }
    return 1;
}

static int cb_null(void *ctx)
{
    dec_t *d = ctx;
    lua_pushlightuserdata(d->L, NULL);
    return add(d);
}

static int cb_boolean(void *ctx, int v)
{
    dec_t *d = ctx;
    lua_pushboolean(d->L, v);
    return add(d);
}

/* A JSON number is the double nearest to its decimal value (JSON.parse); it becomes a Lua integer
 * when that double is integral and within 2^53 (-0 included: 0). */
static int cb_number(void *ctx, const char *s, size_t n)
{
    dec_t *d = ctx;
    lua_State *L = d->L;
    size_t i = s[0] == '-';
    int digits_only = n - i <= 18;
    for (size_t j = i; j < n && digits_only; j++)
        digits_only = s[j] >= '0' && s[j] <= '9';
    if (digits_only) { /* up to 18 digits fit an int64 */
        int64_t v = 0;
        for (size_t j = i; j < n; j++)
            v = v * 10 + (s[j] - '0');
        if (i)
            v = -v;
        if (v >= -(int64_t)MAX_SAFE && v <= (int64_t)MAX_SAFE)
            lua_pushinteger(L, v);
        else
            lua_pushnumber(L, (double)v); /* int64 -> double rounds to nearest, as strtod */
        return add(d);
    }
    double x;
    char buf[64];
    if (n < sizeof buf) {
        memcpy(buf, s, n);
        buf[n] = '\0';
        x = jsnum_strtod(buf, NULL);
    } else {
        lua_pushlstring(L, s, n); /* NUL-terminated */
        x = jsnum_strtod(lua_tostring(L, -1), NULL);
        lua_pop(L, 1);
    }
    if (x == floor(x) && fabs(x) <= MAX_SAFE)
        lua_pushinteger(L, (lua_Integer)x);
    else
        lua_pushnumber(L, x); /* 1e400: inf, as in JS */
    return add(d);
}

static int cb_string(void *ctx, const unsigned char *s, size_t n)
{
    dec_t *d = ctx;
    lua_pushlstring(d->L, (const char *)s, n);
    return add(d);
}

static level_t *open_level(dec_t *d)
{
    if (d->depth >= d->max_depth)
        luaL_error(d->L, "invalid JSON: nesting deeper than %d", d->max_depth);
    luaL_checkstack(d->L, 8, "JSON too deep");
    return &d->lv[++d->depth];
}

static int cb_start_map(void *ctx)
{
    dec_t *d = ctx;
    level_t *l = open_level(d);
    l->kind = K_OBJECT;
    l->placeholder = 0;
    lvalue_obj_begin(d->L, &l->o, 0);
    return 1;
}

static int cb_map_key(void *ctx, const unsigned char *s, size_t n)
{
    dec_t *d = ctx;
    lua_pushlstring(d->L, (const char *)s, n);
    if (n == 12 && memcmp(s, "_placeholder", 12) == 0)
        d->lv[d->depth].placeholder = 1;
    return 1;
}

/* The object at the top is a placeholder ({_placeholder = true, num = N}): replaces it by the
 * binary of attachment N, one shared userdata per attachment (binaries are immutable), so that
 * naming one attachment many times costs a reference each, as in the reference, where each
 * placeholder becomes the same Buffer. num must index an attachment ("illegal attachments"). */
static void placeholder(dec_t *d)
{
    lua_State *L = d->L;
    lua_pushliteral(L, "_placeholder");
    int is = lua_rawget(L, -2) == LUA_TBOOLEAN && lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (!is)
        return;
    lua_pushliteral(L, "num");
    int isnum = lua_rawget(L, -2) == LUA_TNUMBER;
    lua_Number num = lua_tonumber(L, -1);
    lua_pop(L, 1);
    if (!isnum || !(num >= 0) || num >= (lua_Number)d->natt || num != floor(num))
        luaL_error(L, "illegal attachments: bad placeholder num (%d attachments)", (int)d->natt);
    if (lua_rawgeti(L, d->bins, (lua_Integer)num + 1) == LUA_TNIL) {
        lua_pop(L, 1);
        rbuf_t *b = d->att[(size_t)num];
        lvalue_push_binary(L, rbuf_payload(b), b->len);
        lua_pushvalue(L, -1);
        lua_rawseti(L, d->bins, (lua_Integer)num + 1);
    }
    lua_replace(L, -2);
}

static int cb_end_map(void *ctx)
{
    dec_t *d = ctx;
    level_t *l = &d->lv[d->depth];
    lvalue_obj_end(d->L, &l->o);
    if (l->placeholder && d->natt > 0)
        placeholder(d);
    d->depth--;
    return add(d);
}

static int cb_start_array(void *ctx)
{
    dec_t *d = ctx;
    level_t *l = open_level(d);
    l->n = 0;
    if (d->depth == 1 && d->args) {
        l->kind = K_ARGS;
        return 1;
    }
    l->kind = K_ARRAY;
    lua_newtable(d->L);
    return 1;
}

static int cb_end_array(void *ctx)
{
    dec_t *d = ctx;
    if (d->lv[d->depth].kind == K_ARGS) {
        d->depth--;
        d->done = 1;
        return 1;
    }
    lvalue_mark_array(d->L, -1);
    d->depth--;
    return add(d);
}

static const yajl_callbacks callbacks = {
    cb_null,      cb_boolean, NULL,       NULL,           cb_number,    cb_string,
    cb_start_map, cb_map_key, cb_end_map, cb_start_array, cb_end_array,
};

/* Under lua_pcall: parses, returns the value (or the arguments). */
static int parse_k(lua_State *L)
{
    dec_t *d = lua_touserdata(L, 1);
    d->L = L;
    if (d->natt > 0) {
        lua_createtable(L, (int)d->natt, 0);
        d->bins = lua_gettop(L);
    }
    int first = lua_gettop(L) + 1;
    yajl_status st = yajl_parse(d->h, (const unsigned char *)d->json, d->len);
    if (st == yajl_status_ok)
        st = yajl_complete_parse(d->h);
    if (st != yajl_status_ok) {
        char msg[160];
        unsigned char *e = yajl_get_error(d->h, 0, NULL, 0);
        snprintf(msg, sizeof msg, "%s", e ? (const char *)e : "?");
        if (e != NULL)
            yajl_free_error(d->h, e);
        msg[strcspn(msg, "\n")] = '\0';
        return luaL_error(L, "invalid JSON: %s", msg);
    }
    if (d->args && !d->done)
        return luaL_error(L, "invalid JSON: the arguments are not an array");
    return lua_gettop(L) - first + 1;
}

/* Decodes json and pushes the value, or (args) the elements of the root array. Returns how many
 * values it pushed. */
static int decode(lua_State *L, const char *json, size_t len, rbuf_t *const *att, size_t natt, int max_depth, int args)
{
    check_depth(L, max_depth);
    luaL_checkstack(L, 8, NULL);
    int base = lua_gettop(L);
    prepare(L, &json, &len); /* may push the rewritten text */
    int extra = lua_gettop(L) - base;
    dec_t dd, *d = &dd; /* ~6 KB of levels, on the C stack */
    d->json = json;
    d->len = len;
    d->max_depth = max_depth;
    d->depth = 0;
    d->args = args;
    d->done = 0;
    d->att = att;
    d->natt = natt;
    d->bins = 0;
    d->h = yajl_alloc(&callbacks, NULL, d);
    if (d->h == NULL)
        return luaL_error(L, "not enough memory");
    yajl_config(d->h, yajl_dont_validate_strings, 1);
    lua_pushcfunction(L, parse_k);
    lua_pushlightuserdata(L, d);
    int rc = lua_pcall(L, 1, LUA_MULTRET, 0);
    yajl_free(d->h);
    if (rc != LUA_OK)
        return lua_error(L);
    if (extra)
        lua_remove(L, base + 1); /* the rewritten text */
    return lua_gettop(L) - base;
}

void lvalue_push_json(lua_State *L, const char *json, size_t len, rbuf_t *const *att, size_t natt, int max_depth)
{
    decode(L, json, len, att, natt, max_depth, 0);
}

int lvalue_push_json_args(lua_State *L, const char *json, size_t len, rbuf_t *const *att, size_t natt, int max_depth)
{
    return decode(L, json, len, att, natt, max_depth, 1);
}

/* ---------------------------------------------------------------------------------------------
 * Encoding
 * ------------------------------------------------------------------------------------------- */

typedef struct {
    lua_State *L;
    char *p; /* the text: local, then the userdata at box */
    size_t len, cap;
    int box;           /* stack index of the userdata holding p once it outgrew local */
    int bins;          /* stack index: the binaries, in attachment order (made on first use) */
    int nbin, max_att; /* max_att < 0: binaries are refused */
    int max_depth, flags;
    const void *path[LVALUE_MAX_DEPTH + 2]; /* the tables being written, by depth */
    char local[512];
} enc_t;

static void grow(enc_t *e, size_t n)
{
    if (n > SIZE_MAX / 2 - e->len)
        luaL_error(e->L, "value too large to encode");
    size_t cap = e->cap * 2 > e->len + n ? e->cap * 2 : e->len + n;
    char *p = lua_newuserdatauv(e->L, cap, 0);
    memcpy(p, e->p, e->len);
    lua_replace(e->L, e->box);
    e->p = p;
    e->cap = cap;
}

static inline void reserve(enc_t *e, size_t n)
{
    if (e->cap - e->len < n)
        grow(e, n);
}

static inline void put(enc_t *e, const char *s, size_t n)
{
    reserve(e, n);
    memcpy(e->p + e->len, s, n);
    e->len += n;
}

static inline void putc_(enc_t *e, char c)
{
    reserve(e, 1);
    e->p[e->len++] = c;
}

/* 1: copied as it is; 0: escaped (", \, controls) or not ASCII. */
static const unsigned char plain[256] = {
    ['\x20'] = 1,
    1,
    0 /* " */,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1, /* 0x20-0x2f */
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1, /* 0x30 */
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1, /* 0x40 */
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    0 /* \ */,
    1,
    1,
    1, /* 0x50 */
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1, /* 0x60 */
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1,
    1, /* 0x70 (DEL is plain) */
};

static void put_u(enc_t *e, uint32_t u)
{
    static const char hex[] = "0123456789abcdef";
    char b[6] = {'\\', 'u', hex[(u >> 12) & 15], hex[(u >> 8) & 15], hex[(u >> 4) & 15], hex[u & 15]};
    put(e, b, 6);
}

/* A string as JSON.stringify writes it: \" \\ \b \f \n \r \t, other controls as \u00xx, a lone
 * surrogate (WTF-8) as \udxxx, a WTF-8 pair as the character it stands for, everything else as it
 * is; ill-formed UTF-8 as U+FFFD (each maximal subpart), or as it is with LVALUE_RAW. */
static void enc_string(enc_t *e, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, run = 0;
    reserve(e, n + 2);
    e->p[e->len++] = '"';
    while (i < n) {
        if (plain[p[i]]) {
            i++;
            continue;
        }
        put(e, s + run, i - run);
        unsigned char c = p[i];
        if (c < 0x80) {
            const char *esc = c == '"'    ? "\\\""
                              : c == '\\' ? "\\\\"
                              : c == '\b' ? "\\b"
                              : c == '\f' ? "\\f"
                              : c == '\n' ? "\\n"
                              : c == '\r' ? "\\r"
                              : c == '\t' ? "\\t"
                                          : NULL;
            if (esc != NULL)
                put(e, esc, 2);
            else
                put_u(e, c);
            i++;
        } else {
            uint32_t cp, lo;
            int r = utf8_seq(p + i, n - i, &cp, 1);
            if (r > 0 && (cp < 0xD800 || cp > 0xDFFF)) {
                put(e, s + i, (size_t)r);
                i += (size_t)r;
            } else if (r > 0) {
                if (cp <= 0xDBFF && n - i >= 6 && utf8_seq(p + i + 3, n - i - 3, &lo, 1) == 3 && lo >= 0xDC00 &&
                    lo <= 0xDFFF) {
                    char w[4]; /* the two halves of one character */
                    put(e, w, utf8_put(w, 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00)));
                    i += 6;
                } else {
                    put_u(e, cp);
                    i += 3;
                }
            } else {
                r = utf8_seq(p + i, n - i, &cp, 0); /* the maximal subpart as UTF-8 (not WTF-8) has it */
                if (e->flags & LVALUE_RAW)
                    put(e, s + i, (size_t)-r);
                else
                    put(e, "\xEF\xBF\xBD", 3);
                i += (size_t)-r;
            }
        }
        run = i;
    }
    put(e, s + run, i - run);
    putc_(e, '"');
}

static void enc_number(enc_t *e, int idx)
{
    char b[JSNUM_MAX];
    if (lua_isinteger(e->L, idx)) {
        put(e, b, jsnum_int(lua_tointeger(e->L, idx), b));
        return;
    }
    double x = lua_tonumber(e->L, idx);
    if (isnan(x) || isinf(x))
        put(e, "null", 4); /* as JSON.stringify */
    else
        put(e, b, jsnum_format(x, b));
}

/* An object key: strings as they are, numbers as JS writes them (its keys are strings). */
static void enc_key(enc_t *e, int idx)
{
    size_t n;
    const char *s;
    if (lua_type(e->L, idx) == LUA_TNUMBER) {
        char b[JSNUM_MAX + 2];
        size_t k;
        double x = lua_tonumber(e->L, idx);
        if (lua_isinteger(e->L, idx))
            k = jsnum_int(lua_tointeger(e->L, idx), b);
        else if (isinf(x))
            k = (size_t)snprintf(b, sizeof b, "%s", x > 0 ? "Infinity" : "-Infinity");
        else
            k = jsnum_format(x, b);
        enc_string(e, b, k);
        return;
    }
    s = lua_tolstring(e->L, idx, &n);
    enc_string(e, s, n);
}

static void enc_value(enc_t *e, int idx, int depth);

static void too_deep(enc_t *e, int depth, const void *t)
{
    for (int i = 1; i < depth && i <= e->max_depth; i++)
        if (e->path[i] == t)
            luaL_error(e->L, "cannot encode a table that contains itself");
    luaL_error(e->L, "value too deep to encode (max depth %d)", e->max_depth);
}

static void enc_table(enc_t *e, int idx, int depth)
{
    lua_State *L = e->L;
    const void *t = lua_topointer(L, idx);
    if (depth > e->max_depth)
        too_deep(e, depth, t);
    e->path[depth] = t;
    lvalue_shape_t sh;
    lvalue_shape(L, idx, &sh, 0);
    if (sh.array) {
        putc_(e, '[');
        for (lua_Unsigned i = 1; i <= sh.n; i++) {
            if (i > 1)
                putc_(e, ',');
            if (lua_rawgeti(L, idx, (lua_Integer)i) == LUA_TNIL)
                put(e, "null", 4);
            else
                enc_value(e, lua_gettop(L), depth + 1);
            lua_pop(L, 1);
        }
        putc_(e, ']');
    } else {
        int first = 1;
        putc_(e, '{');
        while (lvalue_shape_next(L, idx, &sh)) {
            if (!first)
                putc_(e, ',');
            first = 0;
            enc_key(e, -2);
            putc_(e, ':');
            enc_value(e, lua_gettop(L), depth + 1);
            lua_pop(L, 2);
        }
        putc_(e, '}');
    }
    lua_pop(L, 2); /* lvalue_shape's slots */
}

static void enc_binary(enc_t *e, int idx, int depth, size_t len)
{
    lua_State *L = e->L;
    char b[JSNUM_MAX];
    if (e->max_att < 0)
        luaL_error(L, "cannot encode a binary here");
    if (depth > e->max_depth) /* its placeholder is an object */
        luaL_error(L, "value too deep to encode (max depth %d)", e->max_depth);
    if (e->nbin >= e->max_att)
        luaL_error(L, "too many binary attachments (max %d)", e->max_att);
    if (len > UINT32_MAX)
        luaL_error(L, "binary too large");
    if (lua_type(L, e->bins) == LUA_TNIL) {
        lua_newtable(L);
        lua_replace(L, e->bins);
    }
    lua_pushvalue(L, idx);
    lua_rawseti(L, e->bins, ++e->nbin);
    put(e, "{\"_placeholder\":true,\"num\":", 27);
    put(e, b, jsnum_int(e->nbin - 1, b));
    putc_(e, '}');
}

static void enc_value(enc_t *e, int idx, int depth)
{
    lua_State *L = e->L;
    size_t n;
    const char *s;
    switch (lua_type(L, idx)) {
    case LUA_TNIL: /* only as an argument: emit("x", nil, 1) is ["x",null,1], as in JS */
        put(e, "null", 4);
        return;
    case LUA_TBOOLEAN:
        if (lua_toboolean(L, idx))
            put(e, "true", 4);
        else
            put(e, "false", 5);
        return;
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) != NULL)
            luaL_error(L, "cannot encode a light userdata (only siolua.null)");
        put(e, "null", 4);
        return;
    case LUA_TNUMBER:
        enc_number(e, idx);
        return;
    case LUA_TSTRING:
        s = lua_tolstring(L, idx, &n);
        enc_string(e, s, n);
        return;
    case LUA_TTABLE:
        enc_table(e, idx, depth);
        return;
    case LUA_TUSERDATA:
        if (lvalue_tobinary(L, idx, &n) == NULL)
            luaL_error(L, "cannot encode a userdata value");
        enc_binary(e, idx, depth, n);
        return;
    default:
        luaL_error(L, "cannot encode a %s value", luaL_typename(L, idx));
    }
}

/* Encodes stack[first..first+n) as a JSON array (as_array) or stack[first] alone, pushes the
 * text and returns the number of binaries, whose rbufs go to att (allocated last). */
static int encode(lua_State *L, int first, int n, int as_array, rbuf_t **att, int max_att, int max_depth, int flags)
{
    check_depth(L, max_depth);
    luaL_checkstack(L, 8, NULL);
    first = lua_absindex(L, first);
    int base = lua_gettop(L);
    enc_t e;
    e.L = L;
    e.p = e.local;
    e.len = 0;
    e.cap = sizeof e.local;
    lua_pushnil(L);
    e.box = lua_gettop(L);
    lua_pushnil(L);
    e.bins = lua_gettop(L);
    e.nbin = 0;
    e.max_att = max_att;
    e.max_depth = max_depth;
    e.flags = flags;
    e.path[1] = NULL;
    if (as_array) {
        putc_(&e, '[');
        for (int i = 0; i < n; i++) {
            if (i > 0)
                putc_(&e, ',');
            enc_value(&e, first + i, 2);
        }
        putc_(&e, ']');
    } else {
        enc_value(&e, first, 1);
    }
    lua_pushlstring(L, e.p, e.len);
    /* Nothing below can raise: the C allocations are safe from here on. */
    for (int i = 0; i < e.nbin; i++) {
        size_t len;
        lua_rawgeti(L, e.bins, i + 1);
        const char *b = lvalue_tobinary(L, -1, &len);
        att[i] = rbuf_from(b, len);
        att[i]->flags |= RBUF_BINARY;
        lua_pop(L, 1);
    }
    lua_replace(L, base + 1);
    lua_settop(L, base + 1);
    return e.nbin;
}

int lvalue_encode_args(lua_State *L, int first, int n, rbuf_t **att, int max_att, int max_depth)
{
    assert(n >= 0);
    return encode(L, first, n, 1, att, max_att < 0 ? 0 : max_att, max_depth, 0);
}

void lvalue_encode_value(lua_State *L, int idx, int max_depth, int flags)
{
    encode(L, idx, 1, 0, NULL, -1, max_depth, flags);
}
