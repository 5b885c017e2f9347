/* lsocket: see lsocket.h. */
#include "lsocket.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eio.h"
#include "ladmin.h"
#include "lemitter.h"
#include "lengine.h"
#include "lenv.h"
#include "lnsp.h"
#include "log.h"
#include "lreq.h"
#include "lsio.h"
#include "lvalue.h"

#define SOCKET_MT "siolua.socket"
#define MAX_ATT LSOCKET_MAX_ATT

typedef struct {
    sio_socket_t *s; /* NULL once the socket is closed */
    uint8_t leaving; /* 1 while "disconnecting" runs (rooms still readable), 2 from "disconnect" on */
    uint8_t recovered; /* its socket was restored (socket.recovered, kept once the socket is gone) */
    char id[];       /* a copy of the id (20 characters but for a v2 client's outside "/") */
} lsock_t;

const char *const lsocket_reserved_names[] = {"connect",       "connect_error", "disconnect",
                                              "disconnecting", "newListener",   "removeListener", NULL};

int lsocket_reserved(const char *ev)
{
    /* called for every packet: most names start with none of the reserved names' letters */
    if (ev[0] != 'c' && ev[0] != 'd' && ev[0] != 'n' && ev[0] != 'r')
        return 0;
    for (int i = 0; lsocket_reserved_names[i]; i++)
        if (strcmp(ev, lsocket_reserved_names[i]) == 0)
            return 1;
    return 0;
}

static lsock_t *check(lua_State *L, int idx)
{
    return luaL_checkudata(L, idx, SOCKET_MT);
}

#define UV_EVENTS 1 /* user value: the listeners table */
#define UV_PRIV 2   /* user value: the private table */

/* Pushes user value n of the handle at ud, a table made (with nrec hash slots) on first use.
 * [-0, +1, m] */
static void uv_slot(lua_State *L, int ud, int n, int nrec)
{
    ud = lua_absindex(L, ud);
    if (lua_getiuservalue(L, ud, n) == LUA_TNIL) {
        lua_pop(L, 1);
        lua_createtable(L, 0, nrec);
        lua_pushvalue(L, -1);
        lua_setiuservalue(L, ud, n);
    }
}

void lsocket_private(lua_State *L, int ud)
{
    uv_slot(L, ud, UV_PRIV, 1);
}

/* Pushes field `k` of the handle's private table, nil when either does not exist. [-0, +1, -] */
static void uv_field(lua_State *L, int ud, const char *k)
{
    if (lua_getiuservalue(L, ud, UV_PRIV) == LUA_TNIL)
        return;
    lua_getfield(L, -1, k);
    lua_remove(L, -2);
}

/* Pushes field `k` of the handle's private table, creating it (and an empty table at k) first if
 * needed. [-0, +1, m] */
static void uv_table(lua_State *L, int ud, const char *k)
{
    lsocket_private(L, ud);
    if (lua_getfield(L, -1, k) == LUA_TNIL) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, k);
    }
    lua_remove(L, -2);
}

/* Pushes the handle's listeners table, or nil if no listener was ever added. [-0, +1, -] */
static int events(lua_State *L, int ud)
{
    return lua_getiuservalue(L, ud, UV_EVENTS);
}

/* Pushes the handle's listeners table, creating it on first use. Sized for a few events (an app
 * typically registers 2-6 listeners per socket), so that the first ones do not rehash it from 1
 * to 2 to 4 slots. [-0, +1, m] */
static void events_table(lua_State *L, int ud)
{
    uv_slot(L, ud, UV_EVENTS, 4);
}

/* ---------------------------------------------------------------- encoding and sending */

rbuf_t *lsocket_encode(lua_State *L, int first, const char *nsp, sio_type_t type, int64_t id, rbuf_t **att,
                       int *natt)
{
    int n = lua_gettop(L) - first + 1;
    size_t len;
    const char *data;
    rbuf_t *pkt;
    const sl_config_t *cfg = lenv_get(L)->cfg;
    if (cfg->sio.parser == SIO_PARSER_MSGPACK) {
        /* one binary message, binaries inline (no attachments) */
        *natt = 0;
        lvalue_encode_msgpack(L, first, n, 1, cfg->max_json_depth);
    } else {
        *natt = lvalue_encode_args(L, first, n, att, MAX_ATT, cfg->max_json_depth);
    }
    data = lua_tolstring(L, -1, &len);
    if (*natt > 0)
        type = type == SIO_ACK ? SIO_BINARY_ACK : SIO_BINARY_EVENT;
    sio_packet_t p = {type, (uint32_t)*natt, {nsp, strlen(nsp)}, id, {data, len}, NULL};
    /* never raises: nothing to leak from here on */
    pkt = cfg->sio.parser == SIO_PARSER_MSGPACK ? sio_encode_msgpack(&p) : sio_encode(&p);
    lua_pop(L, 1);
    return pkt;
}

static void release_all(rbuf_t *pkt, rbuf_t **att, int natt)
{
    rbuf_unref(pkt);
    for (int i = 0; i < natt; i++)
        rbuf_unref(att[i]);
}

/* Sends [ev, args...] = stack[first..top] to the socket of handle `ud`; a function at the top asks
 * for an ack (stored in the handle's acks under a new namespace-wide id). Calls onAnyOutgoing
 * listeners first. Returns the ack id or -1; -2 when nothing was sent (closed, or volatile and
 * busy). [-(top-first+1), +0, e] */
static int64_t emit_from(lua_State *L, int ud, int first, int volatile_)
{
    lsock_t *h = check(L, ud);
    sio_socket_t *s = h->s;
    const char *ev = luaL_checkstring(L, first);
    int64_t id = -1;
    int natt;
    rbuf_t *att[MAX_ATT], *pkt;
    if (lsocket_reserved(ev))
        luaL_error(L, "\"%s\" is a reserved event name", ev);
    if (s == NULL || s->state != SIO_S_CONNECTED)
        return -2;
    if (volatile_ && (sio_socket_session(s) == NULL || !eio_session_writable(sio_socket_session(s))))
        return -2;
    if (lua_gettop(L) > first && lua_isfunction(L, -1)) {
        id = s->nsp->next_ack++;
        uv_table(L, ud, "acks");
        lsocket_ack_store(L, -1, -2, id, uv_hrtime());
        lua_pop(L, 2); /* acks table, function */
    }
    uv_field(L, ud, "anyout");
    if (!lua_isnil(L, -1)) {
        int top = lua_gettop(L) - 1;
        lua_pop(L, 1);
        lvm_push_hook(L, "outgoing");
        lua_pushvalue(L, ud);
        for (int i = first; i <= top; i++)
            lua_pushvalue(L, i);
        lua_call(L, top - first + 2, 0);
        if (h->s == NULL || h->s->state != SIO_S_CONNECTED)
            return -2; /* a listener disconnected it */
    } else {
        lua_pop(L, 1);
    }
    rstore_t *st = lenv_get(L)->rstore;
    int store = st != NULL && id < 0 && !volatile_; /* as the reference's socket.emit with recovery */
    if (store) {
        char offset[RSTORE_OFFSET_MAX];
        rstore_next_offset(st, offset);
        lua_pushstring(L, offset);
    }
    pkt = lsocket_encode(L, first, s->nsp->name, SIO_EVENT, id, att, &natt);
    if (store) {
        slice_t room = {s->id, s->idlen};
        rstore_add(st, lenv_wall_ms(lenv_get(L)), s->nsp->name, &room, 1, NULL, 0, pkt, att, (size_t)natt);
    }
    sio_socket_send(s, pkt, att, (size_t)natt);
    release_all(pkt, att, natt);
    return id;
}

/* emit(event, ...[, ack]) on the socket at upvalue 1: true (false if the socket is gone). */
static int m_emit(lua_State *L)
{
    lvm_selfcall(L, lua_upvalueindex(1));
    lua_pushboolean(L, emit_from(L, lua_upvalueindex(1), 1, 0) != -2);
    return 1;
}

/* core.emit(socket, volatile, ev, ack|nil, ...): sent, ack id (for socket.timeout/volatile). */
int lsocket_core_emit(lua_State *L)
{
    int volatile_ = lua_toboolean(L, 2);
    int64_t id;
    check(L, 1);
    if (lua_isnil(L, 4)) {
        lua_remove(L, 4);
    } else {
        luaL_checktype(L, 4, LUA_TFUNCTION);
        lua_pushvalue(L, 4);
        lua_remove(L, 4);
    }
    id = emit_from(L, 1, 3, volatile_);
    lua_pushboolean(L, id != -2);
    if (id >= 0)
        lua_pushinteger(L, id);
    else
        lua_pushnil(L);
    return 2;
}

void lsocket_ack_store(lua_State *L, int acks, int fn, int64_t id, uint64_t now)
{
    acks = lua_absindex(L, acks);
    lua_pushvalue(L, fn);
    lua_rawseti(L, acks, id);
#ifndef SL_NO_METRICS
    lua_pushinteger(L, (lua_Integer)now);
    lua_rawseti(L, acks, -id - 1);
#else
    (void)now;
#endif
}

/* The answer of ack id came (or its timeout fired: timed_out): its round trip is counted and its
 * start time forgotten. Stack: the acks table at acks. [-0, +0, -] */
static void ack_done(lua_State *L, int acks, int64_t id, int timed_out)
{
    metrics_t *m = lenv_get(L)->metrics;
    acks = lua_absindex(L, acks);
    if (lua_rawgeti(L, acks, -id - 1) == LUA_TNUMBER) {
        if (timed_out)
            METRIC_ADD(m, ack_timeouts, 1);
        else if (m != NULL)
            METRIC_OBSERVE(&m->ack_seconds, (double)(uv_hrtime() - (uint64_t)lua_tointeger(L, -1)) / 1e9);
    }
    lua_pop(L, 1);
    lua_pushnil(L);
    lua_rawseti(L, acks, -id - 1);
}

/* core.cancel_ack(socket, id): forgets a pending ack (its timeout fired). */
int lsocket_core_cancel_ack(lua_State *L)
{
    check(L, 1);
    lua_Integer id = luaL_checkinteger(L, 2);
    uv_field(L, 1, "acks");
    if (lua_istable(L, -1)) {
        lua_pushnil(L);
        lua_rawseti(L, -2, id);
        ack_done(L, -1, id, 1);
    }
    return 0;
}

/* join(room | {rooms}) */
static int m_join(lua_State *L)
{
    lsock_t *h = check(L, lua_upvalueindex(1));
    lvm_selfcall(L, lua_upvalueindex(1));
    if (h->s != NULL) {
        if (lua_istable(L, 1)) {
            for (lua_Integer i = 1; i <= (lua_Integer)lua_rawlen(L, 1) && h->s != NULL; i++) {
                size_t len;
                lua_rawgeti(L, 1, i);
                const char *r = luaL_tolstring(L, -1, &len);
                if (sio_socket_join(h->s, r, len) && ladmin_watching_rooms(L))
                    ladmin_room(L, lua_upvalueindex(1), -1, 1);
                lua_pop(L, 2);
            }
        } else {
            size_t len;
            const char *r = luaL_tolstring(L, 1, &len);
            if (sio_socket_join(h->s, r, len) && ladmin_watching_rooms(L))
                ladmin_room(L, lua_upvalueindex(1), -1, 1);
        }
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    return 1;
}

/* leave(room) */
static int m_leave(lua_State *L)
{
    lsock_t *h = check(L, lua_upvalueindex(1));
    size_t len;
    lvm_selfcall(L, lua_upvalueindex(1));
    const char *r = luaL_tolstring(L, 1, &len);
    if (h->s != NULL && sio_socket_leave(h->s, r, len) && ladmin_watching_rooms(L))
        ladmin_room(L, lua_upvalueindex(1), -1, 0);
    lua_pushvalue(L, lua_upvalueindex(1));
    return 1;
}

/* socket.rooms: a set {room = true}, its own id included (empty once disconnected). */
static void push_rooms(lua_State *L, lsock_t *h)
{
    lua_newtable(L);
    if (h->s == NULL || h->leaving == 2 || (h->s->state != SIO_S_CONNECTED && h->leaving != 1))
        return;
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, h->id);
    for (room_member_t *m = h->s->rooms; m; m = m->snext) {
        lua_pushlstring(L, m->room->name, m->room->len);
        lua_pushboolean(L, 1);
        lua_rawset(L, -3);
    }
}

/* ---------------------------------------------------------------- listeners (lemitter.h) */

/* The handle's listeners table is its user value 1, made on first use. */
static void socket_table(lua_State *L, int ud, int create)
{
    if (create)
        events_table(L, ud);
    else
        events(L, ud);
}

static const char *socket_label(lua_State *L, int ud)
{
    return ((lsock_t *)lua_touserdata(L, ud))->id;
}

static const lemitter_kind_t socket_kind = {
    .table = socket_table, .fmt = "handler for \"%s\" of socket %s", .label = socket_label};

/* Calls every listener of `ev` on the handle at `ud` with the nargs values on top (popped). */
static void fire(lua_State *L, int ud, int evidx, const char *ev, int nargs)
{
    lemitter_fire(L, ud, &socket_kind, evidx, ev, nargs, ((lsock_t *)lua_touserdata(L, ud))->id);
}

/* ---------------------------------------------------------------- acks */

/* The callable ack given to a handler: upvalues (handle, id), id set to nil once sent: it sends
 * once. The handle is ours (lsocket_on_packet put it there): no type check needed. */
static int ack_call(lua_State *L)
{
    lsock_t *h = lua_touserdata(L, lua_upvalueindex(1));
    int natt;
    rbuf_t *att[MAX_ATT], *pkt;
    int64_t id = lua_isinteger(L, lua_upvalueindex(2)) ? lua_tointeger(L, lua_upvalueindex(2)) : -1;
    if (id < 0 || h->s == NULL || h->s->state != SIO_S_CONNECTED)
        return 0;
    lua_pushnil(L);
    lua_replace(L, lua_upvalueindex(2));
    pkt = lsocket_encode(L, 1, h->s->nsp->name, SIO_ACK, id, att, &natt);
    sio_socket_send(h->s, pkt, att, (size_t)natt);
    release_all(pkt, att, natt);
    return 0;
}

int lsocket_on_packet(lua_State *L, sio_socket_t *s, const sio_packet_t *p, rbuf_t *const *att, size_t natt)
{
    int ud, n;
    lsocket_push(L, s);
    ud = lua_gettop(L);
    /* the arguments go straight on the stack: [ud, arg1, ..., argn] */
    if (p->obj != NULL) /* the msgpack parser's decoded array */
        n = lvalue_push_msgpack_args(L, p->obj);
    else
        n = lvalue_push_json_args(L, p->data.ptr, p->data.len, att, natt, lenv_get(L)->cfg->max_json_depth);
    if (p->type == SIO_ACK || p->type == SIO_BINARY_ACK) {
        uv_field(L, ud, "acks");
        if (!lua_istable(L, -1))
            return 0; /* no ack was ever asked for */
        lua_rawgeti(L, -1, p->id);
        if (!lua_isfunction(L, -1))
            return 0; /* unknown or already answered: ignored, as the reference does */
        lua_pushnil(L);
        lua_rawseti(L, -3, p->id);
        ack_done(L, -2, p->id, 0);
        lua_replace(L, ud); /* [fn, args..., acks] */
        lua_pop(L, 1);
        lvm_callf(L, n, "ack callback of socket %s%s", s->id, "");
        return 0;
    }
    /* EVENT: [name, args...], name a string (or a number) that is not reserved */
    if (n < 1)
        return -1;
    int evidx = ud + 1;
    if (lua_type(L, evidx) == LUA_TNUMBER)
        lua_tostring(L, evidx);
    if (lua_type(L, evidx) != LUA_TSTRING || lsocket_reserved(lua_tostring(L, evidx)))
        return -1;
    const char *ev = lua_tostring(L, evidx); /* kept alive on the stack */
    luaL_checkstack(L, n + 4, "too many event arguments"); /* dispatch below copies them */
    if (p->id >= 0) {
        lua_pushvalue(L, ud);
        lua_pushinteger(L, p->id);
        lua_pushcclosure(L, ack_call, 2);
    }
    int hooked = 0, top0 = lua_gettop(L);
    if (lua_getiuservalue(L, ud, UV_PRIV) == LUA_TTABLE) /* no private table: no mw, no onAny */
        hooked = lua_getfield(L, top0 + 1, "mw") != LUA_TNIL || lua_getfield(L, top0 + 1, "any") != LUA_TNIL;
    lua_settop(L, top0);
    if (hooked) {
        /* socket.use middlewares or onAny listeners: the prelude's dispatch(socket, ev, args...,
         * ack) runs them, then the listeners */
        int top = lua_gettop(L);
        lvm_push_hook(L, "dispatch");
        lua_pushvalue(L, ud);
        for (int i = evidx; i <= top; i++)
            lua_pushvalue(L, i);
        lua_call(L, top - evidx + 2, 0);
        return 0;
    }
    fire(L, ud, evidx, ev, n - 1 + (p->id >= 0));
    return 0;
}

/* ---------------------------------------------------------------- lifetime */

void lsocket_push_new(lua_State *L, sio_socket_t *s)
{
    lsock_t *h = lua_newuserdatauv(L, sizeof(*h) + s->idlen + 1u, 2); /* both user values made on first use */
    h->s = s;
    h->leaving = 0;
    h->recovered = 0;
    memcpy(h->id, s->id, s->idlen + 1u);
    luaL_setmetatable(L, SOCKET_MT);
    lua_pushvalue(L, -1);
    s->handle_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

void lsocket_push(lua_State *L, sio_socket_t *s)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->handle_ref);
}

void lsocket_release(lua_State *L, sio_socket_t *s)
{
    if (s->handle_ref == LUA_NOREF || s->handle_ref == 0)
        return;
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->handle_ref);
    lsock_t *h = lua_touserdata(L, -1);
    if (h != NULL) {
        h->recovered = (s->upper_flags & LSOCKET_F_RECOVERED) != 0;
        h->s = NULL;
    }
    lua_pop(L, 1);
    luaL_unref(L, LUA_REGISTRYINDEX, s->handle_ref);
    s->handle_ref = LUA_NOREF;
}

/* The reference's RECOVERABLE_DISCONNECT_REASONS: a socket that leaves for one of them keeps its
 * session for its client (connection state recovery). */
static int recoverable(const char *reason)
{
    static const char *const reasons[] = {"transport error", "transport close", "forced close", "ping timeout",
                                          "server shutting down", "forced server close", NULL};
    for (int i = 0; reasons[i]; i++)
        if (strcmp(reason, reasons[i]) == 0)
            return 1;
    return 0;
}

void lsocket_on_disconnect(lua_State *L, sio_socket_t *s, const char *reason)
{
    int ud;
    lsocket_push(L, s);
    ud = lua_gettop(L);
    /* as the reference: "disconnecting" while rooms are readable, then leave them, "disconnect" */
    lsock_t *h = lua_touserdata(L, ud);
    h->leaving = 1;
    lua_pushstring(L, reason);
    fire(L, ud, 0, "disconnecting", 1);
    if (s->pid != NULL && lenv_get(L)->rstore != NULL && recoverable(reason)) {
        /* the adapter's persistSession (the prelude's hooks.persist), with the rooms and data the
         * "disconnecting" listeners left; its failure is logged and the disconnect goes on */
        lvm_push_hook(L, "persist");
        lua_pushvalue(L, ud);
        if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
            log_with(LOG_ERROR, LOG_FIELDS(LOG_S("sid", s->id), LOG_S("error", lua_tostring(L, -1))),
                     "siolua: socket %s: its session could not be kept for recovery: %s", s->id,
                     lua_tostring(L, -1));
            lua_pop(L, 1);
        }
    }
    sio_socket_leave_all(s);
    h->leaving = 2;
    lua_pushstring(L, reason);
    fire(L, ud, 0, "disconnect", 1);
    lsocket_release(L, s);
    lua_settop(L, ud - 1);
}

/* ---------------------------------------------------------------- primitives for the prelude */

/* core.uv(socket[, create]): the handle's private table (acks, middlewares, data...); nil if it
 * does not exist yet, unless create is true. */
int lsocket_core_uv(lua_State *L)
{
    check(L, 1);
    if (lua_toboolean(L, 2))
        lsocket_private(L, 1);
    else
        lua_getiuservalue(L, 1, UV_PRIV);
    return 1;
}

/* core.watch_outgoing(socket, on): broadcasts call the socket's onAnyOutgoing listeners. */
int lsocket_core_watch_outgoing(lua_State *L)
{
    lsock_t *h = check(L, 1);
    if (h->s != NULL) {
        if (lua_toboolean(L, 2))
            h->s->upper_flags |= LSOCKET_F_OUTGOING;
        else
            h->s->upper_flags &= (uint8_t)~LSOCKET_F_OUTGOING;
    }
    return 0;
}

/* core.nsp(socket): its namespace object (nil once closed). */
int lsocket_core_nsp(lua_State *L)
{
    lsock_t *h = check(L, 1);
    if (h->s == NULL)
        return 0;
    lnsp_push(L, h->s->nsp);
    return 1;
}

static void send_missed(void *ud, rbuf_t *pkt, rbuf_t *const *att, size_t natt)
{
    sio_socket_send(ud, pkt, att, natt);
}

/* A restored socket (core.recover): its missed packets go out before the CONNECT reply, as the
 * reference sends them from the socket's constructor (the client keeps them until it is
 * connected, then emits them before "connect"); its rooms are joined once it is connected. 0, or
 * -1 when some of them were evicted since the session was taken (middlewares ran meanwhile): the
 * client is closed, its next CONNECT finds no session and gets a new socket (no gap). */
static int replay(lua_State *L, int ud, sio_socket_t *s, rstore_session_t **out)
{
    *out = NULL;
    uv_field(L, ud, "restore");
    rstore_session_t *box = lsio_restore_check(L, -1);
    lua_pop(L, 1); /* (the private table still holds it) */
    if (box == NULL)
        return 0;
    if (rstore_replay(lenv_get(L)->rstore, box, send_missed, s) < 0) {
        log_with(LOG_WARN, LOG_FIELDS(LOG_S("sid", s->id)),
                 "siolua: socket %s: packets it missed were evicted while its middlewares ran: not recovered", s->id);
        if (sio_socket_session(s) != NULL)
            eio_close(sio_socket_session(s));
        return -1;
    }
    *out = box;
    return 0;
}

/* core.accept(socket): answers the CONNECT; false if the client went away meanwhile. With
 * connection state recovery, the CONNECT reply carries the socket's pid (a new one, or the
 * restored socket's), and a restored socket gets what it missed first. */
int lsocket_core_accept(lua_State *L)
{
    lsock_t *h = check(L, 1);
    sio_socket_t *s = h->s;
    rstore_session_t *restored = NULL;
    if (s == NULL || s->state != SIO_S_CONNECTING || replay(L, 1, s, &restored) != 0) {
        lua_pushboolean(L, 0);
        return 1;
    }
    if (lenv_get(L)->rstore != NULL && s->pid == NULL && sio_socket_protocol(s) == 4) {
        char pid[21];
        eio_generate_id(pid);
        sio_socket_set_pid(s, pid, 20);
    }
    sio_socket_accept(s);
    if (s->state == SIO_S_CONNECTED && restored != NULL)
        for (size_t i = 0; i < restored->nrooms; i++)
            if (strcmp(restored->rooms[i], s->id) != 0)
                sio_socket_join(s, restored->rooms[i], strlen(restored->rooms[i]));
    if (restored != NULL) {
        lsocket_private(L, 1);
        lua_pushnil(L);
        lua_setfield(L, -2, "restore");
        lua_pop(L, 1);
    }
    lua_pushboolean(L, h->s != NULL && h->s->state == SIO_S_CONNECTED);
    return 1;
}

/* core.pid(socket): its pid (connection state recovery), nil without. */
int lsocket_core_pid(lua_State *L)
{
    lsock_t *h = check(L, 1);
    if (h->s == NULL || h->s->pid == NULL)
        return 0;
    lua_pushstring(L, h->s->pid);
    return 1;
}

/* core.recover(socket, session): a pending socket becomes the one session (core.restore_session's
 * answer) describes: its id, pid, data; what it missed and its rooms come with core.accept. false
 * when the id is taken (a socket with it is connected), the socket is no longer pending, or its
 * client is a Socket.IO v2 one (no recovery in that protocol). */
int lsocket_core_recover(lua_State *L)
{
    lsock_t *h = check(L, 1);
    sio_socket_t *s = h->s;
    size_t len, plen;
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_getfield(L, 2, "sid");
    lua_getfield(L, 2, "pid");
    lua_getfield(L, 2, "missed");
    const char *sid = lua_tolstring(L, -3, &len), *pid = lua_tolstring(L, -2, &plen);
    if (sid == NULL || pid == NULL || lsio_restore_check(L, -1) == NULL || s == NULL || len != s->idlen ||
        sio_socket_protocol(s) != 4 || sio_socket_set_id(s, sid, len) != 0) {
        lua_pushboolean(L, 0);
        return 1;
    }
    memcpy(h->id, s->id, len + 1u);
    sio_socket_set_pid(s, pid, plen);
    s->upper_flags |= LSOCKET_F_RECOVERED;
    lsocket_private(L, 1);
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "restore");
    lua_pushboolean(L, 1);
    return 1;
}

/* A JS value's truthiness: nil, false, siolua.null, 0, NaN and "" are falsy. [-0, +0, -] */
static int js_truthy(lua_State *L, int idx)
{
    switch (lua_type(L, idx)) {
    case LUA_TNONE:
    case LUA_TNIL:
        return 0;
    case LUA_TBOOLEAN:
        return lua_toboolean(L, idx);
    case LUA_TLIGHTUSERDATA:
        return lua_touserdata(L, idx) != NULL;
    case LUA_TNUMBER: {
        lua_Number d = lua_tonumber(L, idx);
        return d == d && d != 0;
    }
    case LUA_TSTRING:
        return lua_rawlen(L, idx) > 0;
    }
    return 1;
}

/* core.refuse(socket, message, data): CONNECT_ERROR {"message":..., "data":...}; to a Socket.IO v2
 * client, the reference's err.data || err.message. */
int lsocket_core_refuse(lua_State *L)
{
    lsock_t *h = check(L, 1);
    luaL_checkstring(L, 2);
    if (h->s == NULL || h->s->state != SIO_S_CONNECTING)
        return 0;
    if (sio_socket_protocol(h->s) == 3) {
        lua_pushvalue(L, js_truthy(L, 3) ? 3 : 2); /* what a v2 client's ERROR packet carries */
    } else {
        lua_createtable(L, 0, 2);
        lua_pushvalue(L, 2);
        lua_setfield(L, -2, "message");
        if (!lua_isnoneornil(L, 3)) {
            lua_pushvalue(L, 3);
            lua_setfield(L, -2, "data");
        }
    }
    if (lenv_get(L)->cfg->sio.parser == SIO_PARSER_MSGPACK)
        lvalue_encode_msgpack(L, -1, 1, 0, lenv_get(L)->cfg->max_json_depth);
    else
        lvalue_encode_value(L, -1, lenv_get(L)->cfg->max_json_depth, 0);
    size_t len;
    const char *json = lua_tolstring(L, -1, &len);
    sio_socket_t *s = h->s;
    sio_socket_ref(s);
    sio_socket_refuse(s, json, len);
    sio_socket_unref(s);
    return 0;
}

/* ---------------------------------------------------------------- metamethods */

static int m_disconnect(lua_State *L)
{
    lsock_t *h = check(L, lua_upvalueindex(1));
    lvm_selfcall(L, lua_upvalueindex(1));
    if (h->s != NULL) {
        sio_socket_t *s = h->s;
        sio_socket_ref(s);
        sio_socket_disconnect(s, lua_toboolean(L, 1));
        sio_socket_unref(s);
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    return 1;
}

/* socket.handshake, built once from the Engine.IO session's copy of the opening request. */
static void push_handshake(lua_State *L, int ud, lsock_t *h)
{
    uv_field(L, ud, "handshake");
    if (!lua_isnil(L, -1) || h->s == NULL || sio_socket_session(h->s) == NULL)
        return;
    lua_pop(L, 1);
    const eio_handshake_t *hs = eio_session_handshake(sio_socket_session(h->s));
    lua_createtable(L, 0, 9);
    lreq_push_packed_headers(L, hs->nheaders, hs->headers);
    lua_setfield(L, -2, "headers");
    lreq_push_query(L, hs->query.ptr, hs->query.len);
    lua_setfield(L, -2, "query");
    uv_field(L, ud, "auth");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L); /* no auth payload: {} as in the reference */
    }
    lua_setfield(L, -2, "auth");
    lua_pushstring(L, hs->address);
    lua_setfield(L, -2, "address");
    lua_pushlstring(L, hs->url.ptr, hs->url.len);
    lua_setfield(L, -2, "url");
    lua_pushinteger(L, (lua_Integer)hs->issued);
    lua_setfield(L, -2, "issued");
    {
        /* time: the date as the reference's new Date().toString() would show it, in UTC */
        char tbuf[64];
        time_t t = (time_t)(hs->issued / 1000);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(tbuf, sizeof(tbuf), "%a %b %d %Y %H:%M:%S GMT+0000 (Coordinated Universal Time)", &tm);
        lua_pushstring(L, tbuf);
        lua_setfield(L, -2, "time");
    }
    lua_pushboolean(L, hs->secure);
    lua_setfield(L, -2, "secure");
    {
        slice_t host = {0, 0}, origin = {0, 0};
        const char *hp = hs->headers;
        for (size_t i = 0; i < hs->nheaders; i++) {
            slice_t name, value;
            eio_header_next(&hp, &name, &value);
            if (slice_caseeq(name, "host"))
                host = value;
            else if (slice_caseeq(name, "origin"))
                origin = value;
        }
        /* xdomain: an Origin header that is not this host (as the reference compares) */
        int xdomain = origin.ptr != NULL;
        if (origin.ptr && host.ptr) {
            const char *o = memchr(origin.ptr, '/', origin.len);
            if (o && (size_t)(origin.ptr + origin.len - o) > 2) {
                o += 2;
                xdomain = !((size_t)(origin.ptr + origin.len - o) == host.len && memcmp(o, host.ptr, host.len) == 0);
            }
        }
        lua_pushboolean(L, xdomain);
        lua_setfield(L, -2, "xdomain");
    }
    lsocket_private(L, ud);
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "handshake");
    lua_pop(L, 1);
}

static const luaL_Reg methods[] = {{"emit", m_emit}, {"join", m_join}, {"leave", m_leave},
                                   {"disconnect", m_disconnect}, {NULL, NULL}};

/* The fields s_index answers itself; codes below K_ID are 1 + an index in methods[], codes from
 * K_EMITTER on the emitter's methods (lemitter.h). */
enum { K_ID = 16, K_CONNECTED, K_DISCONNECTED, K_DATA, K_HANDSHAKE, K_ROOMS, K_NSP, K_CONN, K_RECOVERED,
       K_EMITTER = 32 };
static const struct {
    const char *name;
    int code;
} fields[] = {{"id", K_ID},           {"connected", K_CONNECTED}, {"disconnected", K_DISCONNECTED},
              {"data", K_DATA},       {"handshake", K_HANDSHAKE}, {"rooms", K_ROOMS},
              {"nsp", K_NSP},         {"conn", K_CONN},           {"recovered", K_RECOVERED},
              {NULL, 0}};

static const char PROPS_KEY = 'p';   /* registry: the prelude's socket properties */
static const char METHODS_KEY = 'm'; /* registry: the prelude's socket methods */

/* The code of key k (stack index 2) from the {name -> code} table at upvalue 1 of s_index and
 * s_newindex: one hash lookup of an interned string instead of a strcmp per name (every
 * socket.emit/socket.on goes through here). 0 for any other key. */
static int key_code(lua_State *L)
{
    lua_pushvalue(L, 2);
    int code = lua_rawget(L, lua_upvalueindex(1)) == LUA_TNUMBER ? (int)lua_tointeger(L, -1) : 0;
    lua_pop(L, 1);
    return code;
}

static int s_index(lua_State *L)
{
    lsock_t *h = check(L, 1);
    const char *k = luaL_checkstring(L, 2);
    int code = key_code(L);
    if (code >= 1 && code < K_ID) {
        lua_pushvalue(L, 1);
        lua_pushcclosure(L, methods[code - 1].func, 1);
        return 1;
    }
    if (code >= K_EMITTER) {
        lemitter_push_method(L, 1, &socket_kind, code - K_EMITTER);
        return 1;
    }
    switch (code) {
    case K_ID:
        lua_pushstring(L, h->id);
        break;
    case K_CONNECTED:
        /* still connected while "disconnecting" runs, as in the reference */
        lua_pushboolean(L, h->s != NULL && (h->s->state == SIO_S_CONNECTED || h->leaving == 1));
        break;
    case K_DISCONNECTED:
        lua_pushboolean(L, !(h->s != NULL && (h->s->state == SIO_S_CONNECTED || h->leaving == 1)));
        break;
    case K_DATA:
        uv_table(L, 1, "data");
        break;
    case K_HANDSHAKE:
        push_handshake(L, 1, h);
        break;
    case K_ROOMS:
        push_rooms(L, h);
        break;
    case K_RECOVERED:
        /* connection state recovery restored it (kept once it is gone, as the reference's) */
        lua_pushboolean(L, h->recovered || (h->s != NULL && (h->s->upper_flags & LSOCKET_F_RECOVERED)));
        break;
    case K_NSP:
        if (h->s == NULL)
            return 0;
        lnsp_push(L, h->s->nsp);
        break;
    case K_CONN:
        /* io.engine's conn of the session, kept by the handle once asked for (the same object
         * after the socket is gone, as the reference's socket.conn) */
        uv_field(L, 1, "conn");
        if (!lua_isnil(L, -1) || h->s == NULL || sio_socket_session(h->s) == NULL)
            return 1;
        lua_pop(L, 1);
        lengine_push_conn(L, sio_socket_session(h->s));
        lsocket_private(L, 1);
        lua_pushvalue(L, -2);
        lua_setfield(L, -2, "conn");
        lua_pop(L, 1);
        break;
    default:
        /* the prelude's properties and methods, then the app's own fields */
        if (lvm_member(L, 1, &PROPS_KEY, &METHODS_KEY, k))
            return 1;
        uv_field(L, 1, "props");
        if (lua_isnil(L, -1))
            return 1;
        lua_getfield(L, -1, k);
    }
    return 1;
}

static int s_newindex(lua_State *L)
{
    check(L, 1);
    const char *k = luaL_checkstring(L, 2);
    int code = key_code(L);
    if (code != 0 && code != K_DATA) /* methods and read-only fields */
        return luaL_error(L, "socket.%s cannot be assigned", k);
    lsocket_private(L, 1);
    if (code == K_DATA) {
        lua_pushvalue(L, 3);
        lua_setfield(L, -2, "data");
        return 0;
    }
    uv_table(L, 1, "props");
    lua_pushvalue(L, 3);
    lua_setfield(L, -2, k);
    return 0;
}

static int s_tostring(lua_State *L)
{
    lsock_t *h = check(L, 1);
    lua_pushfstring(L, "siolua.socket(%s%s)", h->id, h->s ? "" : ", closed");
    return 1;
}

void lsocket_open(lua_State *L)
{
    luaL_newmetatable(L, SOCKET_MT);
    lua_createtable(L, 0, 24); /* key_code's {name -> code} */
    for (int i = 0; methods[i].name; i++) {
        lua_pushinteger(L, i + 1);
        lua_setfield(L, -2, methods[i].name);
    }
    for (int i = 0; lemitter_method_name(i) != NULL; i++) {
        lua_pushinteger(L, K_EMITTER + i);
        lua_setfield(L, -2, lemitter_method_name(i));
    }
    for (int i = 0; fields[i].name; i++) {
        lua_pushinteger(L, fields[i].code);
        lua_setfield(L, -2, fields[i].name);
    }
    lua_pushvalue(L, -1);
    lua_pushcclosure(L, s_index, 1);
    lua_setfield(L, -3, "__index");
    lua_pushcclosure(L, s_newindex, 1);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, s_tostring);
    lua_setfield(L, -2, "__tostring");
    lemitter_register(L, &socket_kind); /* (pops the metatable) */
    /* until the prelude provides them: no extra properties or methods */
    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &PROPS_KEY);
    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &METHODS_KEY);
}

void lsocket_bind_prelude(lua_State *L)
{
    lvm_bind_members(L, &PROPS_KEY, "socket_props", &METHODS_KEY, "socket_methods");
}
