/* ws: see ws.h.
 * Input goes through a wslay event context (frame parsing, unmasking, UTF-8 check of text messages
 * (close 1007), per-frame size limit (close 1009), automatic pong and close replies) in wslay's
 * no-buffering mode: wslay buffers only control frames, and we assemble data messages ourselves
 * (see "message assembly"). A whole message that arrives in one piece is handed up straight from
 * wslay's input buffer: no allocation, no copy. Buffered, wslay made four allocations and two
 * copies per message (chunk list entry, chunk, its bytes, the flattened message).
 * The context costs about 8 KB, so a connection holds one only while it is receiving: it is lent
 * when bytes arrive and given back once wslay holds nothing. wslay cannot say when that is, so we
 * count: `fed` bytes given to wslay, `accounted` bytes of the frames it has started (header +
 * payload; client frames are masked, and wslay rejects non-minimal lengths, so the header size
 * follows from the payload length). Idle means accounted == fed, the last data frame had FIN,
 * nothing queued. A context given back clean is kept as the process's one spare and lent to the
 * next connection that receives, so an echo costs no context setup (see "receive contexts").
 * Output bypasses wslay: ws_frame() writes the server frame header into the rbuf's headroom once and
 * the same bytes are queued on every recipient (wslay would copy each message per connection).
 * Only the control frames wslay queues by itself (pong, close reply) go through wslay_event_send.
 * Memory: an idle connection is struct ws_conn alone (56 bytes): its limits are a shared
 * refcounted set, the receive state lives with the lent context.
 * Bounds: fragments per message are counted as frames start; the bytes of a fragmented message
 * are counted as its frames start, against max_message, before anything is allocated for them;
 * reading stops while the output queue is over pause_bytes (a client that pings without reading
 * cannot grow the pong queue) and resumes when it drains; every close is given close_timeout to
 * write its last bytes.
 * permessage-deflate (pmd.h): wslay lets RSV1 through on connections that agreed to it (and
 * refuses it elsewhere, on control and continuation frames: 1002). A compressed message's pieces
 * are inflated as they arrive into the message buffer, never past max_message (close 1009 at that
 * point, not after inflating the rest: a bomb costs max_message); bad deflate data and text that is
 * not UTF-8 once inflated close with 1007 (wslay cannot check compressed text). The inflate stream
 * is lent with the receive context; between messages a connection keeps only the client's window
 * (context takeover), saved when the context is given back. Output compresses each message on its
 * own (see pmd.c), once per rbuf for every recipient: rbuf_t.alt. */
#include "ws.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wslay/wslay.h>

#include "pmd.h"
#include "utf8.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* What exists only while a connection is receiving: the wslay context and the state of the
 * frames being parsed. Lent to one connection at a time; wslay's user_data is this struct (wslay
 * cannot change a context's user_data), and `ws` says which connection it serves now. */
typedef struct {
    wslay_event_context_ptr wctx;
    ws_conn_t *ws;  /* the connection it is lent to */
    const char *in; /* bytes being fed to wslay_event_recv */
    size_t inlen;
    uint64_t fed;         /* bytes given to wctx */
    uint64_t accounted;   /* bytes of the frames wctx has started */
    size_t nfrags;        /* frames of the data message in progress */
    buf_t ctl;            /* control frames from one wslay_event_send, written at once */
    buf_t msg;            /* the data message being assembled (not used for a message in one chunk) */
    const uint8_t *whole; /* a whole message in one chunk: borrowed from wslay until on_msg */
    uint64_t msglen;      /* payload bytes the data message's frames announced so far (<= max_message) */
    uint64_t framelen;    /* payload length of the data frame in progress */
    pmd_inflater_t *inf;  /* permessage-deflate: made on the first compressed message, kept with
                             the context (the spare's too) */
    uint16_t violation;   /* a close code decided inside a wslay callback, sent after it */
    uint8_t frag;         /* a fragmented data message is in progress */
    uint8_t ctlframe;     /* the frame in progress is a control frame (wslay buffers it) */
    uint8_t single;       /* the data frame in progress is a whole message (text/binary with FIN) */
    uint8_t z;            /* the data message in progress is compressed (RSV1) */
    uint8_t zheld;        /* inf holds ws's stream, to go on with (context takeover): saved into
                             ws->held.zwin when the context is given back */
} ws_rx_t;

/* The limits a connection applies after the handshake, kept once per distinct set instead of once
 * per connection (a server has one set). ws_accept's caller may pass ws_limits_t on its stack, and
 * http_limits(req) points into the http connection that http_detach frees, so neither can be kept:
 * ws_accept finds or adds the set in `limsets` and the connection holds a reference. */
typedef struct ws_limset {
    uint64_t max_message;   /* bytes per message (wslay's max_recv_msg_length) */
    uint64_t close_timeout; /* ms */
    size_t max_fragments;
    size_t pause_bytes;
    const pmd_config_t *pmd; /* perMessageDeflate, or NULL: not negotiated */
    size_t refs;             /* connections using it; freed at 0 */
    struct ws_limset *next;
} ws_limset_t;

struct ws_conn {
    net_conn_t *net;
    const ws_handler_t *h;
    void *ud;
    ws_limset_t *lim;       /* shared, referenced */
    ws_rx_t *rx;            /* NULL when idle */
    union {                 /* one pointer for two uses that never overlap (an idle connection is small): */
        buf_t *rest;        /* until ws_start: bytes that came with the handshake; NULL if none */
        pmd_window_t *zwin; /* from ws_start: permessage-deflate with client context takeover, the
                               client's window between its messages; NULL if none */
    } held;
    uint8_t out_paused; /* reading stopped until the output drains */
    uint8_t closing;    /* closing requested: input ignored, wslay no longer flushed */
    uint8_t why;        /* ws_close_reason_t, valid if why_set */
    uint8_t why_set;
    uint8_t started;
    uint8_t z_on : 1;    /* permessage-deflate agreed (pmd_params_t, packed:) */
    uint8_t z_cnct : 1;  /* client_no_context_takeover */
    uint8_t z_sbits : 3; /* server_max_window_bits - 8 */
    uint8_t z_cbits : 3; /* client_max_window_bits - 8 */
};

static void set_why(ws_conn_t *ws, ws_close_reason_t why)
{
    if (!ws->why_set) {
        ws->why = (uint8_t)why;
        ws->why_set = 1;
    }
}

/* ---------------------------------------------------------------- wslay callbacks */

/* Every callback runs inside wslay_event_recv or wslay_event_send, which are called only from
 * feed() and flush_ctl() while the context is lent to rx->ws. */

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *ud)
{
    (void)flags;
    ws_rx_t *rx = ud;
    if (rx->inlen == 0 || rx->ws->closing || rx->violation) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = len < rx->inlen ? len : rx->inlen;
    memcpy(buf, rx->in, n);
    rx->in += n;
    rx->inlen -= n;
    rx->fed += n;
    return (ssize_t)n;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags, void *ud)
{
    (void)ctx, (void)flags;
    ws_rx_t *rx = ud;
    buf_append(&rx->ctl, data, len); /* control frames only; flush_ctl() writes them in one go */
    return (ssize_t)len;
}

/* Sends what wslay has queued (pongs, a close reply) with one write: a burst of pings read in
 * one go is answered with one syscall, not one per pong. */
static void flush_ctl(ws_rx_t *rx)
{
    if (wslay_event_want_write(rx->wctx))
        wslay_event_send(rx->wctx);
    if (rx->ctl.len > 0)
        net_write_copy(rx->ws->net, rx->ctl.base, rx->ctl.len);
    buf_free(&rx->ctl);
}

/* ---------------------------------------------------------------- message assembly */

/* With no buffering, wslay still parses, unmasks and checks every frame, queues pongs and close
 * replies, and buffers control frames; for data frames it calls on_frame_start, then on_chunk with
 * each piece of unmasked payload as it arrives, then on_msg (msg NULL) at the end of a message
 * with FIN. Read in wslay 1.1.1 lib/wslay_event.c, wslay_event_recv (the same in later versions):
 * - UTF-8: the check of text messages does not depend on buffering. Each chunk is decoded
 *   (state kept across fragments, control frames in between and reads) before on_chunk sees it;
 *   bad bytes or a message that ends mid-character queue close 1007 and stop reading before
 *   on_msg, so on_msg only ever sees valid text.
 * - Size: wslay compares msg_length + payload_length with max_recv_msg_length at each frame start,
 *   but without buffering msg_length stays 0 for data messages: it checks single frames only.
 *   The total of a fragmented message is checked here, in on_frame_start (close 1009).
 * - The bytes of the last chunk stay where on_chunk saw them until on_msg of the same message:
 *   between them wslay only finishes its checks and calls on_frame_recv_end (which we do not
 *   set); it reads again (and may move its buffer) only on its next wslay_frame_recv. So `whole`
 *   is used in on_msg and dropped there, never kept past it. */

/* A compressed message starts: the inflate stream goes on from the connection's last message if
 * this context still holds it, else starts from the saved window (or none). */
static void inflate_begin(ws_rx_t *rx)
{
    ws_conn_t *ws = rx->ws;
    if (rx->inf == NULL)
        rx->inf = pmd_inflater_new();
    if (!rx->zheld)
        pmd_inflate_start(rx->inf, ws->z_cbits + 8, ws->z_cnct ? NULL : ws->held.zwin);
    rx->zheld = 0; /* until the message ends well */
}

/* A compressed message's end: the last bytes inflated, the text checked. 0, or a close code. */
static uint16_t inflate_end(ws_rx_t *rx, int text)
{
    ws_conn_t *ws = rx->ws;
    int over;
    int r = pmd_inflate_finish(rx->inf, &rx->msg, (size_t)ws->lim->max_message, &over);
    if (r != PMD_OK)
        return r == PMD_TOO_BIG ? 1009 : 1007;
    if (text && utf8_valid_prefix(rx->msg.base, rx->msg.len) != rx->msg.len)
        return 1007;          /* wslay could not check text that came compressed */
    if (over || ws->z_cnct) { /* the next message starts afresh: no window to keep */
        pmd_window_free(ws->held.zwin);
        ws->held.zwin = NULL;
    } else {
        rx->zheld = 1;
    }
    return 0;
}

static void on_frame_start(wslay_event_context_ptr ctx, const struct wslay_event_on_frame_recv_start_arg *arg, void *ud)
{
    (void)ctx;
    ws_rx_t *rx = ud;
    uint64_t n = arg->payload_length;
    rx->accounted += 2 + (n < 126 ? 0 : n < 65536 ? 2 : 8) + 4 + n;
    rx->ctlframe = arg->opcode >= 0x8; /* control frames can come between fragments */
    if (rx->ctlframe) {
        if (arg->opcode == WSLAY_CONNECTION_CLOSE && n == 1)
            rx->violation = 1002; /* RFC 6455 5.5.1: a close body starts with a 2-byte code; wslay
                                     would answer it as an empty close */
        return;
    }
    if (arg->opcode != 0) { /* a new message (wslay rejected it if one was in progress) */
        rx->nfrags = 0;
        rx->msglen = 0;
        rx->msg.len = 0;
        rx->z = (arg->rsv & WSLAY_RSV1_BIT) != 0; /* wslay let RSV1 through: it was agreed */
    }
    rx->frag = !arg->fin;
    rx->nfrags++;
    rx->single = arg->opcode != 0 && arg->fin && !rx->z;
    rx->framelen = n;
    rx->whole = NULL;
    if (rx->nfrags > rx->ws->lim->max_fragments || n > rx->ws->lim->max_message - rx->msglen)
        rx->violation = 1009; /* recv_cb now stops wslay; on_chunk and on_msg ignore the rest */
    else
        rx->msglen += n;
    if (arg->opcode != 0 && rx->z && !rx->violation)
        inflate_begin(rx);
}

static void on_chunk(wslay_event_context_ptr ctx, const struct wslay_event_on_frame_recv_chunk_arg *arg, void *ud)
{
    (void)ctx;
    ws_rx_t *rx = ud;
    if (rx->ctlframe || rx->violation || rx->ws->closing)
        return;
    if (rx->z) { /* inflated as it comes, never past max_message */
        int r = pmd_inflate(rx->inf, arg->data, arg->data_length, &rx->msg, (size_t)rx->ws->lim->max_message);
        if (r != PMD_OK)
            rx->violation = r == PMD_TOO_BIG ? 1009 : 1007;
        return;
    }
    if (rx->single && arg->data_length == rx->framelen) {
        rx->whole = arg->data; /* the usual case: handed up from here, no copy */
        return;
    }
    if (arg->data_length == 0) /* an empty fragment */
        return;
    /* msglen is what the frames so far announced (at most max_message, checked before): make room
     * for it all at once, or for twice the current size if more (many small fragments), but never
     * more than max_message */
    if (rx->msg.cap < rx->msglen) {
        uint64_t cap = rx->msg.cap * 2;
        if (cap > rx->ws->lim->max_message)
            cap = rx->ws->lim->max_message;
        if (cap < rx->msglen)
            cap = rx->msglen;
        rx->msg.base = xrealloc(rx->msg.base, (size_t)cap);
        rx->msg.cap = (size_t)cap;
    }
    memcpy(rx->msg.base + rx->msg.len, arg->data, arg->data_length);
    rx->msg.len += arg->data_length;
}

static void on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg, void *ud)
{
    ws_rx_t *rx = ud;
    ws_conn_t *ws = rx->ws;
    if (arg->opcode != WSLAY_TEXT_FRAME && arg->opcode != WSLAY_BINARY_FRAME)
        return;
    if (rx->z && !ws->closing && !rx->violation)
        rx->violation = inflate_end(rx, arg->opcode == WSLAY_TEXT_FRAME);
    const char *data = rx->whole ? (const char *)rx->whole : rx->msg.base ? rx->msg.base : "";
    size_t len = rx->whole ? (size_t)rx->framelen : rx->msg.len;
    rx->whole = NULL;
    rx->msg.len = 0;
    rx->msglen = 0;
    rx->z = 0;
    if (ws->closing || rx->violation)
        return;
    /* Pongs for pings that came before this message go out before any answer to it: our data
     * frames bypass wslay's queue, so without this a pong sent between fragments would follow
     * the echo of the message. */
    (void)ctx;
    flush_ctl(rx);
    if (net_closing(ws->net)) /* the pong write failed */
        return;
    ws->h->on_message(ws, arg->opcode == WSLAY_BINARY_FRAME, data, len, ws->ud);
}

static const struct wslay_event_callbacks ws_callbacks = {
    .recv_callback = recv_cb,
    .send_callback = send_cb,
    .on_frame_recv_start_callback = on_frame_start,
    .on_frame_recv_chunk_callback = on_chunk,
    .on_msg_recv_callback = on_msg,
};

/* ---------------------------------------------------------------- output */

/* The length of the header of an unmasked frame of len bytes. */
static uint8_t header_len(uint64_t len)
{
    return len < 126 ? 2 : len < 65536 ? 4 : 10;
}

/* Writes the header (header_len(len) bytes) of an unmasked final frame at p: text, or binary with
 * RBUF_BINARY in flags; RSV1 with RBUF_DEFLATED. */
static void put_header(uint8_t *p, unsigned flags, uint64_t len)
{
    uint8_t hdr = header_len(len);
    p[0] = 0x80 | ((flags & RBUF_DEFLATED) ? 0x40 : 0) | ((flags & RBUF_BINARY) ? 0x2 : 0x1); /* FIN, RSV1, opcode */
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
}

rbuf_t *ws_frame(rbuf_t *b)
{
    if (b->flags & RBUF_FRAMED)
        return b;
    uint8_t hdr = header_len(b->len);
    put_header((uint8_t *)b->data + RBUF_HEADROOM - hdr, b->flags, b->len);
    b->hdr = hdr;
    b->flags |= RBUF_FRAMED;
    return b;
}

/* b compressed for ws: b->alt, made once and shared by every recipient whose window takes it (all
 * of them, unless a client asked for a smaller server window than the others: that one gets a
 * compression of its own, *own = 1, which the caller releases). NULL if compressing does not make b
 * shorter: b is flagged and not tried again. */
static rbuf_t *deflated(ws_conn_t *ws, rbuf_t *b, int *own)
{
    const pmd_config_t *cfg = ws->lim->pmd;
    int bits = ws->z_sbits + 8, usual = cfg->server_bits > 0 ? cfg->server_bits : 15;
    *own = bits < usual;
    if (b->alt != NULL && !*own)
        return b->alt;
    rbuf_t *z = pmd_compress(&cfg->zlib, *own ? bits : usual, rbuf_payload(b), b->len);
    if (z == NULL) {
        b->flags |= RBUF_NODEFLATE;
        *own = 0;
        return NULL;
    }
    z->flags = RBUF_DEFLATED | (b->flags & RBUF_BINARY);
    if (!*own)
        b->alt = z;
    return z;
}

void ws_send(ws_conn_t *ws, rbuf_t *b)
{
    int own = 0;
    if (ws->closing)
        return;
    if (ws->z_on && b->len >= ws->lim->pmd->threshold && !(b->flags & RBUF_NODEFLATE)) {
        rbuf_t *z = deflated(ws, b, &own);
        if (z != NULL)
            b = z;
    }
    ws_frame(b);
    net_write(ws->net, b, RBUF_HEADROOM - b->hdr, (size_t)b->hdr + b->len);
    if (own)
        rbuf_unref(b);
}

void ws_send_prefixed(ws_conn_t *ws, uint8_t prefix, rbuf_t *b)
{
    uint8_t h[11];
    uint64_t len = (uint64_t)b->len + 1;
    uint8_t hdr = header_len(len);
    if (ws->closing)
        return;
    if (ws->z_on && len >= ws->lim->pmd->threshold) {
        /* compressed: the whole message is needed in one block, this connection's own */
        rbuf_t *whole = rbuf_new((size_t)len);
        rbuf_payload(whole)[0] = (char)prefix;
        memcpy(rbuf_payload(whole) + 1, rbuf_payload(b), b->len);
        whole->flags = b->flags & RBUF_BINARY;
        ws_send(ws, whole);
        rbuf_unref(whole);
        return;
    }
    put_header(h, b->flags & RBUF_BINARY, len);
    h[hdr] = prefix;
    net_write_copy(ws->net, h, (size_t)hdr + 1);
    if (b->len > 0)
        net_write(ws->net, b, RBUF_HEADROOM, b->len);
}

static void write_close_frame(ws_conn_t *ws, uint16_t code, const char *reason)
{
    uint8_t f[2 + 125];
    size_t rl = reason ? strlen(reason) : 0;
    if (code == 0) { /* no status code: an empty close frame (the peer reads 1005) */
        f[0] = 0x88;
        f[1] = 0;
        net_write_copy(ws->net, f, 2);
        return;
    }
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
    net_set_timeout(ws->net, ws->lim->close_timeout); /* no on_timeout: net closes it */
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

int ws_has_ctx(const ws_conn_t *ws)
{
    return ws->rx != NULL;
}

int ws_deflate_state(const ws_conn_t *ws, size_t *window)
{
    if (window != NULL)
        *window = ws->started ? pmd_window_len(ws->held.zwin) : 0;
    return ws->z_on;
}

/* ---------------------------------------------------------------- receive contexts */

/* Creating a wslay context costs a calloc of ~8 KB and three queues, freeing it as much again:
 * per message, that was ~5% of an echo's CPU. So a context given back clean is kept for the next
 * connection that receives. `spare` and `limsets` below are ws.c's only mutable file-scope state:
 * siolua runs one uv loop on one thread, and a spare is not tied to a loop or a connection (a
 * nested feed() of another connection, if one ever happened, takes the spare or makes a new
 * context; it never touches a context that is lent).
 *
 * Reuse relies on this (read in wslay 1.1.1 lib/wslay_event.c and lib/wslay_frame.c): when
 * wslay_event_recv has returned 0 with read still enabled and we count the connection idle
 * (accounted == fed, no fragment in progress, no queued message), the context is as
 * wslay_event_context_server_init leaves it, except for fields that are rewritten before use:
 * - frame parser: istate RECV_HEADER1, ireqread 2 (set when a frame's payload ends); ibufmark ==
 *   ibuflimit (every byte we fed belongs to a finished frame, and wslay only stops on WANT_READ,
 *   i.e. once it has parsed what it holds), so the next wslay_recv shifts them back to ibuf;
 *   ipayloadlen/ipayloadoff/imask/imaskkey/iom are rewritten by each header;
 * - output: ostate PREP_HEADER (our send_cb takes every byte, so every control frame went out
 *   whole), omsg NULL, both send queues empty, queued_msg_count 0 (queued_msg_length returns to 0
 *   as pongs are sent); obuf marks are used only by fragmented output, which we never queue;
 * - input message: imsg == &imsgs[0] with opcode 0xff, utf8state UTF8_ACCEPT and no chunks
 *   (wslay_event_imsg_reset after every message with FIN; imsgs[1] likewise after a control
 *   frame; without buffering, data frames add no chunks and leave msg_length 0);
 *   msg_length/fin/rsv are reset by wslay_event_imsg_set when the next message starts;
 *   event ipayloadlen == ipayloadoff == 0 (reset at every frame end);
 * - read_enabled/write_enabled 1, close_status 0, status codes untouched: only a close or an
 *   error changes them, and such a context is freed, never kept;
 * - error: WSLAY_ERR_WOULDBLOCK from our recv_cb, which wslay treats as 0; we reset it anyway.
 * max_recv_msg_length is set again at every hand-out (it is the connection's); the no-buffering
 * flag is set once, at creation. Our own receive state is reset at every hand-out, except `msg`'s
 * storage: the spare keeps up to RX_KEEP bytes of it, so messages assembled from pieces (any
 * message over ~4 KB: wslay reads in 4 KB) do not each cost an allocation. That buffer belongs to
 * the process's one spare, not to an idle connection, which holds nothing. */
#define RX_KEEP 65536
static ws_rx_t *spare;

/* Lends a context to ws: the spare if there is one, else a new one. */
static ws_rx_t *rx_take(ws_conn_t *ws)
{
    ws_rx_t *rx = spare;
    if (rx != NULL) {
        spare = NULL;
        wslay_event_set_error(rx->wctx, 0);
    } else {
        rx = xmalloc(sizeof(*rx));
        if (wslay_event_context_server_init(&rx->wctx, &ws_callbacks, rx) != 0) {
            fprintf(stderr, "siolua: out of memory (wslay context)\n");
            abort(); /* as xmalloc does */
        }
        wslay_event_config_set_no_buffering(rx->wctx, 1);
        rx->ctl = (buf_t)BUF_INIT;
        rx->msg = (buf_t)BUF_INIT;
        rx->inf = NULL;
    }
    wslay_event_config_set_max_recv_msg_length(rx->wctx, ws->lim->max_message);
    wslay_event_config_set_allowed_rsv_bits(rx->wctx, ws->z_on ? WSLAY_RSV1_BIT : WSLAY_RSV_NONE);
    rx->ws = ws;
    rx->in = NULL;
    rx->inlen = 0;
    rx->fed = rx->accounted = 0;
    rx->nfrags = 0;
    rx->msg.len = 0;
    rx->whole = NULL;
    rx->msglen = rx->framelen = 0;
    rx->violation = 0;
    rx->frag = rx->ctlframe = rx->single = rx->z = rx->zheld = 0;
    return rx;
}

static void rx_free(ws_rx_t *rx)
{
    wslay_event_context_free(rx->wctx);
    buf_free(&rx->ctl);
    buf_free(&rx->msg);
    pmd_inflater_free(rx->inf);
    free(rx);
}

/* Takes back a context whose connection is idle and that saw no close, error or violation. The
 * connection keeps its inflate window, if it has one to keep. */
static void rx_give_back(ws_rx_t *rx)
{
    if (rx->zheld)
        rx->ws->held.zwin = pmd_window_save(rx->inf, rx->ws->held.zwin);
    rx->ws = NULL;
    if (rx->msg.cap > RX_KEEP)
        buf_free(&rx->msg); /* a big message was assembled: do not keep its size */
    if (spare == NULL)
        spare = rx;
    else
        rx_free(rx);
}

/* ---------------------------------------------------------------- limit sets */

/* Live limit sets, each referenced by its connections: as few as distinct configurations in use,
 * and empty once no connection is left. File-scope for the same reason as `spare`. */
static ws_limset_t *limsets;

static ws_limset_t *limset_ref(uint64_t max_message, const pmd_config_t *pmd, const http_limits_t *hl)
{
    ws_limset_t *l;
    for (l = limsets; l != NULL; l = l->next)
        if (l->max_message == max_message && l->close_timeout == hl->ws_close_timeout &&
            l->max_fragments == hl->ws_max_fragments && l->pause_bytes == hl->ws_pause_bytes && l->pmd == pmd)
            break;
    if (l == NULL) {
        l = xmalloc(sizeof(*l));
        *l = (ws_limset_t){.max_message = max_message,
                           .close_timeout = hl->ws_close_timeout,
                           .max_fragments = hl->ws_max_fragments,
                           .pause_bytes = hl->ws_pause_bytes,
                           .pmd = pmd,
                           .next = limsets};
        limsets = l;
    }
    l->refs++;
    return l;
}

static void limset_unref(ws_limset_t *l)
{
    if (--l->refs > 0)
        return;
    ws_limset_t **pp = &limsets;
    while (*pp != l)
        pp = &(*pp)->next;
    *pp = l->next;
    free(l);
}

/* ---------------------------------------------------------------- input */

static void feed(ws_conn_t *ws, const char *data, size_t len)
{
    if (ws->closing || len == 0)
        return;
    if (ws->rx == NULL)
        ws->rx = rx_take(ws);
    ws_rx_t *rx = ws->rx;
    rx->in = data;
    rx->inlen = len;
    int r = wslay_event_recv(rx->wctx);
    rx->in = NULL;
    rx->inlen = 0;
    if (ws->closing) { /* the handler closed it: send nothing more from wslay */
        ws->rx = NULL;
        rx_free(rx); /* saw a close: not kept; we are outside wslay's calls here */
        return;
    }
    if (rx->violation || r != 0) {
        /* r != 0: a frame-level violation (bad length encoding, fragmented control frame, ...).
         * wslay queued a close without a status code; say 1002 instead. */
        uint16_t code = rx->violation ? rx->violation : 1002;
        ws->rx = NULL;
        rx_free(rx);
        fail(ws, code);
        return;
    }
    flush_ctl(rx); /* pong, close reply, or wslay's 1002/1007/1009 close */
    if (!wslay_event_get_read_enabled(rx->wctx)) {
        set_why(ws, wslay_event_get_close_received(rx->wctx) ? WS_CLOSED_PEER : WS_CLOSED_ERROR);
        ws->rx = NULL;
        rx_free(rx);
        close_after_write(ws);
        return;
    }
    if (ws->net->queued > ws->lim->pause_bytes && !ws->out_paused) {
        /* the peer sends faster than it reads our answers: wait until they are written */
        ws->out_paused = 1;
        net_pause(ws->net);
    }
    if (rx->accounted == rx->fed && !rx->frag && wslay_event_get_queued_msg_count(rx->wctx) == 0) {
        ws->rx = NULL; /* idle: hold no per-connection buffers */
        rx_give_back(rx);
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
    if (ws->rx != NULL)
        rx_free(ws->rx); /* cut in the middle of a frame: not kept */
    if (!ws->started && ws->held.rest != NULL) {
        buf_free(ws->held.rest);
        free(ws->held.rest);
    } else if (ws->started) {
        pmd_window_free(ws->held.zwin);
    }
    limset_unref(ws->lim);
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

/* permessage-deflate for req: pmd_negotiate() on its Sec-WebSocket-Extensions headers (several are
 * joined with ", ", as Node does). 1 agreed, 0 none, -1 refused. */
static int negotiate(const http_req_t *req, const ws_limits_t *lim, pmd_params_t *p, char answer[PMD_ANSWER_MAX])
{
    buf_t joined = BUF_INIT;
    slice_t v;
    int r;
    if (lim->deflate == NULL || !lim->deflate->enabled)
        return 0;
    v = http_header_all(req, "sec-websocket-extensions", &joined);
    r = pmd_negotiate(lim->deflate, v.ptr, v.len, p, answer);
    buf_free(&joined);
    return r;
}

int ws_check_request(const http_req_t *req, const ws_limits_t *lim, const char **err)
{
    slice_t up = http_header(req, "upgrade"), conn = http_header(req, "connection");
    slice_t ver = http_header(req, "sec-websocket-version"), key = http_header(req, "sec-websocket-key");
    pmd_params_t zp;
    char answer[PMD_ANSWER_MAX];
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
    else if (negotiate(req, lim, &zp, answer) < 0)
        *err = "Invalid or unacceptable Sec-WebSocket-Extensions header"; /* ws's words */
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
    pmd_params_t zp;
    char answer[PMD_ANSWER_MAX];
    int z;
    if (ws_check_request(req, lim, &err) != 0) {
        http_respond(req, 400, NULL, 0, err, strlen(err));
        return NULL;
    }
    z = negotiate(req, lim, &zp, answer);
    char accept[29];
    slice_t key = http_header(req, "sec-websocket-key");
    ws_accept_key(key.ptr, key.len, accept);

    buf_t resp = BUF_INIT;
    buf_appendstr(&resp, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         "Sec-WebSocket-Accept: ");
    buf_appendstr(&resp, accept);
    buf_append(&resp, "\r\n", 2);
    if (z > 0) { /* where ws puts it: before the headers of the "headers" listeners */
        buf_appendstr(&resp, "Sec-WebSocket-Extensions: ");
        buf_appendstr(&resp, answer);
        buf_append(&resp, "\r\n", 2);
    }
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
    ws->lim = limset_ref(lim->max_message ? lim->max_message : 1000000, z > 0 ? lim->deflate : NULL, hl);
    if (z > 0) {
        ws->z_on = 1;
        ws->z_cnct = zp.client_nct != 0;
        ws->z_sbits = (uint8_t)(zp.server_bits - 8) & 7;
        ws->z_cbits = (uint8_t)(zp.client_bits - 8) & 7;
    }
    buf_t rest = BUF_INIT;
    ws->net = http_detach(req, &rest); /* req and hl are gone after this; the conn comes back paused */
    if (rest.len > 0) {
        ws->held.rest = xmalloc(sizeof(*ws->held.rest));
        *ws->held.rest = rest;
    } else {
        buf_free(&rest);
    }
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
    if (ws->held.rest != NULL) {
        buf_t *rest = ws->held.rest;
        ws->held.rest = NULL; /* held.zwin from here on */
        feed(ws, rest->base, rest->len);
        buf_free(rest);
        free(rest);
    }
    if (!ws->closing && !ws->out_paused)
        net_resume(ws->net);
}
