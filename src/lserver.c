/* lserver: the global `io` (the server and its main namespace "/") and namespace objects.
 * A namespace object is a table with metatable "siolua.namespace"; its private state (the C
 * namespace, its listeners) lives in a registry table keyed by the object. For `io`, keys that are
 * not server methods fall back to Lua's own io library, so io.open, io.write, io.lines still work. */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

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
    lua_createtable(L, 0, 2);
    lua_pushlightuserdata(L, nsp);
    lua_setfield(L, -2, "ptr");
    lua_newtable(L);
    lua_setfield(L, -2, "events");
    lua_rawset(L, -3);
    lua_pop(L, 1);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, nsp->name);
    lua_remove(L, -2);
}

void lserver_emit_local(lua_State *L, sio_nsp_t *nsp, const char *event)
{
    int val = lua_gettop(L);
    lua_Integer n;
    char what[96];
    lserver_push_nsp(L, nsp);
    push_state(L, -1);
    lua_getfield(L, -1, "events");
    if (lua_getfield(L, -1, event) != LUA_TTABLE) {
        lua_settop(L, val - 1);
        return;
    }
    n = (lua_Integer)lua_rawlen(L, -1);
    snprintf(what, sizeof(what), "\"%s\" handler of namespace %s", event, nsp->name);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        lua_pushvalue(L, val);
        lhost_call(L, 1, what);
    }
    lua_settop(L, val - 1);
}

/* ---------------------------------------------------------------- namespace methods */

/* on(event, fn): "connection" (alias "connect") listeners. */
static int n_on(lua_State *L)
{
    const char *ev;
    lhost_selfcall(L, lua_upvalueindex(1));
    ev = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    if (strcmp(ev, "connect") == 0)
        ev = "connection";
    push_state(L, lua_upvalueindex(1));
    lua_getfield(L, -1, "events");
    if (lua_getfield(L, -1, ev) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, ev);
    }
    lua_pushvalue(L, 2);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    lua_pushvalue(L, lua_upvalueindex(1));
    return 1;
}

/* emit(event, ...): to every socket of the namespace. */
static int n_emit(lua_State *L)
{
    sio_nsp_t *nsp = check_nsp(L, lua_upvalueindex(1));
    const char *ev;
    rbuf_t *att[MAX_ATT], *pkt;
    int natt;
    lhost_selfcall(L, lua_upvalueindex(1));
    ev = luaL_checkstring(L, 1);
    lua_getglobal(L, "siolua");
    lua_getfield(L, -1, "_reserved");
    lua_getfield(L, -1, ev);
    if (lua_toboolean(L, -1))
        return luaL_error(L, "\"%s\" is a reserved event name", ev);
    lua_pop(L, 3);
    if (lua_gettop(L) >= 2 && lua_isfunction(L, -1))
        return luaL_error(L, "acknowledgements are not supported when broadcasting");
    pkt = lsocket_encode(L, 1, nsp->name, SIO_EVENT, -1, att, &natt);
    sio_broadcast(nsp, NULL, pkt, att, (size_t)natt);
    rbuf_unref(pkt);
    for (int i = 0; i < natt; i++)
        rbuf_unref(att[i]);
    lua_pushboolean(L, 1);
    return 1;
}

/* of(name): the namespace object, created on first use. */
static int n_of(lua_State *L)
{
    lhost_t *h = lhost_get(L);
    size_t len;
    const char *name;
    lhost_selfcall(L, lua_upvalueindex(1));
    name = luaL_checklstring(L, 1, &len);
    if (len == 0 || name[0] != '/')
        lua_pushfstring(L, "/%s", name), name = lua_tolstring(L, -1, &len);
    if (memchr(name, ',', len) != NULL || len > h->srv->cfg.sio.limits.max_nsp)
        return luaL_error(L, "invalid namespace name \"%s\"", name);
    lserver_push_nsp(L, sio_nsp_create(&h->srv->sio, name, len));
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

static uint64_t opt_ms(lua_State *L, const char *name)
{
    lua_Integer v;
    if (!lua_isinteger(L, -1) && !(lua_isnumber(L, -1) && (lua_Number)(lua_Integer)lua_tonumber(L, -1) == lua_tonumber(L, -1)))
        luaL_error(L, "io.options: %s must be an integer", name);
    v = (lua_Integer)lua_tonumber(L, -1);
    if (v < 0)
        luaL_error(L, "io.options: %s must not be negative", name);
    return (uint64_t)v;
}

/* io.options{...}: the reference's option names. Command-line flags win (cfg->cli_set). */
static int n_options(lua_State *L)
{
    lhost_t *h = lhost_get(L);
    sl_config_t *cfg = &h->srv->cfg;
    lhost_selfcall(L, lua_upvalueindex(1));
    luaL_checktype(L, 1, LUA_TTABLE);
    if (h->srv->net.loop != NULL)
        return luaL_error(L, "io.options must be called while app.lua loads (the server is listening already)");
    lua_pushnil(L);
    while (lua_next(L, 1) != 0) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
        if (strcmp(k, "pingInterval") == 0) {
            uint64_t v = opt_ms(L, k);
            if (!(cfg->cli_set & CFG_PING_INTERVAL))
                cfg->eio.ping_interval = v;
        } else if (strcmp(k, "pingTimeout") == 0) {
            uint64_t v = opt_ms(L, k);
            if (!(cfg->cli_set & CFG_PING_TIMEOUT))
                cfg->eio.ping_timeout = v;
        } else if (strcmp(k, "upgradeTimeout") == 0) {
            uint64_t v = opt_ms(L, k);
            if (!(cfg->cli_set & CFG_UPGRADE_TIMEOUT))
                cfg->eio.upgrade_timeout = v;
        } else if (strcmp(k, "connectTimeout") == 0) {
            uint64_t v = opt_ms(L, k);
            if (!(cfg->cli_set & CFG_CONNECT_TIMEOUT))
                cfg->sio.connect_timeout = v;
        } else if (strcmp(k, "maxHttpBufferSize") == 0) {
            uint64_t v = opt_ms(L, k);
            if (!(cfg->cli_set & CFG_MAX_BUFFER))
                cfg->eio.max_payload = cfg->http.max_body = (size_t)v;
        } else if (strcmp(k, "transports") == 0) {
            int t = 0;
            luaL_checktype(L, -1, LUA_TTABLE);
            for (lua_Integer i = 1; i <= (lua_Integer)lua_rawlen(L, -1); i++) {
                lua_rawgeti(L, -1, i);
                const char *name = luaL_checkstring(L, -1);
                if (strcmp(name, "polling") == 0)
                    t |= EIO_T_POLLING;
                else if (strcmp(name, "websocket") == 0)
                    t |= EIO_T_WEBSOCKET;
                else
                    return luaL_error(L, "io.options: unknown transport \"%s\"", name);
                lua_pop(L, 1);
            }
            if (t == 0)
                return luaL_error(L, "io.options: transports must name at least one transport");
            if (!(cfg->cli_set & CFG_TRANSPORTS))
                cfg->eio.transports = t;
        } else if (strcmp(k, "allowUpgrades") == 0) {
            if (!(cfg->cli_set & CFG_ALLOW_UPGRADES))
                cfg->eio.allow_upgrades = lua_toboolean(L, -1);
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
        } else if (strcmp(k, "cors") == 0) {
            if (!(cfg->cli_set & CFG_CORS)) {
                eio_cors_t *c = &cfg->eio.cors;
                if (lua_istable(L, -1)) {
                    int t = lua_gettop(L);
                    lua_getfield(L, t, "origin");
                    set_origins(L, c, -1);
                    lua_pop(L, 1);
                    if (lua_getfield(L, t, "methods") != LUA_TNIL) {
                        free(c->methods);
                        c->methods = join_list(L, -1);
                    }
                    lua_pop(L, 1);
                    if (lua_getfield(L, t, "allowedHeaders") != LUA_TNIL) {
                        free(c->allowed_headers);
                        c->allowed_headers = join_list(L, -1);
                    }
                    lua_pop(L, 1);
                    lua_getfield(L, t, "credentials");
                    c->credentials = lua_toboolean(L, -1);
                    lua_pop(L, 1);
                } else {
                    set_origins(L, c, -1);
                }
            }
        } else if (strcmp(k, "allowRequest") == 0) {
            luaL_checktype(L, -1, LUA_TFUNCTION);
            lua_pushvalue(L, -1);
            lua_rawsetp(L, LUA_REGISTRYINDEX, &ALLOW_KEY);
        } else {
            return luaL_error(L, "io.options: unknown option \"%s\"", k);
        }
        lua_pop(L, 1);
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    return 1;
}

/* ---------------------------------------------------------------- allowRequest */

typedef struct {
    const http_req_t *req;
    int called, ok;
    char message[128];
} allow_args_t;

static int allow_cb(lua_State *L)
{
    allow_args_t *a = lua_touserdata(L, lua_upvalueindex(1));
    if (a == NULL || a->called)
        return 0;
    a->called = 1;
    a->ok = lua_toboolean(L, 2);
    if (lua_type(L, 1) == LUA_TSTRING)
        snprintf(a->message, sizeof(a->message), "%s", lua_tostring(L, 1));
    return 0;
}

static int allow_k(lua_State *L)
{
    allow_args_t *a = lua_touserdata(L, 1);
    const http_req_t *req = a->req;
    lua_settop(L, 0);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &ALLOW_KEY);
    lua_createtable(L, 0, 4);
    lua_pushstring(L, req->method == HTTP_M_GET ? "GET" : req->method == HTTP_M_POST ? "POST" : "OTHER");
    lua_setfield(L, -2, "method");
    lua_pushlstring(L, req->url.ptr, req->url.len);
    lua_setfield(L, -2, "url");
    lua_pushstring(L, http_peer(req));
    lua_setfield(L, -2, "address");
    lua_createtable(L, 0, (int)req->nheaders);
    for (size_t i = 0; i < req->nheaders; i++) {
        luaL_Buffer b;
        char *p = luaL_buffinitsize(L, &b, req->names[i].len);
        for (size_t j = 0; j < req->names[i].len; j++) {
            char c = req->names[i].ptr[j];
            p[j] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
        }
        luaL_pushresultsize(&b, req->names[i].len);
        lua_pushlstring(L, req->values[i].ptr, req->values[i].len);
        lua_rawset(L, -3);
    }
    lua_setfield(L, -2, "headers");
    lua_pushlightuserdata(L, a);
    lua_pushcclosure(L, allow_cb, 1);
    lua_pushvalue(L, -1);
    lua_insert(L, 1); /* keep the callback to disarm it after the call */
    lua_call(L, 2, 0);
    /* The callback must run before allowRequest returns: disarm it (its upvalue points to our
     * stack frame). */
    lua_pushnil(L);
    lua_setupvalue(L, 1, 1);
    return 0;
}

int lhost_allow_request(const http_req_t *req, const char **message, void *ud)
{
    lhost_t *h = ud;
    allow_args_t a = {.req = req};
    lua_rawgetp(h->L, LUA_REGISTRYINDEX, &ALLOW_KEY);
    int has = lua_isfunction(h->L, -1);
    lua_pop(h->L, 1);
    if (!has)
        return 1;
    lua_pushcfunction(h->L, allow_k);
    lua_pushlightuserdata(h->L, &a);
    if (lhost_call(h->L, 1, "allowRequest") != 0)
        return 0;
    if (!a.called) {
        log_warn("allowRequest returned without calling its callback: the request is refused");
        return 0;
    }
    if (!a.ok && a.message[0] != '\0') {
        memcpy(h->allow_msg, a.message, sizeof(h->allow_msg)); /* read by eio right away */
        *message = h->allow_msg;
    }
    return a.ok;
}

/* ---------------------------------------------------------------- metatable */

static const luaL_Reg nsp_methods[] = {{"on", n_on}, {"emit", n_emit}, {NULL, NULL}};
static const luaL_Reg io_methods[] = {{"of", n_of}, {"options", n_options}, {"close", n_close}, {NULL, NULL}};

static int nsp_index(lua_State *L)
{
    const char *k = lua_tostring(L, 2);
    int is_io;
    if (k == NULL)
        return 0;
    for (const luaL_Reg *m = nsp_methods; m->name; m++)
        if (strcmp(k, m->name) == 0) {
            lua_pushvalue(L, 1);
            lua_pushcclosure(L, m->func, 1);
            return 1;
        }
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
    if (strcmp(k, "sockets") == 0) { /* io.sockets is the main namespace, as in the reference */
        lua_pushvalue(L, 1);
        return 1;
    }
    /* Lua's io library */
    lua_rawgetp(L, LUA_REGISTRYINDEX, &LUAIO_KEY);
    lua_getfield(L, -1, k);
    return 1;
}

void lserver_open(lua_State *L)
{
    lhost_t *h = lhost_get(L);
    static const char *const reserved[] = {"connect", "connect_error", "disconnect", "disconnecting",
                                           "newListener", "removeListener", NULL};
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

    lua_getglobal(L, "siolua");
    lua_newtable(L);
    for (int i = 0; reserved[i]; i++) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, reserved[i]);
    }
    lua_setfield(L, -2, "_reserved");
    lua_pop(L, 1);

    lserver_push_nsp(L, h->srv->sio.nsps); /* "/" */
    lua_setglobal(L, "io");
}
