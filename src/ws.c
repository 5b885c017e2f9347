/* ws: see ws.h.
 * Input goes through a wslay event context (frame parsing, unmasking, fragment assembly, UTF-8
 * check of text messages (close 1007), size limit (close 1009), automatic pong and close replies).
 * The context costs about 8 KB, so it exists only while the connection is receiving: it is created
 * when bytes arrive and freed once wslay holds nothing. wslay cannot say when that is, so we count:
 * `fed` bytes given to wslay, `accounted` bytes of the frames it has started (header + payload;
 * client frames are masked, and wslay rejects non-minimal lengths, so the header size follows from
 * the payload length). Idle means accounted == fed, the last data frame had FIN, nothing queued.
 * Output bypasses wslay: ws_frame() writes the server frame header into the rbuf's headroom once and
 * the same bytes are queued on every recipient (wslay would copy each message per connection).
 * Only the control frames wslay queues by itself (pong, close reply) go through wslay_event_send.
 * Bounds: fragments per message are counted as frames start (wslay keeps ~100 bytes per fragment);
 * reading stops while the output queue is over pause_bytes (a client that pings without reading
 * cannot grow the pong queue) and resumes when it drains; every close is given close_timeout to
 * write its last bytes. */
#include "ws.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wslay/wslay.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

struct ws_conn {
    net_conn_t *net;
    const ws_handler_t *h;
    void *ud;
    uint64_t max_message;
    size_t max_fragments;
    size_t pause_bytes;
    uint64_t close_timeout;
    size_t nfrags;                /* frames of the data message in progress */
    uint16_t violation;           /* a close code decided inside a wslay callback, sent after it */
    uint8_t out_paused;           /* reading stopped until the output drains */
    buf_t ctl;                    /* control frames from one wslay_event_send, written at once */
    wslay_event_context_ptr wctx; /* NULL when idle */
    const char *in;               /* bytes being fed to wslay_event_recv */
    size_t inlen;
    uint64_t fed;       /* bytes given to wctx */
    uint64_t accounted; /* bytes of the frames wctx has started */
    buf_t rest;         /* bytes that came with the handshake, until ws_start */
    uint8_t frag;       /* a fragmented data message is in progress */
    uint8_t closing;    /* closing requested: input ignored, wslay no longer flushed */
    uint8_t why;        /* ws_close_reason_t, valid if why_set */
    uint8_t why_set;
    uint8_t started;
};

static void set_why(ws_conn_t *ws, ws_close_reason_t why)
{
    if (!ws->why_set) {
        ws->why = (uint8_t)why;
        ws->why_set = 1;
    }
}

/* ---------------------------------------------------------------- wslay callbacks */

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *ud)
{
    (void)flags;
    ws_conn_t *ws = ud;
    if (ws->inlen == 0 || ws->closing || ws->violation) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = len < ws->inlen ? len : ws->inlen;
    memcpy(buf, ws->in, n);
    ws->in += n;
    ws->inlen -= n;
    ws->fed += n;
    return (ssize_t)n;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags, void *ud)
{
    (void)ctx, (void)flags;
    ws_conn_t *ws = ud;
    buf_append(&ws->ctl, data, len); /* control frames only; flush_ctl() writes them in one go */
    return (ssize_t)len;
}

/* Sends what wslay has queued (pongs, a close reply) with one write: a burst of pings read in
 * one go is answered with one syscall, not one per pong. */
static void flush_ctl(ws_conn_t *ws)
{
    if (ws->wctx != NULL && wslay_event_want_write(ws->wctx))
        wslay_event_send(ws->wctx);
    if (ws->ctl.len > 0)
        net_write_copy(ws->net, ws->ctl.base, ws->ctl.len);
    buf_free(&ws->ctl);
}

static void on_frame_start(wslay_event_context_ptr ctx, const struct wslay_event_on_frame_recv_start_arg *arg, void *ud)
{
    (void)ctx;
    ws_conn_t *ws = ud;
    uint64_t n = arg->payload_length;
    ws->accounted += 2 + (n < 126 ? 0 : n < 65536 ? 2 : 8) + 4 + n;
    if (arg->opcode == WSLAY_CONNECTION_CLOSE && n == 1)
        ws->violation = 1002; /* RFC 6455 5.5.1: a close body starts with a 2-byte code; wslay
                                 would answer it as an empty close */
    if (arg->opcode < 0x8) {  /* data or continuation; control frames can come between fragments */
        ws->frag = !arg->fin;
        ws->nfrags = arg->opcode != 0 ? 1 : ws->nfrags + 1;
        if (ws->nfrags > ws->max_fragments)
            ws->violation = 1009; /* recv_cb now stops wslay; feed() closes */
    }
}

static void on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg, void *ud)
{
    ws_conn_t *ws = ud;
    if (ws->closing)
        return;
    if (arg->opcode != WSLAY_TEXT_FRAME && arg->opcode != WSLAY_BINARY_FRAME)
        return;
    /* Pongs for pings that came before this message go out before any answer to it: our data
     * frames bypass wslay's queue, so without this a pong sent between fragments would follow
     * the echo of the message. */
    (void)ctx;
    flush_ctl(ws);
    if (net_closing(ws->net)) /* the pong write failed */
        return;
    ws->h->on_message(ws, arg->opcode == WSLAY_BINARY_FRAME, arg->msg ? (const char *)arg->msg : "", arg->msg_length,
                      ws->ud);
}

static const struct wslay_event_callbacks ws_callbacks = {
    .recv_callback = recv_cb,
    .send_callback = send_cb,
    .on_frame_recv_start_callback = on_frame_start,
    .on_msg_recv_callback = on_msg,
};

/* ---------------------------------------------------------------- output */

rbuf_t *ws_frame(rbuf_t *b)
{
    if (b->flags & RBUF_FRAMED)
        return b;
    uint64_t len = b->len;
    uint8_t hdr = len < 126 ? 2 : len < 65536 ? 4 : 10;
    uint8_t *p = (uint8_t *)b->data + RBUF_HEADROOM - hdr;
    p[0] = 0x80 | ((b->flags & RBUF_BINARY) ? 0x2 : 0x1); /* FIN + opcode, unmasked */
    if (hdr == 2) {
        p[1] = (uint8_t)len;
    } else if (hdr == 4) {
        p[1] = 126;
        p[2] = (uint8_t)(len >> 8);
        p[3] = (uint8_t)len;
    } else {
        p[1] = 127;
        for (int i = 0; i < 8; i++)
            p[2 + i] = (uint8_t)(len >> (56 - 8 * i));
    }
    b->hdr = hdr;
    b->flags |= RBUF_FRAMED;
    return b;
}

void ws_send(ws_conn_t *ws, rbuf_t *b)
{
    if (ws->closing)
        return;
    ws_frame(b);
    net_write(ws->net, b, RBUF_HEADROOM - b->hdr, (size_t)b->hdr + b->len);
}

static void write_close_frame(ws_conn_t *ws, uint16_t code, const char *reason)
{
    uint8_t f[2 + 125];
    size_t rl = reason ? strlen(reason) : 0;
    if (rl > 123)
        rl = 123; /* control frame payloads are at most 125 bytes */
    f[0] = 0x88;
    f[1] = (uint8_t)(2 + rl);
    f[2] = (uint8_t)(code >> 8);
    f[3] = (uint8_t)code;
    if (rl)
        memcpy(f + 4, reason, rl);
    net_write_copy(ws->net, f, 4 + rl);
}

/* Closes once what is queued is written, within close_timeout. */
static void close_after_write(ws_conn_t *ws)
{
    ws->closing = 1;
    net_close_after_write(ws->net);
    net_set_timeout(ws->net, ws->close_timeout); /* no on_timeout: net closes it */
}

/* A protocol violation: close frame with `code`, then close. */
static void fail(ws_conn_t *ws, uint16_t code)
{
    ws->closing = 1;
    set_why(ws, WS_CLOSED_ERROR);
    write_close_frame(ws, code, NULL);
    close_after_write(ws);
}

void ws_close(ws_conn_t *ws, uint16_t code, const char *reason)
{
    if (ws->closing)
        return;
    ws->closing = 1;
    set_why(ws, WS_CLOSED_LOCAL);
    write_close_frame(ws, code, reason);
    close_after_write(ws);
}

void ws_abort(ws_conn_t *ws)
{
    ws->closing = 1;
    set_why(ws, WS_CLOSED_LOCAL);
    net_close(ws->net);
}

size_t ws_queued(const ws_conn_t *ws)
{
    return ws->net->queued;
}

const char *ws_peer(const ws_conn_t *ws)
{
    return net_peer(ws->net);
}

int ws_has_ctx(const ws_conn_t *ws)
{
    return ws->wctx != NULL;
}

/* ---------------------------------------------------------------- input */

static void feed(ws_conn_t *ws, const char *data, size_t len)
{
    if (ws->closing || len == 0)
        return;
    if (ws->wctx == NULL) {
        if (wslay_event_context_server_init(&ws->wctx, &ws_callbacks, ws) != 0) {
            fprintf(stderr, "siolua: out of memory (wslay context)\n");
            abort(); /* as xmalloc does */
        }
        wslay_event_config_set_max_recv_msg_length(ws->wctx, ws->max_message);
        ws->fed = ws->accounted = 0;
        ws->frag = 0;
        ws->nfrags = 0;
    }
    ws->in = data;
    ws->inlen = len;
    int r = wslay_event_recv(ws->wctx);
    ws->in = NULL;
    ws->inlen = 0;
    if (ws->closing) /* the handler closed it: send nothing more from wslay */
        return;
    if (ws->violation) {
        fail(ws, ws->violation);
        return;
    }
    if (r != 0) {
        /* A frame-level violation (bad length encoding, fragmented control frame, ...). wslay
         * queued a close without a status code; say 1002 instead. */
        fail(ws, 1002);
        return;
    }
    flush_ctl(ws); /* pong, close reply, or wslay's 1002/1007/1009 close */
    if (!wslay_event_get_read_enabled(ws->wctx)) {
        set_why(ws, wslay_event_get_close_received(ws->wctx) ? WS_CLOSED_PEER : WS_CLOSED_ERROR);
        close_after_write(ws);
        return;
    }
    if (ws->net->queued > ws->pause_bytes && !ws->out_paused) {
        /* the peer sends faster than it reads our answers: wait until they are written */
        ws->out_paused = 1;
        net_pause(ws->net);
    }
    if (ws->accounted == ws->fed && !ws->frag && wslay_event_get_queued_msg_count(ws->wctx) == 0) {
        wslay_event_context_free(ws->wctx); /* idle: keep no per-connection buffers */
        ws->wctx = NULL;
    }
}

static void on_read(net_conn_t *c, const char *data, size_t len)
{
    feed(c->owner, data, len);
}

static void on_close(net_conn_t *c, net_close_reason_t why)
{
    ws_conn_t *ws = c->owner;
    if (why == NET_CLOSE_EOF)
        set_why(ws, WS_CLOSED_PEER);
    else if (why == NET_CLOSE_LOCAL)
        set_why(ws, WS_CLOSED_LOCAL);
    else
        set_why(ws, WS_CLOSED_ERROR);
    ws->h->on_close(ws, (ws_close_reason_t)ws->why, ws->ud);
    if (ws->wctx != NULL)
        wslay_event_context_free(ws->wctx);
    buf_free(&ws->rest);
    buf_free(&ws->ctl);
    free(ws);
}

static void on_drain(net_conn_t *c)
{
    ws_conn_t *ws = c->owner;
    if (ws->out_paused && !ws->closing) {
        ws->out_paused = 0;
        net_resume(c);
    }
}

static const net_ops_t ws_ops = {.on_read = on_read, .on_close = on_close, .on_drain = on_drain};

/* ---------------------------------------------------------------- handshake */

static int has_token(slice_t v, const char *tok)
{
    const char *p = v.ptr, *end = v.ptr + v.len;
    while (p != NULL && p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *e = comma ? comma : end;
        const char *s = p;
        while (s < e && (*s == ' ' || *s == '\t'))
            s++;
        const char *t = e;
        while (t > s && (t[-1] == ' ' || t[-1] == '\t'))
            t--;
        if (slice_caseeq((slice_t){s, (size_t)(t - s)}, tok))
            return 1;
        p = comma ? comma + 1 : NULL;
    }
    return 0;
}

int ws_check_request(const http_req_t *req, const char **err)
{
    slice_t up = http_header(req, "upgrade"), conn = http_header(req, "connection");
    slice_t ver = http_header(req, "sec-websocket-version"), key = http_header(req, "sec-websocket-key");
    if (req->method != HTTP_M_GET)
        *err = "WebSocket upgrade must be a GET";
    else if (up.ptr == NULL || !has_token(up, "websocket"))
        *err = "Upgrade: websocket missing";
    else if (conn.ptr == NULL || !has_token(conn, "upgrade"))
        *err = "Connection: upgrade missing";
    else if (ver.ptr == NULL || !slice_eq(ver, "13"))
        *err = "unsupported Sec-WebSocket-Version";
    else if (key.ptr == NULL || key.len != 24) /* base64 of 16 bytes */
        *err = "bad Sec-WebSocket-Key";
    else
        return 0;
    return -1;
}

void ws_accept_key(const char *key, size_t keylen, char out[29])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    buf_t in = BUF_INIT;
    buf_append(&in, key, keylen);
    buf_append(&in, WS_GUID, sizeof(WS_GUID) - 1);
    EVP_Digest(in.base, in.len, md, &mdlen, EVP_sha1(), NULL);
    buf_free(&in);
    EVP_EncodeBlock((unsigned char *)out, md, (int)mdlen); /* 20 bytes -> 28 chars + NUL */
}

ws_conn_t *ws_accept(http_req_t *req, const http_hdr_t *extra, size_t nextra, const ws_handler_t *h,
                     const ws_limits_t *lim, void *ud)
{
    const char *err;
    if (ws_check_request(req, &err) != 0) {
        http_respond(req, 400, NULL, 0, err, strlen(err));
        return NULL;
    }
    char accept[29];
    slice_t key = http_header(req, "sec-websocket-key");
    ws_accept_key(key.ptr, key.len, accept);

    buf_t resp = BUF_INIT;
    buf_appendstr(&resp, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         "Sec-WebSocket-Accept: ");
    buf_appendstr(&resp, accept);
    buf_append(&resp, "\r\n", 2);
    for (size_t i = 0; i < nextra; i++) {
        buf_appendstr(&resp, extra[i].name);
        buf_append(&resp, ": ", 2);
        buf_appendstr(&resp, extra[i].value);
        buf_append(&resp, "\r\n", 2);
    }
    buf_append(&resp, "\r\n", 2);

    ws_conn_t *ws = xcalloc(1, sizeof(*ws));
    const http_limits_t *hl = http_limits(req);
    ws->h = h;
    ws->ud = ud;
    ws->max_message = lim->max_message ? lim->max_message : 1000000;
    ws->max_fragments = hl->ws_max_fragments;
    ws->pause_bytes = hl->ws_pause_bytes;
    ws->close_timeout = hl->ws_close_timeout;
    ws->net = http_detach(req, &ws->rest); /* req is gone after this; the conn comes back paused */
    net_set_owner(ws->net, &ws_ops, ws);
    net_write_copy(ws->net, resp.base, resp.len);
    buf_free(&resp);
    return ws;
}

void ws_start(ws_conn_t *ws)
{
    if (ws->started)
        return;
    ws->started = 1;
    if (ws->rest.len > 0) {
        buf_t rest = ws->rest;
        ws->rest = (buf_t)BUF_INIT;
        feed(ws, rest.base, rest.len);
        buf_free(&rest);
    }
    if (!ws->closing && !ws->out_paused)
        net_resume(ws->net);
}
