/* eio: see eio.h.
 * A session has one current transport (a held polling GET or a WebSocket) and, during an upgrade,
 * a probe WebSocket. Its memory is held by `refs`: one for being open, one per attached
 * WebSocket (whose on_close comes later), one per dispatch loop or observer call in progress.
 * When the last one goes the session is not freed at once but parked on the server's zombie list
 * and freed from an idle callback: an upper layer that still holds the pointer on its stack (sio
 * sending a packet and its attachments, when the first send closed the session) finds a closed
 * session, never freed memory. */
#include "eio.h"

#include <assert.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "eio_packet.h"
#include "log.h"
#include "metrics.h"
#include "utf8.h"
#include "ws.h"

#define container_of(p, T, m) ((T *)((char *)(p) - offsetof(T, m)))

typedef enum { S_OPEN = 0, S_CLOSING, S_CLOSED } sstate_t;

struct eio_session {
    struct eio_session *hnext; /* hash chain */
    eio_server_t *srv;
    char id[21];
    uint8_t transport;         /* EIO_T_* */
    uint8_t state;             /* sstate_t */
    uint8_t opening;           /* the handshake answer is being written (initial_headers) */
    uint8_t upgraded;          /* moved from polling to WebSocket */
    uint8_t watch;             /* EIO_W_* events the observer gets */
    uint8_t protocol;          /* 4, or 3 (allowEIO3) */
    uint8_t b64;               /* v3: the transport's client asked for binary as base64 (b64=1) */
    uint32_t refs;
    ws_conn_t *ws;             /* WebSocket transport, or NULL */
    struct eio_polling *pl;    /* while the transport is polling, else NULL */
    tq_entry_t hb;             /* in q_ping (waiting to ping) or q_pong (waiting for a pong) */
    uint64_t last_packet;      /* loop time of the last packet from the client */
    void *data;                /* upper layer */
    void *obs_data;            /* observer (eio_observer_t) */
    eio_handshake_t hs;        /* copy of the opening request, stored in mem */
    char mem[];
};

/* The state of a polling session, which a WebSocket session does not need: made with a polling
 * session, freed when the session upgrades (most sessions end on WebSocket). */
typedef struct eio_polling {
    http_req_t *poll;  /* held polling GET, or NULL */
    ws_conn_t *probe;  /* WebSocket being upgraded to, or NULL */
    rbuf_t **q;        /* packets waiting for the next GET */
    uint32_t nq, capq;
    size_t qbytes;
    tq_entry_t upg;    /* in q_upgrade while probing */
    uint8_t probed;    /* the probe answered 2probe: a held GET gets noops */
    uint8_t probe_b64; /* v3: the probe's request asked for b64 */
} eio_polling_t;

/* A handshake waiting for allowRequest (eio.h). */
struct eio_allow {
    eio_server_t *srv;
    http_req_t *req;        /* NULL once answered, timed out or aborted */
    tq_entry_t deadline;    /* in q_allow while waiting */
    uint32_t refs;          /* eio's while waiting, the owner's, the caller's during the call */
    int transport;          /* EIO_T_* asked for */
    uint8_t in_call;        /* inside allow_request: an answer is applied once it returns */
    uint8_t answered, ok;
    char message[128];
};

/* ---------------------------------------------------------------- errors */

const char *eio_error_message(eio_error_t code)
{
    static const char *const msgs[] = {"Transport unknown", "Session ID unknown",     "Bad handshake method",
                                       "Bad request",       "Forbidden",              "Unsupported protocol version"};
    return (unsigned)code < sizeof(msgs) / sizeof(msgs[0]) ? msgs[code] : "Bad request";
}

/* The reference answers plain requests with JSON and upgrade requests with a text/html body, and
 * tells its "connection_error" listeners first (name: the reference's context.name, or NULL). */
static void abort_request(eio_server_t *srv, http_req_t *req, eio_error_t code, const char *message,
                          const char *name)
{
    http_hdr_t hdrs[8];
    size_t n;
    const char *msg = message ? message : eio_error_message(code);
    if ((unsigned)code < METRICS_NEIO_ERRORS)
        METRIC_ADD(srv->metrics, eio_refused[code], 1);
    log_with(LOG_DEBUG, LOG_FIELDS(LOG_SN("url", req->url.ptr, req->url.len), LOG_I("code", code), LOG_S("reason", msg)),
             "eio: refused %.*s: %s", (int)req->url.len, req->url.ptr, msg);
    if (srv->obs != NULL && srv->obs->on_error != NULL)
        srv->obs->on_error(req, code, message, name, srv->obs_ud);
    if (req->upgrade) {
        hdrs[0] = (http_hdr_t){"Content-type", "text/html"};
        http_respond(req, 400, hdrs, 1, msg, strlen(msg));
        return;
    }
    n = eio_cors_headers(srv->cfg, req, hdrs);
    http_respond_json_error(req, code == EIO_ERR_FORBIDDEN ? 403 : 400, hdrs, n, (int)code, msg);
}

/* ---------------------------------------------------------------- CORS (as the npm cors package) */

void eio_config_free(eio_config_t *cfg)
{
    eio_cors_t *c = &cfg->cors;
    for (size_t i = 0; i < c->norigins; i++)
        free(c->origins[i]);
    free(c->origins);
    free(c->methods);
    free(c->allowed_headers);
    memset(c, 0, sizeof(*c));
    free(cfg->cookie.name);
    free(cfg->cookie.path);
    free(cfg->cookie.domain);
    free(cfg->cookie.same_site);
    memset(&cfg->cookie, 0, sizeof(cfg->cookie));
    cfg->cookie.max_age = -1;
}

/* The configured origin equal to the request's, or NULL. */
static const char *origin_allowed(const eio_cors_t *c, slice_t origin)
{
    for (size_t i = 0; origin.ptr != NULL && i < c->norigins; i++)
        if (slice_eq(origin, c->origins[i]))
            return c->origins[i];
    return NULL;
}

size_t eio_cors_headers(const eio_config_t *cfg, const http_req_t *req, http_hdr_t *hdrs)
{
    const eio_cors_t *c = &cfg->cors;
    size_t n = 0;
    if (!c->origin_any && c->norigins == 0)
        return 0;
    if (c->origin_any) {
        hdrs[n++] = (http_hdr_t){"Access-Control-Allow-Origin", "*"};
    } else if (c->norigins == 1) {
        /* a single origin is sent whatever the request's origin (the cors package: isString) */
        hdrs[n++] = (http_hdr_t){"Access-Control-Allow-Origin", c->origins[0]};
        hdrs[n++] = (http_hdr_t){"Vary", "Origin"};
    } else {
        /* a list: the request's origin is echoed when it is in the list */
        const char *o = origin_allowed(c, http_header(req, "Origin"));
        if (o != NULL)
            hdrs[n++] = (http_hdr_t){"Access-Control-Allow-Origin", o};
        hdrs[n++] = (http_hdr_t){"Vary", "Origin"};
    }
    if (c->credentials)
        hdrs[n++] = (http_hdr_t){"Access-Control-Allow-Credentials", "true"};
    return n;
}

/* The headers of a successful answer: eio's own hdrs[0..n), the observer's changes ("headers",
 * "initial_headers"), then CORS. hdrs has room for ANSWER_HDRS entries. Returns the count.
 * The observer may call into Lua: callers hold a session reference across this. */
#define ANSWER_HDRS (4 + EIO_MAX_EXTRA_HEADERS + 7) /* + CORS (at most 4) + the cookie */
static size_t answer_headers(eio_server_t *srv, const http_req_t *req, int initial, http_hdr_t *hdrs, size_t n)
{
    if (srv->obs != NULL && srv->obs->on_headers != NULL)
        n = srv->obs->on_headers(req, initial, hdrs, n, n + EIO_MAX_EXTRA_HEADERS, srv->obs_ud);
    return n + eio_cors_headers(srv->cfg, req, hdrs + n);
}

/* Adds the cookie option's Set-Cookie (the `cookie` npm package's serialization) for session sid.
 * The value lives in srv->cookie_buf until the answer is written, which copies it. */
static size_t add_cookie(eio_server_t *srv, const char *sid, http_hdr_t *hdrs, size_t n)
{
    const eio_cookie_t *c = &srv->cfg->cookie;
    char *p = srv->cookie_buf, *end = srv->cookie_buf + sizeof(srv->cookie_buf);
    if (c->name == NULL)
        return n;
    p += snprintf(p, (size_t)(end - p), "%s=%s", c->name, sid);
    if (c->max_age >= 0 && p < end)
        p += snprintf(p, (size_t)(end - p), "; Max-Age=%ld", c->max_age);
    if (c->domain != NULL && p < end)
        p += snprintf(p, (size_t)(end - p), "; Domain=%s", c->domain);
    if (c->path != NULL && p < end)
        p += snprintf(p, (size_t)(end - p), "; Path=%s", c->path);
    if (c->http_only && p < end)
        p += snprintf(p, (size_t)(end - p), "; HttpOnly");
    if (c->same_site != NULL && p < end)
        p += snprintf(p, (size_t)(end - p), "; SameSite=%s", c->same_site);
    if (c->secure && p < end)
        snprintf(p, (size_t)(end - p), "; Secure");
    hdrs[n++] = (http_hdr_t){"Set-Cookie", srv->cookie_buf};
    return n;
}

/* ---------------------------------------------------------------- session table */

static uint32_t hash_sid(const char *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)p[i]) * 16777619u;
    return h;
}

static eio_session_t *find_session(eio_server_t *srv, const char *sid, size_t n)
{
    if (n != 20 || srv->nbuckets == 0)
        return NULL;
    for (eio_session_t *s = srv->buckets[hash_sid(sid, n) & (srv->nbuckets - 1)]; s; s = s->hnext)
        if (memcmp(s->id, sid, 20) == 0)
            return s;
    return NULL;
}

static void table_insert(eio_server_t *srv, eio_session_t *s)
{
    if (srv->nsessions + 1 > srv->nbuckets) {
        size_t nb = srv->nbuckets ? srv->nbuckets * 2 : 64;
        eio_session_t **b = xcalloc(nb, sizeof(*b));
        for (size_t i = 0; i < srv->nbuckets; i++) {
            eio_session_t *e = srv->buckets[i], *next;
            for (; e; e = next) {
                next = e->hnext;
                uint32_t h = hash_sid(e->id, 20) & (nb - 1);
                e->hnext = b[h];
                b[h] = e;
            }
        }
        free(srv->buckets);
        srv->buckets = b;
        srv->nbuckets = nb;
    }
    uint32_t h = hash_sid(s->id, 20) & (srv->nbuckets - 1);
    s->hnext = srv->buckets[h];
    srv->buckets[h] = s;
    srv->nsessions++;
}

static void table_remove(eio_server_t *srv, eio_session_t *s)
{
    eio_session_t **pp = &srv->buckets[hash_sid(s->id, 20) & (srv->nbuckets - 1)];
    for (; *pp; pp = &(*pp)->hnext)
        if (*pp == s) {
            *pp = s->hnext;
            srv->nsessions--;
            return;
        }
}

static const char id_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
static int id_worker = -1; /* set once by a worker of --workers (eio_set_worker) */

void eio_set_worker(int index)
{
    id_worker = index;
}

static int id_digit(char ch)
{
    const char *p = ch != '\0' ? strchr(id_alphabet, ch) : NULL;
    return p != NULL ? (int)(p - id_alphabet) : -1;
}

int eio_worker_of(const char *id, size_t len)
{
    if (len != 20)
        return -1;
    int hi = id_digit(id[0]), lo = id_digit(id[1]);
    return hi < 0 || lo < 0 ? -1 : hi << 6 | lo;
}

void eio_generate_id(char out[21])
{
    unsigned char raw[15];
    const char *alphabet = id_alphabet;
    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        fprintf(stderr, "siolua: RAND_bytes failed\n");
        abort();
    }
    for (int i = 0, o = 0; i < 15; i += 3) {
        uint32_t v = (uint32_t)raw[i] << 16 | (uint32_t)raw[i + 1] << 8 | raw[i + 2];
        out[o++] = alphabet[(v >> 18) & 63];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = alphabet[(v >> 6) & 63];
        out[o++] = alphabet[v & 63];
    }
    if (id_worker >= 0) { /* the worker's number in the first two characters: 108 random bits left */
        out[0] = alphabet[(id_worker >> 6) & 63];
        out[1] = alphabet[id_worker & 63];
    }
    out[20] = '\0';
}

/* ---------------------------------------------------------------- lifetime */

static void polling_free(eio_session_t *s)
{
    eio_polling_t *pl = s->pl;
    if (pl == NULL)
        return;
    tq_remove(&pl->upg);
    for (uint32_t i = 0; i < pl->nq; i++)
        rbuf_unref(pl->q[i]);
    free(pl->q);
    free(pl);
    s->pl = NULL;
}

static void session_free(eio_session_t *s)
{
    eio_server_t *srv = s->srv;
    polling_free(s);
    free(s);
    srv->nalive--;
}

static void maybe_freed(eio_server_t *srv)
{
    if (srv->shutting && srv->ntimers == 0 && srv->nalive == 0 && srv->on_freed != NULL) {
        void (*cb)(eio_server_t *) = srv->on_freed;
        srv->on_freed = NULL;
        cb(srv);
    }
}

static void reap(eio_server_t *srv)
{
    while (srv->zombies != NULL) {
        eio_session_t *s = srv->zombies;
        srv->zombies = s->hnext;
        session_free(s);
    }
}

static void on_reap(uv_idle_t *idle)
{
    eio_server_t *srv = idle->data;
    uv_idle_stop(idle);
    reap(srv);
}

static void session_unref(eio_session_t *s)
{
    eio_server_t *srv = s->srv;
    if (--s->refs > 0)
        return;
    if (srv->shutting && srv->ntimers == 0) {
        /* the server is gone (its reaper too): this is a transport's late close callback */
        session_free(s);
        maybe_freed(srv);
        return;
    }
    s->hnext = srv->zombies;
    srv->zombies = s;
    if (!srv->shutting)
        uv_idle_start(&srv->reaper, on_reap);
}

static void on_poll_abort(http_req_t *req, void *data);
static void respond_poll(eio_session_t *s, int tail);
static void watched_send(eio_session_t *s, rbuf_t *pkt);
static void queue_poll(eio_session_t *s, rbuf_t *pkt);

/* The single place where a session closes. Safe to call from inside any callback. */
static void session_closed(eio_session_t *s, const char *reason)
{
    eio_server_t *srv = s->srv;
    if (s->state == S_CLOSED)
        return;
    s->state = S_CLOSED;
    table_remove(srv, s);
    tq_remove(&s->hb);
    if (s->pl != NULL) {
        tq_remove(&s->pl->upg);
        if (s->pl->poll != NULL)
            respond_poll(s, EIO_CLOSE); /* the reference answers a held GET with a close packet */
        if (s->pl->probe != NULL)
            ws_abort(s->pl->probe);
    }
    if (s->ws != NULL)
        ws_close(s->ws, 1000, "");
    log_with(LOG_DEBUG, LOG_FIELDS(LOG_S("sid", s->id), LOG_S("reason", reason)), "eio: session %s closed: %s", s->id,
             reason);
    srv->h->on_close(s, reason, srv->ud);
    if (srv->obs != NULL && srv->obs->on_close != NULL)
        srv->obs->on_close(s, reason, srv->obs_ud);
    session_unref(s); /* the "open" reference; attached transports hold theirs */
}

/* Tells the observer about `what` if s watches it. The observer may call into Lua: the caller holds
 * a reference on s (or may lose it) and re-checks its state after. */
static void notify(eio_session_t *s, unsigned what, rbuf_t *const *pkts, size_t n)
{
    eio_server_t *srv = s->srv;
    if ((s->watch & what) && srv->obs != NULL && srv->obs->on_notify != NULL)
        srv->obs->on_notify(s, what, pkts, n, srv->obs_ud);
}

/* ---------------------------------------------------------------- heartbeat */

static void on_ping_due(tq_t *q, tq_entry_t *e)
{
    eio_session_t *s = container_of(e, eio_session_t, hb);
    eio_server_t *srv = q->data;
    rbuf_t *ping = eio_packet_new(EIO_PING, NULL, 0);
    tq_add(&srv->q_pong, &s->hb);
    eio_send(s, ping);
    rbuf_unref(ping);
}

static void on_pong_due(tq_t *q, tq_entry_t *e)
{
    eio_session_t *s = container_of(e, eio_session_t, hb);
    eio_server_t *srv = q->data;
    if (s->state == S_CLOSING) {
        /* a polling session waited for a GET to carry its last packets: give up */
        session_closed(s, "forced close");
        return;
    }
    /* as the reference: any packet received within the timeout counts as a sign of life */
    if (s->last_packet + srv->cfg->ping_timeout > uv_now(srv->loop) + 1) {
        tq_add(&srv->q_pong, &s->hb);
        return;
    }
    session_closed(s, "ping timeout");
}

/* v3: no ping from the client within pingInterval + pingTimeout. */
static void on_ping3_due(tq_t *q, tq_entry_t *e)
{
    eio_session_t *s = container_of(e, eio_session_t, hb);
    (void)q;
    session_closed(s, "ping timeout");
}

/* ---------------------------------------------------------------- output */

/* httpCompression: replaces body with its gzip or deflate form when it is at least the threshold
 * long and the request accepts one (the reference's choice, in its order). Returns the
 * Content-Encoding, or NULL when the body stays as it is. */
static const char *compress_body(const eio_config_t *cfg, const http_req_t *req, buf_t *body)
{
    static const char *const encodings[] = {"gzip", "deflate"};
    const eio_http_compression_t *hc = &cfg->http_compression;
    buf_t tmp = BUF_INIT;
    int k = -1;
    if (hc->enabled && body->len >= hc->threshold) {
        slice_t ae = http_header_all(req, "accept-encoding", &tmp);
        k = zip_accept_encoding(ae.ptr, ae.len, encodings, 2);
    }
    if (k >= 0) {
        tmp.len = 0;
        zip_compress(k == 0 ? ZIP_GZIP : ZIP_ZLIB, &hc->zlib, 0, body->base, body->len, &tmp);
        buf_free(body);
        *body = tmp;
        return encodings[k];
    }
    buf_free(&tmp);
    return NULL;
}

/* Answers the held GET with the queued packets, then (unless tail is -1) a packet of type tail
 * that the transport itself adds (a close or a noop: no packet of the session, as in the
 * reference's polling.ts). The observer hears of the packets ("flush", "drain") and may run Lua
 * that sends or closes: what it sends waits for the next GET, and s is kept alive meanwhile. */
static void respond_poll(eio_session_t *s, int tail)
{
    eio_polling_t *pl = s->pl;
    http_req_t *req = pl->poll;
    eio_server_t *srv = s->srv;
    rbuf_t **q = pl->q;
    uint32_t nq = pl->nq;
    buf_t body = BUF_INIT;
    http_hdr_t hdrs[ANSWER_HDRS];
    size_t n;
    pl->poll = NULL;
    req->on_abort = NULL;
    pl->q = NULL; /* the queue is this answer's now */
    pl->nq = pl->capq = 0;
    pl->qbytes = 0;
    int binary = 0; /* v3: a binary payload (the client takes binary and something is binary) */
    s->refs++;
    if (nq > 0)
        notify(s, EIO_W_FLUSH, q, nq);
    for (uint32_t i = 0; i < nq && s->protocol == 3 && !s->b64; i++)
        binary |= (q[i]->flags & RBUF_BINARY) != 0;
    for (uint32_t i = 0; i < nq; i++) {
        if (s->protocol == 3)
            eio_payload_append3(&body, q[i], binary);
        else
            eio_payload_append(&body, q[i]);
        rbuf_unref(q[i]);
    }
    free(q);
    if (tail >= 0) {
        rbuf_t *c = eio_packet_new((eio_type_t)tail, NULL, 0);
        if (s->protocol == 3)
            eio_payload_append3(&body, c, binary);
        else
            eio_payload_append(&body, c);
        rbuf_unref(c);
    }
    const char *enc = compress_body(srv->cfg, req, &body);
    n = 0;
    hdrs[n++] = (http_hdr_t){"Content-Type", binary ? "application/octet-stream" : "text/plain; charset=UTF-8"};
    if (enc != NULL)
        hdrs[n++] = (http_hdr_t){"Content-Encoding", enc};
    hdrs[n++] = (http_hdr_t){"cache-control", "no-store"};
    n = answer_headers(srv, req, s->opening, hdrs, n);
    if (s->opening)
        n = add_cookie(srv, s->id, hdrs, n);
    http_respond(req, 200, hdrs, n, body.base, body.len);
    buf_free(&body);
    if (nq > 0)
        notify(s, EIO_W_DRAIN, NULL, 0);
    session_unref(s);
}

/* Sends pkt on a WebSocket of s. A v3 client gets a binary message as its type byte and the
 * bytes (the header and that byte are this connection's, the bytes are still shared unless
 * compressed: ws_send_prefixed), or with b64 as a text frame "b4<base64>". */
static void send_ws(const eio_session_t *s, ws_conn_t *ws, rbuf_t *pkt, int b64)
{
    if (s->protocol != 3 || !(pkt->flags & RBUF_BINARY)) {
        ws_send(ws, pkt);
    } else if (!b64) {
        ws_send_prefixed(ws, EIO_MESSAGE, pkt);
    } else {
        buf_t text = BUF_INIT;
        rbuf_t *t;
        buf_appendstr(&text, "b4");
        eio_base64_encode(&text, (const unsigned char *)rbuf_payload(pkt), pkt->len);
        t = rbuf_from(text.base, text.len);
        buf_free(&text);
        ws_send(ws, t);
        rbuf_unref(t);
    }
}

void eio_send(eio_session_t *s, rbuf_t *pkt)
{
    if (s->state != S_OPEN)
        return;
    if (s->watch & (EIO_W_PACKET_CREATE | EIO_W_FLUSH | EIO_W_DRAIN)) {
        watched_send(s, pkt);
        return;
    }
    if (s->transport == EIO_T_WEBSOCKET) {
        send_ws(s, s->ws, pkt, s->b64);
        return;
    }
    queue_poll(s, pkt);
}

/* eio_send for a session whose observer watches its packets: "packetCreate" before the packet is
 * queued, and on a WebSocket (where it goes out at once) "flush" and "drain" after. */
static void watched_send(eio_session_t *s, rbuf_t *pkt)
{
    s->refs++;
    notify(s, EIO_W_PACKET_CREATE, &pkt, 1);
    if (s->state != S_OPEN) {
        /* closed by the observer: the packet is dropped */
    } else if (s->transport == EIO_T_WEBSOCKET) {
        send_ws(s, s->ws, pkt, s->b64);
        notify(s, EIO_W_FLUSH, &pkt, 1);
        notify(s, EIO_W_DRAIN, NULL, 0);
    } else {
        queue_poll(s, pkt);
    }
    session_unref(s);
}

/* Queues pkt for the next GET of a polling session, and answers a held GET with it. */
static void queue_poll(eio_session_t *s, rbuf_t *pkt)
{
    eio_polling_t *pl = s->pl;
    if (pl->qbytes + pkt->len > s->srv->cfg->max_buffered && s->srv->cfg->max_buffered) {
        log_warn("eio: session %s: more than %zu bytes waiting for a poll, closing", s->id,
                 s->srv->cfg->max_buffered);
        session_closed(s, "transport error");
        return;
    }
    if (pl->nq == pl->capq) {
        pl->capq = pl->capq ? pl->capq * 2 : 4;
        pl->q = xrealloc(pl->q, pl->capq * sizeof(*pl->q));
    }
    pl->q[pl->nq++] = rbuf_ref(pkt);
    pl->qbytes += pkt->len;
    if (pl->poll != NULL)
        respond_poll(s, -1);
}

void eio_close(eio_session_t *s)
{
    if (s->state != S_OPEN)
        return;
    if (s->transport == EIO_T_POLLING && s->pl->poll == NULL && s->pl->nq > 0) {
        /* Let the next GET carry what is queued, then the close packet (bounded by pingTimeout). */
        s->state = S_CLOSING;
        tq_add(&s->srv->q_pong, &s->hb);
        return;
    }
    session_closed(s, "forced close");
}

/* ---------------------------------------------------------------- input */

static void on_packet(eio_session_t *s, const eio_packet_t *p)
{
    eio_server_t *srv = s->srv;
    s->last_packet = uv_now(srv->loop);
    if (srv->obs != NULL && srv->obs->on_packet != NULL && s->state == S_OPEN) {
        /* the caller holds a reference; the observer may close s */
        srv->obs->on_packet(s, p, srv->obs_ud);
        if (s->state == S_CLOSED)
            return;
    }
    switch (p->type) {
    case EIO_PONG:
        if (s->protocol == 3) {
            session_closed(s, "transport error"); /* v3: the client pings, never the server */
        } else if (s->state == S_OPEN) {
            tq_add(&srv->q_ping, &s->hb);
            notify(s, EIO_W_HEARTBEAT, NULL, 0);
        }
        break;
    case EIO_PING:
        if (s->protocol == 3) {
            /* v3: the client pings, the server answers and waits for the next ping */
            if (s->state == S_OPEN) {
                rbuf_t *pong = eio_packet_new(EIO_PONG, NULL, 0);
                tq_add(&srv->q_ping3, &s->hb);
                eio_send(s, pong);
                rbuf_unref(pong);
                notify(s, EIO_W_HEARTBEAT, NULL, 0);
            }
            break;
        }
        /* protocol v4: the server pings, never the client */
        session_closed(s, "transport error");
        break;
    case EIO_MESSAGE:
        /* the observer first: the reference's "data"/"message" listeners run before Socket.IO
         * dispatches the packet (it does so a tick later) */
        if (srv->obs != NULL && srv->obs->on_message != NULL && s->state == S_OPEN)
            srv->obs->on_message(s, p->binary, p->data.ptr, p->data.len, srv->obs_ud);
        if (s->state == S_OPEN)
            srv->h->on_message(s, p->binary, p->data.ptr, p->data.len, srv->ud);
        break;
    case EIO_CLOSE:
        /* Only the polling transport acts on it (polling.ts onData): the session closes and a held
         * GET (nothing is queued while one is held) is answered with a noop. A WebSocket client
         * closes the socket itself: the reference ignores the packet there. */
        if (s->transport != EIO_T_POLLING || s->state == S_CLOSED)
            break;
        if (s->pl->poll != NULL)
            respond_poll(s, EIO_NOOP);
        session_closed(s, "transport close");
        break;
    case EIO_UPGRADE:
    case EIO_NOOP:
    case EIO_OPEN:
        /* upgrade is only valid on a probe; noop and open are ignored, as the reference does */
        break;
    }
}

static void handle_post(eio_session_t *s, http_req_t *req)
{
    eio_payload_iter_t it;
    eio_packet_t p;
    int rc;
    http_hdr_t hdrs[ANSWER_HDRS];
    size_t n;
    slice_t ctype = http_header(req, "Content-Type");

    if (req->too_large || req->body.len > s->srv->cfg->max_payload) {
        /* (the HTTP limit is the largest of every endpoint's maxHttpBufferSize) */
        http_respond(req, 413, NULL, 0, NULL, 0);
        session_closed(s, "transport error");
        return;
    }
    /* (the reference compares the header exactly) */
    int binary = ctype.ptr != NULL && slice_eq(ctype, "application/octet-stream");
    if (binary && s->protocol != 3) {
        /* protocol v4 sends binary as base64 text */
        http_respond(req, 400, NULL, 0, NULL, 0);
        session_closed(s, "transport error");
        return;
    }
    /* The reference reads a text body as a string (UTF-8, U+FFFD for what is ill-formed): the
     * packets reach the app, and WebSocket peers, as valid UTF-8. */
    buf_t fixed = BUF_INIT;
    const char *body = req->body.base;
    size_t blen = req->body.len;
    if (!binary && blen > 0 && utf8_valid_prefix(body, blen) != blen) {
        utf8_repair(&fixed, body, blen, 0);
        body = fixed.base;
        blen = fixed.len;
    }
    s->refs++; /* the callbacks below may close the session */
    if (s->protocol == 3)
        eio_payload_init3(&it, body, blen, binary ? EIO_PAYLOAD_V3_BIN : EIO_PAYLOAD_V3,
                          s->srv->cfg->max_packets_per_post);
    else
        eio_payload_init(&it, body, blen, s->srv->cfg->max_packets_per_post);
    while (s->state != S_CLOSED && (rc = eio_payload_next(&it, &p)) != 0) {
        if (rc < 0) {
            log_debug("eio: session %s: invalid polling payload (%d): %.*s", s->id, rc,
                      (int)(req->body.len > 64 ? 64 : req->body.len), req->body.base ? req->body.base : "");
            session_closed(s, "parse error");
            break;
        }
        on_packet(s, &p);
    }
    eio_payload_free(&it);
    buf_free(&fixed);
    /* answered after the packets, as the reference does (the body lives in req until then) */
    hdrs[0] = (http_hdr_t){"Content-Type", "text/html"};
    hdrs[1] = (http_hdr_t){"cache-control", "no-store"};
    n = answer_headers(s->srv, req, 0, hdrs, 2);
    http_respond(req, 200, hdrs, n, "ok", 2);
    session_unref(s);
}

static void on_poll_abort(http_req_t *req, void *data)
{
    eio_session_t *s = data;
    (void)req;
    s->pl->poll = NULL;
    session_closed(s, "transport error"); /* the reference: "poll connection closed prematurely" */
}

static void handle_get(eio_session_t *s, http_req_t *req)
{
    eio_polling_t *pl = s->pl;
    if (pl->poll != NULL) {
        /* a second concurrent GET: the reference answers 400 and closes the session */
        http_respond(req, 400, NULL, 0, NULL, 0);
        session_closed(s, "transport error");
        return;
    }
    pl->poll = req;
    req->on_abort = on_poll_abort;
    req->abort_data = s;
    if (s->state == S_CLOSING) {
        /* The last packets go alone; the close packet waits for the next GET, as the reference
         * does: socket.io-client handles a payload's messages a tick later than a close packet
         * in the same payload, so "41" + "1" together would lose "io server disconnect". */
        if (pl->nq > 0) {
            respond_poll(s, -1);
        } else {
            respond_poll(s, EIO_CLOSE);
            session_closed(s, "forced close");
        }
    } else if (pl->nq > 0) {
        respond_poll(s, -1);
    } else if (pl->probed) {
        /* an upgrade is under way: release this GET at once so the client can pause polling */
        respond_poll(s, EIO_NOOP);
    }
}

/* ---------------------------------------------------------------- websocket */

static void ws_on_message(ws_conn_t *ws, int binary, const char *data, size_t len, void *ud)
{
    eio_session_t *s = ud;
    eio_packet_t p;
    eio_server_t *srv = s->srv;
    rbuf_t **q;
    uint32_t nq;

    buf_t scratch = BUF_INIT; /* v3: a base64 packet's bytes */
    int rc;

    if (s->state == S_CLOSED)
        return;
    rc = s->protocol == 3 ? eio_decode_ws3(binary, data, len, &scratch, &p) : eio_decode_ws(binary, data, len, &p);
    if (rc != EIO_PKT_OK) {
        buf_free(&scratch);
        if (ws == s->ws)
            session_closed(s, "parse error");
        else
            ws_abort(ws);
        return;
    }
    if (s->pl != NULL && ws == s->pl->probe) {
        eio_polling_t *pl = s->pl;
        int probe = p.type == EIO_PING && slice_eq(p.data, "probe");
        buf_free(&scratch); /* p.data is not used past this point */
        if (probe) {
            rbuf_t *pong = eio_packet_new(EIO_PONG, "probe", 5);
            ws_send(ws, pong);
            rbuf_unref(pong);
            /* release a held GET so the client can pause polling */
            pl->probed = 1;
            if (pl->poll != NULL)
                respond_poll(s, EIO_NOOP);
            s->refs++;
            notify(s, EIO_W_UPGRADING, NULL, 0);
            session_unref(s);
        } else if (p.type == EIO_UPGRADE && s->state == S_OPEN) {
            tq_remove(&pl->upg);
            if (pl->poll != NULL)
                respond_poll(s, EIO_NOOP); /* a GET still held (nothing is queued then): release it */
            if (s->state != S_OPEN) /* the observer of that answer closed the session */
                return;
            pl->probe = NULL;
            s->ws = ws;
            s->transport = EIO_T_WEBSOCKET;
            s->b64 = pl->probe_b64;
            /* what waited for a GET now goes over the WebSocket, in order */
            for (uint32_t i = 0; i < pl->nq; i++)
                send_ws(s, ws, pl->q[i], s->b64);
            q = pl->q, nq = pl->nq;
            pl->q = NULL, pl->nq = 0;
            polling_free(s);
            s->upgraded = 1;
            METRIC_ADD(s->srv->metrics, eio_upgrades, 1);
            log_debug("eio: session %s upgraded to websocket", s->id);
            s->refs++;
            if (srv->h->on_upgrade)
                srv->h->on_upgrade(s, srv->ud);
            if (srv->obs != NULL && srv->obs->on_upgrade != NULL && s->state == S_OPEN)
                srv->obs->on_upgrade(s, srv->obs_ud);
            if (nq > 0 && s->state == S_OPEN) { /* as the reference flushes after "upgrade" */
                notify(s, EIO_W_FLUSH, q, nq);
                notify(s, EIO_W_DRAIN, NULL, 0);
            }
            for (uint32_t i = 0; i < nq; i++)
                rbuf_unref(q[i]);
            free(q);
            session_unref(s);
        } else {
            tq_remove(&pl->upg);
            pl->probe = NULL;
            pl->probed = 0;
            ws_abort(ws);
        }
        return;
    }
    s->refs++;
    on_packet(s, &p);
    session_unref(s);
    buf_free(&scratch);
}

static void ws_on_close(ws_conn_t *ws, ws_close_reason_t why, void *ud)
{
    eio_session_t *s = ud;
    if (s->pl != NULL && ws == s->pl->probe) {
        tq_remove(&s->pl->upg);
        s->pl->probe = NULL;
        s->pl->probed = 0;
    } else if (ws == s->ws) {
        s->ws = NULL;
        session_closed(s, why == WS_CLOSED_ERROR ? "transport error" : "transport close");
    }
    session_unref(s);
}

static const ws_handler_t ws_handler = {ws_on_message, ws_on_close};

static void on_upgrade_due(tq_t *q, tq_entry_t *e)
{
    eio_polling_t *pl = container_of(e, eio_polling_t, upg);
    (void)q;
    if (pl->probe != NULL) {
        ws_conn_t *probe = pl->probe;
        pl->probe = NULL;
        pl->probed = 0;
        ws_abort(probe);
    }
}

/* A WebSocket the reference accepts and closes at once, without a status code (the peer reads
 * 1005): one opened with the sid of a session that has upgraded or is upgrading, or with
 * transport=polling. The observer's "headers" (and "initial_headers" without a sid) run for its
 * 101, as for any. */
static void refused_ws_message(ws_conn_t *ws, int binary, const char *data, size_t len, void *ud)
{
    (void)ws, (void)binary, (void)data, (void)len, (void)ud;
}
static void refused_ws_close(ws_conn_t *ws, ws_close_reason_t why, void *ud) { (void)ws, (void)why, (void)ud; }
static const ws_handler_t refused_ws_handler = {refused_ws_message, refused_ws_close};

static void refuse_ws(eio_server_t *srv, http_req_t *req, int initial)
{
    http_hdr_t hdrs[ANSWER_HDRS];
    ws_limits_t lim = {srv->cfg->max_payload, &srv->cfg->per_message_deflate}; /* the 101 is ws's */
    size_t n = answer_headers(srv, req, initial, hdrs, 0);
    ws_conn_t *ws = ws_accept(req, hdrs, n, &refused_ws_handler, &lim, NULL);
    if (ws == NULL)
        return;
    ws_start(ws);
    ws_close(ws, 0, NULL);
}

/* ---------------------------------------------------------------- handshake */

/* Bytes copy_handshake() stores after the session: the packed headers, the URL, the address. */
static size_t handshake_size(const http_req_t *req)
{
    size_t need = req->url.len + 1 + strlen(http_peer(req)) + 1;
    for (size_t i = 0; i < req->nheaders; i++)
        need += req->names[i].len + req->values[i].len + 2;
    return need;
}

static void copy_handshake(eio_session_t *s, const http_req_t *req)
{
    char *p = s->mem;
    s->hs.headers = p;
    for (size_t i = 0; i < req->nheaders; i++) {
        memcpy(p, req->names[i].ptr, req->names[i].len);
        p += req->names[i].len;
        *p++ = '\0';
        memcpy(p, req->values[i].ptr, req->values[i].len);
        p += req->values[i].len;
        *p++ = '\0';
    }
    memcpy(p, req->url.ptr, req->url.len);
    s->hs.url = (slice_t){p, req->url.len};
    s->hs.query = (slice_t){p + (req->query.ptr - req->url.ptr), req->query.len};
    if (req->query.len == 0)
        s->hs.query = (slice_t){p + req->url.len, 0};
    p[req->url.len] = '\0';
    p += req->url.len + 1;
    strcpy(p, http_peer(req));
    s->hs.address = p;
    s->hs.nheaders = req->nheaders;
    s->hs.secure = http_secure(req);
    {
        struct timeval tv;
        gettimeofday(&tv, NULL);
        s->hs.issued = (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
    }
}

static rbuf_t *open_packet(eio_session_t *s, int transport)
{
    const eio_config_t *cfg = s->srv->cfg;
    buf_t b = BUF_INIT;
    char num[32];
    rbuf_t *pkt;
    int upgrade = transport == EIO_T_POLLING && cfg->allow_upgrades && (cfg->transports & EIO_T_WEBSOCKET);
    /* Every field is a server-made token (a base64url id, integers): nothing needs escaping. */
    buf_appendstr(&b, "{\"sid\":\"");
    buf_appendstr(&b, s->id);
    buf_appendstr(&b, upgrade ? "\",\"upgrades\":[\"websocket\"]" : "\",\"upgrades\":[]");
    snprintf(num, sizeof(num), ",\"pingInterval\":%llu", (unsigned long long)cfg->ping_interval);
    buf_appendstr(&b, num);
    snprintf(num, sizeof(num), ",\"pingTimeout\":%llu", (unsigned long long)cfg->ping_timeout);
    buf_appendstr(&b, num);
    snprintf(num, sizeof(num), ",\"maxPayload\":%zu}", cfg->max_payload);
    buf_appendstr(&b, num);
    pkt = eio_packet_new(EIO_OPEN, b.base, b.len);
    buf_free(&b);
    return pkt;
}

/* The protocol revision a request asks for, as the reference computes it: EIO=4 is 4, anything
 * else (or none) 3. */
static int request_protocol(const http_req_t *req, buf_t *tmp)
{
    return http_query(req, "EIO", tmp) == 0 && tmp->len == 1 && tmp->base[0] == '4' ? 4 : 3;
}

/* The b64 query parameter (v3): binary as base64 when it is there and not empty. */
static int request_b64(const http_req_t *req, buf_t *tmp)
{
    return http_query(req, "b64", tmp) == 0 && tmp->len > 0;
}

static eio_session_t *session_new(eio_server_t *srv, const http_req_t *req, int transport, int protocol)
{
    eio_session_t *s = xcalloc(1, sizeof(*s) + handshake_size(req));
    buf_t tmp = BUF_INIT;
    s->srv = srv;
    s->refs = 1;
    s->transport = (uint8_t)transport;
    s->protocol = (uint8_t)protocol;
    s->b64 = protocol == 3 && request_b64(req, &tmp);
    buf_free(&tmp);
    if (transport == EIO_T_POLLING)
        s->pl = xcalloc(1, sizeof(*s->pl));
    do
        eio_generate_id(s->id);
    while (find_session(srv, s->id, 20) != NULL);
    copy_handshake(s, req);
    s->last_packet = uv_now(srv->loop);
    table_insert(srv, s);
    srv->nalive++;
    return s;
}

static void open_session(eio_session_t *s)
{
    eio_server_t *srv = s->srv;
    rbuf_t *open = open_packet(s, s->transport);
    s->refs++; /* the observers below may close s */
    s->opening = 1;
    eio_send(s, open);
    s->opening = 0;
    rbuf_unref(open);
    if (s->state == S_OPEN) {
        METRIC_ADD(srv->metrics, eio_handshakes, 1);
        tq_add(s->protocol == 3 ? &srv->q_ping3 : &srv->q_ping, &s->hb);
        srv->h->on_open(s, srv->ud);
    }
    if (srv->obs != NULL && srv->obs->on_connection != NULL && s->state == S_OPEN)
        srv->obs->on_connection(s, srv->obs_ud);
    session_unref(s);
}

static void handshake(eio_server_t *srv, http_req_t *req, int transport, buf_t *tmp)
{
    eio_session_t *s;
    int protocol = request_protocol(req, tmp);
    if (protocol == 3 && !srv->cfg->allow_eio3) {
        abort_request(srv, req, EIO_ERR_UNSUPPORTED_PROTOCOL_VERSION, NULL, NULL);
        return;
    }
    if (transport == EIO_T_WEBSOCKET) {
        const char *err;
        http_hdr_t hdrs[ANSWER_HDRS];
        size_t n;
        ws_limits_t lim = {srv->cfg->max_payload, &srv->cfg->per_message_deflate};
        if (ws_check_request(req, &lim, &err) != 0) {
            abort_request(srv, req, EIO_ERR_BAD_REQUEST, NULL, "TRANSPORT_HANDSHAKE_ERROR");
            return;
        }
        /* the observer's "initial_headers" run before the session exists, as the reference's */
        n = answer_headers(srv, req, 1, hdrs, 0);
        if (srv->shutting) {
            http_respond(req, 503, NULL, 0, NULL, 0); /* a listener closed the server */
            return;
        }
        s = session_new(srv, req, transport, protocol);
        n = add_cookie(srv, s->id, hdrs, n);
        s->ws = ws_accept(req, hdrs, n, &ws_handler, &lim, s);
        s->refs++; /* held by the WebSocket until its on_close */
        open_session(s);
        s->refs++;
        ws_start(s->ws);
        session_unref(s);
        return;
    }
    s = session_new(srv, req, transport, protocol);
    s->pl->poll = req;
    req->on_abort = on_poll_abort;
    req->abort_data = s;
    open_session(s); /* the open packet answers this GET */
}

/* ---------------------------------------------------------------- allowRequest */

/* A handshake that allowRequest accepted (or that needs none). */
static void allowed(eio_server_t *srv, http_req_t *req, int transport)
{
    buf_t tmp = BUF_INIT;
    if (srv->shutting) /* allowRequest closed the server */
        http_respond(req, 503, NULL, 0, NULL, 0);
    else if (req->upgrade && transport == EIO_T_POLLING)
        refuse_ws(srv, req, 1); /* polling does not handle upgrades (server.ts onWebSocket) */
    else
        handshake(srv, req, transport, &tmp);
    buf_free(&tmp);
}

void eio_allow_ref(eio_allow_t *a) { a->refs++; }

void eio_allow_unref(eio_allow_t *a)
{
    if (--a->refs == 0)
        free(a);
}

int eio_allow_pending(const eio_allow_t *a) { return a->req != NULL && !a->answered; }

/* Applies a's answer: the request is answered (refused) or goes on to the handshake. Drops eio's
 * reference. */
static void settle(eio_allow_t *a)
{
    http_req_t *req = a->req;
    a->req = NULL;
    req->on_abort = NULL;
    tq_remove(&a->deadline);
    if (a->ok)
        allowed(a->srv, req, a->transport);
    else
        abort_request(a->srv, req, EIO_ERR_FORBIDDEN, a->message[0] ? a->message : NULL, NULL);
    eio_allow_unref(a);
}

void eio_allow_done(eio_allow_t *a, int ok, const char *message)
{
    if (!eio_allow_pending(a))
        return;
    a->answered = 1;
    a->ok = ok != 0;
    snprintf(a->message, sizeof(a->message), "%s", message != NULL ? message : "");
    if (!a->in_call)
        settle(a);
}

static void on_allow_abort(http_req_t *req, void *data)
{
    eio_allow_t *a = data;
    (void)req;
    a->req = NULL; /* the client went away: nothing to answer */
    tq_remove(&a->deadline);
    eio_allow_unref(a);
}

static void on_allow_due(tq_t *q, tq_entry_t *e)
{
    eio_allow_t *a = container_of(e, eio_allow_t, deadline);
    (void)q;
    log_warn("eio: allowRequest did not answer %.*s within %llu ms: refused", (int)a->req->url.len,
             a->req->url.ptr, (unsigned long long)a->srv->cfg->allow_timeout);
    a->answered = 1;
    a->ok = 0;
    settle(a);
}

/* Asks allowRequest about a handshake; the request waits for the answer. */
static void ask_allow(eio_server_t *srv, http_req_t *req, int transport)
{
    eio_allow_t *a = xcalloc(1, sizeof(*a));
    a->srv = srv;
    a->req = req;
    a->transport = transport;
    a->refs = 2; /* eio's, and this call's (an answer during the call may close the server) */
    req->on_abort = on_allow_abort;
    req->abort_data = a;
    tq_add(&srv->q_allow, &a->deadline);
    a->in_call = 1;
    srv->allow_request(a, req, srv->allow_ud);
    a->in_call = 0;
    if (a->answered && a->req != NULL)
        settle(a);
    eio_allow_unref(a);
}

/* ---------------------------------------------------------------- requests */

static int parse_transport(const buf_t *v)
{
    if (v->len == 7 && memcmp(v->base, "polling", 7) == 0)
        return EIO_T_POLLING;
    if (v->len == 9 && memcmp(v->base, "websocket", 9) == 0)
        return EIO_T_WEBSOCKET;
    return 0;
}

static int origin_invalid(const http_req_t *req)
{
    slice_t o = http_header(req, "Origin");
    if (o.ptr == NULL)
        return 0;
    for (size_t i = 0; i < o.len; i++) {
        unsigned char c = (unsigned char)o.ptr[i];
        if ((c < 32 && c != '\t') || c == 127)
            return 1;
    }
    return 0;
}

static void preflight(eio_server_t *srv, http_req_t *req)
{
    const eio_cors_t *c = &srv->cfg->cors;
    http_hdr_t hdrs[10];
    size_t n = eio_cors_headers(srv->cfg, req, hdrs);
    char *allow_headers = NULL;
    hdrs[n++] = (http_hdr_t){"Access-Control-Allow-Methods", c->methods ? c->methods : "GET,HEAD,PUT,PATCH,POST,DELETE"};
    if (c->allowed_headers) {
        hdrs[n++] = (http_hdr_t){"Access-Control-Allow-Headers", c->allowed_headers};
    } else {
        slice_t rh = http_header(req, "Access-Control-Request-Headers");
        if (rh.ptr != NULL) {
            allow_headers = xstrndup(rh.ptr, rh.len);
            hdrs[n++] = (http_hdr_t){"Access-Control-Allow-Headers", allow_headers};
            hdrs[n++] = (http_hdr_t){"Vary", "Access-Control-Request-Headers"};
        }
    }
    http_respond(req, 204, hdrs, n, NULL, 0);
    free(allow_headers);
}

void eio_handle_request(eio_server_t *srv, http_req_t *req)
{
    const eio_config_t *cfg = srv->cfg;
    buf_t v = BUF_INIT;
    eio_session_t *s;
    int transport;

    if (req->method == HTTP_M_OPTIONS && (cfg->cors.origin_any || cfg->cors.norigins)) {
        preflight(srv, req); /* the cors middleware answers preflights before Engine.IO sees them */
        return;
    }
    transport = http_query(req, "transport", &v) == 0 ? parse_transport(&v) : 0;
    if (transport == 0 || !(cfg->transports & transport)) {
        abort_request(srv, req, EIO_ERR_UNKNOWN_TRANSPORT, NULL, NULL);
        goto done;
    }
    if (origin_invalid(req)) {
        abort_request(srv, req, EIO_ERR_BAD_REQUEST, NULL, "INVALID_ORIGIN");
        goto done;
    }
    if (http_query(req, "sid", &v) == 0) {
        s = find_session(srv, v.base, v.len);
        if (s == NULL || s->state == S_CLOSED) {
            abort_request(srv, req, EIO_ERR_UNKNOWN_SID, NULL, NULL);
            goto done;
        }
        if (!req->upgrade && s->transport != transport) {
            abort_request(srv, req, EIO_ERR_BAD_REQUEST, NULL, "TRANSPORT_MISMATCH");
            goto done;
        }
        if (request_protocol(req, &v) != s->protocol) {
            abort_request(srv, req, EIO_ERR_BAD_REQUEST, NULL, "PROTOCOL_MISMATCH");
            goto done;
        }
        if (req->upgrade) {
            const char *err;
            ws_limits_t lim = {cfg->max_payload, &cfg->per_message_deflate};
            if (ws_check_request(req, &lim, &err) != 0 || !cfg->allow_upgrades) {
                abort_request(srv, req, EIO_ERR_BAD_REQUEST, NULL, "TRANSPORT_MISMATCH");
                goto done;
            }
            if (transport != EIO_T_WEBSOCKET || s->pl == NULL || s->pl->probe != NULL || s->state != S_OPEN) {
                /* upgraded already, upgrading, or not a WebSocket: the reference accepts the
                 * WebSocket and closes it at once (server.ts onWebSocket) */
                refuse_ws(srv, req, 0);
                goto done;
            }
            http_hdr_t hdrs[ANSWER_HDRS];
            s->refs++; /* the observer may close s */
            size_t n = answer_headers(srv, req, 0, hdrs, 0);
            if (s->state != S_OPEN || s->pl->probe != NULL) {
                http_respond(req, 400, NULL, 0, NULL, 0);
                session_unref(s);
                goto done;
            }
            session_unref(s); /* still open: the table's reference keeps it */
            s->pl->probe_b64 = request_b64(req, &v);
            s->pl->probe = ws_accept(req, hdrs, n, &ws_handler, &lim, s);
            s->refs++; /* held by the probe until its on_close */
            tq_add(&srv->q_upgrade, &s->pl->upg);
            ws_start(s->pl->probe);
            goto done;
        }
        if (s->pl == NULL) /* a WebSocket session: only an upgrade request may name it */
            abort_request(srv, req, EIO_ERR_BAD_REQUEST, NULL, "TRANSPORT_MISMATCH");
        else if (req->method == HTTP_M_GET)
            handle_get(s, req);
        else if (req->method == HTTP_M_POST)
            handle_post(s, req);
        else
            http_respond(req, 500, NULL, 0, NULL, 0);
        goto done;
    }
    if (req->method != HTTP_M_GET) {
        abort_request(srv, req, EIO_ERR_BAD_HANDSHAKE_METHOD, NULL, NULL);
        goto done;
    }
    if (transport == EIO_T_WEBSOCKET && !req->upgrade) {
        abort_request(srv, req, EIO_ERR_BAD_REQUEST, NULL, "TRANSPORT_HANDSHAKE_ERROR");
        goto done;
    }
    if (srv->allow_request != NULL)
        ask_allow(srv, req, transport);
    else
        allowed(srv, req, transport);
done:
    buf_free(&v);
}

void eio_handle_cut(eio_server_t *srv, const http_req_t *req)
{
    buf_t v = BUF_INIT;
    eio_session_t *s;
    if (req->method == HTTP_M_POST && http_query(req, "sid", &v) == 0 &&
        (s = find_session(srv, v.base, v.len)) != NULL && s->pl != NULL)
        session_closed(s, "transport error");
    buf_free(&v);
}

/* ---------------------------------------------------------------- server */

void eio_server_init(eio_server_t *srv, uv_loop_t *loop, const eio_config_t *cfg, const http_limits_t *lim,
                     const eio_handler_t *h, void *ud)
{
    memset(srv, 0, sizeof(*srv));
    srv->loop = loop;
    srv->cfg = cfg;
    srv->http_limits = lim;
    srv->h = h;
    srv->ud = ud;
    tq_init(&srv->q_ping, loop, cfg->ping_interval, on_ping_due, srv);
    tq_init(&srv->q_pong, loop, cfg->ping_timeout, on_pong_due, srv);
    tq_init(&srv->q_upgrade, loop, cfg->upgrade_timeout, on_upgrade_due, srv);
    tq_init(&srv->q_allow, loop, cfg->allow_timeout, on_allow_due, srv);
    tq_init(&srv->q_ping3, loop, cfg->ping_interval + cfg->ping_timeout, on_ping3_due, srv);
    uv_idle_init(loop, &srv->reaper);
    srv->reaper.data = srv;
    srv->ntimers = 6;
}

/* Close callback of the timers and the reaper. */
static void on_handle_closed(uv_handle_t *h)
{
    eio_server_t *srv = h->data;
    if (--srv->ntimers == 0) {
        reap(srv);
        maybe_freed(srv);
    }
}

void eio_server_shutdown(eio_server_t *srv, const char *reason, void (*on_freed)(eio_server_t *srv))
{
    tq_t *qs[5] = {&srv->q_ping, &srv->q_pong, &srv->q_upgrade, &srv->q_allow, &srv->q_ping3};
    if (srv->shutting)
        return;
    srv->shutting = 1;
    srv->on_freed = on_freed;
    for (size_t i = 0; i < srv->nbuckets; i++)
        while (srv->buckets[i] != NULL)
            session_closed(srv->buckets[i], reason);
    while (srv->q_allow.head.next != &srv->q_allow.head) {
        /* handshakes still waiting for allowRequest: the server is going away */
        eio_allow_t *a = container_of(srv->q_allow.head.next, eio_allow_t, deadline);
        a->answered = 1;
        tq_remove(&a->deadline);
        a->req->on_abort = NULL;
        http_respond(a->req, 503, NULL, 0, NULL, 0);
        a->req = NULL;
        eio_allow_unref(a);
    }
    free(srv->buckets);
    srv->buckets = NULL;
    srv->nbuckets = 0;
    /* tq_close's handles, closed here with a callback so that srv's memory outlives them */
    for (int i = 0; i < 5; i++) {
        assert(qs[i]->head.next == &qs[i]->head);
        qs[i]->timer.data = srv;
        uv_close((uv_handle_t *)&qs[i]->timer, on_handle_closed);
    }
    uv_close((uv_handle_t *)&srv->reaper, on_handle_closed);
}

void eio_server_watch(eio_server_t *srv, const tq_clock_t *clock)
{
    tq_watch(&srv->q_pong, clock);
    tq_watch(&srv->q_upgrade, clock);
    tq_watch(&srv->q_ping3, clock);
}

void eio_server_close(eio_server_t *srv, const char *reason)
{
    eio_server_shutdown(srv, reason, NULL);
}

size_t eio_server_sessions(eio_server_t *srv, eio_session_t ***out)
{
    size_t n = 0;
    eio_session_t **v = xmalloc((srv->nsessions ? srv->nsessions : 1) * sizeof(*v));
    for (size_t i = 0; i < srv->nbuckets; i++)
        for (eio_session_t *s = srv->buckets[i]; s; s = s->hnext)
            if (s->state == S_OPEN) {
                s->refs++;
                v[n++] = s;
            }
    *out = v;
    return n;
}

void eio_sessions_release(eio_session_t **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        session_unref(v[i]);
    free(v);
}

/* ---------------------------------------------------------------- accessors */

const char *eio_session_id(const eio_session_t *s) { return s->id; }

int eio_session_writable(const eio_session_t *s)
{
    if (s->state != S_OPEN)
        return 0;
    return s->transport == EIO_T_WEBSOCKET ? ws_queued(s->ws) == 0 : s->pl->poll != NULL;
}
int eio_session_transport(const eio_session_t *s) { return s->transport; }
int eio_session_protocol(const eio_session_t *s) { return s->protocol; }
const eio_handshake_t *eio_session_handshake(const eio_session_t *s) { return &s->hs; }
void *eio_session_data(const eio_session_t *s) { return s->data; }
void eio_session_set_data(eio_session_t *s, void *data) { s->data = data; }
void *eio_session_obs_data(const eio_session_t *s) { return s->obs_data; }
void eio_session_set_obs_data(eio_session_t *s, void *data) { s->obs_data = data; }
int eio_session_is_open(const eio_session_t *s) { return s->state == S_OPEN; }
int eio_session_upgraded(const eio_session_t *s) { return s->upgraded; }
void eio_session_watch(eio_session_t *s, unsigned what) { s->watch = (uint8_t)what; }
