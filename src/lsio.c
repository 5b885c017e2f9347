/* lsio: see lsio.h. */
#include "lsio.h"

#include <lauxlib.h>
#include <string.h>

#include "lenv.h"
#include "lnsp.h"
#include "lreq.h"
#include "lsocket.h"
#include "lvalue.h"
#include "log.h"

#define MAX_ATT LSOCKET_MAX_ATT

/* ---------------------------------------------------------------- origins */

static void origin_ref(void *s) { sio_socket_ref(s); }
static void origin_unref(void *s) { sio_socket_unref(s); }

/* A socket whose handlers are aborted LSIO_ABORTS_MAX times within LSIO_ABORTS_WINDOW seconds is
 * disconnected ("server namespace disconnect", as by socket.disconnect(true)) and its preempted
 * handlers are dropped. */
static void origin_aborted(lvm_t *vm, void *origin)
{
    sio_socket_t *s = origin;
    uint32_t now = (uint32_t)(uv_now(((lenv_t *)vm->ud)->loop) / 1000);
    if (s->state != SIO_S_CONNECTED)
        return;
    if (s->aborts == 0 || now - s->aborts_since > LSIO_ABORTS_WINDOW) {
        s->aborts = 0;
        s->aborts_since = now;
    }
    if (++s->aborts < LSIO_ABORTS_MAX)
        return;
    log_with(LOG_WARN, LOG_FIELDS(LOG_S("sid", s->id), LOG_S("nsp", s->nsp->name), LOG_I("aborts", s->aborts)),
             "siolua: socket %s: %d handler calls aborted within %d s (--handler-timeout): disconnecting it", s->id,
             (int)s->aborts, LSIO_ABORTS_WINDOW);
    sio_socket_ref(s);
    lvm_cancel(vm, s);
    sio_socket_disconnect(s, 1);
    sio_socket_unref(s);
}

static const char *origin_describe(void *origin, const char **nsp)
{
    sio_socket_t *s = origin;
    *nsp = s->nsp->name;
    return s->id;
}

const lvm_origin_ops_t lsio_origin_ops = {origin_ref, origin_unref, origin_aborted, origin_describe};

/* ---------------------------------------------------------------- dynamic namespaces */

/* core.resolving(token): true while the CONNECT of token (hooks.resolve's) waits for an answer. */
int lsio_core_resolving(lua_State *L)
{
    sio_resolve_t *r = lvm_box_get(L, 1);
    lua_pushboolean(L, r != NULL && sio_resolve_pending(r));
    return 1;
}

/* core.resolved(token, nsp | nil): answers the CONNECT of token (once; later answers are ignored):
 * the client joins nsp, or gets "Invalid namespace". */
int lsio_core_resolved(lua_State *L)
{
    sio_nsp_t *nsp = lua_isnoneornil(L, 2) ? NULL : lnsp_check(L, 2);
    sio_resolve_t *r = lvm_box_take(L, 1);
    if (r == NULL)
        return 0;
    sio_resolve_done(r, nsp);
    sio_resolve_unref(r);
    return 0;
}

/* ---------------------------------------------------------------- fan-out */

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
    sel->n = sio_select(lenv_get(L)->sio, nsp, &t, &sel->v);
    lua_replace(L, -3); /* drop the two slice arrays, keep the box */
    lua_pop(L, 1);
    return sel;
}

/* ---------------------------------------------------------------- connection state recovery */

/* Stores pkt (its offset already its last argument) for the sessions waiting for their client,
 * with the rooms and except at stack[rooms_idx], stack[except_idx] (checked already: this cannot
 * raise). [-0, +0, -] */
static void store_packet(lua_State *L, rstore_t *st, sio_nsp_t *nsp, int rooms_idx, int except_idx, rbuf_t *pkt,
                         rbuf_t **att, int natt)
{
    slice_t *rooms, *except;
    size_t nrooms = rooms_arg(L, rooms_idx, &rooms), nexcept = rooms_arg(L, except_idx, &except);
    rstore_add(st, lenv_wall_ms(lenv_get(L)), nsp->name, rooms, nrooms, except, nexcept, pkt, att, (size_t)natt);
    lua_pop(L, 2);
}

/* core.persist(nsp, sid, pid, rooms, data_json): keeps the session of a socket that left (the
 * in-memory adapter's persistSession). */
int lsio_core_persist(lua_State *L)
{
    lenv_t *env = lenv_get(L);
    sio_nsp_t *nsp = lnsp_check(L, 1);
    slice_t sid, pid, data, *rooms;
    sid.ptr = luaL_checklstring(L, 2, &sid.len);
    pid.ptr = luaL_checklstring(L, 3, &pid.len);
    data.ptr = luaL_checklstring(L, 5, &data.len);
    size_t nrooms = rooms_arg(L, 4, &rooms);
    if (env->rstore != NULL)
        rstore_persist(env->rstore, lenv_wall_ms(env), nsp->name, sid, pid, rooms, nrooms, data);
    return 0;
}

#define RESTORE_MT "siolua.restore"

static int restore_gc(lua_State *L)
{
    rstore_session_free(luaL_checkudata(L, 1, RESTORE_MT));
    return 0;
}

rstore_session_t *lsio_restore_check(lua_State *L, int idx)
{
    return luaL_testudata(L, idx, RESTORE_MT);
}

/* core.restore_session(nsp, pid, offset): the session pid takes from the store when its client's
 * offset is still held, as {sid, pid, rooms, data (JSON text), missed (what core.accept replays)};
 * nil otherwise (the in-memory adapter's restoreSession). */
int lsio_core_restore_session(lua_State *L)
{
    lenv_t *env = lenv_get(L);
    sio_nsp_t *nsp = lnsp_check(L, 1);
    slice_t pid, offset;
    pid.ptr = luaL_checklstring(L, 2, &pid.len);
    offset.ptr = luaL_checklstring(L, 3, &offset.len);
    if (env->rstore == NULL)
        return 0;
    rstore_session_t *box = lua_newuserdatauv(L, sizeof(*box), 0);
    memset(box, 0, sizeof(*box));
    if (luaL_newmetatable(L, RESTORE_MT)) {
        lua_pushcfunction(L, restore_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    if (rstore_take(env->rstore, lenv_wall_ms(env), nsp->name, pid, offset, box) != 0)
        return 0;
    lua_createtable(L, 0, 5);
    lua_pushstring(L, box->sid);
    lua_setfield(L, -2, "sid");
    lua_pushstring(L, box->pid);
    lua_setfield(L, -2, "pid");
    lua_createtable(L, (int)box->nrooms, 0);
    for (size_t i = 0; i < box->nrooms; i++) {
        lua_pushstring(L, box->rooms[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "rooms");
    lua_pushlstring(L, box->data, box->datalen);
    lua_setfield(L, -2, "data");
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "missed");
    return 1;
}

/* core.recovery(): nil when connection state recovery is off, else its options {skipMiddlewares}. */
int lsio_core_recovery(lua_State *L)
{
    lenv_t *env = lenv_get(L);
    if (env->rstore == NULL)
        return 0;
    lua_createtable(L, 0, 1);
    lua_pushboolean(L, env->cfg->recovery.skip_middlewares);
    lua_setfield(L, -2, "skipMiddlewares");
    return 1;
}

/* ---------------------------------------------------------------- fan-out */

/* core.broadcast(nsp, rooms|nil, except|nil, volatile, ack|nil, ev, ...): sends one encoded
 * packet to the selected sockets. With ack, every recipient's acks get it under one id. Returns
 * how many sockets it was sent to. With connection state recovery, a packet without ack that is
 * not volatile gets its offset as last argument and is stored (once, whatever the recipients). */
int lsio_core_broadcast(lua_State *L)
{
    sio_nsp_t *nsp = lnsp_check(L, 1);
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
        uint64_t now = uv_hrtime();
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
            lsocket_ack_store(L, -1, 5, id, now);
            lua_pop(L, 3);
        }
    }
    /* onAnyOutgoing listeners of the recipients (flagged, so others cost nothing here) */
    for (size_t i = 0; i < sel->n; i++) {
        sio_socket_t *s = sel->v[i];
        if (!(s->upper_flags & LSOCKET_F_OUTGOING) || s->state != SIO_S_CONNECTED)
            continue;
        lvm_push_hook(L, "outgoing");
        lsocket_push(L, s);
        for (int a = 6; a < selidx; a++)
            lua_pushvalue(L, a);
        lua_call(L, selidx - 6 + 1, 0);
    }
    rstore_t *st = lenv_get(L)->rstore;
    int store = st != NULL && !with_ack && !volatile_;
    lua_pushvalue(L, 6);
    for (int i = 7; i < selidx; i++)
        lua_pushvalue(L, i);
    if (store) {
        char offset[RSTORE_OFFSET_MAX];
        rstore_next_offset(st, offset);
        lua_pushstring(L, offset);
    }
    pkt = lsocket_encode(L, selidx + 1, nsp->name, SIO_EVENT, id, att, &natt);
    if (store)
        store_packet(L, st, nsp, 2, 3, pkt, att, natt);
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
int lsio_core_select(lua_State *L)
{
    sio_nsp_t *nsp = lnsp_check(L, 1);
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
/* ---------------------------------------------------------------- the handler sio calls */

typedef struct {
    sio_socket_t *s;
    const sio_packet_t *p;
    rbuf_t *const *att;
    size_t natt;
    slice_t auth;
    slice_t name;
    sio_nsp_t *nsp;
    sio_resolve_t *resolve;
    const char *reason;
    int rc;
} call_args_t;

/* Pushes a CONNECT's auth (not empty): a v2 client's namespace query, or the payload in the
 * parser's format (raises if it is invalid). [-0, +1, e] */
static void push_auth(lua_State *L, slice_t auth, int protocol)
{
    const sl_config_t *cfg = lenv_get(L)->cfg;
    if (protocol == 3) {
        lreq_push_query(L, auth.ptr, auth.len);
    } else if (cfg->sio.parser == SIO_PARSER_MSGPACK) {
        if (lvalue_push_msgpack(L, auth.ptr, auth.len) != 0)
            lua_error(L); /* its message */
    } else {
        lvalue_push_json(L, auth.ptr, auth.len, NULL, 0, cfg->max_json_depth);
    }
}

/* CONNECT: make the handle with handshake.auth, then the prelude's hooks.connect runs the
 * middlewares, accepts and fires "connection". */
static int connect_k(lua_State *L)
{
    call_args_t *a = lua_touserdata(L, 1);
    sio_socket_t *s = a->s;
    lua_settop(L, 0);
    lsocket_push_new(L, s); /* 1: the handle */
    if (a->auth.len > 0) { /* kept for socket.handshake.auth */
        lsocket_private(L, 1);
        push_auth(L, a->auth, sio_socket_protocol(s));
        lua_setfield(L, -2, "auth");
        lua_pop(L, 1);
    }
    lvm_push_hook(L, "connect");
    lnsp_push(L, s->nsp);
    lua_pushvalue(L, 1);
    lua_call(L, 2, 0);
    return 0;
}

static void h_connect(sio_socket_t *s, slice_t auth, void *ud)
{
    lvm_t *h = ((lenv_t *)ud)->vms.cur;
    call_args_t a = {.s = s, .auth = auth};
    void *origin = h->origin;
    sio_socket_ref(s);
    h->origin = s; /* its middlewares and connection handlers are its own */
    if (lvm_protect(h, connect_k, &a, "connect") != 0 && s->state == SIO_S_CONNECTING)
        sio_socket_refuse_message(s, "Invalid payload");
    h->origin = origin;
    sio_socket_unref(s);
}

static void release_resolve(void *r) { sio_resolve_unref(r); }

/* CONNECT to a namespace that does not exist: the prelude's hooks.resolve(name, auth, token) asks
 * the dynamic namespaces, which answer through core.resolved(token, nsp) now or later. */
static int resolve_k(lua_State *L)
{
    call_args_t *a = lua_touserdata(L, 1);
    lua_settop(L, 0);
    lvm_push_hook(L, "resolve");
    lua_pushlstring(L, a->name.ptr, a->name.len);
    if (a->auth.len > 0)
        push_auth(L, a->auth, sio_resolve_protocol(a->resolve));
    else
        lua_newtable(L);
    lvm_box_push(L, a->resolve, release_resolve);
    sio_resolve_ref(a->resolve); /* the box's */
    lua_call(L, 3, 0);
    return 0;
}

static void h_resolve(sio_resolve_t *r, slice_t name, slice_t auth, void *ud)
{
    lvm_t *h = ((lenv_t *)ud)->vms.cur;
    call_args_t a = {.name = name, .auth = auth, .resolve = r};
    if (lvm_protect(h, resolve_k, &a, "dynamic namespace") != 0)
        sio_resolve_done(r, NULL); /* refused, unless it was answered before the error */
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
    lvm_t *h = ((lenv_t *)ud)->vms.cur;
    call_args_t a = {.s = s, .p = p, .att = att, .natt = natt, .rc = -1};
    void *origin = h->origin, *in_event = h->in_event;
    int rc;
    h->origin = s; /* (sio holds s) the handlers of its packets are its own: their aborts count against it */
    h->in_event = s;
    rc = lvm_protectf(h, packet_k, &a, "packet from socket %s", s->id);
    h->origin = origin;
    h->in_event = in_event;
    return rc != 0 ? -1 : a.rc;
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
    lvm_t *h = ((lenv_t *)ud)->vms.cur;
    call_args_t a = {.s = s, .reason = reason};
    if (lvm_protect(h, disconnect_k, &a, "disconnect") != 0)
        lsocket_release(lvm_state(h), s); /* the handle must not outlive the socket */
}

static void h_release(sio_socket_t *s, void *ud)
{
    lvm_t *h = ((lenv_t *)ud)->vms.cur;
    lsocket_release(lvm_state(h), s);
}

static int nsp_free_k(lua_State *L)
{
    call_args_t *a = lua_touserdata(L, 1);
    lua_settop(L, 0);
    lvm_push_hook(L, "nsp_free");
    lnsp_push(L, a->nsp);
    lua_call(L, 1, 0);
    lnsp_forget(L, a->nsp);
    return 0;
}

static void h_nsp_free(sio_nsp_t *nsp, void *ud)
{
    lvm_t *h = ((lenv_t *)ud)->vms.cur;
    call_args_t a = {.nsp = nsp};
    if (lvm_protect(h, nsp_free_k, &a, "namespace cleanup") != 0)
        lnsp_forget(lvm_state(h), nsp); /* never leave a pointer to freed memory in Lua */
}

const sio_handler_t lsio_handler = {h_connect, h_packet, h_disconnect, h_release, h_resolve, h_nsp_free};

