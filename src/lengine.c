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
#include "lengine.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "lconn.h"
#include "lemitter.h"
#include "lenv.h"
#include "log.h"
#include "lreq.h"
#include "lvalue.h"
#include "utf8.h"

#define ENGINE_MT "siolua.engine"
#define MAX_HEADER_NAME 256
#define MAX_HEADER_VALUE 8192

static const char VM_KEY = 'v'; /* registry: this VM's evm_t (a userdata) */

/* Engine events with listeners (lengine_t.flags): C skips the call into Lua when unset. */
enum { EV_CONNECTION = 1, EV_ERROR = 2, EV_HEADERS = 4, EV_INITIAL = 8 };
static const char *const engine_events[] = {"connection", "connection_error", "headers", "initial_headers", NULL};
struct lengine;

typedef struct {
    eio_server_t eio;        /* first member: on_freed gets &ep->eio */
    eio_config_t cfg;        /* eio.cfg points here; its strings are the owner's or the server's */
    struct lengine *owner;   /* the engine serving it, NULL once shutting down */
} ep_t;

typedef struct lengine {
    lvm_t *h;                /* its VM */
    int raw;                 /* 1: an endpoint (its sessions are raw); 0: io.engine (observes) */
    unsigned flags;          /* EV_* */
    int ref;                 /* registry ref of the object: engines live as long as their VM */
    ep_t *ep;                /* raw: mounted transport state, NULL while pending or after close */
    int closed;              /* raw: engine.close() was called, or the server closed */
    char *path;              /* raw: "/engine.io/" */
    uint64_t set;            /* options_engine bits of the Engine.IO options given to siolua.engine */
    eio_config_t opt;        /* their values (the CORS and cookie strings are the engine's) */
    int allow_ref;           /* raw: its own allowRequest (LUA_NOREF: io.options') */
    struct lengine *next;    /* the VM's endpoints */
} lengine_t;

typedef struct {
    lenv_t *env;
    lengine_t *io_engine;
    lengine_t *endpoints;
    int started;             /* this VM is (or was) the server's current one: endpoints mounted */
    buf_t hdr_store;         /* strings of the last on_headers answer (eio copies them at once) */
} evm_t;                     /* the engines of one VM */

/* ---------------------------------------------------------------- helpers */

static evm_t *vm_get(lvm_t *h)
{
    lua_State *L = lvm_state(h);
    evm_t *vm;
    if (!lua_checkstack(L, 1))
        return NULL;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &VM_KEY);
    vm = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return vm;
}

/* Pushes the user value's field k. [-0, +1, -] */
static void uv_field(lua_State *L, int obj, const char *k)
{
    lua_getiuservalue(L, obj, 1);
    lua_getfield(L, -1, k);
    lua_remove(L, -2);
}

/* Which events have listeners (C skips the call into Lua for the others). */
static void update_flags(lua_State *L, int obj)
{
    lengine_t *e = lua_touserdata(L, obj);
    uv_field(L, obj, "events");
    e->flags = lemitter_flags(L, lua_gettop(L), engine_events);
    lua_pop(L, 1);
}

/* ---------------------------------------------------------------- listeners (lemitter.h) */

/* An engine's listeners: its user value's `events` (made with the object). */
static void events_table(lua_State *L, int obj, int create)
{
    (void)create;
    uv_field(L, obj, "events");
}

static const lemitter_kind_t engine_kind = {
    .table = events_table, .changed = update_flags, .fmt = "engine \"%s\" handler%s"};

/* Calls the listeners of ev of the engine at obj with the nargs values on top (popped). */
static void fire(lua_State *L, int obj, const char *ev, int nargs)
{
    lemitter_fire(L, obj, &engine_kind, 0, ev, nargs, "");
}

/* ---------------------------------------------------------------- calls from eio into Lua */

typedef struct {
    lengine_t *e;
    eio_session_t *s;
    const http_req_t *req;
    eio_error_t code;
    const char *context, *name;
    int initial;
    http_hdr_t *hdrs;
    size_t n, cap;
    int reloaded;
} args_t;

/* A new conn for a->s, then the engine's "connection" listeners. */
static int connection_k(lua_State *L)
{
    args_t *a = lua_touserdata(L, 1);
    lengine_t *e = a->e;
    lua_settop(L, 0);
    lconn_new(L, a->s, e->raw, a->reloaded);
    lua_rawgeti(L, LUA_REGISTRYINDEX, e->ref);
    lua_pushvalue(L, 1);
    fire(L, -2, "connection", 1);
    return 0;
}

static void conn_open(lengine_t *e, eio_session_t *s, int reloaded)
{
    args_t a = {.e = e, .s = s, .reloaded = reloaded};
    char what[64];
    snprintf(what, sizeof(what), "engine connection %s", eio_session_id(s));
    lvm_protect(e->h, connection_k, &a, what);
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
    lreq_push_request(L, a->req);
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
    fire(L, 1, "connection_error", 1);
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
    evm_t *vm;
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
    lreq_push_request(L, a->req); /* 3 */
    if (a->initial && (e->flags & EV_INITIAL)) {
        lua_pushvalue(L, 2);
        lua_pushvalue(L, 3);
        fire(L, 1, "initial_headers", 2);
    }
    if (e->flags & EV_HEADERS) {
        lua_pushvalue(L, 2);
        lua_pushvalue(L, 3);
        fire(L, 1, "headers", 2);
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

/* The conn events: to the session's conn, if it has one. */
static void on_message(lengine_t *e, eio_session_t *s, int binary, const char *data, size_t len)
{
    lconn_t *c = e ? lconn_of(s, e->raw) : NULL;
    if (c != NULL)
        lconn_message(c, binary, data, len);
}

static void on_packet(lengine_t *e, eio_session_t *s, const eio_packet_t *p)
{
    lconn_t *c = e ? lconn_of(s, e->raw) : NULL;
    if (c != NULL)
        lconn_packet(c, p);
}

static void on_upgrade(lengine_t *e, eio_session_t *s)
{
    lconn_t *c = e ? lconn_of(s, e->raw) : NULL;
    if (c != NULL)
        lconn_upgrade(c);
}

static void on_notify(lengine_t *e, eio_session_t *s, unsigned what, rbuf_t *const *pkts, size_t n)
{
    lconn_t *c = e ? lconn_of(s, e->raw) : NULL;
    if (c != NULL)
        lconn_notify(c, what, pkts, n);
}

static void on_close(lengine_t *e, eio_session_t *s, const char *reason)
{
    lconn_t *c = e ? lconn_of(s, e->raw) : NULL;
    if (c != NULL)
        lconn_close(c, reason);
}

static void on_error(lengine_t *e, const http_req_t *req, eio_error_t code, const char *context, const char *name)
{
    args_t a = {.e = e, .req = req, .code = code, .context = context, .name = name};
    if (e == NULL || !(e->flags & EV_ERROR))
        return;
    lvm_protect(e->h, error_k, &a, "engine connection_error");
}

static size_t on_headers(lengine_t *e, const http_req_t *req, int initial, http_hdr_t *hdrs, size_t n, size_t cap)
{
    args_t a = {.e = e, .req = req, .initial = initial, .hdrs = hdrs, .n = n, .cap = cap};
    if (e == NULL || !((e->flags & EV_HEADERS) || (initial && (e->flags & EV_INITIAL))))
        return n;
    if (lvm_protect(e->h, headers_k, &a, "engine headers") != 0)
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

/* io.engine: the observer's ud is the current VM's evm_t (updated on reload). */
static lengine_t *main_engine(void *ud) { return ud ? ((evm_t *)ud)->io_engine : NULL; }
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

/* ---------------------------------------------------------------- allowRequest */

typedef struct {
    eio_allow_t *a;
    const http_req_t *req;
    int ref;
    int none;   /* no function: accepted */
    int failed; /* the function raised before it could suspend */
} allow_args_t;

static void release_allow(void *a) { eio_allow_unref(a); }

/* The callback given to allowRequest: callback(err, ok), once (later calls are ignored). Its
 * upvalue is the box holding the pending request. */
static int allow_cb(lua_State *L)
{
    eio_allow_t *a = lvm_box_take(L, lua_upvalueindex(1));
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
    if (!lua_isfunction(L, 1)) {
        x->none = 1;
        return 0;
    }
    lreq_push_request(L, x->req);
    lvm_box_push(L, x->a, release_allow);
    eio_allow_ref(x->a); /* the box's */
    lua_pushcclosure(L, allow_cb, 1);
    x->failed = lvm_call(L, 2, "allowRequest") != 0;
    return 0;
}

/* Runs an allowRequest function for a: the one at registry ref `ref` (an endpoint's own), or
 * io.options' (LUA_NOREF); without one a is accepted at once. The function gets (req, callback)
 * in a handler coroutine and may call callback(err, ok) later; if it raises before answering, a
 * is refused. */
static void allow_request(lvm_t *h, int ref, eio_allow_t *a, const http_req_t *req)
{
    allow_args_t x = {a, req, ref, 0, 0};
    if (lvm_protect(h, allow_k, &x, "allowRequest") != 0 || x.failed)
        eio_allow_done(a, 0, NULL); /* it raised (logged) without answering: refused */
    else if (x.none)
        eio_allow_done(a, 1, NULL);
}

void lengine_allow_request(eio_allow_t *a, const http_req_t *req, void *ud)
{
    allow_request(((lenv_t *)ud)->vms.cur, LUA_NOREF, a, req);
}

/* allowRequest of raw endpoints: the engine's own, else the app's (io.options), in the VM that
 * serves the endpoint now. */
static void ep_allow(eio_allow_t *a, const http_req_t *req, void *ud)
{
    ep_t *ep = ud;
    if (ep->owner == NULL)
        eio_allow_done(a, 0, NULL); /* closing */
    else
        allow_request(ep->owner->h, ep->owner->allow_ref, a, req);
}

/* The server's Engine.IO options, with the engine's own on top. The strings are borrowed: the
 * engine's live as long as it serves the endpoint (a reload's successor brings its own), the
 * server's as long as the server. */
static void ep_configure(ep_t *ep, const lengine_t *e, const lenv_t *env)
{
    eio_config_t *c = &ep->cfg;
    *c = env->cfg->eio;
    options_engine_apply(c, &e->opt, e->set);
}

static void ep_bind(ep_t *ep, lengine_t *e, lenv_t *env)
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
    if (ep->cfg.max_payload > env->cfg->http.max_body)
        env->cfg->http.max_body = ep->cfg.max_payload;
}

static void ep_mount(evm_t *vm, lengine_t *e)
{
    lenv_t *env = vm->env;
    ep_t *ep = xcalloc(1, sizeof(*ep));
    ep_configure(ep, e, env);
    eio_server_init(&ep->eio, env->loop, &ep->cfg, &env->cfg->http, &raw_handler, e);
    eio_server_watch(&ep->eio, env->clock);
    ep->eio.allow_request = ep_allow;
    ep->eio.allow_ud = ep;
    ep->eio.obs = &raw_observer;
    ep_bind(ep, e, env);
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
            lconn_t *c = lconn_of(v[i], 1);
            if (c != NULL)
                lconn_release(c);
        }
        eio_sessions_release(v, n);
        ep->eio.ud = ep->eio.obs_ud = NULL;
    }
    eio_server_shutdown(&ep->eio, "forced close", ep_freed);
    ep->owner = NULL;
    e->ep = NULL;
}

/* Hot reload: `to` (new VM) takes over `from`'s endpoint and open sessions. */
static void ep_adopt(lengine_t *from, lengine_t *to, lenv_t *env)
{
    ep_t *ep = from->ep;
    eio_session_t **v;
    size_t n;
    from->ep = NULL;
    ep_configure(ep, to, env);
    ep_bind(ep, to, env);
    n = eio_server_sessions(&ep->eio, &v);
    for (size_t i = 0; i < n; i++) {
        lconn_t *c = lconn_of(v[i], 1);
        if (c != NULL)
            lconn_release(c);
    }
    for (size_t i = 0; i < n; i++)
        if (eio_session_is_open(v[i]) && lconn_of(v[i], 1) == NULL)
            on_connection(to, v[i], 1);
    eio_sessions_release(v, n);
}

static lengine_t *find_endpoint(evm_t *vm, const char *path)
{
    for (lengine_t *e = vm->endpoints; e; e = e->next)
        if (!e->closed && strcmp(e->path, path) == 0)
            return e;
    return NULL;
}

/* ---------------------------------------------------------------- engine */

static lengine_t *check_engine(lua_State *L, int idx) { return luaL_checkudata(L, idx, ENGINE_MT); }

static eio_server_t *engine_eio(lengine_t *e)
{
    if (e->raw)
        return e->ep != NULL ? &e->ep->eio : NULL;
    eio_server_t *eio = lenv_get(e->h->L)->eio;
    return eio->loop != NULL && !eio->shutting ? eio : NULL;
}

/* close(): closes every session of this engine ("forced close"); a raw endpoint is unmounted. */
static int e_close(lua_State *L)
{
    lengine_t *e = check_engine(L, lua_upvalueindex(1));
    eio_server_t *eio = engine_eio(e);
    lvm_selfcall(L, lua_upvalueindex(1));
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
    if (lemitter_method(L, 1, &engine_kind, k) || lvm_method(L, engine_methods, 1, k))
        return 1;
    if (strcmp(k, "clientsCount") == 0) {
        eio_server_t *eio = engine_eio(e);
        lua_pushinteger(L, eio != NULL ? (lua_Integer)eio->nsessions : 0);
    } else if (strcmp(k, "path") == 0) {
        if (e->raw)
            lua_pushstring(L, e->path);
        else
            lua_pushstring(L, lenv_get(L)->cfg->path);
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
static void take_options(eio_config_t *tmp, uint64_t set, lengine_t *e)
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
    e->h = lvm_get(L);
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
    lvm_t *h = lvm_get(L);
    lenv_t *env = lenv_get(L);
    evm_t *vm;
    lengine_t *e;
    const char *path = "/engine.io/";
    uint64_t set = 0;   /* options_engine bits of the options given */
    int allow_ref;
    lua_settop(L, 1);
    if (lua_isnil(L, 1))
        lua_newtable(L), lua_replace(L, 1);
    luaL_checktype(L, 1, LUA_TTABLE);
    new_options(L); /* 2: a scratch config, whose strings an error frees */
    lua_pushnil(L);
    while (lua_next(L, 1) != 0) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
        uint64_t bit;
        if (strcmp(k, "path") == 0)
            path = luaL_checkstring(L, -1); /* kept alive by the table */
        else if (strcmp(k, "allowRequest") == 0)
            luaL_checktype(L, -1, LUA_TFUNCTION);
        else if ((bit = options_engine(L, k, lua_touserdata(L, 2))) != 0)
            set |= bit;
        else
            return luaL_error(L, "siolua.engine: unknown option \"%s\"", k);
        lua_pop(L, 1);
    }
    /* the path as the reference normalises it: a leading and a trailing slash */
    path = options_push_path(L, path); /* 3 */
    if (strcmp(path, env->cfg->path) == 0)
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
    if (vm->started && env->vms.cur == h && !env->closing)
        ep_mount(vm, e);
    return 1;
}

/* ---------------------------------------------------------------- entry points (lengine.h) */

static int vm_gc(lua_State *L)
{
    evm_t *vm = lua_touserdata(L, 1);
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
    evm_t *vm = lua_newuserdatauv(L, sizeof(*vm), 0);
    memset(vm, 0, sizeof(*vm));
    vm->env = lenv_get(L);
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
    lconn_open(L);

    lua_pushcfunction(L, l_engine); /* siolua.engine */
    lua_setfield(L, -2, "engine");

    /* io.engine: a raw field of the io object (its metatable only has __index) */
    lua_getglobal(L, "io");
    lua_pushliteral(L, "engine");
    vm->io_engine = new_engine(L, 0);
    lua_rawset(L, -3);
    lua_pop(L, 1);
}

void lengine_start(lvm_t *h)
{
    evm_t *vm = vm_get(h);
    lenv_t *env = lvm_ud(h->L);
    if (vm == NULL)
        return;
    vm->started = 1;
    env->eio->obs = &main_observer;
    env->eio->obs_ud = vm;
    for (lengine_t *e = vm->endpoints; e; e = e->next)
        if (e->ep == NULL && !e->closed)
            ep_mount(vm, e);
}

eio_server_t *lengine_route(lenv_t *env, const http_req_t *req)
{
    evm_t *vm = env->vms.cur != NULL ? vm_get(env->vms.cur) : NULL;
    for (lengine_t *e = vm ? vm->endpoints : NULL; e; e = e->next) {
        size_t n = strlen(e->path);
        if (e->ep != NULL && req->url.len >= n && memcmp(req->url.ptr, e->path, n) == 0)
            return &e->ep->eio;
    }
    return NULL;
}

void lengine_close(lvm_t *h)
{
    evm_t *vm = h != NULL ? vm_get(h) : NULL;
    for (lengine_t *e = vm ? vm->endpoints : NULL; e; e = e->next) {
        e->closed = 1;
        ep_close(e, 0);
    }
}

/* The conns of io.engine made by h (the Socket.IO sessions') become closed handles, silently. */
static void release_observed(lvm_t *h, lenv_t *env)
{
    eio_session_t **v;
    size_t n;
    if (env->eio->loop == NULL || env->eio->shutting)
        return;
    n = eio_server_sessions(env->eio, &v);
    for (size_t i = 0; i < n; i++) {
        lconn_t *c = lconn_of(v[i], 0);
        if (c != NULL && lconn_vm(c) == h)
            lconn_release(c);
    }
    eio_sessions_release(v, n);
}

void lengine_handover(lvm_t *old, lvm_t *nw)
{
    evm_t *vm = vm_get(old), *next = vm_get(nw);
    lenv_t *env = vm->env;
    eio_session_t **v;
    size_t n;
    if (!vm->started)
        return;
    release_observed(old, env);
    for (lengine_t *e = vm->endpoints; e; e = e->next) {
        lengine_t *succ = find_endpoint(next, e->path);
        if (e->ep == NULL)
            continue;
        if (succ != NULL && succ->ep == NULL)
            ep_adopt(e, succ, env);
        else
            ep_close(e, 1);
    }
    vm->started = 0;
    /* the new VM serves from now on */
    next->started = 1;
    for (lengine_t *e = next->endpoints; e; e = e->next)
        if (e->ep == NULL && !e->closed)
            ep_mount(next, e);
    if (env->eio->loop != NULL && !env->eio->shutting) {
        env->eio->obs_ud = next;
        if (next->io_engine->flags & EV_CONNECTION) {
            n = eio_server_sessions(env->eio, &v);
            for (size_t i = 0; i < n; i++)
                if (eio_session_is_open(v[i]) && lconn_of(v[i], 0) == NULL)
                    on_connection(next->io_engine, v[i], 1);
            eio_sessions_release(v, n);
        }
    }
}

void lengine_free(lvm_t *h)
{
    evm_t *vm = vm_get(h);
    if (vm == NULL)
        return;
    if (vm->started)
        release_observed(h, vm->env);
    for (lengine_t *e = vm->endpoints; e; e = e->next)
        ep_close(e, 1);
    vm->started = 0;
}

void lengine_push_conn(lua_State *L, eio_session_t *s)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &VM_KEY);
    evm_t *vm = lua_touserdata(L, -1);
    lconn_t *c = lconn_of(s, 0);
    lua_pop(L, 1);
    if (c != NULL)
        lconn_push(L, c);
    else
        lconn_new(L, s, vm->io_engine->raw, 0);
}
