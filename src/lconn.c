/* lconn: see lconn.h. A conn's user value is {events = listeners, data = conn.data, props = the
 * app's other fields, request = conn.request once asked for}. */
#include "lconn.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lemitter.h"
#include "lreq.h"
#include "lvalue.h"
#include "utf8.h"

#define CONN_MT "siolua.engine.conn"

/* Events with listeners (lconn_t.flags), in events' order. */
enum { CV_MESSAGE = 1, CV_PACKET = 2, CV_CLOSE = 4, CV_UPGRADE = 8, CV_PACKET_CREATE = 16, CV_FLUSH = 32,
       CV_DRAIN = 64, CV_HEARTBEAT = 128, CV_UPGRADING = 256, CV_DATA = 512 };
static const char *const events[] = {"message", "packet",    "close",     "upgrade", "packetCreate", "flush",
                                     "drain",   "heartbeat", "upgrading", "data",    NULL};
/* What the observer reports only when asked (eio_session_watch), by event. */
static const struct {
    unsigned cv, w;
} watched[] = {{CV_PACKET_CREATE, EIO_W_PACKET_CREATE},
               {CV_FLUSH, EIO_W_FLUSH},
               {CV_DRAIN, EIO_W_DRAIN},
               {CV_HEARTBEAT, EIO_W_HEARTBEAT},
               {CV_UPGRADING, EIO_W_UPGRADING}};

struct lconn {
    eio_session_t *s;        /* NULL once closed */
    lvm_t *vm;               /* the VM it was made in */
    int raw;                 /* an endpoint's (it may send); else io.engine's, observing Socket.IO's */
    unsigned flags;          /* CV_* */
    int ref;                 /* registry ref while the session lives */
    int reloaded;            /* made by a hot reload for a session that was already open */
    int transport;           /* EIO_T_* when it closed (while open: the session's) */
    char id[21];
};

/* ---------------------------------------------------------------- the handle */

lconn_t *lconn_of(const eio_session_t *s, int raw)
{
    return raw ? eio_session_data(s) : eio_session_obs_data(s);
}

static void set_conn(eio_session_t *s, int raw, lconn_t *c)
{
    if (raw)
        eio_session_set_data(s, c);
    else
        eio_session_set_obs_data(s, c);
}

void lconn_release(lconn_t *c)
{
    lua_State *L = lvm_state(c->vm);
    if (c->s != NULL) {
        c->transport = eio_session_transport(c->s);
        set_conn(c->s, c->raw, NULL);
        eio_session_watch(c->s, 0);
    }
    c->s = NULL;
    luaL_unref(L, LUA_REGISTRYINDEX, c->ref);
    c->ref = LUA_NOREF;
}

void lconn_push(lua_State *L, const lconn_t *c)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref);
}

lvm_t *lconn_vm(const lconn_t *c)
{
    return c->vm;
}

lconn_t *lconn_new(lua_State *L, eio_session_t *s, int raw, int reloaded)
{
    lconn_t *c = lua_newuserdatauv(L, sizeof(*c), 1);
    int obj = lua_gettop(L);
    memset(c, 0, sizeof(*c));
    c->ref = LUA_NOREF;
    c->vm = lvm_get(L);
    c->raw = raw;
    c->reloaded = reloaded;
    c->transport = eio_session_transport(s);
    memcpy(c->id, eio_session_id(s), sizeof(c->id));
    luaL_setmetatable(L, CONN_MT);
    lua_createtable(L, 0, 3);
    lua_newtable(L);
    lua_setfield(L, -2, "events");
    lua_newtable(L);
    lua_setfield(L, -2, "data");
    lua_newtable(L);
    lua_setfield(L, -2, "props");
    lua_setiuservalue(L, obj, 1);
    lua_pushvalue(L, obj);
    c->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    c->s = s; /* from here on the session and the handle know each other */
    set_conn(s, raw, c);
    return c;
}

/* Pushes the user value's field k. [-0, +1, -] */
static void uv_field(lua_State *L, int obj, const char *k)
{
    lua_getiuservalue(L, obj, 1);
    lua_getfield(L, -1, k);
    lua_remove(L, -2);
}

/* ---------------------------------------------------------------- listeners (lemitter.h) */

static void events_table(lua_State *L, int obj, int create)
{
    (void)create; /* (made with the conn) */
    uv_field(L, obj, "events");
}

/* Which events have listeners: the flags, and what eio reports only when asked. */
static void update_flags(lua_State *L, int obj)
{
    lconn_t *c = lua_touserdata(L, obj);
    unsigned w = 0;
    events_table(L, obj, 0);
    c->flags = lemitter_flags(L, lua_gettop(L), events);
    lua_pop(L, 1);
    for (size_t i = 0; i < sizeof(watched) / sizeof(watched[0]); i++)
        if (c->flags & watched[i].cv)
            w |= watched[i].w;
    if (c->s != NULL)
        eio_session_watch(c->s, w);
}

static const lemitter_kind_t conn_kind = {
    .table = events_table, .changed = update_flags, .fmt = "engine conn \"%s\" handler%s"};

static void fire(lua_State *L, int obj, const char *ev, int nargs)
{
    lemitter_fire(L, obj, &conn_kind, 0, ev, nargs, "");
}

/* ---------------------------------------------------------------- the session's news */

typedef struct {
    lconn_t *c;
    const char *reason;
    const eio_packet_t *p;
    int binary;
    const char *data;
    size_t len;
    unsigned what;          /* EIO_W_* of notify_k, with pkts[0..n) */
    rbuf_t *const *pkts;
    size_t n;
} args_t;

/* "data" then "message" (the reference emits both, in that order). */
static int message_k(lua_State *L)
{
    args_t *a = lua_touserdata(L, 1);
    lua_settop(L, 0);
    lua_rawgeti(L, LUA_REGISTRYINDEX, a->c->ref);
    if (a->binary)
        lvalue_push_binary(L, a->data, a->len);
    else
        lua_pushlstring(L, a->data, a->len);
    lua_pushvalue(L, 2);
    fire(L, 1, "data", 1);
    fire(L, 1, "message", 1);
    return 0;
}

static const char *const packet_types[] = {"open", "close", "ping", "pong", "message", "upgrade", "noop"};

/* An outgoing packet as the reference's packetCreate/flush show it: {type, options = {compress},
 * data} (no data when there is none). [-0, +1, m] */
static void push_out_packet(lua_State *L, const rbuf_t *b)
{
    eio_packet_t p;
    if (eio_decode_ws((b->flags & RBUF_BINARY) != 0, b->data + RBUF_HEADROOM, b->len, &p) != EIO_PKT_OK)
        p = (eio_packet_t){EIO_MESSAGE, 0, {"", 0}}; /* never: eio makes every packet it sends */
    lua_createtable(L, 0, 3);
    lua_pushstring(L, packet_types[p.type]);
    lua_setfield(L, -2, "type");
    lua_createtable(L, 0, 1);
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "compress");
    lua_setfield(L, -2, "options");
    if (p.binary)
        lvalue_push_binary(L, p.data.ptr, p.data.len);
    else if (p.data.len > 0)
        lua_pushlstring(L, p.data.ptr, p.data.len);
    else
        return;
    lua_setfield(L, -2, "data");
}

/* {name = "websocket"}: the transport argument of "upgrading" and "upgrade". [-0, +1, m] */
static void push_websocket(lua_State *L)
{
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "websocket");
    lua_setfield(L, -2, "name");
}

/* The EIO_W_* events: "packetCreate" (packet), "flush" (packets), "drain", "heartbeat",
 * "upgrading" (transport). */
static int notify_k(lua_State *L)
{
    args_t *a = lua_touserdata(L, 1);
    lua_settop(L, 0);
    lua_rawgeti(L, LUA_REGISTRYINDEX, a->c->ref);
    switch (a->what) {
    case EIO_W_PACKET_CREATE:
        push_out_packet(L, a->pkts[0]);
        fire(L, 1, "packetCreate", 1);
        break;
    case EIO_W_FLUSH:
        lua_createtable(L, (int)a->n, 0);
        for (size_t i = 0; i < a->n; i++) {
            push_out_packet(L, a->pkts[i]);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        fire(L, 1, "flush", 1);
        break;
    case EIO_W_DRAIN:
        fire(L, 1, "drain", 0);
        break;
    case EIO_W_HEARTBEAT:
        fire(L, 1, "heartbeat", 0);
        break;
    case EIO_W_UPGRADING:
        push_websocket(L);
        fire(L, 1, "upgrading", 1);
        break;
    }
    return 0;
}

static int packet_k(lua_State *L)
{
    args_t *a = lua_touserdata(L, 1);
    const eio_packet_t *p = a->p;
    lua_settop(L, 0);
    lua_rawgeti(L, LUA_REGISTRYINDEX, a->c->ref);
    lua_createtable(L, 0, 2);
    lua_pushstring(L, (unsigned)p->type < 7 ? packet_types[p->type] : "error");
    lua_setfield(L, -2, "type");
    if (p->binary)
        lvalue_push_binary(L, p->data.ptr, p->data.len);
    else if (p->type == EIO_MESSAGE || p->data.len > 0)
        lua_pushlstring(L, p->data.ptr, p->data.len);
    else
        lua_pushnil(L);
    lua_setfield(L, -2, "data");
    fire(L, 1, "packet", 1);
    return 0;
}

static int close_k(lua_State *L)
{
    args_t *a = lua_touserdata(L, 1);
    lua_settop(L, 0);
    lua_rawgeti(L, LUA_REGISTRYINDEX, a->c->ref);
    lua_pushstring(L, a->reason);
    fire(L, 1, "close", 1);
    return 0;
}

static int upgrade_k(lua_State *L)
{
    args_t *a = lua_touserdata(L, 1);
    lua_settop(L, 0);
    lua_rawgeti(L, LUA_REGISTRYINDEX, a->c->ref);
    push_websocket(L);
    fire(L, 1, "upgrade", 1);
    return 0;
}

void lconn_message(lconn_t *c, int binary, const char *data, size_t len)
{
    args_t a = {.c = c, .binary = binary, .data = data, .len = len};
    if (c->flags & (CV_MESSAGE | CV_DATA))
        lvm_protect(c->vm, message_k, &a, "engine conn message");
}

void lconn_packet(lconn_t *c, const eio_packet_t *p)
{
    args_t a = {.c = c, .p = p};
    if (c->flags & CV_PACKET)
        lvm_protect(c->vm, packet_k, &a, "engine conn packet");
}

void lconn_upgrade(lconn_t *c)
{
    args_t a = {.c = c};
    if (c->flags & CV_UPGRADE)
        lvm_protect(c->vm, upgrade_k, &a, "engine conn upgrade");
}

void lconn_notify(lconn_t *c, unsigned what, rbuf_t *const *pkts, size_t n)
{
    args_t a = {.c = c, .what = what, .pkts = pkts, .n = n};
    lvm_protect(c->vm, notify_k, &a, "engine conn event");
}

void lconn_close(lconn_t *c, const char *reason)
{
    args_t a = {.c = c, .reason = reason};
    if (c->flags & CV_CLOSE)
        lvm_protect(c->vm, close_k, &a, "engine conn close");
    lconn_release(c); /* also when a listener failed: the handle must not outlive the session */
}

/* ---------------------------------------------------------------- methods and fields */

static lconn_t *check_conn(lua_State *L, int idx) { return luaL_checkudata(L, idx, CONN_MT); }

/* send(data) / write(data): a string is a text message, a siolua.binary a binary one.
 * Returns true, or false when the session is closed. Raw endpoints only. */
static int c_send(lua_State *L)
{
    lconn_t *c = check_conn(L, lua_upvalueindex(1));
    const char *p;
    size_t n;
    rbuf_t *b;
    lvm_selfcall(L, lua_upvalueindex(1));
    if (!c->raw)
        return luaL_error(L, "conn.send: this session belongs to Socket.IO (use socket.emit)");
    if ((p = lvalue_tobinary(L, 1, &n)) != NULL) {
        b = rbuf_from(p, n);
        b->flags |= RBUF_BINARY;
    } else if (lua_type(L, 1) == LUA_TSTRING || lua_type(L, 1) == LUA_TNUMBER) {
        p = lua_tolstring(L, 1, &n);
        b = NULL; /* made below, once nothing can raise */
    } else {
        return luaL_argerror(L, 1, "a string or a siolua.binary expected");
    }
    if (c->s == NULL || !eio_session_is_open(c->s)) {
        rbuf_unref(b);
        lua_pushboolean(L, 0);
        return 1;
    }
    if (b == NULL && utf8_valid_prefix(p, n) != n) {
        /* a text message is UTF-8 on the wire: ill-formed bytes (and a lone surrogate's WTF-8)
         * go out as U+FFFD, what a JS string's bytes would be */
        buf_t fixed = BUF_INIT;
        utf8_repair(&fixed, p, n, 1);
        b = eio_packet_new(EIO_MESSAGE, fixed.base, fixed.len);
        buf_free(&fixed);
    } else if (b == NULL) {
        b = eio_packet_new(EIO_MESSAGE, p, n);
    }
    eio_send(c->s, b);
    rbuf_unref(b);
    lua_pushboolean(L, 1);
    return 1;
}

/* close(): closes the session ("forced close"); pending packets are flushed first. */
static int c_close(lua_State *L)
{
    lconn_t *c = check_conn(L, lua_upvalueindex(1));
    lvm_selfcall(L, lua_upvalueindex(1));
    if (c->s != NULL)
        eio_close(c->s);
    lua_pushvalue(L, lua_upvalueindex(1));
    return 1;
}

static const luaL_Reg conn_methods[] = {{"send", c_send}, {"write", c_send}, {"close", c_close}, {NULL, NULL}};

static void push_conn_request(lua_State *L, int obj, lconn_t *c)
{
    uv_field(L, obj, "request");
    if (!lua_isnil(L, -1) || c->s == NULL)
        return;
    lua_pop(L, 1);
    lreq_push_handshake_request(L, eio_session_handshake(c->s));
    lua_getiuservalue(L, obj, 1);
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "request");
    lua_pop(L, 1);
}

static int conn_index(lua_State *L)
{
    lconn_t *c = check_conn(L, 1);
    const char *k = luaL_checkstring(L, 2);
    if (lemitter_method(L, 1, &conn_kind, k) || lvm_method(L, conn_methods, 1, k))
        return 1;
    if (strcmp(k, "id") == 0) {
        lua_pushstring(L, c->id);
    } else if (strcmp(k, "transport") == 0) {
        int t = c->s != NULL ? eio_session_transport(c->s) : c->transport;
        lua_createtable(L, 0, 1);
        lua_pushstring(L, t == EIO_T_WEBSOCKET ? "websocket" : "polling");
        lua_setfield(L, -2, "name");
    } else if (strcmp(k, "readyState") == 0) {
        lua_pushstring(L, c->s == NULL ? "closed" : eio_session_is_open(c->s) ? "open" : "closing");
    } else if (strcmp(k, "upgraded") == 0) {
        lua_pushboolean(L, c->s != NULL && eio_session_upgraded(c->s));
    } else if (strcmp(k, "protocol") == 0) {
        lua_pushinteger(L, 4);
    } else if (strcmp(k, "reloaded") == 0) {
        lua_pushboolean(L, c->reloaded);
    } else if (strcmp(k, "request") == 0) {
        push_conn_request(L, 1, c);
    } else if (strcmp(k, "remoteAddress") == 0) {
        if (c->s == NULL)
            return 0;
        lua_pushstring(L, eio_session_handshake(c->s)->address);
    } else if (strcmp(k, "data") == 0) {
        uv_field(L, 1, "data");
    } else {
        uv_field(L, 1, "props");
        lua_getfield(L, -1, k);
    }
    return 1;
}

static int conn_newindex(lua_State *L)
{
    static const char *const ro[] = {"id",       "transport", "readyState", "upgraded", "protocol", "reloaded",
                                     "request",  "remoteAddress", NULL};
    const char *k;
    check_conn(L, 1);
    k = luaL_checkstring(L, 2);
    for (int i = 0; ro[i]; i++)
        if (strcmp(k, ro[i]) == 0)
            return luaL_error(L, "conn.%s cannot be assigned", k);
    lua_getiuservalue(L, 1, 1);
    if (strcmp(k, "data") == 0) {
        lua_pushvalue(L, 3);
        lua_setfield(L, -2, "data");
        return 0;
    }
    lua_getfield(L, -1, "props");
    lua_pushvalue(L, 3);
    lua_setfield(L, -2, k);
    return 0;
}

static int conn_tostring(lua_State *L)
{
    lconn_t *c = check_conn(L, 1);
    lua_pushfstring(L, "siolua.engine.conn(%s%s)", c->id, c->s ? "" : ", closed");
    return 1;
}

void lconn_open(lua_State *L)
{
    luaL_newmetatable(L, CONN_MT);
    lua_pushcfunction(L, conn_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, conn_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, conn_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
}
