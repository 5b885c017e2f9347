/* adapter_redis: see adapter_redis.h. Each connection is a conn_t that owns at most one hiredis async context at a
 * time. When a context dies (connect failure, lost connection) hiredis frees it after calling us,
 * we forget it and a retry timer makes a new one. */
#include "adapter_redis.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <hiredis/sds.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "log.h"

#define RETRY_MIN_MS 100
#define RETRY_MAX_MS 5000
#define CONNECT_TIMEOUT_MS 3000     /* a connect that neither succeeds nor fails (packets dropped) */
#define MAX_SUBSCRIPTIONS 4096      /* channels + patterns (namespaces x 4): dynamic namespaces are bounded */
#define MAX_PENDING_OUT (64u << 20) /* bytes queued to Redis before publishes are dropped */

enum { C_IDLE = 0, C_CONNECTING, C_CONNECTED };

typedef struct conn {
    struct adapter_redis *r;
    redisAsyncContext *ac; /* NULL while down (hiredis frees it after the disconnect callback) */
    int state;             /* C_* */
    const char *name;      /* "publish" / "subscribe", for the log */
} conn_t;

typedef struct {
    char *name;
    int pattern; /* PSUBSCRIBE instead of SUBSCRIBE */
} sub_t;

struct adapter_redis {
    uv_loop_t *loop;
    const adapter_redis_handler_t *h;
    void *ud;
    char *host;
    int port;
    char *password;          /* NULL: no AUTH */
    char uid[7];             /* this node's uid in every message, as uid2(6) */
    conn_t pub, sub;
    sub_t *subs;             /* every subscription, re-sent on each (re)connection */
    size_t nsubs;
    size_t unconfirmed;      /* subscriptions sent but not yet confirmed on the current connection */
    uv_timer_t retry;        /* reconnects the connections that are down */
    uv_timer_t connect_timer; /* gives up on connects still pending after CONNECT_TIMEOUT_MS */
    uint64_t delay;          /* next retry delay (ms) */
    uint64_t down_since;     /* loop time when the cluster link went down (0: up or never up) */
    uint64_t dropped;        /* publishes dropped during the current outage */
    int64_t next_cmd;        /* ids of adapter_redis_command */
    int was_ready;           /* the cluster link was complete once (later: "reconnected") */
    int ready_logged;        /* "ready" logged for the current connection */
    int closing;
};

/* ---------------------------------------------------------------- ids and URL */

/* Random [A-Za-z0-9]{n} into out (n + 1 bytes), like the Node adapter's uid2. */
void adapter_redis_random_id(char *out, size_t n)
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

/* redis://[[user]:password@]host[:port][/db]. Returns 0 or -1 with *err set. */
static int parse_url(const char *url, char **host, int *port, char **password, const char **err)
{
    const char *p = url, *at, *end, *colon;
    size_t hlen;
    *host = *password = NULL;
    *port = 6379;
    if (strncmp(p, "redis://", 8) != 0) {
        *err = "the URL must start with redis://";
        return -1;
    }
    p += 8;
    end = p + strcspn(p, "/?#");
    at = memchr(p, '@', (size_t)(end - p));
    if (at != NULL) {
        const char *c = memchr(p, ':', (size_t)(at - p));
        if (c != NULL && at - c > 1)
            *password = xstrndup(c + 1, (size_t)(at - c - 1));
        p = at + 1;
    }
    colon = memchr(p, ':', (size_t)(end - p));
    hlen = (size_t)((colon ? colon : end) - p);
    if (colon != NULL) {
        char *e;
        long v = strtol(colon + 1, &e, 10);
        if (e != end || v <= 0 || v > 65535) {
            free(*password);
            *password = NULL;
            *err = "bad port";
            return -1;
        }
        *port = (int)v;
    }
    *host = hlen > 0 ? xstrndup(p, hlen) : xstrndup("127.0.0.1", 9);
    return 0;
}

/* ---------------------------------------------------------------- hiredis on the libuv loop */

/* hiredis's own adapters/libuv.h in Debian's 0.14 returns early when libuv reports a poll error
 * (status != 0): a refused connect or a reset connection then hangs forever. This is the same glue
 * with the fix hiredis 1.0 made (on an error, run the registered handlers: hiredis's read/write
 * then sees the socket error and tears the context down). */
typedef struct {
    redisAsyncContext *ac; /* NULL once hiredis cleaned up (the handle is closing) */
    uv_poll_t poll;
    int events;
} evglue_t;

static void glue_poll(uv_poll_t *h, int status, int events)
{
    evglue_t *g = h->data;
    int ev = status != 0 ? g->events : events;
    if (g->ac != NULL && (ev & UV_READABLE))
        redisAsyncHandleRead(g->ac);
    if (g->ac != NULL && (ev & UV_WRITABLE))
        redisAsyncHandleWrite(g->ac);
}

static void glue_update(evglue_t *g, int events)
{
    g->events = events;
    if (events != 0)
        uv_poll_start(&g->poll, events, glue_poll);
    else
        uv_poll_stop(&g->poll);
}

static void glue_add_read(void *p) { glue_update(p, ((evglue_t *)p)->events | UV_READABLE); }
static void glue_del_read(void *p) { glue_update(p, ((evglue_t *)p)->events & ~UV_READABLE); }
static void glue_add_write(void *p) { glue_update(p, ((evglue_t *)p)->events | UV_WRITABLE); }
static void glue_del_write(void *p) { glue_update(p, ((evglue_t *)p)->events & ~UV_WRITABLE); }

static void glue_closed(uv_handle_t *h)
{
    free(h->data);
}

static void glue_cleanup(void *p)
{
    evglue_t *g = p;
    g->ac = NULL;
    uv_close((uv_handle_t *)&g->poll, glue_closed);
}

static int glue_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
    evglue_t *g;
    if (ac->ev.data != NULL)
        return REDIS_ERR;
    g = xcalloc(1, sizeof(*g));
    if (uv_poll_init(loop, &g->poll, ac->c.fd) != 0) {
        free(g);
        return REDIS_ERR;
    }
    g->ac = ac;
    g->poll.data = g;
    ac->ev.addRead = glue_add_read;
    ac->ev.delRead = glue_del_read;
    ac->ev.addWrite = glue_add_write;
    ac->ev.delWrite = glue_del_write;
    ac->ev.cleanup = glue_cleanup;
    ac->ev.data = g;
    return REDIS_OK;
}

/* ---------------------------------------------------------------- connections */

static void connect_conn(conn_t *c);

static void on_retry(uv_timer_t *t)
{
    adapter_redis_t *r = t->data;
    if (r->closing)
        return;
    if (r->pub.state == C_IDLE)
        connect_conn(&r->pub);
    if (r->sub.state == C_IDLE)
        connect_conn(&r->sub);
}

/* A connection failed or went down: forget its context, log, retry later. */
static void conn_down(conn_t *c, const char *why, int was_connected)
{
    adapter_redis_t *r = c->r;
    c->ac = NULL;
    c->state = C_IDLE;
    if (c == &r->sub)
        r->unconfirmed = 0;
    r->ready_logged = 0;
    if (r->closing)
        return;
    if (r->down_since == 0) {
        r->down_since = uv_now(r->loop);
        r->dropped = 0;
    }
    if (was_connected)
        r->delay = RETRY_MIN_MS;
    if (uv_is_active((uv_handle_t *)&r->retry)) {
        /* the other connection already scheduled this round's retry */
        if (was_connected)
            log_warn("siolua: redis adapter: %s connection to %s:%d lost (%s)", c->name, r->host, r->port,
                     why ? why : "closed");
        return;
    }
    uint64_t d = r->delay;
    uv_timer_start(&r->retry, on_retry, d, 0);
    r->delay = d * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : d * 2;
    if (was_connected)
        log_warn("siolua: redis adapter: %s connection to %s:%d lost (%s): cluster messages are dropped until it "
                 "is back, local traffic goes on; reconnecting in %llu ms",
                 c->name, r->host, r->port, why ? why : "closed", (unsigned long long)d);
    else
        log_warn("siolua: redis adapter: cannot connect to %s:%d (%s); retrying in %llu ms", r->host, r->port,
                 why ? why : "error", (unsigned long long)d);
}

/* Both connections up and every subscription confirmed: the node is part of the cluster again. */
static void check_ready(adapter_redis_t *r)
{
    if (r->ready_logged || r->pub.state != C_CONNECTED || r->sub.state != C_CONNECTED || r->unconfirmed > 0)
        return;
    r->ready_logged = 1;
    r->delay = RETRY_MIN_MS;
    if (r->was_ready && r->down_since != 0)
        log_info("siolua: redis adapter: reconnected to %s:%d after %.1f s (%llu cluster messages dropped "
                 "meanwhile); %zu subscriptions restored",
                 r->host, r->port, (double)(uv_now(r->loop) - r->down_since) / 1000.0,
                 (unsigned long long)r->dropped, r->nsubs);
    else
        log_info("siolua: redis adapter: ready (%s:%d, node uid %s, %zu subscriptions)", r->host, r->port, r->uid,
                 r->nsubs);
    r->was_ready = 1;
    r->down_since = 0;
    r->dropped = 0;
}

static void send_subscription(adapter_redis_t *r, const sub_t *s);

static void on_connect(const redisAsyncContext *ac, int status)
{
    conn_t *c = ac->data;
    if (c == NULL || c->ac != ac)
        return;
    if (status != REDIS_OK) {
        conn_down(c, ac->errstr, 0); /* hiredis frees ac after this callback */
        return;
    }
    c->state = C_CONNECTED;
    if (c == &c->r->sub)
        for (size_t i = 0; i < c->r->nsubs; i++)
            send_subscription(c->r, &c->r->subs[i]);
    check_ready(c->r);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    conn_t *c = ac->data;
    if (c == NULL || c->ac != ac)
        return;
    conn_down(c, status == REDIS_OK ? "closed by the server" : ac->errstr, c->state == C_CONNECTED);
}

static void on_auth(redisAsyncContext *ac, void *reply, void *privdata)
{
    redisReply *rep = reply;
    (void)privdata;
    if (rep != NULL && rep->type == REDIS_REPLY_ERROR)
        log_error("siolua: redis adapter: AUTH refused: %.*s", (int)rep->len, rep->str);
    (void)ac;
}

static void drop_conn(conn_t *c, int graceful);

static void on_connect_timeout(uv_timer_t *t)
{
    adapter_redis_t *r = t->data;
    conn_t *cs[2] = {&r->pub, &r->sub};
    for (int i = 0; i < 2; i++)
        if (cs[i]->state == C_CONNECTING) {
            drop_conn(cs[i], 0);
            conn_down(cs[i], "connect timed out", 0);
        }
}

static void connect_conn(conn_t *c)
{
    adapter_redis_t *r = c->r;
    redisAsyncContext *ac = redisAsyncConnect(r->host, r->port);
    if (ac == NULL) {
        conn_down(c, "out of memory", 0);
        return;
    }
    if (ac->err) {
        char why[128];
        snprintf(why, sizeof(why), "%s", ac->errstr);
        redisAsyncFree(ac); /* nothing attached to the loop yet */
        conn_down(c, why, 0);
        return;
    }
    ac->data = c;
    if (glue_attach(ac, r->loop) != REDIS_OK) {
        redisAsyncFree(ac);
        conn_down(c, "cannot attach to the loop", 0);
        return;
    }
    c->ac = ac;
    c->state = C_CONNECTING;
    uv_timer_start(&r->connect_timer, on_connect_timeout, CONNECT_TIMEOUT_MS, 0);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    /* after the attach: hiredis arms the write event that detects the connection here */
    redisAsyncSetConnectCallback(ac, on_connect);
    if (r->password != NULL) {
        const char *argv[2] = {"AUTH", r->password};
        size_t lens[2] = {4, strlen(r->password)};
        redisAsyncCommandArgv(ac, on_auth, NULL, 2, argv, lens);
    }
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
    if (!(pm || strcmp(kind, "message") == 0) || rep->elements < (size_t)(pm ? 4 : 3) || r->closing)
        return;
    redisReply *ch = rep->element[pm ? 2 : 1], *pl = rep->element[pm ? 3 : 2], *pat = pm ? rep->element[1] : NULL;
    if (ch->type != REDIS_REPLY_STRING || pl->type != REDIS_REPLY_STRING)
        return;
    if (pat != NULL && pat->type == REDIS_REPLY_STRING)
        r->h->on_message(ch->str, ch->len, pl->str, pl->len, pat->str, pat->len, r->ud);
    else
        r->h->on_message(ch->str, ch->len, pl->str, pl->len, NULL, 0, r->ud);
}

static void send_subscription(adapter_redis_t *r, const sub_t *s)
{
    const char *argv[2] = {s->pattern ? "PSUBSCRIBE" : "SUBSCRIBE", s->name};
    size_t lens[2] = {strlen(argv[0]), strlen(s->name)};
    if (r->sub.state != C_CONNECTED)
        return;
    if (redisAsyncCommandArgv(r->sub.ac, on_sub_reply, r, 2, argv, lens) == REDIS_OK)
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
    conn_t *c = ac->data;
    adapter_redis_t *r = c != NULL ? c->r : NULL;
    redisReply *rep = reply;
    int64_t id = (int64_t)(intptr_t)privdata;
    if (r == NULL || r->closing)
        return;
    if (rep == NULL)
        r->h->on_reply(id, NULL, "connection lost", r->ud);
    else if (rep->type == REDIS_REPLY_ERROR)
        r->h->on_reply(id, NULL, rep->str, r->ud);
    else
        r->h->on_reply(id, rep, NULL, r->ud);
}

/* Bytes waiting in the publishing connection's output buffer (bounded by MAX_PENDING_OUT). */
static size_t pending_out(const conn_t *c)
{
    return c->ac != NULL && c->ac->c.obuf != NULL ? sdslen(c->ac->c.obuf) : 0;
}

/* ---------------------------------------------------------------- lifecycle */

adapter_redis_t *adapter_redis_start(uv_loop_t *loop, const adapter_redis_config_t *cfg, const adapter_redis_handler_t *h, void *ud)
{
    const char *err = NULL;
    adapter_redis_t *r = xcalloc(1, sizeof(*r));
    if (parse_url(cfg->url, &r->host, &r->port, &r->password, &err) != 0) {
        log_error("siolua: redis adapter: bad URL %s: %s", cfg->url, err);
        free(r);
        return NULL;
    }
    r->loop = loop;
    r->h = h;
    r->ud = ud;
    adapter_redis_random_id(r->uid, 6);
    r->pub = (conn_t){.r = r, .name = "publish"};
    r->sub = (conn_t){.r = r, .name = "subscribe"};
    r->delay = RETRY_MIN_MS;
    uv_timer_init(loop, &r->retry);
    r->retry.data = r;
    uv_timer_init(loop, &r->connect_timer);
    r->connect_timer.data = r;
    log_info("siolua: redis adapter: connecting to %s:%d (key \"%s\", node uid %s)", r->host, r->port,
             cfg->key ? cfg->key : "socket.io", r->uid);
    connect_conn(&r->pub);
    connect_conn(&r->sub);
    return r;
}

static void drop_conn(conn_t *c, int graceful)
{
    redisAsyncContext *ac = c->ac;
    if (ac == NULL)
        return;
    c->ac = NULL;
    c->state = C_IDLE;
    ac->data = NULL; /* callbacks that still come see no conn */
    if (graceful)
        redisAsyncDisconnect(ac); /* queued publishes are written first */
    else
        redisAsyncFree(ac);
}

void adapter_redis_close(adapter_redis_t *r)
{
    if (r == NULL || r->closing)
        return;
    r->closing = 1;
    drop_conn(&r->sub, 0);
    drop_conn(&r->pub, 1);
    uv_timer_stop(&r->retry);
    uv_close((uv_handle_t *)&r->retry, NULL);
    uv_close((uv_handle_t *)&r->connect_timer, NULL);
    log_info("siolua: redis adapter: disconnected");
}

void adapter_redis_free(adapter_redis_t *r)
{
    if (r == NULL)
        return;
    if (!r->closing) {
        /* start succeeded but the server never ran its loop: close, then let libuv finish */
        adapter_redis_close(r);
        uv_run(r->loop, UV_RUN_NOWAIT);
    }
    for (size_t i = 0; i < r->nsubs; i++)
        free(r->subs[i].name);
    free(r->subs);
    free(r->host);
    free(r->password);
    free(r);
}

/* ---------------------------------------------------------------- the owner's operations */

int adapter_redis_connected(const adapter_redis_t *r)
{
    return r->pub.state == C_CONNECTED && r->sub.state == C_CONNECTED;
}

const char *adapter_redis_uid(const adapter_redis_t *r)
{
    return r->uid;
}

int adapter_redis_publish(adapter_redis_t *r, const char *channel, size_t clen, const char *payload, size_t plen)
{
    int ok = 0;
    if (!r->closing && r->pub.state == C_CONNECTED && pending_out(&r->pub) < MAX_PENDING_OUT) {
        const char *argv[3] = {"PUBLISH", channel, payload};
        size_t lens[3] = {7, clen, plen};
        ok = redisAsyncCommandArgv(r->pub.ac, NULL, NULL, 3, argv, lens) == REDIS_OK;
    }
    if (!ok && r->dropped++ == 0 && r->was_ready)
        log_warn("siolua: redis adapter: not connected: dropping cluster messages until Redis is back");
    return ok;
}

int adapter_redis_subscribe(adapter_redis_t *r, const char *name, size_t len, int pattern)
{
    if (subscribe(r, name, len, pattern) != 0) {
        log_warn("siolua: redis adapter: more than %d subscriptions: %.*s not subscribed", MAX_SUBSCRIPTIONS, (int)len,
                 name);
        return -1;
    }
    return 0;
}

int64_t adapter_redis_command(adapter_redis_t *r, int argc, const char **argv, const size_t *lens, const char **err)
{
    int64_t id;
    if (r->closing || r->pub.state != C_CONNECTED) {
        *err = "not connected to Redis";
        return -1;
    }
    id = ++r->next_cmd;
    if (redisAsyncCommandArgv(r->pub.ac, on_cmd_reply, (void *)(intptr_t)id, argc, argv, lens) != REDIS_OK) {
        *err = "cannot send the command";
        return -1;
    }
    return id;
}
