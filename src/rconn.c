/* rconn: see rconn.h. */
#include "rconn.h"

#include <hiredis/hiredis.h>
#include <hiredis/sds.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "log.h"

/* ---------------------------------------------------------------- URL */

int rconn_url_parse(const char *url, rconn_url_t *u, const char **err)
{
    const char *p = url, *at, *end, *colon;
    size_t hlen;
    memset(u, 0, sizeof(*u));
    u->port = 6379;
    if (strncmp(p, "redis://", 8) != 0) {
        *err = "the URL must start with redis://";
        return -1;
    }
    p += 8;
    end = p + strcspn(p, "/?#");
    at = memchr(p, '@', (size_t)(end - p));
    if (at != NULL) {
        const char *c = memchr(p, ':', (size_t)(at - p));
        if (c != NULL && c > p)
            u->user = xstrndup(p, (size_t)(c - p));
        if (c != NULL && at - c > 1)
            u->password = xstrndup(c + 1, (size_t)(at - c - 1));
        p = at + 1;
    }
    colon = memchr(p, ':', (size_t)(end - p));
    hlen = (size_t)((colon ? colon : end) - p);
    if (colon != NULL) {
        char *e;
        long v = strtol(colon + 1, &e, 10);
        if (e != end || v <= 0 || v > 65535) {
            rconn_url_free(u);
            *err = "bad port";
            return -1;
        }
        u->port = (int)v;
    }
    if (*end == '/' && end[1] != '\0' && end[1] != '?' && end[1] != '#') {
        char *e;
        long v = strtol(end + 1, &e, 10);
        if ((*e != '\0' && *e != '?' && *e != '#') || v < 0 || v > 1000000) {
            rconn_url_free(u);
            *err = "bad database number";
            return -1;
        }
        u->db = (int)v;
    }
    u->host = hlen > 0 ? xstrndup(p, hlen) : xstrndup("127.0.0.1", 9);
    return 0;
}

void rconn_url_free(rconn_url_t *u)
{
    free(u->host);
    free(u->user);
    free(u->password);
    memset(u, 0, sizeof(*u));
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

static void glue_add_read(void *p)
{
    glue_update(p, ((evglue_t *)p)->events | UV_READABLE);
}
static void glue_del_read(void *p)
{
    glue_update(p, ((evglue_t *)p)->events & ~UV_READABLE);
}
static void glue_add_write(void *p)
{
    glue_update(p, ((evglue_t *)p)->events | UV_WRITABLE);
}
static void glue_del_write(void *p)
{
    glue_update(p, ((evglue_t *)p)->events & ~UV_WRITABLE);
}

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

/* ---------------------------------------------------------------- the connection */

void rconn_init(rconn_t *c, uv_loop_t *loop, const rconn_url_t *url, const rconn_handler_t *handler, void *data,
                const char *name, uint64_t connect_timeout_ms)
{
    memset(c, 0, sizeof(*c));
    c->loop = loop;
    c->url = url;
    c->handler = handler;
    c->data = data;
    c->name = name;
    c->connect_timeout = connect_timeout_ms;
}

/* The context died or was dropped by us: forget it and tell the owner. */
static void went_down(rconn_t *c, const char *why, int was_up)
{
    c->ac = NULL;
    c->state = RCONN_IDLE;
    if (c->timer != NULL)
        uv_timer_stop(c->timer);
    c->handler->down(c, why, was_up);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    rconn_t *c = ac->data;
    if (c == NULL || c->ac != ac)
        return;
    if (status != REDIS_OK) {
        went_down(c, ac->errstr, 0); /* hiredis frees ac after this callback */
        return;
    }
    c->state = RCONN_UP;
    uv_timer_stop(c->timer);
    c->handler->up(c);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    rconn_t *c = ac->data;
    if (c == NULL || c->ac != ac)
        return;
    went_down(c, status == REDIS_OK ? "closed by the server" : ac->errstr, c->state == RCONN_UP);
}

/* AUTH / SELECT answered: an error leaves a connection that cannot serve, so it is dropped. */
static void on_setup_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    redisReply *rep = reply;
    rconn_t *c = ac->data;
    char why[160];
    (void)privdata;
    if (rep == NULL || rep->type != REDIS_REPLY_ERROR || c == NULL || c->ac != ac)
        return;
    snprintf(why, sizeof(why), "%s refused: %.*s", (const char *)privdata, (int)rep->len, rep->str);
    log_error("siolua: %s: %s:%d: %s", c->name, c->url->host, c->url->port, why);
    int was_up = c->state == RCONN_UP;
    rconn_drop(c, 0); /* hiredis frees it once this callback returns */
    went_down(c, why, was_up);
}

static void on_connect_timeout(uv_timer_t *t)
{
    rconn_t *c = t->data;
    if (c->state != RCONN_CONNECTING)
        return;
    rconn_drop(c, 0);
    went_down(c, "connect timed out", 0);
}

int rconn_connect(rconn_t *c, const char **why)
{
    static char errbuf[128];
    const rconn_url_t *u = c->url;
    redisAsyncContext *ac = redisAsyncConnect(u->host, u->port);
    if (ac == NULL) {
        *why = "out of memory";
        return -1;
    }
    if (ac->err) {
        snprintf(errbuf, sizeof(errbuf), "%s", ac->errstr);
        redisAsyncFree(ac); /* nothing attached to the loop yet */
        *why = errbuf;
        return -1;
    }
    ac->data = c;
    if (glue_attach(ac, c->loop) != REDIS_OK) {
        redisAsyncFree(ac);
        *why = "cannot attach to the loop";
        return -1;
    }
    c->ac = ac;
    c->state = RCONN_CONNECTING;
    if (c->timer == NULL) {
        c->timer = xcalloc(1, sizeof(*c->timer));
        uv_timer_init(c->loop, c->timer);
        c->timer->data = c;
    }
    uv_timer_start(c->timer, on_connect_timeout, c->connect_timeout, 0);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    /* after the attach: hiredis arms the write event that detects the connection here */
    redisAsyncSetConnectCallback(ac, on_connect);
    if (u->password != NULL) {
        const char *argv[3] = {"AUTH", u->user, u->password};
        size_t lens[3] = {4, u->user ? strlen(u->user) : 0, strlen(u->password)};
        if (u->user == NULL) {
            argv[1] = u->password;
            lens[1] = lens[2];
        }
        redisAsyncCommandArgv(ac, on_setup_reply, (void *)"AUTH", u->user ? 3 : 2, argv, lens);
    }
    if (u->db > 0) {
        char db[16];
        int n = snprintf(db, sizeof(db), "%d", u->db);
        const char *argv[2] = {"SELECT", db};
        size_t lens[2] = {6, (size_t)n};
        redisAsyncCommandArgv(ac, on_setup_reply, (void *)"SELECT", 2, argv, lens);
    }
    return 0;
}

void rconn_drop(rconn_t *c, int graceful)
{
    redisAsyncContext *ac = c->ac;
    if (c->timer != NULL)
        uv_timer_stop(c->timer);
    c->state = RCONN_IDLE;
    if (ac == NULL)
        return;
    c->ac = NULL;
    ac->data = NULL; /* callbacks that still come see no connection */
    if (graceful)
        redisAsyncDisconnect(ac); /* queued commands are written first */
    else
        redisAsyncFree(ac);
}

static void timer_closed(uv_handle_t *h)
{
    free(h);
}

void rconn_close(rconn_t *c)
{
    rconn_drop(c, 1);
    if (c->timer != NULL) {
        uv_close((uv_handle_t *)c->timer, timer_closed);
        c->timer = NULL;
    }
}

size_t rconn_pending_out(const rconn_t *c)
{
    return c->ac != NULL && c->ac->c.obuf != NULL ? sdslen(c->ac->c.obuf) : 0;
}
