/* rconn: one hiredis asynchronous connection on the libuv loop, as the Redis adapter
 * (adapter_redis.c) and the app's Redis clients (lredis.c) use it: the URL, the loop glue, a
 * connect deadline, AUTH and SELECT sent first. The owner decides what to do when it goes down
 * (retry with its own backoff); rconn never retries by itself.
 * States: IDLE (no context) -> CONNECTING (context made, commands may already be queued: hiredis
 * sends them once connected) -> UP -> IDLE again through the owner's `down` callback, after which
 * hiredis frees the context. */
#ifndef SL_RCONN_H
#define SL_RCONN_H

#include <hiredis/async.h>
#include <stdint.h>
#include <uv.h>

/* redis://[[user]:password@]host[:port][/db] */
typedef struct {
    char *host;     /* "127.0.0.1" when the URL names none */
    int port;       /* 6379 */
    char *user;     /* NULL: none (AUTH password) */
    char *password; /* NULL: no AUTH */
    int db;         /* SELECT db when > 0 */
} rconn_url_t;

/* Parses url into u (strings malloc'd). Returns 0, or -1 with *err (static) and u empty. */
int rconn_url_parse(const char *url, rconn_url_t *u, const char **err);
void rconn_url_free(rconn_url_t *u);

enum { RCONN_IDLE = 0, RCONN_CONNECTING, RCONN_UP };

typedef struct rconn rconn_t;

typedef struct {
    /* Connected (AUTH and SELECT are queued ahead of everything else). */
    void (*up)(rconn_t *c);
    /* The connection failed or was lost (why: hiredis's text, static or short-lived; was_up: it
     * had been up). The context is gone (c->ac == NULL, state IDLE); hiredis calls the pending
     * commands' callbacks with a NULL reply around this call. */
    void (*down)(rconn_t *c, const char *why, int was_up);
} rconn_handler_t;

struct rconn {
    redisAsyncContext *ac; /* NULL while IDLE */
    int state;             /* RCONN_* */
    uv_loop_t *loop;
    const rconn_url_t *url; /* borrowed from the owner, which outlives the connection */
    const rconn_handler_t *handler;
    void *data;               /* the owner's */
    const char *name;         /* for the log: "siolua.redis", "redis adapter publish" */
    uint64_t connect_timeout; /* ms before a connect that neither succeeds nor fails is dropped */
    uv_timer_t *timer;        /* the connect deadline (its own allocation: it closes later) */
};

/* Sets up c (IDLE). No handle exists until the first rconn_connect. */
void rconn_init(rconn_t *c, uv_loop_t *loop, const rconn_url_t *url, const rconn_handler_t *handler, void *data,
                const char *name, uint64_t connect_timeout_ms);
/* Starts connecting (c must be IDLE). Returns 0 (CONNECTING), or -1 with *why set (static or
 * valid until the next call) and c still IDLE; no callback runs then. */
int rconn_connect(rconn_t *c, const char **why);
/* Closes the connection now (IDLE after). graceful: what is queued is written first and pending
 * replies still arrive (redisAsyncDisconnect); else pending callbacks get NULL at once. The down
 * callback is not called. */
void rconn_drop(rconn_t *c, int graceful);
/* Frees what rconn_init and rconn_connect left (c must be IDLE): the timer closes, then is freed. */
void rconn_close(rconn_t *c);
/* Bytes waiting in the output buffer. */
size_t rconn_pending_out(const rconn_t *c);

#endif
