/* adapter_redis: see adapter_redis.h. Each connection is a conn_t around one rconn (rconn.h: the
 * hiredis context on the loop, the connect deadline, AUTH); when it goes down, a retry timer here
 * connects it again with a backoff. */
#include "adapter_redis.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "log.h"
#include "rconn.h"

#define RETRY_MIN_MS 100
#define RETRY_MAX_MS 5000
#define CONNECT_TIMEOUT_MS 3000     /* a connect that neither succeeds nor fails (packets dropped) */
#define MAX_SUBSCRIPTIONS 4096      /* channels + patterns (namespaces x 4): dynamic namespaces are bounded */
#define MAX_PENDING_OUT (64u << 20) /* bytes queued to Redis before publishes are dropped */

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
    uv_loop_t *loop;
    const adapter_redis_handler_t *h;
    void *ud;
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
    uint64_t dropped_total;  /* publishes dropped since start (for /metrics) */
    int64_t next_cmd;        /* ids of adapter_redis_command */
    int was_ready;           /* the cluster link was complete once (later: "reconnected") */
    int ready_logged;        /* "ready" logged for the current connection */
    int closing;
};

void adapter_redis_status(const adapter_redis_t *r, adapter_redis_status_t *st)
{
    st->up = !r->closing && r->pub.rc.state == RCONN_UP && r->sub.rc.state == RCONN_UP && r->unconfirmed == 0;
    st->dropped = r->dropped_total;
    st->pending_out = r->pub.rc.state == RCONN_UP ? rconn_pending_out(&r->pub.rc) : 0;
    st->down_ms = r->down_since != 0 ? uv_now(r->loop) - r->down_since : 0;
}

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
        r->down_since = uv_now(r->loop);
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
        log_with(LOG_WARN, LOG_FIELDS(LOG_S("redis", r->url.host), LOG_I("port", r->url.port), LOG_S("state", "down")),
                 "siolua: redis adapter: %s connection to %s:%d lost (%s): cluster messages are dropped until it "
                 "is back, local traffic goes on; reconnecting in %llu ms",
                 c->name, r->url.host, r->url.port, why ? why : "closed", (unsigned long long)d);
    else
        log_with(LOG_WARN, LOG_FIELDS(LOG_S("redis", r->url.host), LOG_I("port", r->url.port), LOG_S("state", "down")),
                 "siolua: redis adapter: cannot connect to %s:%d (%s); retrying in %llu ms", r->url.host,
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
        log_with(LOG_INFO, LOG_FIELDS(LOG_S("redis", r->url.host), LOG_I("port", r->url.port), LOG_S("state", "up")),
                 "siolua: redis adapter: reconnected to %s:%d after %.1f s (%llu cluster messages dropped "
                 "meanwhile); %zu subscriptions restored",
                 r->url.host, r->url.port, (double)(uv_now(r->loop) - r->down_since) / 1000.0,
                 (unsigned long long)r->dropped, r->nsubs);
    else
        log_with(LOG_INFO, LOG_FIELDS(LOG_S("redis", r->url.host), LOG_I("port", r->url.port), LOG_S("state", "up")),
                 "siolua: redis adapter: ready (%s:%d, node uid %s, %zu subscriptions)", r->url.host, r->url.port,
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

/* ---------------------------------------------------------------- lifecycle */

adapter_redis_t *adapter_redis_start(uv_loop_t *loop, const adapter_redis_config_t *cfg, const adapter_redis_handler_t *h, void *ud)
{
    const char *err = NULL;
    adapter_redis_t *r = xcalloc(1, sizeof(*r));
    if (rconn_url_parse(cfg->url, &r->url, &err) != 0) {
        log_error("siolua: redis adapter: bad URL %s: %s", cfg->url, err);
        free(r);
        return NULL;
    }
    /* AUTH with the password only, and no SELECT (pub/sub ignores the db) */
    free(r->url.user);
    r->url.user = NULL;
    r->url.db = 0;
    r->loop = loop;
    r->h = h;
    r->ud = ud;
    adapter_redis_random_id(r->uid, 6);
    r->pub = (conn_t){.r = r, .name = "publish"};
    r->sub = (conn_t){.r = r, .name = "subscribe"};
    rconn_init(&r->pub.rc, loop, &r->url, &conn_handler, &r->pub, "redis adapter", CONNECT_TIMEOUT_MS);
    rconn_init(&r->sub.rc, loop, &r->url, &conn_handler, &r->sub, "redis adapter", CONNECT_TIMEOUT_MS);
    r->delay = RETRY_MIN_MS;
    uv_timer_init(loop, &r->retry);
    r->retry.data = r;
    log_info("siolua: redis adapter: connecting to %s:%d (key \"%s\", node uid %s)", r->url.host, r->url.port,
             cfg->key ? cfg->key : "socket.io", r->uid);
    connect_conn(&r->pub);
    connect_conn(&r->sub);
    return r;
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
        uv_run(r->loop, UV_RUN_NOWAIT);
    }
    for (size_t i = 0; i < r->nsubs; i++)
        free(r->subs[i].name);
    free(r->subs);
    rconn_url_free(&r->url);
    free(r);
}

/* ---------------------------------------------------------------- the owner's operations */

int adapter_redis_connected(const adapter_redis_t *r)
{
    return r->pub.rc.state == RCONN_UP && r->sub.rc.state == RCONN_UP;
}

const char *adapter_redis_uid(const adapter_redis_t *r)
{
    return r->uid;
}

int adapter_redis_publish(adapter_redis_t *r, const char *channel, size_t clen, const char *payload, size_t plen)
{
    int ok = 0;
    if (!r->closing && r->pub.rc.state == RCONN_UP && rconn_pending_out(&r->pub.rc) < MAX_PENDING_OUT) {
        const char *argv[3] = {"PUBLISH", channel, payload};
        size_t lens[3] = {7, clen, plen};
        ok = redisAsyncCommandArgv(r->pub.rc.ac, NULL, NULL, 3, argv, lens) == REDIS_OK;
    }
    if (!ok) {
        r->dropped_total++;
        if (r->dropped++ == 0 && r->was_ready)
            log_warn("siolua: redis adapter: not connected: dropping cluster messages until Redis is back");
    }
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
    if (r->closing || r->pub.rc.state != RCONN_UP) {
        *err = "not connected to Redis";
        return -1;
    }
    id = ++r->next_cmd;
    if (redisAsyncCommandArgv(r->pub.rc.ac, on_cmd_reply, (void *)(intptr_t)id, argc, argv, lens) != REDIS_OK) {
        *err = "cannot send the command";
        return -1;
    }
    return id;
}
