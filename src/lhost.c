/* lhost: see lhost.h. Every entry from C into Lua goes through a protected call here: sio's
 * callbacks push a C "trampoline" function plus a pointer to their arguments and lhost_call()
 * it, so nothing that raises ever runs outside lua_pcall. */
#include "lhost.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>

#include "embed.h"
#include "log.h"
#include "lvalue.h"

static const char LHOST_KEY = 'h'; /* registry key (its address) of the lhost_t pointer */

int luaopen_cjson(lua_State *L); /* from Debian's lua-cjson (liblua5.4-cjson), no header */

/* ---------------------------------------------------------------- protected calls */

lhost_t *lhost_get(lua_State *L)
{
    lhost_t *h;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &LHOST_KEY);
    h = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return h;
}

/* Message handler: the error plus a traceback (lua.c's msghandler). */
static int traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
            return 1;
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

int lhost_call(lua_State *L, int nargs, const char *what)
{
    int base = lua_gettop(L) - nargs; /* the function's index */
    int rc;
    lua_pushcfunction(L, traceback);
    lua_insert(L, base);
    rc = lua_pcall(L, nargs, 0, base);
    if (rc != LUA_OK) {
        log_error("error in %s: %s", what, lua_tostring(L, -1) ? lua_tostring(L, -1) : "(no message)");
        lua_pop(L, 1);
    }
    lua_remove(L, base);
    return rc == LUA_OK ? 0 : -1;
}

void lhost_selfcall(lua_State *L, int self_idx)
{
    if (lua_gettop(L) >= 1 && lua_rawequal(L, 1, self_idx))
        lua_remove(L, 1);
}

/* ---------------------------------------------------------------- print and the VM */

/* print(...): one log line, values tostring()'d and separated by tabs, like Lua's print. */
static int l_print(lua_State *L)
{
    int n = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
        size_t len;
        const char *s = luaL_tolstring(L, i, &len);
        if (i > 1)
            luaL_addchar(&b, '\t');
        luaL_addvalue(&b);
        (void)s;
        (void)len;
    }
    luaL_pushresult(&b);
    log_info("%s", lua_tostring(L, -1));
    return 0;
}

/* [-0, +0, e] Runs in protected mode from lhost_new. */
static int open_all(lua_State *L)
{
    lhost_t *h = lua_touserdata(L, 1);
    luaL_openlibs(L);
    lua_pushlightuserdata(L, h);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &LHOST_KEY);
    lua_pushcfunction(L, l_print);
    lua_setglobal(L, "print");

    /* siolua module: cjson instance + value helpers; also package.loaded.siolua */
    luaL_requiref(L, "cjson", luaopen_cjson, 0);
    lua_pop(L, 1);
    lua_newtable(L);
    lvalue_open(L);
    lua_pushvalue(L, -1);
    lua_setglobal(L, "siolua");
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "siolua");
    lua_pop(L, 2);

    lsocket_open(L);
    lserver_open(L);

    for (const embed_file_t *f = embed_prelude; f->name != NULL; f++) {
        if (luaL_loadbufferx(L, f->data, f->len, f->name, "t") != LUA_OK)
            return lua_error(L);
        lua_call(L, 0, 0);
    }
    return 0;
}

lhost_t *lhost_new(sl_server_t *srv)
{
    lhost_t *h = xcalloc(1, sizeof(*h));
    h->srv = srv;
    h->L = luaL_newstate();
    if (h->L == NULL) {
        free(h);
        return NULL;
    }
    lua_pushcfunction(h->L, open_all);
    lua_pushlightuserdata(h->L, h);
    if (lhost_call(h->L, 1, "siolua's Lua set-up") != 0) {
        lua_close(h->L);
        free(h);
        return NULL;
    }
    return h;
}

void lhost_free(lhost_t *h)
{
    if (h == NULL)
        return;
    lua_close(h->L);
    free(h);
}

int lhost_run_app(lhost_t *h, const char *path)
{
    lua_State *L = h->L;
    const char *slash = strrchr(path, '/');
    /* require() finds the app's own modules next to it */
    lua_getglobal(L, "package");
    if (slash != NULL)
        lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;", lua_pushlstring(L, path, (size_t)(slash - path)),
                        lua_tostring(L, -1));
    else
        lua_pushstring(L, "./?.lua;./?/init.lua;");
    lua_getfield(L, -3, "path");
    lua_concat(L, 2);
    lua_setfield(L, -3, "path");
    lua_pop(L, slash != NULL ? 2 : 1);

    /* source only ("t"): bytecode is never loaded */
    if (luaL_loadfilex(L, path, "t") != LUA_OK) {
        log_error("cannot load %s", lua_tostring(L, -1));
        lua_pop(L, 1);
        return -1;
    }
    return lhost_call(L, 0, path);
}

/* ---------------------------------------------------------------- sio handler */

typedef struct {
    sio_socket_t *s;
    const sio_packet_t *p;
    rbuf_t *const *att;
    size_t natt;
    slice_t auth;
    const char *reason;
    int rc;
} call_args_t;

/* CONNECT: make the handle, accept, run the namespace's "connection" handlers. */
static int connect_k(lua_State *L)
{
    call_args_t *a = lua_touserdata(L, 1);
    sio_socket_t *s = a->s;
    lua_settop(L, 0);
    lsocket_push_new(L, s); /* 1: the handle */
    /* handshake.auth: the CONNECT payload, an object or nothing */
    if (a->auth.len > 0)
        lvalue_push_json(L, a->auth.ptr, a->auth.len, NULL, 0, lhost_get(L)->srv->cfg.max_json_depth);
    else
        lua_newtable(L);
    lua_getiuservalue(L, 1, 1);
    lua_insert(L, -2);
    lua_setfield(L, -2, "auth");
    lua_pop(L, 1);
    sio_socket_accept(s);
    lua_pushvalue(L, 1);
    lserver_emit_local(L, s->nsp, "connection");
    return 0;
}

static void h_connect(sio_socket_t *s, slice_t auth, void *ud)
{
    lhost_t *h = ud;
    call_args_t a = {.s = s, .auth = auth};
    sio_socket_ref(s);
    lua_pushcfunction(h->L, connect_k);
    lua_pushlightuserdata(h->L, &a);
    if (lhost_call(h->L, 1, "connect") != 0 && s->state == SIO_S_CONNECTING) {
        static const char err[] = "{\"message\":\"Invalid payload\"}";
        sio_socket_refuse(s, err, sizeof(err) - 1);
    }
    sio_socket_unref(s);
}

static int packet_k(lua_State *L)
{
    call_args_t *a = lua_touserdata(L, 1);
    lua_settop(L, 0);
    a->rc = lsocket_on_packet(L, a->s, a->p, a->att, a->natt);
    return 0;
}

static int h_packet(sio_socket_t *s, const sio_packet_t *p, rbuf_t *const *att, size_t natt, void *ud)
{
    lhost_t *h = ud;
    call_args_t a = {.s = s, .p = p, .att = att, .natt = natt, .rc = -1};
    char what[96];
    snprintf(what, sizeof(what), "packet from socket %s", s->id);
    lua_pushcfunction(h->L, packet_k);
    lua_pushlightuserdata(h->L, &a);
    if (lhost_call(h->L, 1, what) != 0)
        return -1;
    return a.rc;
}

static int disconnect_k(lua_State *L)
{
    call_args_t *a = lua_touserdata(L, 1);
    lua_settop(L, 0);
    lsocket_on_disconnect(L, a->s, a->reason);
    return 0;
}

static void h_disconnect(sio_socket_t *s, const char *reason, void *ud)
{
    lhost_t *h = ud;
    call_args_t a = {.s = s, .reason = reason};
    lua_pushcfunction(h->L, disconnect_k);
    lua_pushlightuserdata(h->L, &a);
    if (lhost_call(h->L, 1, "disconnect") != 0) {
        /* whatever failed, the handle must not outlive the socket */
        lsocket_release(h->L, s);
    }
}

static void h_release(sio_socket_t *s, void *ud)
{
    lhost_t *h = ud;
    lsocket_release(h->L, s);
}

const sio_handler_t lhost_sio_handler = {h_connect, h_packet, h_disconnect, h_release};
