/* lengine: raw Engine.IO for Lua, like Node's standalone `engine.io` package.
 *   io.engine              the Socket.IO endpoint's Engine.IO server: events "connection" (conn),
 *                          "connection_error" (err), "initial_headers" / "headers" (headers, req);
 *                          its conns are observed: "message" shows the Engine.IO messages that
 *                          Socket.IO handles next, but conn.send is refused (Socket.IO owns them).
 *                          socket.conn is the same conn (made on first use if "connection" has
 *                          no listener). Conn events: message, data, packet, packetCreate, flush,
 *                          drain, heartbeat, upgrading, upgrade, close.
 *   siolua.engine{...}     an Engine.IO-only endpoint mounted beside Socket.IO on the same port
 *                          (path "/engine.io/"), whose conns are raw: conn.send(), "message".
 * Objects: an engine is a userdata "siolua.engine" and a conn a userdata "siolua.engine.conn";
 * each has a user value table holding its listeners ({events = {name = {fn | {fn} (once)}}}).
 * Ownership: C owns sessions. A conn holds its session pointer while the session lives, is kept
 * alive by a registry ref, and is found from the session through the session's data slot (raw
 * endpoints) or observer slot (io.engine). When the session closes, "close" fires, the pointer
 * becomes NULL and the ref is dropped: a closed conn's send returns false, close does nothing.
 * An endpoint's transport state (ep_t: the eio server and its config) is C memory that outlives a
 * VM: on hot reload, the new VM's engine with the same path takes it over, and each open session
 * gets a new conn (reloaded = true) for which "connection" runs again, as Socket.IO sockets do. */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "lhost.h"
#include "log.h"
#include "lvalue.h"
#include "utf8.h"

#define ENGINE_MT "siolua.engine"
#define CONN_MT "siolua.engine.conn"
#define MAX_HEADER_NAME 256
#define MAX_HEADER_VALUE 8192

static const char VM_KEY = 'v'; /* registry: this VM's lvm_t (a userdata) */

/* Engine events with listeners (lengine_t.flags): C skips the call into Lua when unset. */
enum { EV_CONNECTION = 1, EV_ERROR = 2, EV_HEADERS = 4, EV_INITIAL = 8 };
/* Conn events with listeners (lconn_t.flags), in conn_events' order. */
enum { CV_MESSAGE = 1, CV_PACKET = 2, CV_CLOSE = 4, CV_UPGRADE = 8, CV_PACKET_CREATE = 16, CV_FLUSH = 32,
       CV_DRAIN = 64, CV_HEARTBEAT = 128, CV_UPGRADING = 256, CV_DATA = 512 };

static const char *const engine_events[] = {"connection", "connection_error", "headers", "initial_headers", NULL};
static const char *const conn_events[] = {"message", "packet",    "close",     "upgrade", "packetCreate", "flush",
                                          "drain",   "heartbeat", "upgrading", "data",    NULL};
/* What the observer reports only when asked (eio_session_watch), by conn event. */
static const struct {
    unsigned cv, w;
} watched[] = {{CV_PACKET_CREATE, EIO_W_PACKET_CREATE},
               {CV_FLUSH, EIO_W_FLUSH},
               {CV_DRAIN, EIO_W_DRAIN},
               {CV_HEARTBEAT, EIO_W_HEARTBEAT},
               {CV_UPGRADING, EIO_W_UPGRADING}};

struct lengine;

typedef struct {
    eio_server_t eio;        /* first member: on_freed gets &ep->eio */
    eio_config_t cfg;        /* eio.cfg points here; its strings are the owner's or the server's */
    struct lengine *owner;   /* the engine serving it, NULL once shutting down */
} ep_t;

typedef struct lengine {
    lhost_t *h;              /* its VM */
    int raw;                 /* 1: an endpoint (its sessions are raw); 0: io.engine (observes) */
    unsigned flags;          /* EV_* */
    int ref;                 /* registry ref of the object: engines live as long as their VM */
    ep_t *ep;                /* raw: mounted transport state, NULL while pending or after close */
    int closed;              /* raw: engine.close() was called, or the server closed */
    char *path;              /* raw: "/engine.io/" */
    unsigned set;            /* CFG_* bits of the Engine.IO options given to siolua.engine */
    eio_config_t opt;        /* their values (the CORS and cookie strings are the engine's) */
    int allow_ref;           /* raw: its own allowRequest (LUA_NOREF: io.options') */
    struct lengine *next;    /* the VM's endpoints */
} lengine_t;

typedef struct {
    sl_server_t *srv;
    lengine_t *io_engine;
    lengine_t *endpoints;
    int started;             /* this VM is (or was) the server's current one: endpoints mounted */
    buf_t hdr_store;         /* strings of the last on_headers answer (eio copies them at once) */
} lvm_t;

typedef struct {
    eio_session_t *s;        /* NULL once closed */
    lengine_t *e;
    unsigned flags;          /* CV_* */
    int ref;                 /* registry ref while the session lives */
    int reloaded;            /* made by a hot reload for a session that was already open */
    int transport;           /* EIO_T_* when it closed (while open: the session's) */
    char id[21];
} lconn_t;

/* ---------------------------------------------------------------- helpers */

static lvm_t *vm_get(lhost_t *h)
{
    lua_State *L = lhost_state(h);
    lvm_t *vm;
    if (!lua_checkstack(L, 1))
        return NULL;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &VM_KEY);
    vm = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return vm;
}

static lconn_t *conn_of(const lengine_t *e, const eio_session_t *s)
{
    return e->raw ? eio_session_data(s) : eio_session_obs_data(s);
}

static void set_conn(const lengine_t *e, eio_session_t *s, lconn_t *c)
{
    if (e->raw)
        eio_session_set_data(s, c);
    else
        eio_session_set_obs_data(s, c);
}

/* Turns c into a closed handle and drops its ref. Never raises (no allocation). */
static void conn_release(lconn_t *c)
{
    lua_State *L = lhost_state(c->e->h);
    if (c->s != NULL) {
        c->transport = eio_session_transport(c->s);
        set_conn(c->e, c->s, NULL);
        eio_session_watch(c->s, 0);
    }
    c->s = NULL;
    luaL_unref(L, LUA_REGISTRYINDEX, c->ref);
    c->ref = LUA_NOREF;
}

/* Pushes the user value's field k. [-0, +1, -] */
static void uv_field(lua_State *L, int obj, const char *k)
{
    lua_getiuservalue(L, obj, 1);
    lua_getfield(L, -1, k);
    lua_remove(L, -2);
}

/* Recomputes the bits of the events that have listeners. */
static unsigned listener_flags(lua_State *L, int obj, const char *const *names)
{
    unsigned f = 0;
    uv_field(L, obj, "events");
    for (int i = 0; names[i]; i++) {
        lua_getfield(L, -1, names[i]);
        if (lua_istable(L, -1) && lua_rawlen(L, -1) > 0)
            f |= 1u << i;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return f;
}

static void update_flags(lua_State *L, int obj)
{
    lengine_t *e = luaL_testudata(L, obj, ENGINE_MT);
    if (e != NULL) {
        e->flags = listener_flags(L, obj, engine_events);
    } else {
        lconn_t *c = luaL_checkudata(L, obj, CONN_MT);
        unsigned w = 0;
        c->flags = listener_flags(L, obj, conn_events);
        for (size_t i = 0; i < sizeof(watched) / sizeof(watched[0]); i++)
            if (c->flags & watched[i].cv)
                w |= watched[i].w;
        if (c->s != NULL)
            eio_session_watch(c->s, w);
    }
}

/* Calls the listeners of ev on the object at obj with the nargs values on top, each in its own
 * handler coroutine (lhost_call: errors are logged, not raised). Once-listeners are removed
 * before any runs; the list is snapshotted so listeners may add or remove listeners.
 * [-nargs, +0, m] */
static void fire(lua_State *L, int obj, const char *ev, int nargs, const char *what)
{
    int args = lua_gettop(L) - nargs + 1, snap, live;
    lua_Integer n, k = 0, keep = 0;
    obj = lua_absindex(L, obj);
    luaL_checkstack(L, nargs + 8, "fire");
    uv_field(L, obj, "events");
    lua_getfield(L, -1, ev);
    if (!lua_istable(L, -1)) {
        lua_settop(L, args - 1);
        return;
    }
    live = lua_gettop(L);
    n = (lua_Integer)lua_rawlen(L, live);
    lua_createtable(L, (int)n, 0);
    snap = lua_gettop(L);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, live, i);
        if (lua_istable(L, -1)) { /* {fn}: a once-listener, dropped from the live list */
            lua_rawgeti(L, -1, 1);
            lua_rawseti(L, snap, ++k);
            lua_pop(L, 1);
        } else {
            lua_pushvalue(L, -1);
            lua_rawseti(L, snap, ++k);
            lua_rawseti(L, live, ++keep);
        }
    }
    for (lua_Integer i = keep + 1; i <= n; i++) {
        lua_pushnil(L);
        lua_rawseti(L, live, i);
    }
    if (keep != n)
        update_flags(L, obj);
    for (lua_Integer i = 1; i <= k; i++) {
        lua_rawgeti(L, snap, i);
        for (int a = 0; a < nargs; a++)
            lua_pushvalue(L, args + a);
        lhost_call(L, nargs, what);
    }
    lua_settop(L, args - 1);
}

/* ---------------------------------------------------------------- calls from eio into Lua */

typedef struct {
    lengine_t *e;
    eio_session_t *s;
    lconn_t *c;
    const char *reason;
    const eio_packet_t *p;
    int binary;
    const char *data;
    size_t len;
    const http_req_t *req;
    eio_error_t code;
    const char *context, *name;
    int initial;
    http_hdr_t *hdrs;
    size_t n, cap;
    int reloaded;
    unsigned what;          /* EIO_W_* of notify_k, with pkts[0..n) */
    rbuf_t *const *pkts;
} args_t;

/* Makes the conn of session s for engine e and stores it in s's slot. [-0, +1, m] */
static lconn_t *conn_new(lua_State *L, lengine_t *e, eio_session_t *s, int reloaded)
{
    lconn_t *c = lua_newuserdatauv(L, sizeof(*c), 1);
    int obj = lua_gettop(L);
    memset(c, 0, sizeof(*c));
    c->ref = LUA_NOREF;
    c->e = e;
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
    set_conn(e, s, c);
    return c;
}

/* A new conn for a->s, then the engine's "connection" listeners. */
static int connection_k(lua_State *L)
{
    args_t *a = lua_touserdata(L, 1);
    lengine_t *e = a->e;
    lua_settop(L, 0);
    conn_new(L, e, a->s, a->reloaded);
    lua_rawgeti(L, LUA_REGISTRYINDEX, e->ref);
    lua_pushvalue(L, 1);
    fire(L, -2, "connection", 1, "engine \"connection\" handler");
    return 0;
}

static void conn_open(lengine_t *e, eio_session_t *s, int reloaded)
{
    args_t a = {.e = e, .s = s, .reloaded = reloaded};
    char what[64];
    snprintf(what, sizeof(what), "engine connection %s", eio_session_id(s));
    lhost_protect(e->h, connection_k, &a, what);
}

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
    fire(L, 1, "data", 1, "engine conn \"data\" handler");
    fire(L, 1, "message", 1, "engine conn \"message\" handler");
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
        fire(L, 1, "packetCreate", 1, "engine conn \"packetCreate\" handler");
        break;
    case EIO_W_FLUSH:
        lua_createtable(L, (int)a->n, 0);
        for (size_t i = 0; i < a->n; i++) {
            push_out_packet(L, a->pkts[i]);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        fire(L, 1, "flush", 1, "engine conn \"flush\" handler");
        break;
    case EIO_W_DRAIN:
        fire(L, 1, "drain", 0, "engine conn \"drain\" handler");
        break;
    case EIO_W_HEARTBEAT:
        fire(L, 1, "heartbeat", 0, "engine conn \"heartbeat\" handler");
        break;
    case EIO_W_UPGRADING:
        push_websocket(L);
        fire(L, 1, "upgrading", 1, "engine conn \"upgrading\" handler");
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
    fire(L, 1, "packet", 1, "engine conn \"packet\" handler");
    return 0;
}

static int close_k(lua_State *L)
{
    args_t *a = lua_touserdata(L, 1);
    lua_settop(L, 0);
    lua_rawgeti(L, LUA_REGISTRYINDEX, a->c->ref);
    lua_pushstring(L, a->reason);
    fire(L, 1, "close", 1, "engine conn \"close\" handler");
    return 0;
}

static int upgrade_k(lua_State *L)
{
    args_t *a = lua_touserdata(L, 1);
    lua_settop(L, 0);
    lua_rawgeti(L, LUA_REGISTRYINDEX, a->c->ref);
    push_websocket(L);
    fire(L, 1, "upgrade", 1, "engine conn \"upgrade\" handler");
    return 0;
}

/* err = {code, message, req, context = {message?, name?}} */
static int error_k(lua_State *L)
{
    args_t *a = lua_touserdata(L, 1);
    lua_settop(L, 0);
    lua_rawgeti(L, LUA_REGISTRYINDEX, a->e->ref);
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, (lua_Integer)a->code);
    lua_setfield(L, -2, "code");
    lua_pushstring(L, eio_error_message(a->code));
    lua_setfield(L, -2, "message");
    lhost_push_request(L, a->req);
    lua_setfield(L, -2, "req");
    lua_createtable(L, 0, 2);
    if (a->context != NULL) {
        lua_pushstring(L, a->context);
        lua_setfield(L, -2, "message");
    }
    if (a->name != NULL) {
        lua_pushstring(L, a->name);
        lua_setfield(L, -2, "name");
    }
    lua_setfield(L, -2, "context");
    fire(L, 1, "connection_error", 1, "engine \"connection_error\" handler");
    return 0;
}

static int valid_name(const char *p, size_t n)
{
    static const char tchar[] = "!#$%&'*+-.^_`|~";
    if (n == 0 || n > MAX_HEADER_NAME)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || strchr(tchar, c)))
            return 0;
    }
    return 1;
}

static int valid_value(const char *p, size_t n)
{
    if (n > MAX_HEADER_VALUE)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (p[i] == '\r' || p[i] == '\n' || p[i] == '\0')
            return 0;
    return 1;
}

/* Appends "name\0value\0" to store if both are valid; returns 1 if added. */
static int store_header(buf_t *store, const char *name, size_t nlen, const char *value, size_t vlen)
{
    if (!valid_name(name, nlen) || !valid_value(value, vlen)) {
        log_warn("engine \"headers\": header %.*s refused (invalid name or value)", (int)(nlen > 64 ? 64 : nlen),
                 name);
        return 0;
    }
    buf_append(store, name, nlen);
    buf_appendc(store, '\0');
    buf_append(store, value, vlen);
    buf_appendc(store, '\0');
    return 1;
}

/* headers = {name = value | {values}} (eio's own first), then "initial_headers" and "headers";
 * the table after the listeners is the answer's headers. */
static int headers_k(lua_State *L)
{
    args_t *a = lua_touserdata(L, 1);
    lengine_t *e = a->e;
    lvm_t *vm;
    size_t count = 0, off = 0;
    lua_settop(L, 0);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &VM_KEY);
    vm = lua_touserdata(L, -1);
    lua_pop(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, e->ref); /* 1 */
    lua_createtable(L, 0, (int)a->n + 2);      /* 2 */
    for (size_t i = 0; i < a->n; i++) {
        lua_pushstring(L, a->hdrs[i].value);
        lua_setfield(L, 2, a->hdrs[i].name);
    }
    lhost_push_request(L, a->req); /* 3 */
    if (a->initial && (e->flags & EV_INITIAL)) {
        lua_pushvalue(L, 2);
        lua_pushvalue(L, 3);
        fire(L, 1, "initial_headers", 2, "engine \"initial_headers\" handler");
    }
    if (e->flags & EV_HEADERS) {
        lua_pushvalue(L, 2);
        lua_pushvalue(L, 3);
        fire(L, 1, "headers", 2, "engine \"headers\" handler");
    }
    /* read the table back: strings are copied into vm->hdr_store, then pointed to */
    vm->hdr_store.len = 0;
    lua_pushnil(L);
    while (lua_next(L, 2) != 0) {
        size_t nlen, vlen;
        const char *name;
        if (lua_type(L, -2) != LUA_TSTRING) {
            lua_pop(L, 1);
            continue;
        }
        name = lua_tolstring(L, -2, &nlen);
        if (lua_istable(L, -1)) { /* several lines (Set-Cookie) */
            for (lua_Integer i = 1; i <= (lua_Integer)lua_rawlen(L, -1) && count < a->cap; i++) {
                lua_rawgeti(L, -1, i);
                if (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER) {
                    const char *v = lua_tolstring(L, -1, &vlen);
                    count += (size_t)store_header(&vm->hdr_store, name, nlen, v, vlen);
                }
                lua_pop(L, 1);
            }
        } else if ((lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER) && count < a->cap) {
            const char *v = lua_tolstring(L, -1, &vlen); /* a number is converted in place: a copy */
            count += (size_t)store_header(&vm->hdr_store, name, nlen, v, vlen);
        }
        lua_pop(L, 1);
    }
    for (size_t i = 0; i < count; i++) {
        const char *name = vm->hdr_store.base + off;
        const char *value = name + strlen(name) + 1;
        a->hdrs[i] = (http_hdr_t){name, value};
        off = (size_t)(value - vm->hdr_store.base) + strlen(value) + 1;
    }
    a->n = count;
    return 0;
}

/* ---------------------------------------------------------------- event entry points */

static void on_connection(lengine_t *e, eio_session_t *s, int reloaded)
{
    if (e == NULL || (!e->raw && !(e->flags & EV_CONNECTION)))
        return; /* io.engine without "connection" listeners: no conn for Socket.IO sessions */
    conn_open(e, s, reloaded);
}

static void on_message(lengine_t *e, eio_session_t *s, int binary, const char *data, size_t len)
{
    lconn_t *c = e ? conn_of(e, s) : NULL;
    args_t a = {.e = e, .c = c, .binary = binary, .data = data, .len = len};
    if (c == NULL || !(c->flags & (CV_MESSAGE | CV_DATA)))
        return;
    lhost_protect(e->h, message_k, &a, "engine conn message");
}

static void on_packet(lengine_t *e, eio_session_t *s, const eio_packet_t *p)
{
    lconn_t *c = e ? conn_of(e, s) : NULL;
    args_t a = {.e = e, .c = c, .p = p};
    if (c == NULL || !(c->flags & CV_PACKET))
        return;
    lhost_protect(e->h, packet_k, &a, "engine conn packet");
}

static void on_upgrade(lengine_t *e, eio_session_t *s)
{
    lconn_t *c = e ? conn_of(e, s) : NULL;
    args_t a = {.e = e, .c = c};
    if (c == NULL || !(c->flags & CV_UPGRADE))
        return;
    lhost_protect(e->h, upgrade_k, &a, "engine conn upgrade");
}

static void on_notify(lengine_t *e, eio_session_t *s, unsigned what, rbuf_t *const *pkts, size_t n)
{
    lconn_t *c = e ? conn_of(e, s) : NULL;
    args_t a = {.e = e, .c = c, .what = what, .pkts = pkts, .n = n};
    if (c == NULL)
        return;
    lhost_protect(e->h, notify_k, &a, "engine conn event");
}

static void on_close(lengine_t *e, eio_session_t *s, const char *reason)
{
    lconn_t *c = e ? conn_of(e, s) : NULL;
    args_t a = {.e = e, .c = c, .reason = reason};
    if (c == NULL)
        return;
    if (c->flags & CV_CLOSE)
        lhost_protect(e->h, close_k, &a, "engine conn close");
    conn_release(c); /* also when a listener failed: the handle must not outlive the session */
}

static void on_error(lengine_t *e, const http_req_t *req, eio_error_t code, const char *context, const char *name)
{
    args_t a = {.e = e, .req = req, .code = code, .context = context, .name = name};
    if (e == NULL || !(e->flags & EV_ERROR))
        return;
    lhost_protect(e->h, error_k, &a, "engine connection_error");
}

static size_t on_headers(lengine_t *e, const http_req_t *req, int initial, http_hdr_t *hdrs, size_t n, size_t cap)
{
    args_t a = {.e = e, .req = req, .initial = initial, .hdrs = hdrs, .n = n, .cap = cap};
    if (e == NULL || !((e->flags & EV_HEADERS) || (initial && (e->flags & EV_INITIAL))))
        return n;
    if (lhost_protect(e->h, headers_k, &a, "engine headers") != 0)
        return n; /* eio's own headers, untouched (headers_k fills hdrs only at its very end) */
    return a.n;
}

/* Raw endpoints: the owner is the engine itself (ud), for both the handler and the observer. */
static void raw_open(eio_session_t *s, void *ud) { on_connection(ud, s, 0); }
static void raw_message(eio_session_t *s, int binary, const char *data, size_t len, void *ud)
{
    on_message(ud, s, binary, data, len);
}
static void raw_close(eio_session_t *s, const char *reason, void *ud) { on_close(ud, s, reason); }
static void raw_upgrade(eio_session_t *s, void *ud) { on_upgrade(ud, s); }
static void raw_packet(eio_session_t *s, const eio_packet_t *p, void *ud) { on_packet(ud, s, p); }
static void raw_error(const http_req_t *req, eio_error_t code, const char *context, const char *name, void *ud)
{
    on_error(ud, req, code, context, name);
}
static size_t raw_headers(const http_req_t *req, int initial, http_hdr_t *hdrs, size_t n, size_t cap, void *ud)
{
    return on_headers(ud, req, initial, hdrs, n, cap);
}

static void raw_notify(eio_session_t *s, unsigned what, rbuf_t *const *pkts, size_t n, void *ud)
{
    on_notify(ud, s, what, pkts, n);
}

static const eio_handler_t raw_handler = {raw_open, raw_message, raw_close, raw_upgrade};
static const eio_observer_t raw_observer = {NULL, raw_packet, NULL, NULL, NULL, raw_error, raw_headers, raw_notify};

/* io.engine: the observer's ud is the current VM's lvm_t (updated on reload). */
static lengine_t *main_engine(void *ud) { return ud ? ((lvm_t *)ud)->io_engine : NULL; }
static void main_connection(eio_session_t *s, void *ud) { on_connection(main_engine(ud), s, 0); }
static void main_packet(eio_session_t *s, const eio_packet_t *p, void *ud) { on_packet(main_engine(ud), s, p); }
static void main_message(eio_session_t *s, int binary, const char *data, size_t len, void *ud)
{
    on_message(main_engine(ud), s, binary, data, len); /* observed: Socket.IO handles it next */
}
static void main_upgrade(eio_session_t *s, void *ud) { on_upgrade(main_engine(ud), s); }
static void main_close(eio_session_t *s, const char *reason, void *ud) { on_close(main_engine(ud), s, reason); }
static void main_error(const http_req_t *req, eio_error_t code, const char *context, const char *name, void *ud)
{
    on_error(main_engine(ud), req, code, context, name);
}
static size_t main_headers(const http_req_t *req, int initial, http_hdr_t *hdrs, size_t n, size_t cap, void *ud)
{
    return on_headers(main_engine(ud), req, initial, hdrs, n, cap);
}

static void main_notify(eio_session_t *s, unsigned what, rbuf_t *const *pkts, size_t n, void *ud)
{
    on_notify(main_engine(ud), s, what, pkts, n);
}

static const eio_observer_t main_observer = {main_connection, main_packet,  main_message, main_upgrade,
                                             main_close,      main_error,   main_headers, main_notify};

/* ---------------------------------------------------------------- endpoints */

/* allowRequest of raw endpoints: the engine's own, else the app's (io.options), in the VM that
 * serves the endpoint now. */
static void ep_allow(eio_allow_t *a, const http_req_t *req, void *ud)
{
    ep_t *ep = ud;
    if (ep->owner == NULL)
        eio_allow_done(a, 0, NULL); /* closing */
    else
        lserver_allow_request(ep->owner->h, ep->owner->allow_ref, a, req);
}

/* The server's Engine.IO options, with the engine's own on top. The strings are borrowed: the
 * engine's live as long as it serves the endpoint (a reload's successor brings its own), the
 * server's as long as the server. */
static void ep_configure(ep_t *ep, const lengine_t *e, const sl_server_t *srv)
{
    eio_config_t *c = &ep->cfg;
    *c = srv->cfg.eio;
    if (e->set & CFG_PING_INTERVAL)
        c->ping_interval = e->opt.ping_interval;
    if (e->set & CFG_PING_TIMEOUT)
        c->ping_timeout = e->opt.ping_timeout;
    if (e->set & CFG_UPGRADE_TIMEOUT)
        c->upgrade_timeout = e->opt.upgrade_timeout;
    if (e->set & CFG_MAX_BUFFER)
        c->max_payload = e->opt.max_payload;
    if (e->set & CFG_TRANSPORTS)
        c->transports = e->opt.transports;
    if (e->set & CFG_ALLOW_UPGRADES)
        c->allow_upgrades = e->opt.allow_upgrades;
    if (e->set & CFG_CORS)
        c->cors = e->opt.cors;
    if (e->set & CFG_COOKIE)
        c->cookie = e->opt.cookie;
    if (e->set & CFG_PER_MESSAGE_DEFLATE)
        c->per_message_deflate = e->opt.per_message_deflate;
    if (e->set & CFG_HTTP_COMPRESSION)
        c->http_compression = e->opt.http_compression;
    if (e->set & CFG_ALLOW_EIO3)
        c->allow_eio3 = e->opt.allow_eio3;
}

static void ep_bind(ep_t *ep, lengine_t *e, sl_server_t *srv)
{
    ep->owner = e;
    e->ep = ep;
    ep->eio.ud = e;
    ep->eio.obs_ud = e;
    ep->eio.q_ping.timeout = ep->cfg.ping_interval;
    ep->eio.q_pong.timeout = ep->cfg.ping_timeout;
    ep->eio.q_upgrade.timeout = ep->cfg.upgrade_timeout;
    ep->eio.q_allow.timeout = ep->cfg.allow_timeout;
    ep->eio.q_ping3.timeout = ep->cfg.ping_interval + ep->cfg.ping_timeout;
    /* one HTTP body limit for the port: the largest; each endpoint checks its own */
    if (ep->cfg.max_payload > srv->cfg.http.max_body)
        srv->cfg.http.max_body = ep->cfg.max_payload;
}

static void ep_mount(lvm_t *vm, lengine_t *e)
{
    sl_server_t *srv = vm->srv;
    ep_t *ep = xcalloc(1, sizeof(*ep));
    ep_configure(ep, e, srv);
    eio_server_init(&ep->eio, srv->loop, &ep->cfg, &srv->cfg.http, &raw_handler, e);
    eio_server_watch(&ep->eio, &srv->clock);
    ep->eio.allow_request = ep_allow;
    ep->eio.allow_ud = ep;
    ep->eio.obs = &raw_observer;
    ep_bind(ep, e, srv);
    log_info("siolua: Engine.IO endpoint at %s", e->path);
}

static void ep_freed(eio_server_t *eio)
{
    free((ep_t *)(void *)eio);
}

/* Closes the endpoint: with `silent`, no Lua runs (the VM is going away): handles are released
 * first, so the sessions' close callbacks find none. */
static void ep_close(lengine_t *e, int silent)
{
    ep_t *ep = e->ep;
    if (ep == NULL)
        return;
    if (silent) {
        eio_session_t **v;
        size_t n = eio_server_sessions(&ep->eio, &v);
        for (size_t i = 0; i < n; i++) {
            lconn_t *c = eio_session_data(v[i]);
            if (c != NULL)
                conn_release(c);
        }
        eio_sessions_release(v, n);
        ep->eio.ud = ep->eio.obs_ud = NULL;
    }
    eio_server_shutdown(&ep->eio, "forced close", ep_freed);
    ep->owner = NULL;
    e->ep = NULL;
}

/* Hot reload: `to` (new VM) takes over `from`'s endpoint and open sessions. */
static void ep_adopt(lengine_t *from, lengine_t *to, sl_server_t *srv)
{
    ep_t *ep = from->ep;
    eio_session_t **v;
    size_t n;
    from->ep = NULL;
    ep_configure(ep, to, srv);
    ep_bind(ep, to, srv);
    n = eio_server_sessions(&ep->eio, &v);
    for (size_t i = 0; i < n; i++) {
        lconn_t *c = eio_session_data(v[i]);
        if (c != NULL)
            conn_release(c);
    }
    for (size_t i = 0; i < n; i++)
        if (eio_session_is_open(v[i]) && eio_session_data(v[i]) == NULL)
            on_connection(to, v[i], 1);
    eio_sessions_release(v, n);
}

static lengine_t *find_endpoint(lvm_t *vm, const char *path)
{
    for (lengine_t *e = vm->endpoints; e; e = e->next)
        if (!e->closed && strcmp(e->path, path) == 0)
            return e;
    return NULL;
}

/* ---------------------------------------------------------------- emitter methods */

/* on(ev, fn) / once(ev, fn) on the object at upvalue 1; returns the object. */
static int add_listener(lua_State *L, int once)
{
    int obj = lua_upvalueindex(1);
    lhost_selfcall(L, obj);
    luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    uv_field(L, obj, "events");
    if (lua_getfield(L, -1, lua_tostring(L, 1)) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, lua_tostring(L, 1));
    }
    if (once) {
        lua_createtable(L, 1, 0);
        lua_pushvalue(L, 2);
        lua_rawseti(L, -2, 1);
    } else {
        lua_pushvalue(L, 2);
    }
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    update_flags(L, obj);
    lua_pushvalue(L, obj);
    return 1;
}

static int m_on(lua_State *L) { return add_listener(L, 0); }
static int m_once(lua_State *L) { return add_listener(L, 1); }

/* off(ev[, fn]) / removeAllListeners([ev]) */
static int m_off(lua_State *L)
{
    int obj = lua_upvalueindex(1);
    lhost_selfcall(L, obj);
    uv_field(L, obj, "events");
    if (lua_isnoneornil(L, 1)) {
        lua_getiuservalue(L, obj, 1);
        lua_newtable(L);
        lua_setfield(L, -2, "events");
    } else if (lua_getfield(L, -1, luaL_checkstring(L, 1)) == LUA_TTABLE) {
        int list = lua_gettop(L);
        lua_Integer n = (lua_Integer)lua_rawlen(L, list), keep = 0;
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, list, i);
            if (lua_istable(L, -1))
                lua_rawgeti(L, -1, 1);
            else
                lua_pushvalue(L, -1);
            if (!lua_isnoneornil(L, 2) && !lua_rawequal(L, -1, 2)) {
                lua_pop(L, 1);
                lua_rawseti(L, list, ++keep);
            } else {
                lua_pop(L, 2);
            }
        }
        for (lua_Integer i = keep + 1; i <= n; i++) {
            lua_pushnil(L);
            lua_rawseti(L, list, i);
        }
    }
    update_flags(L, obj);
    lua_pushvalue(L, obj);
    return 1;
}

static int m_listener_count(lua_State *L)
{
    int obj = lua_upvalueindex(1);
    lhost_selfcall(L, obj);
    uv_field(L, obj, "events");
    lua_getfield(L, -1, luaL_checkstring(L, 1));
    lua_pushinteger(L, lua_istable(L, -1) ? (lua_Integer)lua_rawlen(L, -1) : 0);
    return 1;
}

static const luaL_Reg emitter_methods[] = {{"on", m_on},
                                           {"addListener", m_on},
                                           {"once", m_once},
                                           {"off", m_off},
                                           {"removeListener", m_off},
                                           {"removeAllListeners", m_off},
                                           {"listenerCount", m_listener_count},
                                           {NULL, NULL}};

/* Pushes a method of `list` named k bound to the object at idx, or returns 0. */
static int push_method(lua_State *L, const luaL_Reg *list, int idx, const char *k)
{
    for (const luaL_Reg *m = list; m->name; m++)
        if (strcmp(k, m->name) == 0) {
            lua_pushvalue(L, idx);
            lua_pushcclosure(L, m->func, 1);
            return 1;
        }
    return 0;
}

/* ---------------------------------------------------------------- conn */

static lconn_t *check_conn(lua_State *L, int idx) { return luaL_checkudata(L, idx, CONN_MT); }

/* send(data) / write(data): a string is a text message, a siolua.binary a binary one.
 * Returns true, or false when the session is closed. Raw endpoints only. */
static int c_send(lua_State *L)
{
    lconn_t *c = check_conn(L, lua_upvalueindex(1));
    const char *p;
    size_t n;
    rbuf_t *b;
    lhost_selfcall(L, lua_upvalueindex(1));
    if (!c->e->raw)
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
    lhost_selfcall(L, lua_upvalueindex(1));
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
    lhost_push_handshake_request(L, eio_session_handshake(c->s));
    lua_getiuservalue(L, obj, 1);
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "request");
    lua_pop(L, 1);
}

static int conn_index(lua_State *L)
{
    lconn_t *c = check_conn(L, 1);
    const char *k = luaL_checkstring(L, 2);
    if (push_method(L, emitter_methods, 1, k) || push_method(L, conn_methods, 1, k))
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

/* ---------------------------------------------------------------- engine */

static lengine_t *check_engine(lua_State *L, int idx) { return luaL_checkudata(L, idx, ENGINE_MT); }

static eio_server_t *engine_eio(lengine_t *e)
{
    if (e->raw)
        return e->ep != NULL ? &e->ep->eio : NULL;
    return e->h->srv->eio.loop != NULL && !e->h->srv->eio.shutting ? &e->h->srv->eio : NULL;
}

/* close(): closes every session of this engine ("forced close"); a raw endpoint is unmounted. */
static int e_close(lua_State *L)
{
    lengine_t *e = check_engine(L, lua_upvalueindex(1));
    eio_server_t *eio = engine_eio(e);
    lhost_selfcall(L, lua_upvalueindex(1));
    if (e->raw) {
        e->closed = 1;
        ep_close(e, 0);
    } else if (eio != NULL) {
        eio_session_t **v;
        size_t n = eio_server_sessions(eio, &v);
        for (size_t i = 0; i < n; i++)
            eio_close(v[i]);
        eio_sessions_release(v, n);
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    return 1;
}

static const luaL_Reg engine_methods[] = {{"close", e_close}, {NULL, NULL}};

static int engine_index(lua_State *L)
{
    lengine_t *e = check_engine(L, 1);
    const char *k = luaL_checkstring(L, 2);
    if (push_method(L, emitter_methods, 1, k) || push_method(L, engine_methods, 1, k))
        return 1;
    if (strcmp(k, "clientsCount") == 0) {
        eio_server_t *eio = engine_eio(e);
        lua_pushinteger(L, eio != NULL ? (lua_Integer)eio->nsessions : 0);
    } else if (strcmp(k, "path") == 0) {
        if (e->raw)
            lua_pushstring(L, e->path);
        else
            lua_pushstring(L, e->h->srv->cfg.path);
    } else {
        return 0;
    }
    return 1;
}

static int engine_tostring(lua_State *L)
{
    lengine_t *e = check_engine(L, 1);
    lua_pushfstring(L, "siolua.engine(%s)", e->raw ? e->path : "io.engine");
    return 1;
}

/* A scratch eio_config_t for siolua.engine's options, in a userdata whose __gc frees its strings
 * (an option that raises leaks nothing). [-0, +1, m] */
static int options_gc(lua_State *L)
{
    eio_config_free(lua_touserdata(L, 1));
    return 0;
}

static eio_config_t *new_options(lua_State *L)
{
    eio_config_t *c = lua_newuserdatauv(L, sizeof(*c), 0);
    memset(c, 0, sizeof(*c));
    c->cookie.max_age = -1;
    c->per_message_deflate = (pmd_config_t)PMD_CONFIG_DEFAULTS; /* what a table's missing keys keep */
    c->http_compression = (eio_http_compression_t)EIO_HTTP_COMPRESSION_DEFAULTS;
    if (luaL_newmetatable(L, "siolua.engine.options")) {
        lua_pushcfunction(L, options_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    return c;
}

/* Moves the options given (`set`) from the scratch config into e, which owns their strings from
 * now on (the scratch keeps none). */
static void take_options(eio_config_t *tmp, unsigned set, lengine_t *e)
{
    e->opt = *tmp;
    e->set = set;
    memset(tmp, 0, sizeof(*tmp));
}

/* Creates an engine object, anchored in the registry for the VM's life. [-0, +1, m] */
static lengine_t *new_engine(lua_State *L, int raw)
{
    lengine_t *e = lua_newuserdatauv(L, sizeof(*e), 1);
    memset(e, 0, sizeof(*e));
    e->h = lhost_get(L);
    e->raw = raw;
    e->ref = LUA_NOREF;
    e->allow_ref = LUA_NOREF;
    luaL_setmetatable(L, ENGINE_MT);
    lua_createtable(L, 0, 1);
    lua_newtable(L);
    lua_setfield(L, -2, "events");
    lua_setiuservalue(L, -2, 1);
    lua_pushvalue(L, -1);
    e->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return e;
}

/* siolua.engine{path = "/engine.io/", allowRequest = fn, and the Engine.IO options of
 * io.options (pingInterval, pingTimeout, upgradeTimeout, maxHttpBufferSize, transports,
 * allowUpgrades, cors, cookie)}: an Engine.IO-only endpoint. Options not given are the server's. */
static int l_engine(lua_State *L)
{
    lhost_t *h = lhost_get(L);
    lvm_t *vm;
    lengine_t *e;
    const char *path = "/engine.io/";
    unsigned set = 0;   /* CFG_* bits of the options given */
    int allow_ref;
    size_t plen;
    lua_settop(L, 1);
    if (lua_isnil(L, 1))
        lua_newtable(L), lua_replace(L, 1);
    luaL_checktype(L, 1, LUA_TTABLE);
    new_options(L); /* 2: a scratch config, whose strings an error frees */
    lua_pushnil(L);
    while (lua_next(L, 1) != 0) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
        unsigned bit;
        if (strcmp(k, "path") == 0)
            path = luaL_checkstring(L, -1); /* kept alive by the table */
        else if (strcmp(k, "allowRequest") == 0)
            luaL_checktype(L, -1, LUA_TFUNCTION);
        else if ((bit = lserver_eio_option(L, "siolua.engine", k, lua_touserdata(L, 2), 0)) != 0)
            set |= bit;
        else
            return luaL_error(L, "siolua.engine: unknown option \"%s\"", k);
        lua_pop(L, 1);
    }
    /* the path as the reference normalises it: a leading and a trailing slash */
    plen = strlen(path);
    lua_pushfstring(L, "%s%s%s", path[0] == '/' ? "" : "/", path, plen > 0 && path[plen - 1] == '/' ? "" : "/");
    path = lua_tostring(L, -1); /* 3 */
    if (strcmp(path, h->srv->cfg.path) == 0)
        return luaL_error(L, "siolua.engine: path %s is Socket.IO's", path);
    if (strcmp(path, "/") == 0)
        return luaL_error(L, "siolua.engine: path / would take every request");
    vm = vm_get(h);
    if (find_endpoint(vm, path) != NULL)
        return luaL_error(L, "siolua.engine: an endpoint is mounted at %s already", path);
    lua_getfield(L, 1, "allowRequest");
    allow_ref = lua_isnil(L, -1) ? (lua_pop(L, 1), LUA_NOREF) : luaL_ref(L, LUA_REGISTRYINDEX);
    e = new_engine(L, 1);
    e->allow_ref = allow_ref;
    e->path = xstrndup(path, strlen(path)); /* nothing raises after this */
    take_options(lua_touserdata(L, 2), set, e);
    e->next = vm->endpoints;
    vm->endpoints = e;
    /* mounted now if this VM serves; else when it starts (or takes over in a reload) */
    if (vm->started && h->srv->lua == h && !h->srv->closing)
        ep_mount(vm, e);
    return 1;
}

/* ---------------------------------------------------------------- entry points (lhost.h) */

static int vm_gc(lua_State *L)
{
    lvm_t *vm = lua_touserdata(L, 1);
    for (lengine_t *e = vm->endpoints; e; e = e->next) {
        free(e->path);
        e->path = NULL;
        eio_config_free(&e->opt);
    }
    vm->endpoints = NULL;
    buf_free(&vm->hdr_store);
    return 0;
}

void lengine_open(lua_State *L)
{
    lvm_t *vm = lua_newuserdatauv(L, sizeof(*vm), 0);
    memset(vm, 0, sizeof(*vm));
    vm->srv = lhost_get(L)->srv;
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, vm_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &VM_KEY);

    luaL_newmetatable(L, ENGINE_MT);
    lua_pushcfunction(L, engine_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, engine_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
    luaL_newmetatable(L, CONN_MT);
    lua_pushcfunction(L, conn_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, conn_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, conn_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);

    lua_getglobal(L, "siolua");
    lua_pushcfunction(L, l_engine);
    lua_setfield(L, -2, "engine");
    lua_pop(L, 1);

    /* io.engine: a raw field of the io object (its metatable only has __index) */
    lua_getglobal(L, "io");
    lua_pushliteral(L, "engine");
    vm->io_engine = new_engine(L, 0);
    lua_rawset(L, -3);
    lua_pop(L, 1);
}

void lengine_start(lhost_t *h)
{
    lvm_t *vm = vm_get(h);
    sl_server_t *srv = h->srv;
    if (vm == NULL)
        return;
    vm->started = 1;
    srv->eio.obs = &main_observer;
    srv->eio.obs_ud = vm;
    for (lengine_t *e = vm->endpoints; e; e = e->next)
        if (e->ep == NULL && !e->closed)
            ep_mount(vm, e);
}

eio_server_t *lengine_route(lhost_t *h, const http_req_t *req)
{
    lvm_t *vm = h != NULL ? vm_get(h) : NULL;
    for (lengine_t *e = vm ? vm->endpoints : NULL; e; e = e->next) {
        size_t n = strlen(e->path);
        if (e->ep != NULL && req->url.len >= n && memcmp(req->url.ptr, e->path, n) == 0)
            return &e->ep->eio;
    }
    return NULL;
}

void lengine_close(lhost_t *h)
{
    lvm_t *vm = h != NULL ? vm_get(h) : NULL;
    for (lengine_t *e = vm ? vm->endpoints : NULL; e; e = e->next) {
        e->closed = 1;
        ep_close(e, 0);
    }
}

void lengine_free(lhost_t *h)
{
    lvm_t *vm = vm_get(h);
    sl_server_t *srv = h->srv;
    lhost_t *cur = srv->lua;
    lvm_t *next = cur != NULL && cur != h ? vm_get(cur) : NULL;
    eio_session_t **v;
    size_t n;
    if (vm == NULL)
        return;
    if (vm->started && srv->eio.loop != NULL && !srv->eio.shutting) {
        /* io.engine's conns of this VM become closed handles, silently */
        n = eio_server_sessions(&srv->eio, &v);
        for (size_t i = 0; i < n; i++) {
            lconn_t *c = eio_session_obs_data(v[i]);
            if (c != NULL && c->e->h == h)
                conn_release(c);
        }
        eio_sessions_release(v, n);
    }
    for (lengine_t *e = vm->endpoints; e; e = e->next) {
        lengine_t *succ = vm->started && next != NULL ? find_endpoint(next, e->path) : NULL;
        if (e->ep == NULL)
            continue;
        if (succ != NULL && succ->ep == NULL)
            ep_adopt(e, succ, srv);
        else
            ep_close(e, 1);
    }
    if (vm->started && next != NULL && !srv->closing) {
        /* a reload succeeded: the new VM serves from now on */
        next->started = 1;
        for (lengine_t *e = next->endpoints; e; e = e->next)
            if (e->ep == NULL && !e->closed)
                ep_mount(next, e);
        if (srv->eio.loop != NULL && !srv->eio.shutting) {
            srv->eio.obs_ud = next;
            if (next->io_engine->flags & EV_CONNECTION) {
                n = eio_server_sessions(&srv->eio, &v);
                for (size_t i = 0; i < n; i++)
                    if (eio_session_is_open(v[i]) && eio_session_obs_data(v[i]) == NULL)
                        on_connection(next->io_engine, v[i], 1);
                eio_sessions_release(v, n);
            }
        }
    }
    vm->started = 0;
}

void lengine_push_conn(lua_State *L, eio_session_t *s)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &VM_KEY);
    lvm_t *vm = lua_touserdata(L, -1);
    lconn_t *c = eio_session_obs_data(s);
    lua_pop(L, 1);
    if (c != NULL)
        lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref);
    else
        conn_new(L, vm->io_engine, s, 0);
}
