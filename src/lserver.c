/* lserver: the global `io` (the server and its main namespace "/") and namespace objects.
 * A namespace object is a table with metatable "siolua.namespace"; its private state (the C
 * namespace, its listeners) lives in a registry table keyed by the object. For `io`, keys that are
 * not server methods fall back to Lua's own io library, so io.open, io.write, io.lines still work. */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lhost.h"
#include "log.h"
#include "lvalue.h"

#define NSP_MT "siolua.namespace"
#define MAX_ATT 64

static const char STATE_KEY = 's'; /* registry: object -> {ptr = nsp, events = {}} */
static const char OBJS_KEY = 'o';  /* registry: nsp name -> object */
static const char LUAIO_KEY = 'i'; /* registry: Lua's io library */
static const char ALLOW_KEY = 'a'; /* registry: the allowRequest function */

/* Pushes the state table of the namespace object at idx. [-0, +1, -] */
static void push_state(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &STATE_KEY);
    lua_pushvalue(L, idx);
    lua_rawget(L, -2);
    lua_remove(L, -2);
}

static sio_nsp_t *check_nsp(lua_State *L, int idx)
{
    sio_nsp_t *nsp;
    push_state(L, idx);
    if (!lua_istable(L, -1))
        luaL_error(L, "not a namespace");
    lua_getfield(L, -1, "ptr");
    nsp = lua_touserdata(L, -1);
    lua_pop(L, 2);
    if (nsp == NULL)
        luaL_error(L, "this namespace was removed (cleanupEmptyChildNamespaces); use io.of(name) again");
    return nsp;
}

void lserver_push_nsp(lua_State *L, sio_nsp_t *nsp)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &OBJS_KEY);
    if (lua_getfield(L, -1, nsp->name) == LUA_TTABLE) {
        lua_remove(L, -2);
        return;
    }
    lua_pop(L, 1);
    lua_createtable(L, 0, 1);
    lua_pushstring(L, nsp->name);
    lua_setfield(L, -2, "name");
    luaL_setmetatable(L, NSP_MT);
    /* state */
    lua_rawgetp(L, LUA_REGISTRYINDEX, &STATE_KEY);
    lua_pushvalue(L, -2);
    lua_createtable(L, 0, 1);
    lua_pushlightuserdata(L, nsp);
    lua_setfield(L, -2, "ptr");
    lua_rawset(L, -3);
    lua_pop(L, 1);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, nsp->name);
    lua_remove(L, -2);
}

sio_nsp_t *lserver_check_nsp(lua_State *L, int idx)
{
    return check_nsp(L, idx);
}

void lserver_forget_nsp(lua_State *L, sio_nsp_t *nsp)
{
    if (!lua_checkstack(L, 4))
        return;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &OBJS_KEY);
    if (lua_getfield(L, -1, nsp->name) == LUA_TTABLE) {
        push_state(L, -1);
        if (lua_istable(L, -1)) {
            lua_pushnil(L);
            lua_setfield(L, -2, "ptr"); /* existing key: no allocation */
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    lua_pushnil(L);
    lua_setfield(L, -2, nsp->name);
    lua_pop(L, 1);
}

/* core.resolving(token): true while the CONNECT of token (hooks.resolve's) waits for an answer. */
static int c_resolving(lua_State *L)
{
    sio_resolve_t *r = lhost_box_get(L, 1);
    lua_pushboolean(L, r != NULL && sio_resolve_pending(r));
    return 1;
}

/* core.resolved(token, nsp | nil): answers the CONNECT of token (once; later answers are ignored):
 * the client joins nsp, or gets "Invalid namespace". */
static int c_resolved(lua_State *L)
{
    sio_nsp_t *nsp = lua_isnoneornil(L, 2) ? NULL : check_nsp(L, 2);
    sio_resolve_t *r = lhost_box_take(L, 1);
    if (r == NULL)
        return 0;
    sio_resolve_done(r, nsp);
    sio_resolve_unref(r);
    return 0;
}

/* core.mark_child(nsp): a dynamic namespace's child, freed once empty (cleanupEmptyChildNamespaces). */
static int c_mark_child(lua_State *L)
{
    check_nsp(L, 1)->removable = 1;
    return 0;
}

/* ---------------------------------------------------------------- namespace methods */

/* Reads an optional array of room names at idx into slices borrowed from the Lua strings (the
 * table keeps them alive). The slice array is a userdata pushed on the stack, so an error leaks
 * nothing. [-0, +1, e] */
static size_t rooms_arg(lua_State *L, int idx, slice_t **out)
{
    size_t n = 0;
    if (!lua_isnoneornil(L, idx)) {
        luaL_checktype(L, idx, LUA_TTABLE);
        n = lua_rawlen(L, idx);
    }
    *out = lua_newuserdatauv(L, (n ? n : 1) * sizeof(slice_t), 0);
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, idx, (lua_Integer)i + 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "room names must be strings");
        (*out)[i].ptr = lua_tolstring(L, -1, &(*out)[i].len);
        lua_pop(L, 1);
    }
    return n;
}

/* Boxes a selection so that a Lua error while it is held releases it (__gc / __close). */
typedef struct {
    sio_socket_t **v;
    size_t n;
} selection_t;

static int selection_gc(lua_State *L)
{
    selection_t *sel = lua_touserdata(L, 1);
    sio_release(sel->v, sel->n);
    sel->v = NULL;
    sel->n = 0;
    return 0;
}

/* [-0, +1, e] Selects the sockets for core.broadcast / core.select, boxed. */
static selection_t *select_boxed(lua_State *L, sio_nsp_t *nsp, int rooms_idx, int except_idx)
{
    lhost_t *h = lhost_get(L);
    slice_t *rooms, *except;
    sio_target_t t;
    selection_t *sel;
    t.nrooms = rooms_arg(L, rooms_idx, &rooms);
    t.nexcept = rooms_arg(L, except_idx, &except);
    t.rooms = rooms;
    t.except = except;
    sel = lua_newuserdatauv(L, sizeof(*sel), 0);
    sel->v = NULL;
    sel->n = 0;
    if (luaL_newmetatable(L, "siolua.selection")) {
        lua_pushcfunction(L, selection_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    sel->n = sio_select(&h->srv->sio, nsp, &t, &sel->v);
    lua_replace(L, -3); /* drop the two slice arrays, keep the box */
    lua_pop(L, 1);
    return sel;
}

/* core.broadcast(nsp, rooms|nil, except|nil, volatile, ack|nil, ev, ...): sends one encoded
 * packet to the selected sockets. With ack, every recipient's acks get it under one id. Returns
 * how many sockets it was sent to. */
static int c_broadcast(lua_State *L)
{
    sio_nsp_t *nsp = check_nsp(L, 1);
    int volatile_ = lua_toboolean(L, 4);
    int with_ack = !lua_isnil(L, 5);
    int64_t id = -1;
    const char *ev = luaL_checkstring(L, 6);
    rbuf_t *att[MAX_ATT], *pkt;
    int natt;
    selection_t *sel;
    size_t sent;
    if (lsocket_reserved(ev))
        return luaL_error(L, "\"%s\" is a reserved event name", ev);
    if (with_ack)
        luaL_checktype(L, 5, LUA_TFUNCTION);
    sel = select_boxed(L, nsp, 2, 3);
    int selidx = lua_gettop(L);
    if (with_ack) {
        id = nsp->next_ack++;
        for (size_t i = 0; i < sel->n; i++) {
            sio_socket_t *s = sel->v[i];
            if (s->state != SIO_S_CONNECTED)
                continue;
            lsocket_push(L, s);
            lsocket_private(L, -1);
            if (lua_getfield(L, -1, "acks") != LUA_TTABLE) { /* created on first use */
                lua_pop(L, 1);
                lua_newtable(L);
                lua_pushvalue(L, -1);
                lua_setfield(L, -3, "acks");
            }
            lua_pushvalue(L, 5);
            lua_rawseti(L, -2, id);
            lua_pop(L, 3);
        }
    }
    /* onAnyOutgoing listeners of the recipients (flagged, so others cost nothing here) */
    for (size_t i = 0; i < sel->n; i++) {
        sio_socket_t *s = sel->v[i];
        if (!(s->upper_flags & LSOCKET_F_OUTGOING) || s->state != SIO_S_CONNECTED)
            continue;
        lhost_push_hook(L, "outgoing");
        lsocket_push(L, s);
        for (int a = 6; a < selidx; a++)
            lua_pushvalue(L, a);
        lua_call(L, selidx - 6 + 1, 0);
    }
    lua_pushvalue(L, 6);
    for (int i = 7; i < selidx; i++)
        lua_pushvalue(L, i);
    pkt = lsocket_encode(L, selidx + 1, nsp->name, SIO_EVENT, id, att, &natt);
    sent = sio_send_many(sel->v, sel->n, volatile_, pkt, att, (size_t)natt);
    rbuf_unref(pkt);
    for (int i = 0; i < natt; i++)
        rbuf_unref(att[i]);
    sio_release(sel->v, sel->n);
    sel->v = NULL;
    sel->n = 0;
    lua_pushinteger(L, (lua_Integer)sent);
    return 1;
}

/* core.select(nsp, rooms|nil, except|nil): the selected sockets' handles, in a sequence. */
static int c_select(lua_State *L)
{
    sio_nsp_t *nsp = check_nsp(L, 1);
    selection_t *sel = select_boxed(L, nsp, 2, 3);
    lua_createtable(L, (int)sel->n, 0);
    for (size_t i = 0, k = 0; i < sel->n; i++) {
        if (sel->v[i]->state != SIO_S_CONNECTED)
            continue;
        lsocket_push(L, sel->v[i]);
        lua_rawseti(L, -2, (lua_Integer)++k);
    }
    sio_release(sel->v, sel->n);
    sel->v = NULL;
    sel->n = 0;
    return 1;
}

/* of(name): the namespace object, created on first use. */
static int n_of(lua_State *L)
{
    lhost_t *h = lhost_get(L);
    size_t len;
    const char *name;
    lhost_selfcall(L, lua_upvalueindex(1));
    if (lua_isfunction(L, 1) || (lua_type(L, 1) == LUA_TSTRING && lua_tostring(L, 1)[0] == '^')) {
        /* a dynamic namespace: a function, or a Lua pattern (a string starting with ^) */
        lua_getglobal(L, "siolua");
        lua_getfield(L, -1, "_of_dynamic");
        lua_pushvalue(L, 1);
        lua_call(L, 1, 1);
        return 1;
    }
    name = luaL_checklstring(L, 1, &len);
    if (len == 0 || name[0] != '/')
        lua_pushfstring(L, "/%s", name), name = lua_tolstring(L, -1, &len);
    if (memchr(name, ',', len) != NULL || len > h->srv->cfg.sio.limits.max_nsp)
        return luaL_error(L, "invalid namespace name \"%s\"", name);
    int created = sio_nsp_find(&h->srv->sio, name, len) == NULL;
    lserver_push_nsp(L, sio_nsp_create(&h->srv->sio, name, len));
    if (created) {
        /* io.on("new_namespace", fn) listeners */
        lua_getglobal(L, "siolua");
        lua_getfield(L, -1, "_fire");
        lua_getglobal(L, "io");
        lua_pushstring(L, "new_namespace");
        lua_pushvalue(L, -5);
        lua_call(L, 3, 0);
        lua_pop(L, 1);
    }
    return 1;
}

static int n_close(lua_State *L)
{
    sl_server_close(lhost_get(L)->srv);
    return 0;
}

/* ---------------------------------------------------------------- options */

static char *dup_field_string(lua_State *L, int idx)
{
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    return xstrndup(s, len);
}

static void set_origins(lua_State *L, eio_cors_t *c, int idx)
{
    idx = lua_absindex(L, idx);
    for (size_t i = 0; i < c->norigins; i++)
        free(c->origins[i]);
    free(c->origins);
    c->origins = NULL;
    c->norigins = 0;
    c->origin_any = 0;
    if (lua_type(L, idx) == LUA_TSTRING) {
        if (strcmp(lua_tostring(L, idx), "*") == 0) {
            c->origin_any = 1;
            return;
        }
        c->origins = xmalloc(sizeof(char *));
        c->origins[c->norigins++] = dup_field_string(L, idx);
    } else if (lua_istable(L, idx)) {
        size_t n = lua_rawlen(L, idx);
        c->origins = xcalloc(n ? n : 1, sizeof(char *));
        for (size_t i = 1; i <= n; i++) {
            lua_rawgeti(L, idx, (lua_Integer)i);
            if (lua_type(L, -1) == LUA_TSTRING)
                c->origins[c->norigins++] = dup_field_string(L, -1);
            lua_pop(L, 1);
        }
    } else if (lua_toboolean(L, idx)) {
        c->origin_any = 1;
    }
}

static char *join_list(lua_State *L, int idx)
{
    luaL_Buffer b;
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) == LUA_TSTRING)
        return dup_field_string(L, idx);
    luaL_checktype(L, idx, LUA_TTABLE);
    luaL_buffinit(L, &b);
    for (lua_Integer i = 1; i <= (lua_Integer)lua_rawlen(L, idx); i++) {
        if (i > 1)
            luaL_addchar(&b, ',');
        lua_rawgeti(L, idx, i);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    char *r = dup_field_string(L, -1);
    lua_pop(L, 1);
    return r;
}

/* cookie = true | false | { name, path, domain, httpOnly, secure, sameSite, maxAge }, with the
 * reference's defaults: name "io", path "/", httpOnly unless path is false, sameSite "lax". */
static void set_cookie(lua_State *L, const char *who, eio_cookie_t *c, int idx)
{
    free(c->name);
    free(c->path);
    free(c->domain);
    free(c->same_site);
    memset(c, 0, sizeof(*c));
    c->max_age = -1;
    if (!lua_toboolean(L, idx))
        return;
    c->name = xstrndup("io", 2);
    c->path = xstrndup("/", 1);
    c->same_site = xstrndup("Lax", 3);
    c->http_only = 1;
    if (!lua_istable(L, idx))
        return;
    if (lua_getfield(L, idx, "name") == LUA_TSTRING) {
        free(c->name);
        c->name = dup_field_string(L, -1);
    }
    lua_pop(L, 1);
    int t = lua_getfield(L, idx, "path");
    if (t == LUA_TSTRING) {
        free(c->path);
        c->path = dup_field_string(L, -1);
    } else if (t == LUA_TBOOLEAN && !lua_toboolean(L, -1)) {
        free(c->path);
        c->path = NULL;
        c->http_only = 0;
    }
    lua_pop(L, 1);
    if (lua_getfield(L, idx, "domain") == LUA_TSTRING)
        c->domain = dup_field_string(L, -1);
    lua_pop(L, 1);
    if (lua_getfield(L, idx, "httpOnly") != LUA_TNIL)
        c->http_only = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (lua_getfield(L, idx, "secure") != LUA_TNIL)
        c->secure = lua_toboolean(L, -1);
    lua_pop(L, 1);
    t = lua_getfield(L, idx, "sameSite");
    if (t == LUA_TSTRING || t == LUA_TBOOLEAN) {
        const char *v = t == LUA_TSTRING ? lua_tostring(L, -1) : (lua_toboolean(L, -1) ? "strict" : NULL);
        free(c->same_site);
        c->same_site = NULL;
        if (v != NULL) {
            /* as the cookie package writes them: Strict, Lax, None */
            const char *canon = strcasecmp(v, "strict") == 0 ? "Strict"
                                : strcasecmp(v, "lax") == 0  ? "Lax"
                                : strcasecmp(v, "none") == 0 ? "None"
                                                             : NULL;
            if (canon == NULL)
                luaL_error(L, "%s: cookie.sameSite must be \"strict\", \"lax\" or \"none\"", who);
            c->same_site = xstrndup(canon, strlen(canon));
        }
    }
    lua_pop(L, 1);
    if (lua_getfield(L, idx, "maxAge") != LUA_TNIL)
        c->max_age = (long)luaL_checkinteger(L, -1) / 1000; /* the reference's maxAge is in ms */
    lua_pop(L, 1);
    for (const char *p = c->name; *p; p++)
        if (*p <= ' ' || *p == '=' || *p == ';' || *p == ',' || (unsigned char)*p >= 127)
            luaL_error(L, "%s: invalid cookie name", who);
}

static uint64_t opt_ms(lua_State *L, const char *who, const char *name)
{
    lua_Integer v;
    if (!lua_isinteger(L, -1) && !(lua_isnumber(L, -1) && (lua_Number)(lua_Integer)lua_tonumber(L, -1) == lua_tonumber(L, -1)))
        luaL_error(L, "%s: %s must be an integer", who, name);
    v = (lua_Integer)lua_tonumber(L, -1);
    if (v < 0)
        luaL_error(L, "%s: %s must not be negative", who, name);
    return (uint64_t)v;
}

/* ---------------------------------------------------------------- compression options */

/* Refuses the keys of table t that are not in `known`. [-0, +0, e] */
static void opt_known_keys(lua_State *L, const char *who, int t, const char *opt, const char *const *known)
{
    lua_pushnil(L);
    while (lua_next(L, t) != 0) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
        int i = 0;
        while (k != NULL && known[i] != NULL && strcmp(known[i], k) != 0)
            i++;
        if (k == NULL || known[i] == NULL)
            luaL_error(L, "%s: %s has no option \"%s\"", who, opt, k ? k : luaL_typename(L, -2));
        lua_pop(L, 1);
    }
}

/* t[key], if present: an integer from lo to hi into *out. [-0, +0, e] */
static void opt_int_field(lua_State *L, const char *who, int t, const char *opt, const char *key, lua_Integer lo,
                          lua_Integer hi, lua_Integer *out)
{
    if (lua_getfield(L, t, key) != LUA_TNIL) {
        int isint = 0;
        lua_Integer v = lua_tointegerx(L, -1, &isint);
        if (lua_type(L, -1) != LUA_TNUMBER || !isint || v < lo || v > hi)
            luaL_error(L, "%s: %s.%s must be an integer from %I to %I", who, opt, key, lo, hi);
        *out = v;
    }
    lua_pop(L, 1);
}

/* zlib's options (Node's names) in table t. `window`: windowBits is taken (httpCompression), else
 * accepted and left alone (ws sets it from the negotiation). chunkSize is accepted and has no
 * effect: siolua sizes its buffers itself. [-0, +0, e] */
static void opt_zlib(lua_State *L, const char *who, int t, const char *opt, zip_params_t *z, int window)
{
    lua_Integer level = z->level, mem = z->mem_level, strategy = z->strategy, bits = z->window_bits, chunk = 0;
    opt_int_field(L, who, t, opt, "level", -1, 9, &level);
    opt_int_field(L, who, t, opt, "memLevel", 1, 9, &mem);
    opt_int_field(L, who, t, opt, "strategy", 0, 4, &strategy);
    opt_int_field(L, who, t, opt, "windowBits", 8, 15, &bits);
    opt_int_field(L, who, t, opt, "chunkSize", 64, INT32_MAX, &chunk);
    z->level = (int)level, z->mem_level = (int)mem, z->strategy = (int)strategy;
    if (window)
        z->window_bits = (int)bits;
}

/* t[key], if present: a boolean into *out (0 or 1). [-0, +0, e] */
static void opt_bool_field(lua_State *L, const char *who, int t, const char *opt, const char *key, int8_t *out)
{
    int type = lua_getfield(L, t, key);
    if (type != LUA_TNIL && type != LUA_TBOOLEAN)
        luaL_error(L, "%s: %s.%s must be a boolean", who, opt, key);
    if (type == LUA_TBOOLEAN)
        *out = (int8_t)lua_toboolean(L, -1);
    lua_pop(L, 1);
}

/* t[key], if present: a table, pushed, or the call raises; nil pushes nothing. 1 if pushed. */
static int opt_table_field(lua_State *L, const char *who, int t, const char *opt, const char *key)
{
    int type = lua_getfield(L, t, key);
    if (type == LUA_TNIL) {
        lua_pop(L, 1);
        return 0;
    }
    if (type != LUA_TTABLE)
        luaL_error(L, "%s: %s.%s must be a table", who, opt, key);
    return 1;
}

/* The start of an option that is a boolean or a table (a table turns it on): a boolean sets
 * *enabled; 1 when the value at t is a table to read further. `cli`: the command line decided
 * *enabled, which the script then leaves alone. [-0, +0, e] */
static int opt_on_off(lua_State *L, const char *who, int t, const char *opt, int *enabled, int cli)
{
    if (!lua_isboolean(L, t) && !lua_istable(L, t))
        luaL_error(L, "%s: %s must be a boolean or a table", who, opt);
    if (!cli)
        *enabled = lua_istable(L, t) || lua_toboolean(L, t);
    return lua_istable(L, t);
}

/* A window size option: true (or nil: unchanged) 0, false -1, or an integer from 8 to 15. */
static void opt_window_bits(lua_State *L, const char *who, int t, const char *key, int8_t *out)
{
    int type = lua_getfield(L, t, key), isint = 0;
    lua_Integer v = lua_tointegerx(L, -1, &isint);
    if (type == LUA_TBOOLEAN)
        *out = lua_toboolean(L, -1) ? 0 : -1;
    else if (type == LUA_TNUMBER && isint && v >= 8 && v <= 15)
        *out = (int8_t)v;
    else if (type != LUA_TNIL)
        luaL_error(L, "%s: perMessageDeflate.%s must be a boolean or an integer from 8 to 15", who, key);
    lua_pop(L, 1);
}

/* perMessageDeflate = true | false | { threshold, serverNoContextTakeover, clientNoContextTakeover,
 * serverMaxWindowBits, clientMaxWindowBits, zlibDeflateOptions, zlibInflateOptions,
 * concurrencyLimit } (ws's names; a table turns it on, as in the reference). `cli`: the command
 * line decided on or off. [-0, +0, e] */
static void opt_per_message_deflate(lua_State *L, const char *who, int idx, pmd_config_t *c, int cli)
{
    static const char *const known[] = {"threshold",           "serverNoContextTakeover", "clientNoContextTakeover",
                                        "serverMaxWindowBits", "clientMaxWindowBits",     "zlibDeflateOptions",
                                        "zlibInflateOptions",  "concurrencyLimit",        NULL};
    static const char *const deflate_known[] = {"level", "memLevel", "strategy", "windowBits", "chunkSize", NULL};
    static const char *const inflate_known[] = {"chunkSize", "windowBits", NULL};
    int t = lua_absindex(L, idx);
    lua_Integer threshold = (lua_Integer)c->threshold, limit = 10;
    zip_params_t ignored = ZIP_DEFAULTS;
    if (!opt_on_off(L, who, t, "perMessageDeflate", &c->enabled, cli))
        return;
    opt_known_keys(L, who, t, "perMessageDeflate", known);
    opt_int_field(L, who, t, "perMessageDeflate", "threshold", 0, INT32_MAX, &threshold);
    c->threshold = (size_t)threshold;
    opt_bool_field(L, who, t, "perMessageDeflate", "serverNoContextTakeover", &c->server_nct);
    opt_bool_field(L, who, t, "perMessageDeflate", "clientNoContextTakeover", &c->client_nct);
    opt_window_bits(L, who, t, "serverMaxWindowBits", &c->server_bits);
    opt_window_bits(L, who, t, "clientMaxWindowBits", &c->client_bits);
    if (opt_table_field(L, who, t, "perMessageDeflate", "zlibDeflateOptions")) {
        opt_known_keys(L, who, lua_gettop(L), "perMessageDeflate.zlibDeflateOptions", deflate_known);
        opt_zlib(L, who, lua_gettop(L), "perMessageDeflate.zlibDeflateOptions", &c->zlib, 0);
        lua_pop(L, 1);
    }
    if (opt_table_field(L, who, t, "perMessageDeflate", "zlibInflateOptions")) { /* nothing there changes inflating */
        opt_known_keys(L, who, lua_gettop(L), "perMessageDeflate.zlibInflateOptions", inflate_known);
        opt_zlib(L, who, lua_gettop(L), "perMessageDeflate.zlibInflateOptions", &ignored, 0);
        lua_pop(L, 1);
    }
    /* ws's zlib thread-pool limit: siolua compresses on its loop, one message at a time */
    opt_int_field(L, who, t, "perMessageDeflate", "concurrencyLimit", 1, INT32_MAX, &limit);
}

/* httpCompression = true | false | { threshold, level, memLevel, strategy, windowBits, chunkSize }.
 * As in the reference, a table replaces the default { threshold = 1024 } whole: without a
 * threshold, every answer is compressed. `cli`: --no-http-compression was given. [-0, +0, e] */
static void opt_http_compression(lua_State *L, const char *who, int idx, eio_http_compression_t *c, int cli)
{
    static const char *const known[] = {"threshold", "level", "memLevel", "strategy", "windowBits", "chunkSize", NULL};
    int t = lua_absindex(L, idx);
    lua_Integer threshold = 0;
    if (!opt_on_off(L, who, t, "httpCompression", &c->enabled, cli))
        return;
    opt_known_keys(L, who, t, "httpCompression", known);
    opt_int_field(L, who, t, "httpCompression", "threshold", 0, INT32_MAX, &threshold);
    c->threshold = (size_t)threshold;
    opt_zlib(L, who, t, "httpCompression", &c->zlib, 1);
}

/* cors = { origin = "..." | {...} | "*" | true, methods, allowedHeaders, credentials }, or just an
 * origin. */
static void set_cors(lua_State *L, eio_cors_t *c, int idx)
{
    idx = lua_absindex(L, idx);
    if (!lua_istable(L, idx)) {
        set_origins(L, c, idx);
        return;
    }
    lua_getfield(L, idx, "origin");
    set_origins(L, c, -1);
    lua_pop(L, 1);
    if (lua_getfield(L, idx, "methods") != LUA_TNIL) {
        free(c->methods);
        c->methods = join_list(L, -1);
    }
    lua_pop(L, 1);
    if (lua_getfield(L, idx, "allowedHeaders") != LUA_TNIL) {
        free(c->allowed_headers);
        c->allowed_headers = join_list(L, -1);
    }
    lua_pop(L, 1);
    lua_getfield(L, idx, "credentials");
    c->credentials = lua_toboolean(L, -1);
    lua_pop(L, 1);
}

unsigned lserver_eio_option(lua_State *L, const char *who, const char *k, eio_config_t *c, unsigned keep)
{
    static const struct {
        const char *name;
        unsigned bit;
    } keys[] = {{"pingInterval", CFG_PING_INTERVAL}, {"pingTimeout", CFG_PING_TIMEOUT},
                {"upgradeTimeout", CFG_UPGRADE_TIMEOUT}, {"maxHttpBufferSize", CFG_MAX_BUFFER},
                {"transports", CFG_TRANSPORTS},    {"allowUpgrades", CFG_ALLOW_UPGRADES},
                {"cors", CFG_CORS},                {"cookie", CFG_COOKIE},
                {"perMessageDeflate", CFG_PER_MESSAGE_DEFLATE}, {"httpCompression", CFG_HTTP_COMPRESSION},
                {"allowEIO3", CFG_ALLOW_EIO3}};
    unsigned bit = 0;
    int top = lua_gettop(L), t = 0;
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]) && bit == 0; i++)
        if (strcmp(k, keys[i].name) == 0)
            bit = keys[i].bit;
    switch (bit) {
    case CFG_PING_INTERVAL:
    case CFG_PING_TIMEOUT:
    case CFG_UPGRADE_TIMEOUT:
    case CFG_MAX_BUFFER: {
        uint64_t v = opt_ms(L, who, k); /* checked even when a flag wins */
        if (keep & bit)
            break;
        if (bit == CFG_PING_INTERVAL)
            c->ping_interval = v;
        else if (bit == CFG_PING_TIMEOUT)
            c->ping_timeout = v;
        else if (bit == CFG_UPGRADE_TIMEOUT)
            c->upgrade_timeout = v;
        else
            c->max_payload = (size_t)v;
        break;
    }
    case CFG_TRANSPORTS:
        luaL_checktype(L, top, LUA_TTABLE);
        for (lua_Integer i = 1; i <= (lua_Integer)lua_rawlen(L, top); i++) {
            lua_rawgeti(L, top, i);
            const char *name = luaL_checkstring(L, -1);
            if (strcmp(name, "polling") == 0)
                t |= EIO_T_POLLING;
            else if (strcmp(name, "websocket") == 0)
                t |= EIO_T_WEBSOCKET;
            else
                luaL_error(L, "%s: unknown transport \"%s\"", who, name);
            lua_pop(L, 1);
        }
        if (t == 0)
            luaL_error(L, "%s: transports must name at least one transport", who);
        if (!(keep & bit))
            c->transports = t;
        break;
    case CFG_ALLOW_UPGRADES:
        if (!(keep & bit))
            c->allow_upgrades = lua_toboolean(L, top);
        break;
    case CFG_CORS:
        if (!(keep & bit))
            set_cors(L, &c->cors, top);
        break;
    case CFG_COOKIE:
        if (!(keep & bit))
            set_cookie(L, who, &c->cookie, top);
        break;
    case CFG_PER_MESSAGE_DEFLATE: /* a flag decides on/off only: the parameters still apply */
        opt_per_message_deflate(L, who, top, &c->per_message_deflate, (keep & bit) != 0);
        break;
    case CFG_HTTP_COMPRESSION:
        opt_http_compression(L, who, top, &c->http_compression, (keep & bit) != 0);
        break;
    case CFG_ALLOW_EIO3:
        if (!lua_isboolean(L, top))
            luaL_error(L, "%s: allowEIO3 must be true or false, not a %s", who, luaL_typename(L, top));
        if (!(keep & bit))
            c->allow_eio3 = lua_toboolean(L, top);
        break;
    }
    return bit;
}

/* tls = { cert = "cert.pem", key = "key.pem" }: the files of https.createServer({ cert, key })
 * (paths, not their contents: SIGHUP reads them again). Ignored when --tls-cert or --tls-key is given. */
static void set_tls(lua_State *L, sl_config_t *cfg, int idx)
{
    const char *f[2] = {NULL, NULL};
    static const char *const names[2] = {"cert", "key"};
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
        if (strcmp(k, "cert") != 0 && strcmp(k, "key") != 0)
            luaL_error(L, "io.options: unknown tls option \"%s\" (cert and key are the PEM files)", k);
        lua_pop(L, 1);
    }
    for (int i = 0; i < 2; i++) {
        if (lua_getfield(L, idx, names[i]) != LUA_TSTRING || lua_rawlen(L, -1) == 0)
            luaL_error(L, "io.options: tls.%s must be the path of a PEM file", names[i]);
        f[i] = lua_tostring(L, -1); /* stays on the stack until used */
    }
    if (!(cfg->cli_set & CFG_TLS))
        sl_config_set_tls(cfg, f[0], f[1]);
    lua_pop(L, 2);
}

/* io.options{...}: the reference's option names. Command-line flags win (cfg->cli_set). */
static int n_options(lua_State *L)
{
    lhost_t *h = lhost_get(L);
    sl_config_t *cfg = &h->srv->cfg;
    lhost_selfcall(L, lua_upvalueindex(1));
    luaL_checktype(L, 1, LUA_TTABLE);
    /* A reloaded app: the server is listening, its options are set; only allowRequest (code, not
     * configuration) is taken from the new app. */
    int reloaded = h->srv->net.loop != NULL, ignored = 0;
    lua_pushnil(L);
    while (lua_next(L, 1) != 0) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
        if (reloaded && strcmp(k, "allowRequest") != 0) {
            ignored++;
            lua_pop(L, 1);
            continue;
        }
        if (lserver_eio_option(L, "io.options", k, &cfg->eio, cfg->cli_set) != 0) {
            /* an Engine.IO option, shared with siolua.engine{} */
        } else if (strcmp(k, "connectTimeout") == 0) {
            uint64_t v = opt_ms(L, "io.options", k);
            if (!(cfg->cli_set & CFG_CONNECT_TIMEOUT))
                cfg->sio.connect_timeout = v;
        } else if (strcmp(k, "parser") == 0) {
            int parser;
            if (lua_type(L, -1) != LUA_TSTRING || sio_parser_from_name(lua_tostring(L, -1), &parser) != 0)
                return luaL_error(L, "io.options: parser must be \"default\" or \"msgpack\" (socket.io-msgpack-parser's "
                                     "format), not %s",
                                  lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : luaL_typename(L, -1));
            if (!(cfg->cli_set & CFG_PARSER))
                cfg->sio.parser = parser;
        } else if (strcmp(k, "serveClient") == 0) {
            if (!(cfg->cli_set & CFG_SERVE_CLIENT))
                cfg->serve_client = lua_toboolean(L, -1);
        } else if (strcmp(k, "path") == 0) {
            const char *p = luaL_checkstring(L, -1);
            if (!(cfg->cli_set & CFG_PATH)) {
                size_t n = strlen(p);
                free(cfg->path);
                cfg->path = xmalloc(n + 3);
                snprintf(cfg->path, n + 3, "%s%s%s", p[0] == '/' ? "" : "/", p,
                         n > 0 && p[n - 1] == '/' ? "" : "/");
            }
        } else if (strcmp(k, "adapter") == 0) { /* the Redis adapter (adapter_redis.h) */
            adapter_redis_options(L, -1, &cfg->redis, (cfg->cli_set & CFG_REDIS) != 0);
        } else if (strcmp(k, "tls") == 0) {
            set_tls(L, cfg, lua_gettop(L));
        } else if (strcmp(k, "cleanupEmptyChildNamespaces") == 0) {
            cfg->sio.cleanup_empty_children = lua_toboolean(L, -1);
        } else if (strcmp(k, "allowRequest") == 0) {
            luaL_checktype(L, -1, LUA_TFUNCTION);
            lua_pushvalue(L, -1);
            lua_rawsetp(L, LUA_REGISTRYINDEX, &ALLOW_KEY);
        } else {
            return luaL_error(L, "io.options: unknown option \"%s\"", k);
        }
        lua_pop(L, 1);
    }
    if (ignored > 0)
        log_info("siolua: io.options is read at start-up: %d option(s) of the reloaded app ignored "
                 "(allowRequest excepted); restart siolua to apply them", ignored);
    lua_pushvalue(L, lua_upvalueindex(1));
    return 1;
}

/* ---------------------------------------------------------------- allowRequest */

typedef struct {
    eio_allow_t *a;
    const http_req_t *req;
    int ref;
    int failed; /* the function raised before it could suspend */
} allow_args_t;

static void release_allow(void *a) { eio_allow_unref(a); }

/* The callback given to allowRequest: callback(err, ok), once (later calls are ignored). Its
 * upvalue is the box holding the pending request. */
static int allow_cb(lua_State *L)
{
    eio_allow_t *a = lhost_box_take(L, lua_upvalueindex(1));
    if (a == NULL)
        return 0;
    /* err (a string) is the refusal's message; the answer may run the handshake's events here */
    eio_allow_done(a, lua_toboolean(L, 2), lua_type(L, 1) == LUA_TSTRING ? lua_tostring(L, 1) : NULL);
    eio_allow_unref(a);
    return 0;
}

static int allow_k(lua_State *L)
{
    allow_args_t *x = lua_touserdata(L, 1);
    lua_settop(L, 0);
    if (x->ref != LUA_NOREF)
        lua_rawgeti(L, LUA_REGISTRYINDEX, x->ref);
    else
        lua_rawgetp(L, LUA_REGISTRYINDEX, &ALLOW_KEY);
    lhost_push_request(L, x->req);
    lhost_box_push(L, x->a, release_allow);
    eio_allow_ref(x->a); /* the box's */
    lua_pushcclosure(L, allow_cb, 1);
    x->failed = lhost_call(L, 2, "allowRequest") != 0;
    return 0;
}

void lserver_allow_request(lhost_t *h, int ref, eio_allow_t *a, const http_req_t *req)
{
    allow_args_t x = {a, req, ref, 0};
    lua_State *L = lhost_state(h);
    int has;
    if (ref == LUA_NOREF) {
        lua_rawgetp(L, LUA_REGISTRYINDEX, &ALLOW_KEY);
        has = lua_isfunction(L, -1);
        lua_pop(L, 1);
        if (!has) {
            eio_allow_done(a, 1, NULL);
            return;
        }
    }
    if (lhost_protect(h, allow_k, &x, "allowRequest") != 0 || x.failed)
        eio_allow_done(a, 0, NULL); /* it raised (logged) without answering: refused */
}

void lhost_allow_request(eio_allow_t *a, const http_req_t *req, void *ud)
{
    lserver_allow_request(ud, LUA_NOREF, a, req);
}

/* ---------------------------------------------------------------- metatable */

static const char PROPS_KEY = 'P';   /* registry: the prelude's namespace properties */
static const char METHODS_KEY = 'M'; /* registry: the prelude's namespace methods */

static const luaL_Reg io_methods[] = {{"of", n_of}, {"options", n_options}, {"close", n_close}, {NULL, NULL}};

static int nsp_index(lua_State *L)
{
    const char *k = lua_tostring(L, 2);
    int is_io;
    if (k == NULL)
        return 0;
    if (lhost_prelude_member(L, 1, &PROPS_KEY, &METHODS_KEY, k))
        return 1;
    lua_getglobal(L, "io");
    is_io = lua_rawequal(L, 1, -1);
    lua_pop(L, 1);
    if (!is_io)
        return 0;
    for (const luaL_Reg *m = io_methods; m->name; m++)
        if (strcmp(k, m->name) == 0) {
            lua_pushvalue(L, 1);
            lua_pushcclosure(L, m->func, 1);
            return 1;
        }
    /* Lua's io library */
    lua_rawgetp(L, LUA_REGISTRYINDEX, &LUAIO_KEY);
    lua_getfield(L, -1, k);
    return 1;
}

void lserver_bind_prelude(lua_State *L)
{
    lhost_bind_prelude_members(L, &PROPS_KEY, "_nsp_props", &METHODS_KEY, "_nsp_methods");
}

static const luaL_Reg core_funcs[] = {{"broadcast", c_broadcast}, {"select", c_select},
                                      {"mark_child", c_mark_child}, {"resolving", c_resolving},
                                      {"resolved", c_resolved}, {NULL, NULL}};

void lserver_open(lua_State *L)
{
    lhost_t *h = lhost_get(L);
    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &STATE_KEY);
    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &OBJS_KEY);
    lua_getglobal(L, "io");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &LUAIO_KEY);

    luaL_newmetatable(L, NSP_MT);
    lua_pushcfunction(L, nsp_index);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &PROPS_KEY);
    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &METHODS_KEY);

    lua_getglobal(L, "siolua");
    lua_newtable(L);
    for (int i = 0; lsocket_reserved_names[i]; i++) { /* for the prelude's check_event */
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, lsocket_reserved_names[i]);
    }
    lua_setfield(L, -2, "_reserved");
    lua_getfield(L, -1, "_core");
    luaL_setfuncs(L, core_funcs, 0);
    lua_pop(L, 2);

    lserver_push_nsp(L, h->srv->sio.nsps); /* "/" */
    lua_setglobal(L, "io");
}
