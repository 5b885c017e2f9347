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

/* io.options{...}: the reference's option names (options.h). Command-line flags win. */
static int n_options(lua_State *L)
{
    lhost_t *h = lhost_get(L);
    int ignored = 0;
    lhost_selfcall(L, lua_upvalueindex(1));
    /* A reloaded app: the server is listening, its options are set; only allowRequest (code, not
     * configuration) is taken from the new app. */
    options_lua(L, 1, &h->srv->cfg, h->srv->net.loop != NULL, &ignored);
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
        options_push_allow_request(L);
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
        options_push_allow_request(L);
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
