/* http: see http.h.
 * One request at a time per connection:
 *   PARSE  bytes go to llhttp; the head is assembled in c->head (llhttp hands out pieces that may be
 *          split across reads and point into the loop-wide read buffer, so they are copied, and only
 *          offsets are kept until the head is complete and can no longer move).
 *   HELD   a complete request is with the handler. llhttp is paused (on_message_complete returned
 *          HPE_PAUSED); bytes that arrive meanwhile are kept in c->pending, bounded.
 *   DONE   the answer ends the connection: input is dropped until net closes it.
 * Resuming after http_respond() is deferred to a one-shot uv_idle handle (the "kick", allocated
 * only when pipelined bytes are waiting) because http_respond must not call back synchronously:
 * parsing the next request would call on_request from inside the handler's own call.
 * Limits are enforced as bytes arrive, before anything is allocated for them.
 * Timeouts: one net deadline per connection, whose meaning follows the state (c->tmode): HEAD from
 * the connect or a request's first byte, BODY after the head, none while the handler holds the
 * request, SEND while an answer is being written, IDLE between keep-alive requests. */
#include "http.h"

#include <llhttp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define container_of(p, type, member) ((type *)((char *)(p)-offsetof(type, member)))

enum { ST_PARSE = 0, ST_HELD, ST_DONE, ST_DETACHED };
enum { CUR_NONE = 0, CUR_FIELD, CUR_VALUE };
enum { TM_NONE = 0, TM_HEAD, TM_BODY, TM_IDLE, TM_SEND };

/* A header's place in c->head while the head is being assembled. */
typedef struct {
    size_t noff, nlen, voff, vlen;
} hdr_off_t;

typedef struct http_kick {
    uv_idle_t idle;
    http_conn_t *c; /* the connection to resume */
} http_kick_t;

struct http_conn {
    net_conn_t *net;
    const http_handler_t *h;
    void *data; /* handler's context */
    http_limits_t lim;
    llhttp_t parser;
    http_req_t req;  /* the request being received or held */
    buf_t head;      /* url, then header names and values, as received */
    hdr_off_t *hoff; /* req.nheaders entries (hcap allocated) */
    size_t hcap;
    slice_t *slices;     /* names then values, built when the head is complete */
    size_t url_len;      /* url bytes at the start of head */
    buf_t pending;       /* received, not yet parsed: pipelined requests, upgrade leftovers */
    size_t poff;         /* bytes of pending already parsed */
    http_kick_t *kick;   /* scheduled resume, or NULL */
    uint16_t err_status; /* 414/431 decided by a callback */
    uint8_t state;       /* ST_* */
    uint8_t cur;         /* CUR_*: which head item the last piece belonged to */
    uint8_t in_deliver;  /* inside handler->on_request: http_detach must not free c */
    uint8_t msg_done;    /* on_message_complete ran */
    uint8_t in_head;     /* a message has begun and its head is not complete */
    uint8_t in_body;     /* its head was accepted and its body is not complete (see on_cut) */
    uint8_t tmode;       /* TM_*: what the armed net deadline means */
    size_t pipelined;    /* requests in a row that arrived before the previous one was answered */
    size_t ext_total;    /* chunk-extension bytes of this request (counted against max_body) */
    size_t ext_chunk;    /* chunk-extension bytes of the current chunk (against max_chunk_ext) */
};

static void parse(http_conn_t *c, const char *p, size_t n, int from_pending);
static void kick_cb(uv_idle_t *h);

/* ---------------------------------------------------------------- helpers */

static size_t pending_len(const http_conn_t *c)
{
    return c->pending.len - c->poff;
}

static void drop_pending(http_conn_t *c)
{
    buf_free(&c->pending);
    c->poff = 0;
}

/* Arms the connection's deadline for `mode` (TM_NONE disarms it). */
static void arm(http_conn_t *c, uint8_t mode)
{
    uint64_t ms = 0;
    switch (mode) {
    case TM_HEAD:
        ms = c->lim.header_timeout;
        break;
    case TM_BODY:
        ms = c->lim.body_timeout;
        break;
    case TM_IDLE:
        ms = c->lim.keepalive_timeout;
        break;
    case TM_SEND:
        ms = c->lim.send_timeout;
        break;
    default:
        break;
    }
    c->tmode = mode;
    net_set_timeout(c->net, ms);
}

/* Releases everything a request holds; c->req is blank after. */
static void end_request(http_conn_t *c)
{
    buf_free(&c->head);
    buf_free(&c->req.body);
    free(c->hoff);
    free(c->slices);
    c->hoff = NULL;
    c->slices = NULL;
    c->hcap = 0;
    c->url_len = 0;
    c->in_body = 0;
    c->req = (http_req_t){.conn = c};
}

/* The request being received will never be whole: tell the handler (http_handler_t.on_cut). */
static void cut(http_conn_t *c)
{
    if (!c->in_body)
        return;
    c->in_body = 0;
    if (c->h->on_cut != NULL)
        c->h->on_cut(&c->req, c->data);
}

static void kick_free(uv_handle_t *h)
{
    free(container_of((uv_idle_t *)h, http_kick_t, idle));
}

static void kick_cancel(http_conn_t *c)
{
    if (c->kick == NULL)
        return;
    uv_idle_stop(&c->kick->idle);
    uv_close((uv_handle_t *)&c->kick->idle, kick_free);
    c->kick = NULL;
}

static void conn_free(http_conn_t *c)
{
    kick_cancel(c);
    end_request(c);
    drop_pending(c);
    free(c);
}

/* ---------------------------------------------------------------- llhttp callbacks */

/* Appends a piece of the head, within max_head (counting 4 bytes of ": " and CRLF per header). */
static int head_append(http_conn_t *c, const char *at, size_t len)
{
    if (c->head.len + len + 4 * c->req.nheaders > c->lim.max_head) {
        c->err_status = 431;
        return -1;
    }
    buf_append(&c->head, at, len);
    return 0;
}

static int on_message_begin(llhttp_t *p)
{
    http_conn_t *c = p->data;
    end_request(c);
    c->cur = CUR_NONE;
    c->msg_done = 0;
    c->err_status = 0;
    c->in_head = 1;
    c->ext_total = c->ext_chunk = 0;
    if (c->tmode != TM_HEAD) /* a fresh connection's clock runs from the connect */
        arm(c, TM_HEAD);
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    http_conn_t *c = p->data;
    if (c->url_len + len > c->lim.max_url) {
        c->err_status = 414;
        return -1;
    }
    if (head_append(c, at, len) != 0)
        return -1;
    c->url_len += len;
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    http_conn_t *c = p->data;
    if (c->cur != CUR_FIELD) {
        if (c->req.nheaders >= c->lim.max_headers) {
            c->err_status = 431;
            return -1;
        }
        if (c->req.nheaders == c->hcap) {
            c->hcap = c->hcap ? c->hcap * 2 : 16;
            c->hoff = xrealloc(c->hoff, c->hcap * sizeof(*c->hoff));
        }
        c->hoff[c->req.nheaders++] = (hdr_off_t){c->head.len, 0, c->head.len, 0};
        c->cur = CUR_FIELD;
    }
    if (head_append(c, at, len) != 0)
        return -1;
    c->hoff[c->req.nheaders - 1].nlen += len;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    http_conn_t *c = p->data;
    if (c->req.nheaders == 0)
        return -1; /* llhttp always sends a field first */
    hdr_off_t *h = &c->hoff[c->req.nheaders - 1];
    if (c->cur != CUR_VALUE) {
        h->voff = c->head.len;
        h->vlen = 0;
        c->cur = CUR_VALUE;
    }
    if (head_append(c, at, len) != 0)
        return -1;
    h->vlen += len;
    return 0;
}

static int is_ows(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* RFC 9110 5.6.2: a field name is a token. llhttp 8 lets "Host : x" through as the name "Host "
 * and accepts an empty name; RFC 9112 5.1 says to answer 400 (a name with a space is how a
 * Transfer-Encoding hides from one parser and not another). */
static int is_token(slice_t s)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";
    if (s.len == 0)
        return 0;
    for (size_t i = 0; i < s.len; i++) {
        unsigned char ch = (unsigned char)s.ptr[i];
        if (!((ch >= '0' && ch <= '9') || ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'z') ||
              (ch != 0 && strchr(extra, ch) != NULL)))
            return 0;
    }
    return 1;
}

static uint8_t map_method(uint8_t m)
{
    switch (m) {
    case HTTP_GET:
        return HTTP_M_GET;
    case HTTP_POST:
        return HTTP_M_POST;
    case HTTP_OPTIONS:
        return HTTP_M_OPTIONS;
    case HTTP_HEAD:
        return HTTP_M_HEAD;
    default:
        return HTTP_M_OTHER;
    }
}

static int on_headers_complete(llhttp_t *p)
{
    http_conn_t *c = p->data;
    http_req_t *r = &c->req;
    size_t n = r->nheaders;
    c->in_head = 0;
    /* The head no longer grows: slices into it stay valid until the request ends. */
    c->slices = xmalloc((2 * n + 1) * sizeof(slice_t));
    for (size_t i = 0; i < n; i++) {
        const char *v = c->head.base + c->hoff[i].voff;
        size_t vl = c->hoff[i].vlen;
        while (vl > 0 && is_ows(v[0]))
            v++, vl--;
        while (vl > 0 && is_ows(v[vl - 1]))
            vl--;
        c->slices[i] = (slice_t){c->head.base + c->hoff[i].noff, c->hoff[i].nlen};
        c->slices[n + i] = (slice_t){v, vl};
    }
    r->names = c->slices;
    r->values = c->slices + n;
    for (size_t i = 0; i < n; i++)
        if (!is_token(r->names[i])) {
            c->err_status = 400;
            return -1;
        }
    r->url = (slice_t){c->head.base ? c->head.base : "", c->url_len};
    const char *q = memchr(r->url.ptr, '?', r->url.len);
    if (q != NULL) {
        r->path = (slice_t){r->url.ptr, (size_t)(q - r->url.ptr)};
        r->query = (slice_t){q + 1, r->url.len - (size_t)(q - r->url.ptr) - 1};
    } else {
        r->path = r->url;
        r->query = (slice_t){r->url.ptr + r->url.len, 0};
    }
    r->method = map_method(p->method);
    r->upgrade = p->upgrade;
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > c->lim.max_body) {
        r->too_large = 1; /* not read: the handler answers 413 and the connection closes */
        return -1;
    }
    if (p->content_length > 0)
        buf_reserve(&r->body, (size_t)p->content_length);
    arm(c, TM_BODY); /* disarmed at once by deliver() when there is no body */
    /* curl and others wait for this before sending a body (Node answers it too). */
    slice_t expect = http_header(r, "expect");
    if (expect.ptr != NULL && slice_caseeq(expect, "100-continue") && p->http_major == 1 && p->http_minor >= 1)
        net_write_copy(c->net, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    c->in_body = 1;
    return 0;
}

/* The body went over its limit: nothing more of it is kept; the handler answers 413. */
static int too_large(http_conn_t *c)
{
    c->req.too_large = 1;
    buf_free(&c->req.body);
    return -1;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    http_conn_t *c = p->data;
    if (c->req.body.len + c->ext_total + len > c->lim.max_body) /* chunked: counted as it arrives */
        return too_large(c);
    buf_append(&c->req.body, at, len);
    return 0;
}

/* A chunk's size is known before its bytes: one that cannot fit is refused before it is read. */
static int on_chunk_header(llhttp_t *p)
{
    http_conn_t *c = p->data;
    c->ext_chunk = 0;
    if (p->content_length > c->lim.max_body - c->req.body.len - c->ext_total) /* (both <= max_body) */
        return too_large(c);
    return 0;
}

/* Chunk extensions (";name=value" after a chunk size) are parsed and dropped, but they are bytes
 * the client makes us read: bounded per chunk and counted against the body's limit, so that a
 * body of endless extensions cannot keep a connection busy for free. */
static int on_chunk_ext(llhttp_t *p, const char *at, size_t len)
{
    http_conn_t *c = p->data;
    (void)at;
    c->ext_chunk += len;
    c->ext_total += len;
    if (c->ext_chunk > c->lim.max_chunk_ext || c->req.body.len + c->ext_total > c->lim.max_body)
        return too_large(c);
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    http_conn_t *c = p->data;
    c->msg_done = 1;
    c->in_body = 0;
    c->req.keep_alive = (uint8_t)llhttp_should_keep_alive(p);
    /* An upgrade makes llhttp stop by itself with HPE_PAUSED_UPGRADE. */
    return p->upgrade ? 0 : HPE_PAUSED;
}

static const llhttp_settings_t settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
    .on_chunk_header = on_chunk_header,
    .on_chunk_extension_name = on_chunk_ext,
    .on_chunk_extension_value = on_chunk_ext,
};

/* ---------------------------------------------------------------- responses */

const char *http_status_text(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 411:
        return "Length Required";
    case 413:
        return "Payload Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

/* Builds the whole response in one buffer and writes it with one net_write_copy.
 * Content-Length and Connection are ours: the caller's copies are skipped. */
static void write_response(http_conn_t *c, int status, const http_hdr_t *hdrs, size_t nhdrs, const char *ctype,
                           const void *body, size_t len, int head_only, int close)
{
    char line[96];
    size_t est = 128 + len;
    for (size_t i = 0; i < nhdrs; i++)
        est += strlen(hdrs[i].name) + strlen(hdrs[i].value) + 4;
    buf_t b = BUF_INIT;
    buf_reserve(&b, est);
    snprintf(line, sizeof(line), "HTTP/1.1 %d %s\r\n", status, http_status_text(status));
    buf_appendstr(&b, line);
    for (size_t i = 0; i < nhdrs; i++) {
        slice_t name = {hdrs[i].name, strlen(hdrs[i].name)};
        if (slice_caseeq(name, "content-length") || slice_caseeq(name, "connection"))
            continue;
        buf_append(&b, name.ptr, name.len);
        buf_append(&b, ": ", 2);
        buf_appendstr(&b, hdrs[i].value);
        buf_append(&b, "\r\n", 2);
    }
    if (ctype != NULL) {
        buf_appendstr(&b, "Content-Type: ");
        buf_appendstr(&b, ctype);
        buf_append(&b, "\r\n", 2);
    }
    /* RFC 9110 8.6: no Content-Length on 1xx and 204; on 304 it would describe another body. */
    if (status >= 200 && status != 204 && status != 304) {
        snprintf(line, sizeof(line), "Content-Length: %zu\r\n", len);
        buf_appendstr(&b, line);
    }
    buf_appendstr(&b, close ? "Connection: close\r\n\r\n" : "Connection: keep-alive\r\n\r\n");
    if (!head_only)
        buf_append(&b, body, len);
    net_write_copy(c->net, b.base, b.len);
    buf_free(&b);
}

/* Answers a request we could not parse (or refused by a limit) and ends the connection. */
static void reply_error(http_conn_t *c, int status)
{
    const char *text = http_status_text(status);
    cut(c); /* a body that timed out or broke */
    c->state = ST_DONE;
    end_request(c);
    drop_pending(c);
    write_response(c, status, NULL, 0, "text/plain", text, strlen(text), 0, 1);
    net_close_after_write(c->net);
    arm(c, TM_SEND);
}

static void respond(http_req_t *req, int status, const http_hdr_t *hdrs, size_t nhdrs, const char *ctype,
                    const void *body, size_t len)
{
    http_conn_t *c = req->conn;
    if (c->state != ST_HELD)
        return; /* answered twice: a handler bug, but not worth a crash */
    /* An upgrade request that is answered (not detached) leaves llhttp in upgrade mode: close. */
    int close = !req->keep_alive || req->too_large || req->upgrade;
    write_response(c, status, hdrs, nhdrs, ctype, body, len, req->method == HTTP_M_HEAD, close);
    end_request(c);
    if (close) {
        c->state = ST_DONE;
        drop_pending(c);
        net_close_after_write(c->net);
        arm(c, TM_SEND);
        return;
    }
    c->state = ST_PARSE;
    arm(c, c->net->queued > 0 ? TM_SEND : TM_IDLE); /* on_drain turns SEND into IDLE */
    llhttp_resume(&c->parser);
    if (pending_len(c) > 0 && c->kick == NULL && !net_closing(c->net)) {
        http_kick_t *k = xmalloc(sizeof(*k));
        uv_idle_init(c->net->ctx->loop, &k->idle);
        k->c = c;
        c->kick = k;
        uv_idle_start(&k->idle, kick_cb);
    }
}

void http_respond(http_req_t *req, int status, const http_hdr_t *hdrs, size_t nhdrs, const void *body, size_t len)
{
    respond(req, status, hdrs, nhdrs, NULL, body, len);
}

void http_respond_json_error(http_req_t *req, int status, const http_hdr_t *hdrs, size_t nhdrs, int code,
                             const char *msg)
{
    static const char hex[] = "0123456789abcdef";
    char num[32];
    buf_t b = BUF_INIT;
    snprintf(num, sizeof(num), "%d", code);
    buf_appendstr(&b, "{\"code\":");
    buf_appendstr(&b, num);
    buf_appendstr(&b, ",\"message\":\"");
    for (const unsigned char *s = (const unsigned char *)msg; *s; s++) {
        if (*s == '"' || *s == '\\') {
            buf_appendc(&b, '\\');
            buf_appendc(&b, (char)*s);
        } else if (*s < 0x20) {
            char u[6] = {'\\', 'u', '0', '0', hex[*s >> 4], hex[*s & 15]};
            buf_append(&b, u, 6);
        } else {
            buf_appendc(&b, (char)*s);
        }
    }
    buf_appendstr(&b, "\"}");
    respond(req, status, hdrs, nhdrs, "application/json", b.base, b.len);
    buf_free(&b);
}

/* ---------------------------------------------------------------- input */

/* Hands the complete request to the handler. c may be gone when this returns (http_detach). */
static void deliver(http_conn_t *c)
{
    arm(c, TM_NONE); /* the handler decides how long it holds the request */
    c->state = ST_HELD;
    c->msg_done = 0;
    c->in_body = 0; /* delivered (a too-large one included): never cut */
    c->in_deliver = 1;
    c->h->on_request(&c->req, c->data);
    c->in_deliver = 0;
    if (c->state == ST_DETACHED)
        conn_free(c);
}

/* Runs llhttp on p[0..n), which is the unparsed part of c->pending when from_pending. */
static void parse(http_conn_t *c, const char *p, size_t n, int from_pending)
{
    llhttp_errno_t e = llhttp_execute(&c->parser, p, n);
    if (e == HPE_OK) {
        if (from_pending)
            drop_pending(c);
        return;
    }
    if ((e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE) && c->msg_done) {
        const char *pos = llhttp_get_error_pos(&c->parser);
        size_t used = (size_t)(pos - p);
        if (from_pending)
            c->poff += used;
        else
            buf_append(&c->pending, pos, n - used); /* pending was empty: at most one read */
        if (pending_len(c) == 0)
            drop_pending(c);
        /* Pipelining is bounded: the request that reaches max_pipelined closes the connection
         * after its answer (the client retries what was not answered, as HTTP/1.1 says). */
        c->pipelined = from_pending ? c->pipelined + 1 : 0;
        if (c->pipelined >= c->lim.max_pipelined)
            c->req.keep_alive = 0;
        deliver(c);
        return;
    }
    drop_pending(c);
    if (c->req.too_large && !c->in_head) {
        c->req.keep_alive = 0;
        deliver(c);
        return;
    }
    reply_error(c, c->err_status ? c->err_status : 400);
}

static void parse_pending(http_conn_t *c)
{
    parse(c, c->pending.base + c->poff, pending_len(c), 1);
}

/* Keeps bytes for later, within max_head + max_body (one more whole request); over it, closes. */
static void hold(http_conn_t *c, const char *data, size_t len)
{
    if (pending_len(c) + len > c->lim.max_head + c->lim.max_body) {
        c->state = ST_DONE;
        drop_pending(c);
        net_close(c->net);
        return;
    }
    if (c->poff > 0) {
        buf_consume(&c->pending, c->poff);
        c->poff = 0;
    }
    buf_append(&c->pending, data, len);
}

static void kick_cb(uv_idle_t *h)
{
    http_kick_t *k = container_of(h, http_kick_t, idle);
    http_conn_t *c = k->c;
    c->kick = NULL;
    uv_idle_stop(h);
    uv_close((uv_handle_t *)h, kick_free);
    if (c->state == ST_PARSE && pending_len(c) > 0 && !net_closing(c->net))
        parse_pending(c);
}

static void on_read(net_conn_t *nc, const char *data, size_t len)
{
    http_conn_t *c = nc->owner;
    switch (c->state) {
    case ST_HELD:
        if (!c->req.too_large) /* a too-large body is never stored */
            hold(c, data, len);
        return;
    case ST_PARSE:
        if (pending_len(c) > 0) { /* a kick is due: keep the order */
            hold(c, data, len);
            if (c->state == ST_PARSE)
                parse_pending(c);
            return;
        }
        parse(c, data, len, 0);
        return;
    default:
        return;
    }
}

static void on_close(net_conn_t *nc, net_close_reason_t why)
{
    (void)why;
    http_conn_t *c = nc->owner;
    if (c->state == ST_PARSE)
        cut(c); /* reset or closed in the middle of a body */
    if (c->state == ST_HELD && c->req.on_abort != NULL) {
        c->state = ST_DONE;
        c->req.on_abort(&c->req, c->req.abort_data);
    }
    conn_free(c);
}

/* The answer has been written: the connection now idles until the next request. */
static void on_drain(net_conn_t *nc)
{
    http_conn_t *c = nc->owner;
    if (c->state == ST_PARSE && c->tmode == TM_SEND)
        arm(c, TM_IDLE);
}

static void on_timeout(net_conn_t *nc)
{
    http_conn_t *c = nc->owner;
    uint8_t mode = c->tmode;
    c->tmode = TM_NONE;
    if ((mode == TM_HEAD || mode == TM_BODY) && c->state == ST_PARSE) {
        log_debug("http: %s: request %s not complete in time: 408", net_peer(nc), mode == TM_HEAD ? "head" : "body");
        reply_error(c, 408);
        return;
    }
    /* IDLE: a keep-alive connection closes without a word; SEND: the peer does not read */
    net_close(nc);
}

static const net_ops_t http_ops = {
    .on_read = on_read, .on_close = on_close, .on_drain = on_drain, .on_timeout = on_timeout};

/* ---------------------------------------------------------------- public */

void http_limits_fill(http_limits_t *lim)
{
    if (lim->max_head == 0)
        lim->max_head = 16384;
    if (lim->max_headers == 0)
        lim->max_headers = 100;
    if (lim->max_url == 0)
        lim->max_url = 8192;
    if (lim->max_body == 0)
        lim->max_body = 1000000;
    if (lim->max_chunk_ext == 0)
        lim->max_chunk_ext = 16384;
    if (lim->max_pipelined == 0)
        lim->max_pipelined = 16;
    if (lim->header_timeout == 0)
        lim->header_timeout = 10000;
    if (lim->body_timeout == 0)
        lim->body_timeout = 30000;
    if (lim->keepalive_timeout == 0)
        lim->keepalive_timeout = 5000;
    if (lim->send_timeout == 0)
        lim->send_timeout = 10000;
    if (lim->ws_max_fragments == 0)
        lim->ws_max_fragments = 1024;
    if (lim->ws_pause_bytes == 0)
        lim->ws_pause_bytes = 65536;
    if (lim->ws_close_timeout == 0)
        lim->ws_close_timeout = 5000;
}

http_conn_t *http_conn_new(net_conn_t *nc, const http_handler_t *h, const http_limits_t *lim, void *data)
{
    http_conn_t *c = xcalloc(1, sizeof(*c));
    c->net = nc;
    c->h = h;
    c->data = data;
    c->lim = *lim;
    http_limits_fill(&c->lim);
    llhttp_init(&c->parser, HTTP_REQUEST, &settings);
    c->parser.data = c;
    c->req.conn = c;
    net_set_owner(nc, &http_ops, c);
    int over_total = c->lim.max_conns != 0 && nc->ctx->nconns > c->lim.max_conns;
    if (over_total || (c->lim.max_conns_per_ip != 0 && net_peer_conns(nc) > c->lim.max_conns_per_ip)) {
        /* Refused at once, with a word (nginx limit_conn and Node's maxConnections differ: one
         * answers 503, the other drops; an answer tells a real client why). Input is dropped. */
        if (over_total)
            net_warn_full(nc->ctx, "--max-connections reached: new clients get 503");
        else /* one address over its share: an attacker's flood must not fill the log */
            log_debug("http: %s: connection refused (%zu from this IP)", net_peer(nc), net_peer_conns(nc));
        reply_error(c, 503);
        net_resume(nc);
        return c;
    }
    arm(c, TM_HEAD);
    net_resume(nc);
    return c;
}

slice_t http_header(const http_req_t *req, const char *name)
{
    for (size_t i = 0; i < req->nheaders; i++)
        if (slice_caseeq(req->names[i], name))
            return req->values[i];
    return (slice_t){NULL, 0};
}

slice_t http_header_all(const http_req_t *req, const char *name, buf_t *tmp)
{
    slice_t v = {NULL, 0};
    tmp->len = 0;
    for (size_t i = 0; i < req->nheaders; i++) {
        if (!slice_caseeq(req->names[i], name))
            continue;
        if (v.ptr != NULL) {
            if (tmp->len == 0)
                buf_append(tmp, v.ptr, v.len);
            buf_append(tmp, ", ", 2);
            buf_append(tmp, req->values[i].ptr, req->values[i].len);
        }
        v = req->values[i];
    }
    return tmp->len > 0 ? (slice_t){tmp->base, tmp->len} : v;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* application/x-www-form-urlencoded decoding; a malformed %XX is kept as it is (as Node does). */
static void pct_decode(buf_t *out, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        if (ch == '+') {
            ch = ' ';
        } else if (ch == '%' && i + 2 < n) {
            int hi = hexval(p[i + 1]), lo = hexval(p[i + 2]);
            if (hi >= 0 && lo >= 0) {
                ch = (char)(hi << 4 | lo);
                i += 2;
            }
        }
        buf_appendc(out, ch);
    }
}

int http_query(const http_req_t *req, const char *name, buf_t *out)
{
    const char *q = req->query.ptr, *end = req->query.ptr + req->query.len;
    size_t nlen = strlen(name);
    out->len = 0;
    while (q != NULL && q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *seg_end = amp ? amp : end;
        const char *eq = memchr(q, '=', (size_t)(seg_end - q));
        const char *key_end = eq ? eq : seg_end;
        pct_decode(out, q, (size_t)(key_end - q));
        int match = out->len == nlen && memcmp(out->base, name, nlen) == 0;
        out->len = 0;
        if (match) {
            if (eq != NULL)
                pct_decode(out, eq + 1, (size_t)(seg_end - eq - 1));
            return 0;
        }
        q = amp ? amp + 1 : NULL;
    }
    return -1;
}

const char *http_peer(const http_req_t *req)
{
    return net_peer(req->conn->net);
}

int http_secure(const http_req_t *req)
{
    return net_secure(req->conn->net);
}

const http_limits_t *http_limits(const http_req_t *req)
{
    return &req->conn->lim;
}

net_conn_t *http_detach(http_req_t *req, buf_t *rest)
{
    http_conn_t *c = req->conn;
    net_conn_t *nc = c->net;
    rest->len = 0; /* replaced, its storage reused: never dropped (the caller frees it) */
    if (pending_len(c) > 0)
        buf_append(rest, c->pending.base + c->poff, pending_len(c));
    /* Paused and ownerless until the new owner takes it (net_set_owner + net_resume). */
    net_pause(nc);
    arm(c, TM_NONE);
    net_set_owner(nc, NULL, NULL);
    c->state = ST_DETACHED;
    if (!c->in_deliver)
        conn_free(c);
    return nc;
}

const char *http_method_name(int method)
{
    switch (method) {
    case HTTP_M_GET:
        return "GET";
    case HTTP_M_POST:
        return "POST";
    case HTTP_M_HEAD:
        return "HEAD";
    case HTTP_M_OPTIONS:
        return "OPTIONS";
    default:
        return NULL;
    }
}
