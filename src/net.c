/* net: see net.h.
 * Reading: one loop-wide 64 KiB buffer. libuv calls alloc_cb, read(2) and read_cb in sequence for one
 * stream on the loop thread and the owner consumes the bytes before read_cb returns, so no connection
 * ever needs a read buffer of its own.
 * Writing: uv_try_write first (the common case: the socket buffer has room, nothing is queued, no
 * reference is kept); whatever is left is queued as (rbuf, off, len) items and sent by ONE uv_write at
 * a time that gathers up to NET_WRITE_MAX items and NET_WRITE_BYTES. The pending array exists only while
 * items wait, and goes at once when the connection closes (what is handed to uv_write waits for
 * libuv to cancel it, in the closing phase of the turn): a connection closed for holding too much
 * gives it back right away.
 * Budget: every change of a connection's queued bytes goes through queued_add/queued_sub, which keep
 * the server-wide total; over the budget, uv_walk finds the connections holding the most (a rare
 * event: no per-connection list is kept for it).
 * Deadlines: tq.h queues, one per distinct duration, shared by every connection (O(1) per arm).
 * Peers: a small hash of open connections per IP, so the first owner can apply per-IP limits.
 * TLS: a connection of a TLS listener gets its session at accept, with the handshake deadline, and
 * no owner until the handshake is complete (owners never see a half-open session). Bytes read are
 * fed to the session and the plaintext goes to on_read, one record at a time, while the owner
 * neither pauses nor closes; what it leaves waits in the session for net_resume. Writes are
 * encrypted as they are made and the ciphertext is queued like any output: the plain path is the
 * same code, with one test of c->tls. */
#include "net.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"
#include "tls.h"

#define container_of(p, type, member) ((type *)((char *)(p)-offsetof(type, member)))

#define NET_WRITE_MAX   64          /* items gathered by one uv_write */
#define NET_WRITE_BYTES (256 << 10) /* bytes gathered by one uv_write (a first item may be more) */
#define NET_BACKLOG     511

/* Private flag bits, next to the public NET_F_* of net.h. */
enum {
    NET_F_READING = 4,    /* uv_read_start is active */
    NET_F_TLS_INPUT = 32, /* on ctx->dirty for the plaintext its session holds (net_resume) */
};

typedef struct net_witem {
    rbuf_t *b;    /* one reference held while queued */
    uint32_t off; /* from b->data (headroom included) */
    uint32_t len;
} net_witem_t;

typedef struct net_wreq {
    uv_write_t req;
    net_conn_t *c;
    size_t bytes;        /* counted in c->queued */
    uint32_t n;          /* items */
    net_witem_t items[]; /* references released in write_cb */
} net_wreq_t;

static void close_why(net_conn_t *c, net_close_reason_t why);
static void start_write(net_conn_t *c);
static int warn_due(net_ctx_t *ctx, uint64_t *last);
static void tls_refused(net_conn_t *c, const char *why);
static void tls_deliver(net_conn_t *c);

/* ---------------------------------------------------------------- output accounting */

/* A closing connection's bytes leave the total when it closes (its pending items are freed then,
 * what uv_write holds in this turn's closing phase): the budget never counts them twice. */
static void queued_add(net_conn_t *c, size_t n)
{
    c->queued += n;
    if (!(c->flags & NET_F_CLOSING))
        c->ctx->total_queued += n;
}

static void queued_sub(net_conn_t *c, size_t n)
{
    c->queued -= n;
    if (!(c->flags & NET_F_CLOSING))
        c->ctx->total_queued -= n;
}

typedef struct {
    net_ctx_t *ctx;
    net_conn_t **v;
    size_t n, cap;
} holders_t;

static void collect(uv_handle_t *h, void *arg)
{
    holders_t *hs = arg;
    net_conn_t *c;
    /* net's connections are the TCP handles whose data is their ctx (not the listener) */
    if (h->type != UV_TCP || h->data != hs->ctx || h == (uv_handle_t *)&hs->ctx->listener)
        return;
    c = container_of(h, net_conn_t, tcp);
    if (c->queued == 0 || (c->flags & NET_F_CLOSING))
        return;
    if (hs->n == hs->cap) {
        hs->cap = hs->cap ? hs->cap * 2 : 64;
        hs->v = xrealloc(hs->v, hs->cap * sizeof(*hs->v));
    }
    hs->v[hs->n++] = c;
}

static int by_queued_desc(const void *a, const void *b)
{
    size_t x = (*(net_conn_t *const *)a)->queued, y = (*(net_conn_t *const *)b)->queued;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* The total went over the budget: close the biggest holders until it is back under. */
static void over_budget(net_ctx_t *ctx)
{
    holders_t hs = {ctx, NULL, 0, 0};
    size_t before = ctx->total_queued, closed = 0, largest = 0;
    uv_walk(ctx->loop, collect, &hs);
    qsort(hs.v, hs.n, sizeof(*hs.v), by_queued_desc);
    for (size_t i = 0; i < hs.n && ctx->total_queued > ctx->max_total_queued; i++) {
        if (closed++ == 0)
            largest = hs.v[i]->queued;
        close_why(hs.v[i], NET_CLOSE_OVERFLOW);
    }
    free(hs.v);
    if (warn_due(ctx, &ctx->budget_warned))
        log_warn("net: %zu bytes of output queued, over the budget of %zu (--output-memory-limit): closed the %zu "
                 "connection(s) holding the most unread output (the largest held %zu bytes)",
                 before, ctx->max_total_queued, closed, largest);
}

/* ---------------------------------------------------------------- peers (connections per IP) */

typedef struct net_peer {
    struct net_peer *next;
    size_t n; /* open connections from this IP */
    char ip[48];
} net_peer_t;

static uint32_t hash_ip(const char *p)
{
    uint32_t h = 2166136261u;
    for (; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    return h;
}

/* Counts c under its IP; the entry also holds the IP's text, shared by its connections (a
 * connection keeps no copy). Nothing is counted for an unknown address. */
static void peer_add(net_conn_t *c, const char *ip)
{
    net_ctx_t *ctx = c->ctx;
    if (ip[0] == '\0')
        return;
    net_peer_t **pp = &ctx->peers[hash_ip(ip) % NET_PEER_BUCKETS];
    net_peer_t *e = *pp;
    while (e != NULL && strcmp(e->ip, ip) != 0)
        e = e->next;
    if (e == NULL) {
        e = xcalloc(1, sizeof(*e));
        snprintf(e->ip, sizeof(e->ip), "%s", ip);
        e->next = *pp;
        *pp = e;
        ctx->npeers++;
    }
    e->n++;
    c->peer_ent = e;
}

static void peer_remove(net_conn_t *c)
{
    net_ctx_t *ctx = c->ctx;
    net_peer_t *e = c->peer_ent;
    c->peer_ent = NULL;
    if (e == NULL || --e->n > 0)
        return;
    for (net_peer_t **pp = &ctx->peers[hash_ip(e->ip) % NET_PEER_BUCKETS]; *pp; pp = &(*pp)->next)
        if (*pp == e) {
            *pp = e->next;
            break;
        }
    free(e);
    ctx->npeers--;
}

size_t net_peer_conns(const net_conn_t *c)
{
    return c->peer_ent ? c->peer_ent->n : 0;
}

const char *net_peer(const net_conn_t *c)
{
    return c->peer_ent ? c->peer_ent->ip : "";
}

/* ---------------------------------------------------------------- deadlines */

static void on_deadline(tq_t *q, tq_entry_t *e)
{
    (void)q;
    net_conn_t *c = container_of(e, net_conn_t, deadline);
    if (c->flags & NET_F_CLOSING)
        return;
    if (c->ops == NULL && c->tls != NULL)
        tls_refused(c, "handshake not complete in time");
    if (c->ops != NULL && c->ops->on_timeout != NULL)
        c->ops->on_timeout(c);
    else
        close_why(c, NET_CLOSE_TIMEOUT);
}

/* The queue for `ms`: an existing one of that duration, a new one, or (all NET_MAX_TQ in use)
 * the shortest one longer than ms, else the longest: a deadline may come late, never never. */
static tq_t *queue_for(net_ctx_t *ctx, uint64_t ms)
{
    tq_t *best = NULL;
    for (uint8_t i = 0; i < ctx->ntq; i++)
        if (ctx->tq[i].timeout == ms)
            return &ctx->tq[i];
    if (ctx->ntq < NET_MAX_TQ) {
        tq_t *q = &ctx->tq[ctx->ntq++];
        tq_init(q, ctx->loop, ms, on_deadline, ctx);
        tq_watch(q, ctx->clock); /* every deadline here waits for input or output progress */
        return q;
    }
    for (uint8_t i = 0; i < ctx->ntq; i++) { /* shortest of those >= ms */
        tq_t *q = &ctx->tq[i];
        if (q->timeout >= ms && (best == NULL || q->timeout < best->timeout))
            best = q;
    }
    if (best != NULL)
        return best;
    best = &ctx->tq[0]; /* none: the longest */
    for (uint8_t i = 1; i < ctx->ntq; i++)
        if (ctx->tq[i].timeout > best->timeout)
            best = &ctx->tq[i];
    return best;
}

/* Removes c's deadline; a queue left empty stops its timer, so that an idle loop has no timer
 * to wake up for (and uv_run() can return when nothing else is active). */
static void disarm(net_conn_t *c)
{
    net_ctx_t *ctx = c->ctx;
    if (!tq_queued(&c->deadline))
        return;
    tq_remove(&c->deadline);
    for (uint8_t i = 0; i < ctx->ntq; i++)
        if (ctx->tq[i].head.next == &ctx->tq[i].head)
            uv_timer_stop(&ctx->tq[i].timer);
}

void net_set_timeout(net_conn_t *c, uint64_t ms)
{
    disarm(c);
    if (ms == 0 || (c->flags & NET_F_CLOSING) || c->ctx->stopped > 1)
        return;
    tq_add(queue_for(c->ctx, ms), &c->deadline);
}

/* After net_stop(), once the last connection is gone: the timer handles go too. */
static void close_queues(net_ctx_t *ctx)
{
    if (ctx->stopped != 1 || ctx->nconns != 0)
        return;
    ctx->stopped = 2;
    for (uint8_t i = 0; i < ctx->ntq; i++)
        tq_close(&ctx->tq[i]);
    if (ctx->flush_ready) {
        uv_close((uv_handle_t *)&ctx->flush_prepare, NULL);
        uv_close((uv_handle_t *)&ctx->flush_check, NULL);
        ctx->flush_ready = 0;
    }
}

/* ---------------------------------------------------------------- close protocol */

static void unlink_dirty(net_conn_t *c);

static void close_cb(uv_handle_t *h)
{
    net_conn_t *c = container_of(h, net_conn_t, tcp);
    /* libuv has already run the write callbacks (UV_ECANCELED) of the in-flight write, and the
     * items that never reached uv_write went in close_why: nothing of the output is left. */
    net_ctx_t *ctx = c->ctx;
    unlink_dirty(c);
    disarm(c); /* an owner's on_close below cannot re-arm it: the conn is closing */
    peer_remove(c);
    ctx->nconns--;
    if (c->ops != NULL && c->ops->on_close != NULL)
        c->ops->on_close(c, (net_close_reason_t)c->why);
    tls_conn_free(c->tls);
    free(c);
    close_queues(ctx);
}

static void close_why(net_conn_t *c, net_close_reason_t why)
{
    if (c->flags & NET_F_CLOSING)
        return;
    c->ctx->total_queued -= c->queued; /* out of the budget from now */
    c->flags |= NET_F_CLOSING;
    c->why = (uint8_t)why;
    for (uint32_t i = 0; i < c->npending; i++) { /* never to be written: freed now */
        c->queued -= c->pending[i].len;
        rbuf_unref(c->pending[i].b);
    }
    free(c->pending);
    c->pending = NULL;
    c->npending = c->cap_pending = 0;
    disarm(c);
    if (c->flags & NET_F_READING)
        uv_read_stop((uv_stream_t *)&c->tcp);
    c->flags &= (uint8_t)~NET_F_READING;
    uv_close((uv_handle_t *)&c->tcp, close_cb);
}

void net_close(net_conn_t *c)
{
    close_why(c, NET_CLOSE_LOCAL);
}

static void tls_flush(net_conn_t *c);

void net_close_after_write(net_conn_t *c)
{
    if (c->flags & NET_F_CLOSING)
        return;
    if (c->tls != NULL) {
        tls_close_notify(c->tls);
        tls_flush(c);
        if (c->flags & NET_F_CLOSING)
            return;
    }
    if (c->queued == 0)
        close_why(c, NET_CLOSE_LOCAL);
    else
        c->flags |= NET_F_CLOSE_AFTER;
}

/* ---------------------------------------------------------------- reading */

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    net_conn_t *c = container_of(h, net_conn_t, tcp);
    buf->base = c->ctx->readbuf;
    buf->len = sizeof(c->ctx->readbuf);
}

static void tls_input(net_conn_t *c, const char *data, size_t len);

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    net_conn_t *c = container_of(s, net_conn_t, tcp);
    if (nread > 0) {
        METRIC_ADD(c->ctx->metrics, bytes_in, (uint64_t)nread);
        if (c->tls != NULL)
            tls_input(c, c->ctx->readbuf, (size_t)nread);
        else if (!(c->flags & NET_F_CLOSING) && c->ops != NULL && c->ops->on_read != NULL)
            c->ops->on_read(c, c->ctx->readbuf, (size_t)nread);
    } else if (nread == UV_EOF) {
        close_why(c, NET_CLOSE_EOF);
    } else if (nread < 0) {
        close_why(c, NET_CLOSE_ERROR);
    }
}

static void start_reading(net_conn_t *c)
{
    if (c->flags & (NET_F_CLOSING | NET_F_READING))
        return;
    if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) != 0) {
        close_why(c, NET_CLOSE_ERROR);
        return;
    }
    c->flags |= NET_F_READING;
}

void net_pause(net_conn_t *c)
{
    c->flags |= NET_F_PAUSED;
    if (c->flags & NET_F_READING) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->flags &= (uint8_t)~NET_F_READING;
    }
}

static void mark_dirty(net_conn_t *c);

void net_resume(net_conn_t *c)
{
    c->flags &= (uint8_t)~NET_F_PAUSED;
    start_reading(c);
    /* plaintext left in the session when the owner paused: delivered at the end of this turn
     * (flush_all), not from inside the owner's call */
    if (c->tls != NULL && c->ops != NULL && !(c->flags & NET_F_CLOSING) && tls_has_input(c->tls)) {
        c->flags |= NET_F_TLS_INPUT;
        mark_dirty(c);
    }
}

void net_set_owner(net_conn_t *c, const net_ops_t *ops, void *owner)
{
    c->ops = ops;
    c->owner = owner;
}

/* ---------------------------------------------------------------- writing */

#define NET_F_DIRTY 16 /* on ctx->dirty */

static void start_write(net_conn_t *c);

static void unlink_dirty(net_conn_t *c)
{
    if (!(c->flags & NET_F_DIRTY))
        return;
    for (net_conn_t **pp = &c->ctx->dirty; *pp; pp = &(*pp)->dirty_next)
        if (*pp == c) {
            *pp = c->dirty_next;
            break;
        }
    c->dirty_next = NULL;
    c->flags &= (uint8_t)~NET_F_DIRTY;
}

/* Writes what c has queued: as much as the kernel takes now (one writev), the rest by uv_write. */
static void flush_conn(net_conn_t *c)
{
    while (c->npending > 0 && c->inflight == NULL && !(c->flags & NET_F_CLOSING)) {
        uint32_t n = c->npending < NET_WRITE_MAX ? c->npending : NET_WRITE_MAX;
        uv_buf_t bufs[NET_WRITE_MAX];
        size_t total = 0;
        for (uint32_t i = 0; i < n; i++) {
            bufs[i] = uv_buf_init(c->pending[i].b->data + c->pending[i].off, c->pending[i].len);
            total += c->pending[i].len;
        }
        int r = uv_try_write((uv_stream_t *)&c->tcp, bufs, n);
        if (r < 0 && r != UV_EAGAIN && r != UV_ENOSYS) {
            close_why(c, NET_CLOSE_ERROR);
            return;
        }
        size_t done = r > 0 ? (size_t)r : 0, k = 0;
        METRIC_ADD(c->ctx->metrics, bytes_out, done);
        queued_sub(c, done);
        while (k < c->npending && done >= c->pending[k].len) { /* fully written items */
            done -= c->pending[k].len;
            rbuf_unref(c->pending[k].b);
            k++;
        }
        if (k < c->npending && done > 0) { /* a partly written one */
            c->pending[k].off += (uint32_t)done;
            c->pending[k].len -= (uint32_t)done;
        }
        c->npending -= (uint32_t)k;
        memmove(c->pending, c->pending + k, c->npending * sizeof(net_witem_t));
        if ((size_t)(r > 0 ? r : 0) < total) {
            start_write(c); /* the kernel's buffer is full: libuv writes the rest when it can */
            return;
        }
    }
    if (c->npending == 0 && c->inflight == NULL && !(c->flags & NET_F_CLOSING)) {
        free(c->pending); /* no idle per-connection buffers */
        c->pending = NULL;
        c->cap_pending = 0;
        if (c->flags & NET_F_CLOSE_AFTER)
            close_why(c, NET_CLOSE_LOCAL);
        else if (c->ops != NULL && c->ops->on_drain != NULL)
            c->ops->on_drain(c);
    }
}

static void flush_all(net_ctx_t *ctx)
{
    net_conn_t *c;
    /* flush_conn may queue more output (on_drain) or close connections: pop one at a time */
    while ((c = ctx->dirty) != NULL) {
        ctx->dirty = c->dirty_next;
        c->dirty_next = NULL;
        c->flags &= (uint8_t)~NET_F_DIRTY;
        if (c->flags & NET_F_TLS_INPUT) {
            c->flags &= (uint8_t)~NET_F_TLS_INPUT;
            tls_deliver(c); /* may write (c goes back on the list) or close it */
            tls_feed_done(c->tls);
        }
        if (c->inflight == NULL)
            flush_conn(c); /* else write_cb continues with the rest */
    }
}

void net_flush(net_ctx_t *ctx)
{
    flush_all(ctx);
}

static void on_flush_prepare(uv_prepare_t *h)
{
    flush_all(h->data);
}

static void on_flush_check(uv_check_t *h)
{
    flush_all(h->data);
}

/* Puts c on the flush list (the handles are made on first use, and never keep the loop alive). */
static void mark_dirty(net_conn_t *c)
{
    net_ctx_t *ctx = c->ctx;
    if (c->flags & NET_F_DIRTY)
        return;
    if (!ctx->flush_ready && ctx->stopped != 2) {
        uv_prepare_init(c->tcp.loop, &ctx->flush_prepare);
        uv_check_init(c->tcp.loop, &ctx->flush_check);
        ctx->flush_prepare.data = ctx->flush_check.data = ctx;
        uv_prepare_start(&ctx->flush_prepare, on_flush_prepare);
        uv_check_start(&ctx->flush_check, on_flush_check);
        uv_unref((uv_handle_t *)&ctx->flush_prepare);
        uv_unref((uv_handle_t *)&ctx->flush_check);
        ctx->flush_ready = 1;
    }
    c->flags |= NET_F_DIRTY;
    c->dirty_next = ctx->dirty;
    ctx->dirty = c;
}

static void write_cb(uv_write_t *req, int status)
{
    net_wreq_t *w = container_of(req, net_wreq_t, req);
    net_conn_t *c = w->c;
    for (uint32_t i = 0; i < w->n; i++)
        rbuf_unref(w->items[i].b);
    if (status >= 0)
        METRIC_ADD(c->ctx->metrics, bytes_out, w->bytes);
    queued_sub(c, w->bytes);
    c->inflight = NULL;
    free(w);
    if (c->flags & NET_F_CLOSING)
        return; /* UV_ECANCELED from uv_close, or a write that finished as we closed */
    if (status < 0) {
        close_why(c, NET_CLOSE_ERROR);
        return;
    }
    if (c->npending > 0) {
        start_write(c);
        return;
    }
    if (c->flags & NET_F_CLOSE_AFTER)
        close_why(c, NET_CLOSE_LOCAL);
    else if (c->ops != NULL && c->ops->on_drain != NULL)
        c->ops->on_drain(c);
}

/* Hands the first pending items (NET_WRITE_MAX, NET_WRITE_BYTES) to one uv_write. */
static void start_write(net_conn_t *c)
{
    uint32_t n = 1;
    size_t bytes = c->pending[0].len;
    while (n < c->npending && n < NET_WRITE_MAX && bytes + c->pending[n].len <= NET_WRITE_BYTES)
        bytes += c->pending[n++].len;
    net_wreq_t *w = xmalloc(sizeof(*w) + n * sizeof(net_witem_t));
    uv_buf_t bufs[NET_WRITE_MAX];
    w->c = c;
    w->n = n;
    w->bytes = 0;
    for (uint32_t i = 0; i < n; i++) {
        net_witem_t *it = &c->pending[i];
        w->items[i] = *it;
        w->bytes += it->len;
        bufs[i] = uv_buf_init(it->b->data + it->off, it->len);
    }
    c->npending -= n;
    if (c->npending > 0) {
        memmove(c->pending, c->pending + n, c->npending * sizeof(net_witem_t));
    } else {
        free(c->pending); /* no idle per-connection buffers */
        c->pending = NULL;
        c->cap_pending = 0;
    }
    c->inflight = w;
    int r = uv_write(&w->req, (uv_stream_t *)&c->tcp, bufs, n, write_cb);
    if (r != 0) {
        for (uint32_t i = 0; i < n; i++)
            rbuf_unref(w->items[i].b);
        queued_sub(c, w->bytes);
        c->inflight = NULL;
        free(w);
        close_why(c, NET_CLOSE_ERROR);
    }
}

/* Queues [off, off+len) of b, whose reference the queue now owns. */
static void enqueue(net_conn_t *c, rbuf_t *b, size_t off, size_t len)
{
    if (c->npending == c->cap_pending) {
        c->cap_pending = c->cap_pending ? c->cap_pending * 2 : 4;
        c->pending = xrealloc(c->pending, c->cap_pending * sizeof(net_witem_t));
    }
    c->pending[c->npending++] = (net_witem_t){b, (uint32_t)off, (uint32_t)len};
    queued_add(c, len);
    if (c->ctx->max_queued != 0 && c->queued > c->ctx->max_queued) {
        close_why(c, NET_CLOSE_OVERFLOW);
        return;
    }
    if (c->ctx->max_total_queued != 0 && c->ctx->total_queued > c->ctx->max_total_queued) {
        over_budget(c->ctx);
        if (c->flags & NET_F_CLOSING)
            return;
    }
    if (c->inflight == NULL)
        mark_dirty(c); /* written at the end of this loop turn, with whatever else comes */
}


/* Encrypts p and queues the ciphertext (a session that can no longer send drops it). */
static void tls_send(net_conn_t *c, const void *p, size_t len)
{
    if (tls_write(c->tls, p, len) == 0)
        tls_flush(c);
}

void net_write(net_conn_t *c, rbuf_t *b, size_t off, size_t len)
{
    if ((c->flags & NET_F_CLOSING) || len == 0)
        return;
    if (c->tls != NULL) {
        tls_send(c, b->data + off, len);
        return;
    }
    enqueue(c, rbuf_ref(b), off, len);
}

void net_write_copy(net_conn_t *c, const void *p, size_t len)
{
    if ((c->flags & NET_F_CLOSING) || len == 0)
        return;
    if (c->tls != NULL) {
        tls_send(c, p, len);
        return;
    }
    rbuf_t *b = rbuf_from(p, len);
    enqueue(c, b, RBUF_HEADROOM, b->len);
}

/* ---------------------------------------------------------------- listener */

/* Open files besides the connections (listener, epoll, signals, inotify, log, Redis, a static
 * file): once the connections come this close to RLIMIT_NOFILE, libuv's EMFILE fallback starts
 * closing new connections before we ever see them. */
#define NET_FD_RESERVE 32

/* At most one line a second of each kind (*last: the loop time of the last one). */
static int warn_due(net_ctx_t *ctx, uint64_t *last)
{
    uint64_t now = uv_now(ctx->loop);
    if (*last != 0 && now - *last < 1000)
        return 0;
    *last = now ? now : 1;
    return 1;
}

void net_warn_full(net_ctx_t *ctx, const char *why)
{
    if (warn_due(ctx, &ctx->accept_warned))
        log_warn("net: refusing connections: %s (%zu open)", why, ctx->nconns);
}

static void on_connection(uv_stream_t *server, int status)
{
    net_ctx_t *ctx = container_of(server, net_ctx_t, listener);
    if (status < 0) {
        /* EMFILE/ENFILE when libuv's reserve-fd trick could not help: it has dropped the waiting
         * connection, so this does not spin; log at most once a second. */
        if (warn_due(ctx, &ctx->accept_warned))
            log_warn("net: accept: %s (%zu connections open)", uv_strerror(status), ctx->nconns);
        return;
    }
    net_adopt(ctx, server, NULL, 0);
}

/* A new connection from the listener (no data), or a socket handed over another worker's channel
 * with the bytes that worker already read from it (data, len), given to the owner as if just read. */
void net_adopt(net_ctx_t *ctx, uv_stream_t *server, const char *data, size_t len)
{
    if (ctx->fd_limit != 0 && ctx->nconns + NET_FD_RESERVE >= ctx->fd_limit)
        net_warn_full(ctx, "close to the open-file limit (ulimit -n): new clients are dropped unanswered");
    net_conn_t *c = xcalloc(1, sizeof(*c));
    c->ctx = ctx;
    uv_tcp_init(ctx->loop, &c->tcp);
    c->tcp.data = ctx; /* marks net's connections for uv_walk (over_budget) */
    ctx->nconns++; /* decremented in close_cb, which every path below ends in */
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        close_why(c, NET_CLOSE_ERROR);
        return;
    }
    if (ctx->max_conns != 0 && ctx->nconns > ctx->max_conns) {
        close_why(c, NET_CLOSE_LOCAL); /* no owner: nobody is told */
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    METRIC_ADD(ctx->metrics, accepted, 1);
    struct sockaddr_storage ss;
    int sl = sizeof(ss);
    char ip[48] = "";
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET6)
            uv_ip6_name((const struct sockaddr_in6 *)&ss, ip, sizeof(ip));
        else if (ss.ss_family == AF_INET)
            uv_ip4_name((const struct sockaddr_in *)&ss, ip, sizeof(ip));
    }
    peer_add(c, ip);
    if (ctx->tls != NULL) { /* the owner hears of it once the handshake is complete */
        if (ctx->tls_max_per_ip != 0 && net_peer_conns(c) > ctx->tls_max_per_ip) {
            /* no handshake (CPU, a session) for an address over its share: closed unanswered */
            log_debug("tls: %s: connection refused (%zu from this IP)", ip, net_peer_conns(c));
            close_why(c, NET_CLOSE_LOCAL);
            return;
        }
        c->tls = tls_conn_new(ctx->tls);
        net_set_timeout(c, ctx->tls_timeout);
        start_reading(c);
        return;
    }
    ctx->on_accept(c, ctx->data);
    if (len > 0 && !(c->flags & NET_F_CLOSING) && c->ops != NULL && c->ops->on_read != NULL)
        c->ops->on_read(c, data, len); /* (counted in bytes_in by the worker that read them) */
    if (!(c->flags & (NET_F_PAUSED | NET_F_CLOSING)))
        start_reading(c);
}

/* What net_listen and net_listen_fd share: the context's loop and callback, the open-file limit... */
static void listen_init(net_ctx_t *ctx, uv_loop_t *loop, net_accept_cb cb, void *data)
{
    struct rlimit rl;
    ctx->loop = loop;
    ctx->on_accept = cb;
    ctx->data = data;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        ctx->fd_limit = (size_t)rl.rlim_cur;
}

/* ... and the end: r is the status of opening the listener (0: listen now); it is closed on error. */
static int listen_start(net_ctx_t *ctx, int r, const char **err)
{
    if (r == 0 && (r = uv_listen((uv_stream_t *)&ctx->listener, NET_BACKLOG, on_connection)) != 0)
        *err = "listen";
    if (r != 0)
        uv_close((uv_handle_t *)&ctx->listener, NULL);
    return r;
}

int net_listen(net_ctx_t *ctx, uv_loop_t *loop, const char *host, int port, net_accept_cb cb, void *data,
               const char **err)
{
    struct sockaddr_storage ss;
    int r;
    listen_init(ctx, loop, cb, data);
    if (strchr(host, ':') != NULL)
        r = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss);
    else
        r = uv_ip4_addr(host, port, (struct sockaddr_in *)&ss);
    if (r != 0) {
        *err = "bad listen address";
        return r;
    }
    if ((r = uv_tcp_init(loop, &ctx->listener)) != 0) {
        *err = "uv_tcp_init";
        return r;
    }
    if ((r = uv_tcp_bind(&ctx->listener, (const struct sockaddr *)&ss, 0)) != 0)
        *err = "bind";
    return listen_start(ctx, r, err);
}

int net_bind_shared(const struct sockaddr *sa, unsigned salen)
{
    int one = 1, fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
                    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
                    bind(fd, sa, (socklen_t)salen) != 0)) {
        int e = errno;
        close(fd);
        errno = e;
        fd = -1;
    }
    return fd;
}

int net_listen_fd(net_ctx_t *ctx, uv_loop_t *loop, int fd, net_accept_cb cb, void *data, const char **err)
{
    int r;
    listen_init(ctx, loop, cb, data);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    int own;
    /* a socket of our own on the address the inherited one holds, all with SO_REUSEPORT: the
     * kernel spreads the connections over the workers' sockets */
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0 ||
        (own = net_bind_shared((struct sockaddr *)&ss, (unsigned)sl)) < 0) {
        *err = "bind the supervisor's address with SO_REUSEPORT";
        return uv_translate_sys_error(errno);
    }
    close(fd);
    if ((r = uv_tcp_init(loop, &ctx->listener)) != 0) {
        close(own);
        *err = "uv_tcp_init";
        return r;
    }
    if ((r = uv_tcp_open(&ctx->listener, own)) != 0)
        *err = "open the listener";
    return listen_start(ctx, r, err);
}

int net_port(net_ctx_t *ctx)
{
    struct sockaddr_storage ss;
    int sl = sizeof(ss);
    if (uv_tcp_getsockname(&ctx->listener, (struct sockaddr *)&ss, &sl) != 0)
        return -1;
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

void net_stop(net_ctx_t *ctx)
{
    if (ctx->loop != NULL && !uv_is_closing((uv_handle_t *)&ctx->listener))
        uv_close((uv_handle_t *)&ctx->listener, NULL);
    if (ctx->stopped == 0)
        ctx->stopped = 1;
    close_queues(ctx);
}

/* ---------------------------------------------------------------- TLS */

/* Queues the ciphertext the session has produced (handshake flights, records, alerts). */
static void tls_flush(net_conn_t *c)
{
    rbuf_t *b = tls_output(c->tls);
    if (b != NULL)
        enqueue(c, b, RBUF_HEADROOM, b->len);
}

/* A failed handshake, or one that timed out: one line at most a second for all of them (a scanner
 * or a misconfigured client must not fill the log), with the count of those left out. */
static void tls_refused(net_conn_t *c, const char *why)
{
    net_ctx_t *ctx = c->ctx;
    if (!warn_due(ctx, &ctx->tls_warned)) {
        ctx->tls_quiet++;
        return;
    }
    if (ctx->tls_quiet > 0)
        log_with(LOG_INFO, LOG_FIELDS(LOG_S("peer", net_peer(c)), LOG_S("reason", why), LOG_I("folded", ctx->tls_quiet)),
                 "tls: %s: handshake failed: %s (and %zu more since the last such line)", net_peer(c), why,
                 ctx->tls_quiet);
    else
        log_with(LOG_INFO, LOG_FIELDS(LOG_S("peer", net_peer(c)), LOG_S("reason", why)),
                 "tls: %s: handshake failed: %s", net_peer(c), why);
    ctx->tls_quiet = 0;
}

/* The session failed: its alert goes out if the socket takes it now and nothing is queued before
 * it, and the connection closes at once (no owner to wait for, or a session that cannot go on). */
static void tls_fatal(net_conn_t *c)
{
    rbuf_t *b = tls_output(c->tls);
    if (b != NULL && c->npending == 0 && c->inflight == NULL) {
        uv_buf_t u = uv_buf_init(rbuf_payload(b), b->len);
        (void)uv_try_write((uv_stream_t *)&c->tcp, &u, 1);
    }
    rbuf_unref(b);
    close_why(c, NET_CLOSE_ERROR);
}

/* Hands the session's plaintext to the owner, a record at a time, while it reads. */
static void tls_deliver(net_conn_t *c)
{
    while (!(c->flags & (NET_F_CLOSING | NET_F_PAUSED)) && c->ops != NULL && c->ops->on_read != NULL) {
        const char *p;
        ssize_t r = tls_read(c->tls, &p);
        if (r > 0) {
            c->ops->on_read(c, p, (size_t)r);
            continue;
        }
        if (r == TLS_CLOSED) {
            close_why(c, NET_CLOSE_EOF);
        } else if (r == TLS_ERROR) {
            log_debug("tls: %s: %s", net_peer(c), tls_error(c->tls));
            tls_fatal(c);
        }
        break;
    }
    if (!(c->flags & NET_F_CLOSING))
        tls_flush(c); /* answers to post-handshake messages (KeyUpdate) */
}

static void tls_input(net_conn_t *c, const char *data, size_t len)
{
    if (c->flags & NET_F_CLOSING)
        return;
    tls_feed(c->tls, data, len);
    if (c->ops == NULL) { /* handshaking */
        int r = tls_handshake(c->tls);
        if (r == TLS_ERROR) {
            tls_refused(c, tls_error(c->tls));
            tls_fatal(c);
            return;
        }
        tls_flush(c);
        if (r == TLS_OK && !(c->flags & NET_F_CLOSING)) {
            disarm(c);
            c->ctx->on_accept(c, c->ctx->data);
        }
    }
    tls_deliver(c);
    tls_feed_done(c->tls); /* data is the loop-wide buffer: keep what was not read */
}
