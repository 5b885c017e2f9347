/* adapter_redis: see adapter_redis.h.
 *
 * Two connections, as the Node adapter's pubClient/subClient: `pub` sends PUBLISH and the
 * occasional command (PUBSUB NUMSUB for the server count); `sub` is in subscribe mode and receives.
 * Each is a conn_t that owns at most one hiredis async context at a time. When a context dies
 * (connect failure, lost connection) hiredis frees it after calling us, we forget it and a retry
 * timer makes a new one, with a backoff of 100 ms doubling up to 5 s. The subscriptions are kept
 * here (not in Lua) so that reconnections and hot reloads (a new VM) keep them.
 *
 * msgpack <-> Lua: lvalue_msgpack.c (the Node adapter's notepack.io encoding).
 */
#include "adapter_redis.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "lhost.h"
#include "log.h"
#include "lredis.h"
#include "lvalue.h"
#include "rconn.h"
#include "server.h"

#define RETRY_MIN_MS 100
#define RETRY_MAX_MS 5000
#define CONNECT_TIMEOUT_MS 3000     /* a connect that neither succeeds nor fails (packets dropped) */
#define MAX_SUBSCRIPTIONS 4096      /* channels + patterns (namespaces x 4): dynamic namespaces are bounded */
#define MAX_PENDING_OUT (64u << 20) /* bytes queued to Redis before publishes are dropped */
#define DEFAULT_DEPTH 64

typedef struct conn {
    struct adapter_redis *r;
    rconn_t rc;            /* rc.ac: NULL while down (hiredis frees it after the disconnect callback) */
    const char *name;      /* "publish" / "subscribe", for the log */
} conn_t;

typedef struct {
    char *name;
    int pattern; /* PSUBSCRIBE instead of SUBSCRIBE */
} sub_t;

struct adapter_redis {
    sl_server_t *srv;
    rconn_url_t url;         /* host, port, password (user and db are not used: pub/sub ignores db) */
    char uid[7];             /* this node's uid in every message, as uid2(6) */
    conn_t pub, sub;
    sub_t *subs;             /* every subscription, re-sent on each (re)connection */
    size_t nsubs;
    size_t unconfirmed;      /* subscriptions sent but not yet confirmed on the current connection */
    uv_timer_t retry;        /* reconnects the connections that are down */
    uint64_t delay;          /* next retry delay (ms) */
    uint64_t down_since;     /* loop time when the cluster link went down (0: up or never up) */
    uint64_t dropped;        /* publishes dropped during the current outage */
    int64_t next_cmd;        /* ids of core.redis_command */
    int was_ready;           /* the cluster link was complete once (later: "reconnected") */
    int ready_logged;        /* "ready" logged for the current connection */
    int closing;
};

/* ---------------------------------------------------------------- ids and URL */

/* Random [A-Za-z0-9]{n} into out (n + 1 bytes), like the Node adapter's uid2. */
static void random_id(char *out, size_t n)
{
    static const char chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    unsigned char rnd[32];
    if (n > sizeof(rnd))
        n = sizeof(rnd);
    if (uv_random(NULL, NULL, rnd, n, 0, NULL) != 0) {
        /* never expected on Linux; ids then only need to differ between nodes of one cluster */
        uint64_t t = uv_hrtime();
        for (size_t i = 0; i < n; i++)
            rnd[i] = (unsigned char)(t >> (i % 8 * 8)) ^ (unsigned char)(i * 37);
    }
    for (size_t i = 0; i < n; i++)
        out[i] = chars[rnd[i] % (sizeof(chars) - 1)];
    out[n] = '\0';
}

/* ---------------------------------------------------------------- calls into the current VM */

typedef struct {
    const char *channel, *payload, *pattern;
    size_t clen, plen, patlen;
    int64_t id;
    redisReply *reply;
    const char *err;
} call_t;

static int can_call_lua(adapter_redis_t *r)
{
    return !r->closing && r->srv->lua != NULL;
}

static int message_k(lua_State *L)
{
    call_t *a = lua_touserdata(L, 1);
    lhost_push_hook(L, "redis_message");
    if (!lua_isfunction(L, -1))
        return 0;
    lua_pushlstring(L, a->channel, a->clen);
    lua_pushlstring(L, a->payload, a->plen);
    if (a->pattern != NULL)
        lua_pushlstring(L, a->pattern, a->patlen);
    else
        lua_pushnil(L);
    lua_call(L, 3, 0);
    return 0;
}

static int reply_k(lua_State *L)
{
    call_t *a = lua_touserdata(L, 1);
    lhost_push_hook(L, "redis_reply");
    if (!lua_isfunction(L, -1))
        return 0;
    lua_pushinteger(L, (lua_Integer)a->id);
    if (a->reply != NULL && a->reply->type != REDIS_REPLY_ERROR)
        lredis_push_reply(L, a->reply); /* siolua.redis's mapping */
    else
        lua_pushnil(L);
    if (a->err != NULL)
        lua_pushstring(L, a->err);
    else
        lua_pushnil(L);
    lua_call(L, 3, 0);
    return 0;
}

static int start_k(lua_State *L)
{
    (void)lua_touserdata(L, 1);
    lhost_push_hook(L, "cluster_start");
    if (lua_isfunction(L, -1))
        lua_call(L, 0, 0);
    return 0;
}

/* ---------------------------------------------------------------- connections */

static void connect_conn(conn_t *c);

static void on_retry(uv_timer_t *t)
{
    adapter_redis_t *r = t->data;
    if (r->closing)
        return;
    if (r->pub.rc.state == RCONN_IDLE)
        connect_conn(&r->pub);
    if (r->sub.rc.state == RCONN_IDLE)
        connect_conn(&r->sub);
}

/* A connection failed or went down (its context is forgotten): log, retry later. */
static void conn_down(conn_t *c, const char *why, int was_connected)
{
    adapter_redis_t *r = c->r;
    if (c == &r->sub)
        r->unconfirmed = 0;
    r->ready_logged = 0;
    if (r->closing)
        return;
    if (r->down_since == 0) {
        r->down_since = uv_now(r->srv->loop);
        r->dropped = 0;
    }
    if (was_connected)
        r->delay = RETRY_MIN_MS;
    if (uv_is_active((uv_handle_t *)&r->retry)) {
        /* the other connection already scheduled this round's retry */
        if (was_connected)
            log_warn("siolua: redis adapter: %s connection to %s:%d lost (%s)", c->name, r->url.host, r->url.port,
                     why ? why : "closed");
        return;
    }
    uint64_t d = r->delay;
    uv_timer_start(&r->retry, on_retry, d, 0);
    r->delay = d * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : d * 2;
    if (was_connected)
        log_warn("siolua: redis adapter: %s connection to %s:%d lost (%s): cluster messages are dropped until it "
                 "is back, local traffic goes on; reconnecting in %llu ms",
                 c->name, r->url.host, r->url.port, why ? why : "closed", (unsigned long long)d);
    else
        log_warn("siolua: redis adapter: cannot connect to %s:%d (%s); retrying in %llu ms", r->url.host,
                 r->url.port, why ? why : "error", (unsigned long long)d);
}

/* Both connections up and every subscription confirmed: the node is part of the cluster again. */
static void check_ready(adapter_redis_t *r)
{
    if (r->ready_logged || r->pub.rc.state != RCONN_UP || r->sub.rc.state != RCONN_UP || r->unconfirmed > 0)
        return;
    r->ready_logged = 1;
    r->delay = RETRY_MIN_MS;
    if (r->was_ready && r->down_since != 0)
        log_info("siolua: redis adapter: reconnected to %s:%d after %.1f s (%llu cluster messages dropped "
                 "meanwhile); %zu subscriptions restored",
                 r->url.host, r->url.port, (double)(uv_now(r->srv->loop) - r->down_since) / 1000.0,
                 (unsigned long long)r->dropped, r->nsubs);
    else
        log_info("siolua: redis adapter: ready (%s:%d, node uid %s, %zu subscriptions)", r->url.host, r->url.port,
                 r->uid, r->nsubs);
    r->was_ready = 1;
    r->down_since = 0;
    r->dropped = 0;
}

static void send_subscription(adapter_redis_t *r, const sub_t *s);

static void on_up(rconn_t *rc)
{
    conn_t *c = rc->data;
    if (c == &c->r->sub)
        for (size_t i = 0; i < c->r->nsubs; i++)
            send_subscription(c->r, &c->r->subs[i]);
    check_ready(c->r);
}

static void on_down(rconn_t *rc, const char *why, int was_up)
{
    conn_down(rc->data, why, was_up);
}

static const rconn_handler_t conn_handler = {on_up, on_down};

static void connect_conn(conn_t *c)
{
    const char *why = NULL;
    if (rconn_connect(&c->rc, &why) != 0)
        conn_down(c, why, 0);
}

/* ---------------------------------------------------------------- subscriptions */

static void on_sub_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    adapter_redis_t *r = privdata;
    redisReply *rep = reply;
    (void)ac;
    if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements < 3 ||
        rep->element[0]->type != REDIS_REPLY_STRING)
        return; /* NULL: the context is being freed */
    const char *kind = rep->element[0]->str;
    if (strcmp(kind, "subscribe") == 0 || strcmp(kind, "psubscribe") == 0) {
        if (r->unconfirmed > 0)
            r->unconfirmed--;
        check_ready(r);
        return;
    }
    int pm = strcmp(kind, "pmessage") == 0;
    if (!(pm || strcmp(kind, "message") == 0) || rep->elements < (size_t)(pm ? 4 : 3) || !can_call_lua(r))
        return;
    redisReply *ch = rep->element[pm ? 2 : 1], *pl = rep->element[pm ? 3 : 2], *pat = pm ? rep->element[1] : NULL;
    if (ch->type != REDIS_REPLY_STRING || pl->type != REDIS_REPLY_STRING)
        return;
    call_t a = {.channel = ch->str, .clen = ch->len, .payload = pl->str, .plen = pl->len};
    if (pat != NULL && pat->type == REDIS_REPLY_STRING) {
        a.pattern = pat->str;
        a.patlen = pat->len;
    }
    lhost_protect(r->srv->lua, message_k, &a, "redis adapter message");
}

static void send_subscription(adapter_redis_t *r, const sub_t *s)
{
    const char *argv[2] = {s->pattern ? "PSUBSCRIBE" : "SUBSCRIBE", s->name};
    size_t lens[2] = {strlen(argv[0]), strlen(s->name)};
    if (r->sub.rc.state != RCONN_UP)
        return;
    if (redisAsyncCommandArgv(r->sub.rc.ac, on_sub_reply, r, 2, argv, lens) == REDIS_OK)
        r->unconfirmed++;
}

/* Adds a subscription (once) and sends it if connected. Returns 0, or -1 over the limit. */
static int subscribe(adapter_redis_t *r, const char *name, size_t len, int pattern)
{
    for (size_t i = 0; i < r->nsubs; i++)
        if (r->subs[i].pattern == pattern && strlen(r->subs[i].name) == len && memcmp(r->subs[i].name, name, len) == 0)
            return 0;
    if (r->nsubs >= MAX_SUBSCRIPTIONS)
        return -1;
    r->subs = xrealloc(r->subs, (r->nsubs + 1) * sizeof(sub_t));
    r->subs[r->nsubs].name = xstrndup(name, len);
    r->subs[r->nsubs].pattern = pattern;
    r->nsubs++;
    send_subscription(r, &r->subs[r->nsubs - 1]);
    return 0;
}

/* ---------------------------------------------------------------- commands */

static void on_cmd_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    rconn_t *rc = ac->data;
    adapter_redis_t *r = rc != NULL ? ((conn_t *)rc->data)->r : NULL;
    redisReply *rep = reply;
    call_t a = {.id = (int64_t)(intptr_t)privdata, .reply = rep};
    if (r == NULL || !can_call_lua(r))
        return;
    if (rep == NULL)
        a.err = "connection lost";
    else if (rep->type == REDIS_REPLY_ERROR)
        a.err = rep->str;
    lhost_protect(r->srv->lua, reply_k, &a, "redis adapter reply");
}

/* ---------------------------------------------------------------- lifecycle */

int adapter_redis_start(sl_server_t *srv)
{
    const adapter_redis_config_t *cfg = &srv->cfg.redis;
    const char *err = NULL;
    adapter_redis_t *r = xcalloc(1, sizeof(*r));
    if (rconn_url_parse(cfg->url, &r->url, &err) != 0) {
        log_error("siolua: redis adapter: bad URL %s: %s", cfg->url, err);
        free(r);
        return -1;
    }
    /* as before rconn: AUTH with the password only, and no SELECT (pub/sub ignores the db) */
    free(r->url.user);
    r->url.user = NULL;
    r->url.db = 0;
    r->srv = srv;
    random_id(r->uid, 6);
    r->pub = (conn_t){.r = r, .name = "publish"};
    r->sub = (conn_t){.r = r, .name = "subscribe"};
    rconn_init(&r->pub.rc, srv->loop, &r->url, &conn_handler, &r->pub, "redis adapter", CONNECT_TIMEOUT_MS);
    rconn_init(&r->sub.rc, srv->loop, &r->url, &conn_handler, &r->sub, "redis adapter", CONNECT_TIMEOUT_MS);
    r->delay = RETRY_MIN_MS;
    uv_timer_init(srv->loop, &r->retry);
    r->retry.data = r;
    srv->redis = r;
    log_info("siolua: redis adapter: connecting to %s:%d (key \"%s\", node uid %s)", r->url.host, r->url.port,
             cfg->key ? cfg->key : "socket.io", r->uid);
    /* the Lua side subscribes its namespaces' channels (kept here until the connection is up) */
    lhost_protect(srv->lua, start_k, NULL, "redis adapter start");
    connect_conn(&r->pub);
    connect_conn(&r->sub);
    return 0;
}

void adapter_redis_close(adapter_redis_t *r)
{
    if (r == NULL || r->closing)
        return;
    r->closing = 1;
    rconn_drop(&r->sub.rc, 0);
    rconn_close(&r->sub.rc);
    rconn_close(&r->pub.rc); /* queued publishes are written first */
    uv_timer_stop(&r->retry);
    uv_close((uv_handle_t *)&r->retry, NULL);
    log_info("siolua: redis adapter: disconnected");
}

void adapter_redis_free(adapter_redis_t *r)
{
    if (r == NULL)
        return;
    if (!r->closing) {
        /* start succeeded but the server never ran its loop: close, then let libuv finish */
        adapter_redis_close(r);
        uv_run(r->srv->loop, UV_RUN_NOWAIT);
    }
    for (size_t i = 0; i < r->nsubs; i++)
        free(r->subs[i].name);
    free(r->subs);
    rconn_url_free(&r->url);
    free(r);
}

/* ---------------------------------------------------------------- options */

void adapter_redis_options(lua_State *L, int idx, adapter_redis_config_t *cfg, int keep_url)
{
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) == LUA_TSTRING) {
        if (!keep_url) {
            free(cfg->url);
            cfg->url = xstrndup(lua_tostring(L, idx), lua_rawlen(L, idx));
        }
        return;
    }
    if (!lua_istable(L, idx))
        luaL_error(L, "io.options: adapter must be a table {redis = \"redis://host:port\", ...} or a URL");
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
        if (strcmp(k, "redis") == 0 || strcmp(k, "url") == 0) {
            size_t n;
            const char *u = luaL_checklstring(L, -1, &n);
            if (!keep_url) {
                free(cfg->url);
                cfg->url = xstrndup(u, n);
            }
        } else if (strcmp(k, "key") == 0) {
            size_t n;
            const char *u = luaL_checklstring(L, -1, &n);
            if (n == 0 || n > 200)
                luaL_error(L, "io.options: adapter.key must be 1 to 200 bytes");
            free(cfg->key);
            cfg->key = xstrndup(u, n);
        } else if (strcmp(k, "requestsTimeout") == 0) {
            lua_Integer v = luaL_checkinteger(L, -1);
            if (v <= 0)
                luaL_error(L, "io.options: adapter.requestsTimeout must be positive");
            cfg->requests_timeout = (uint64_t)v;
        } else if (strcmp(k, "publishOnSpecificResponseChannel") == 0) {
            cfg->specific_response = lua_toboolean(L, -1);
        } else {
            luaL_error(L, "io.options: unknown adapter option \"%s\"", k);
        }
        lua_pop(L, 1);
    }
}

/* ---------------------------------------------------------------- msgpack (lvalue_msgpack.c) */

static int max_depth(lua_State *L)
{
    lhost_t *h = lhost_get(L);
    return h != NULL && h->srv != NULL && h->srv->cfg.max_json_depth > 0 ? h->srv->cfg.max_json_depth : DEFAULT_DEPTH;
}

/* core.msgpack_encode(v): the msgpack bytes of v, as a string. */
static int c_msgpack_encode(lua_State *L)
{
    luaL_checkany(L, 1);
    lua_settop(L, 1);
    lvalue_encode_msgpack(L, 1, 1, 0, max_depth(L));
    return 1;
}

/* core.msgpack_decode(bytes): the value, or nil + error for invalid input. */
static int c_msgpack_decode(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    if (lvalue_push_msgpack(L, s, len) != 0) {
        lua_pushnil(L);
        lua_insert(L, -2);
        return 2;
    }
    return 1;
}

/* ---------------------------------------------------------------- primitives for cluster.lua */

static adapter_redis_t *get(lua_State *L)
{
    lhost_t *h = lhost_get(L);
    return h != NULL && h->srv != NULL ? h->srv->redis : NULL;
}

static int c_enabled(lua_State *L)
{
    lua_pushboolean(L, get(L) != NULL);
    return 1;
}

static int c_connected(lua_State *L)
{
    adapter_redis_t *r = get(L);
    lua_pushboolean(L, r != NULL && r->pub.rc.state == RCONN_UP && r->sub.rc.state == RCONN_UP);
    return 1;
}

static int c_config(lua_State *L)
{
    lhost_t *h = lhost_get(L);
    const adapter_redis_config_t *cfg = h != NULL && h->srv != NULL ? &h->srv->cfg.redis : NULL;
    lua_createtable(L, 0, 3);
    lua_pushstring(L, cfg != NULL && cfg->key != NULL ? cfg->key : "socket.io");
    lua_setfield(L, -2, "key");
    lua_pushinteger(L, cfg != NULL && cfg->requests_timeout > 0 ? (lua_Integer)cfg->requests_timeout : 5000);
    lua_setfield(L, -2, "requestsTimeout");
    lua_pushboolean(L, cfg != NULL && cfg->specific_response);
    lua_setfield(L, -2, "publishOnSpecificResponseChannel");
    return 1;
}

static int c_uid(lua_State *L)
{
    adapter_redis_t *r = get(L);
    if (r == NULL)
        return 0;
    lua_pushstring(L, r->uid);
    return 1;
}

static int c_id(lua_State *L)
{
    char id[7];
    random_id(id, 6);
    lua_pushstring(L, id);
    return 1;
}

static int c_publish(lua_State *L)
{
    adapter_redis_t *r = get(L);
    size_t clen, plen;
    const char *ch = luaL_checklstring(L, 1, &clen);
    const char *pl = luaL_checklstring(L, 2, &plen);
    int ok = 0;
    if (r != NULL && !r->closing && r->pub.rc.state == RCONN_UP && rconn_pending_out(&r->pub.rc) < MAX_PENDING_OUT) {
        const char *argv[3] = {"PUBLISH", ch, pl};
        size_t lens[3] = {7, clen, plen};
        ok = redisAsyncCommandArgv(r->pub.rc.ac, NULL, NULL, 3, argv, lens) == REDIS_OK;
    }
    if (!ok && r != NULL) {
        if (r->dropped++ == 0 && r->was_ready)
            log_warn("siolua: redis adapter: not connected: dropping cluster messages until Redis is back");
    }
    lua_pushboolean(L, ok);
    return 1;
}

static int do_subscribe(lua_State *L, int pattern)
{
    adapter_redis_t *r = get(L);
    size_t n;
    const char *name = luaL_checklstring(L, 1, &n);
    if (r == NULL) {
        lua_pushboolean(L, 0);
        return 1;
    }
    if (subscribe(r, name, n, pattern) != 0) {
        log_warn("siolua: redis adapter: more than %d subscriptions: %s not subscribed", MAX_SUBSCRIPTIONS, name);
        lua_pushboolean(L, 0);
        return 1;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int c_subscribe(lua_State *L) { return do_subscribe(L, 0); }
static int c_psubscribe(lua_State *L) { return do_subscribe(L, 1); }

/* core.redis_command({argv...}): id, or nil + err. At most 16 arguments. */
static int c_command(lua_State *L)
{
    adapter_redis_t *r = get(L);
    const char *argv[16];
    size_t lens[16];
    int argc;
    luaL_checktype(L, 1, LUA_TTABLE);
    argc = (int)lua_rawlen(L, 1);
    luaL_argcheck(L, argc > 0 && argc <= 16, 1, "1 to 16 arguments");
    for (int i = 0; i < argc; i++) {
        lua_rawgeti(L, 1, i + 1);
        argv[i] = luaL_checklstring(L, -1, &lens[i]); /* the table keeps the strings alive */
        lua_pop(L, 1);
    }
    if (r == NULL || r->closing || r->pub.rc.state != RCONN_UP) {
        lua_pushnil(L);
        lua_pushstring(L, "not connected to Redis");
        return 2;
    }
    int64_t id = ++r->next_cmd;
    if (redisAsyncCommandArgv(r->pub.rc.ac, on_cmd_reply, (void *)(intptr_t)id, argc, argv, lens) != REDIS_OK) {
        lua_pushnil(L);
        lua_pushstring(L, "cannot send the command");
        return 2;
    }
    lua_pushinteger(L, (lua_Integer)id);
    return 1;
}

static const luaL_Reg core_funcs[] = {
    {"redis_enabled", c_enabled},   {"redis_connected", c_connected}, {"redis_config", c_config},
    {"redis_uid", c_uid},           {"redis_id", c_id},               {"redis_publish", c_publish},
    {"redis_subscribe", c_subscribe}, {"redis_psubscribe", c_psubscribe}, {"redis_command", c_command},
    {"msgpack_encode", c_msgpack_encode}, {"msgpack_decode", c_msgpack_decode}, {NULL, NULL},
};

void adapter_redis_open(lua_State *L)
{
    lua_getglobal(L, "siolua");
    lua_getfield(L, -1, "_core");
    luaL_setfuncs(L, core_funcs, 0);
    lua_pop(L, 2);
}
