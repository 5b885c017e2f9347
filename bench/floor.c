/* floor: the benchmark's bare WebSocket server on libuv + wslay, with no Socket.IO work.
 *
 * It is the cost floor siolua is compared with (bench/run.sh): the same TCP, HTTP upgrade and
 * WebSocket framing, and only as much Engine.IO/Socket.IO as the load generator needs to run
 * unchanged, done with prefix checks instead of parsing:
 *   - after the 101 it sends a fixed open packet; "40" is answered with a fixed CONNECT answer;
 *   - "42<id>[ev,rest...]" (an event that wants an ack) is answered "43<id>[rest...]": the echo;
 *   - "42[ev,...]" (no ack) is sent as it is to every other connection: the broadcast, framed once
 *     and written to each with uv_try_write (a copy is queued only when the socket is full).
 * No heartbeats, no rooms, no JSON. Listens on 127.0.0.1. Usage: floor --port N (0: a free port).
 * --batch holds each connection's output until every read callback of the loop iteration has run
 * (uv_check) and writes it at once: one syscall per recipient for all the broadcasts that came in
 * one read, the batching the issue suggests for siolua. Without it, every frame is written at once,
 * as siolua does today.
 * One static context: a single-purpose test tool. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <uv.h>
#include <wslay/wslay.h>

#define container_of(p, T, m) ((T *)((char *)(p) - offsetof(T, m)))
#define MAX_HANDSHAKE 8192
#define MAX_MSG (1u << 20)

typedef struct fconn fconn_t;
struct fconn {
    uv_tcp_t tcp;
    wslay_event_context_ptr ws; /* NULL until the upgrade */
    char *hs;                   /* handshake bytes so far */
    size_t hslen;
    const uint8_t *in;          /* the read chunk wslay's recv_callback takes from */
    size_t inlen;
    fconn_t *prev, *next;       /* open WebSocket connections, for the broadcast */
    int closing;
    char *out;                  /* --batch: bytes held until the end of this loop iteration */
    size_t outlen, outcap;
    fconn_t *dirty_next;        /* --batch: on F.dirty while out holds bytes */
};

static struct {
    uv_loop_t *loop;
    uv_tcp_t listener;
    fconn_t *head;
    size_t nconns;
    int batch;                  /* --batch: coalesce each connection's output per loop iteration */
    fconn_t *dirty;
    uv_check_t flush;
} F;

static char g_readbuf[65536];

typedef struct {
    uv_write_t req;
    uv_buf_t buf;
    char data[];
} wreq_t;

static void on_written(uv_write_t *req, int status)
{
    (void)status;
    free(container_of(req, wreq_t, req));
}

static void conn_close(fconn_t *c);
static void conn_write_now(fconn_t *c, const void *p, size_t n);

/* With --batch, output waits in c->out until the loop has run every read callback of this
 * iteration (uv_check), then goes out in one write per connection. */
static void conn_write(fconn_t *c, const void *p, size_t n)
{
    if (!F.batch) {
        conn_write_now(c, p, n);
        return;
    }
    if (c->closing)
        return;
    if (c->outlen + n > c->outcap) {
        size_t cap = c->outcap ? c->outcap : 1024;
        while (cap < c->outlen + n)
            cap *= 2;
        c->out = realloc(c->out, cap);
        if (!c->out)
            abort();
        c->outcap = cap;
    }
    if (c->outlen == 0) {
        c->dirty_next = F.dirty;
        F.dirty = c;
    }
    memcpy(c->out + c->outlen, p, n);
    c->outlen += n;
}

static void conn_free(fconn_t *c)
{
    if (c->ws)
        wslay_event_context_free(c->ws);
    free(c->hs);
    free(c->out);
    free(c);
    F.nconns--;
}

static void on_flush(uv_check_t *h)
{
    (void)h;
    fconn_t *c = F.dirty;
    F.dirty = NULL;
    while (c) {
        fconn_t *next = c->dirty_next;
        size_t n = c->outlen;
        c->outlen = 0;
        if (c->closing == 2) { /* its handle closed while it waited here */
            conn_free(c);
            c = next;
            continue;
        }
        if (!c->closing && n)
            conn_write_now(c, c->out, n);
        if (c->outcap > 65536) {
            free(c->out);
            c->out = NULL;
            c->outcap = 0;
        }
        c = next;
    }
}

/* Writes now if the socket takes it, else queues a copy of what is left (ordering is kept:
 * uv_try_write refuses while anything is queued). */
static void conn_write_now(fconn_t *c, const void *p, size_t n)
{
    if (c->closing)
        return;
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
    int r = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (r == (int)n)
        return;
    if (r < 0 && r != UV_EAGAIN) {
        conn_close(c);
        return;
    }
    if (r < 0)
        r = 0;
    wreq_t *w = malloc(sizeof(*w) + n - (size_t)r);
    if (!w)
        abort();
    memcpy(w->data, (const char *)p + r, n - (size_t)r);
    w->buf = uv_buf_init(w->data, (unsigned)(n - (size_t)r));
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &w->buf, 1, on_written) != 0) {
        free(w);
        conn_close(c);
    }
}

static void on_closed(uv_handle_t *h)
{
    fconn_t *c = container_of((uv_tcp_t *)h, fconn_t, tcp);
    if (c->outlen) { /* still on F.dirty: on_flush frees it */
        c->closing = 2;
        return;
    }
    conn_free(c);
}

static void conn_close(fconn_t *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    if (c->ws) { /* unlink from the broadcast list */
        if (c->prev)
            c->prev->next = c->next;
        else if (F.head == c)
            F.head = c->next;
        if (c->next)
            c->next->prev = c->prev;
    }
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

/* ------------------------------------------------------------------ wslay callbacks */

static ssize_t ws_recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *ud)
{
    (void)flags;
    fconn_t *c = ud;
    if (c->inlen == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = len < c->inlen ? len : c->inlen;
    memcpy(buf, c->in, n);
    c->in += n;
    c->inlen -= n;
    return (ssize_t)n;
}

static ssize_t ws_send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags, void *ud)
{
    (void)ctx;
    (void)flags;
    conn_write(ud, data, len); /* always takes everything: wslay never holds a partial frame */
    return (ssize_t)len;
}

static void queue_text(fconn_t *c, const char *p, size_t n)
{
    struct wslay_event_msg m = {1, (const uint8_t *)p, n};
    wslay_event_queue_msg(c->ws, &m);
}

/* One unmasked text frame, built once, written to every other open connection. */
static void broadcast(fconn_t *from, const uint8_t *p, size_t n)
{
    uint8_t stackbuf[4096];
    size_t hl = n < 126 ? 2 : n < 65536 ? 4 : 10;
    uint8_t *f = hl + n <= sizeof(stackbuf) ? stackbuf : malloc(hl + n);
    if (!f)
        abort();
    f[0] = 0x81;
    if (n < 126) {
        f[1] = (uint8_t)n;
    } else if (n < 65536) {
        f[1] = 126;
        f[2] = (uint8_t)(n >> 8);
        f[3] = (uint8_t)n;
    } else {
        f[1] = 127;
        for (int i = 0; i < 8; i++)
            f[2 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
    }
    memcpy(f + hl, p, n);
    for (fconn_t *c = F.head, *next; c; c = next) {
        next = c->next;
        if (c != from)
            conn_write(c, f, hl + n);
    }
    if (f != stackbuf)
        free(f);
}

static void ws_msg_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg, void *ud)
{
    (void)ctx;
    fconn_t *c = ud;
    if (arg->opcode != WSLAY_TEXT_FRAME)
        return;
    const char *s = (const char *)arg->msg;
    size_t n = arg->msg_length;
    if (n == 2 && memcmp(s, "40", 2) == 0) {
        static const char ok[] = "40{\"sid\":\"floorfloorfloorfloor\"}";
        queue_text(c, ok, sizeof(ok) - 1);
        return;
    }
    if (n < 3 || s[0] != '4' || s[1] != '2')
        return; /* pongs and the rest: nothing to do */
    size_t i = 2;
    while (i < n && s[i] >= '0' && s[i] <= '9')
        i++;
    if (i == 2) {
        broadcast(c, arg->msg, n);
        return;
    }
    /* "42<id>[ev,rest]" -> "43<id>[rest]" */
    char out[4096];
    char *o = n + 8 <= sizeof(out) ? out : malloc(n + 8);
    if (!o)
        abort();
    size_t k = 0;
    o[k++] = '4';
    o[k++] = '3';
    memcpy(o + k, s + 2, i - 2);
    k += i - 2;
    o[k++] = '[';
    const char *comma = memchr(s + i, ',', n - i);
    if (comma) {
        size_t rest = n - (size_t)(comma + 1 - s);
        memcpy(o + k, comma + 1, rest);
        k += rest;
    } else {
        o[k++] = ']';
    }
    queue_text(c, o, k);
    if (o != out)
        free(o);
}

static const struct wslay_event_callbacks g_ws_callbacks = {
    ws_recv_cb, ws_send_cb, NULL, NULL, NULL, NULL, ws_msg_cb,
};

/* ------------------------------------------------------------------ HTTP upgrade */

static int handshake(fconn_t *c)
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    const char *key = NULL;
    size_t klen = 0;
    for (size_t i = 0; i + 18 < c->hslen; i++)
        if ((i == 0 || c->hs[i - 1] == '\n') && strncasecmp(c->hs + i, "sec-websocket-key:", 18) == 0) {
            key = c->hs + i + 18;
            while (*key == ' ')
                key++;
            while (key[klen] && key[klen] != '\r' && key[klen] != '\n' && key[klen] != ' ')
                klen++;
            break;
        }
    if (!key || klen == 0 || klen > 64)
        return -1;
    char in[64 + sizeof(guid)];
    memcpy(in, key, klen);
    memcpy(in + klen, guid, sizeof(guid) - 1);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    char acc[64];
    EVP_Digest(in, klen + sizeof(guid) - 1, md, &mdlen, EVP_sha1(), NULL);
    EVP_EncodeBlock((unsigned char *)acc, md, (int)mdlen);
    char resp[256];
    int n = snprintf(resp, sizeof(resp),
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\n\r\n",
                     acc);
    conn_write(c, resp, (size_t)n);
    if (wslay_event_context_server_init(&c->ws, &g_ws_callbacks, c) != 0)
        return -1;
    wslay_event_config_set_max_recv_msg_length(c->ws, MAX_MSG);
    static const char open_pkt[] =
        "0{\"sid\":\"floorfloorfloorfloor\",\"upgrades\":[],\"pingInterval\":25000,\"pingTimeout\":20000,"
        "\"maxPayload\":1000000}";
    queue_text(c, open_pkt, sizeof(open_pkt) - 1);
    c->next = F.head;
    if (F.head)
        F.head->prev = c;
    F.head = c;
    return 0;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)h;
    (void)hint;
    *buf = uv_buf_init(g_readbuf, sizeof(g_readbuf));
}

static void ws_feed(fconn_t *c, const uint8_t *p, size_t n)
{
    c->in = p;
    c->inlen = n;
    if (wslay_event_recv(c->ws) != 0 || wslay_event_send(c->ws) != 0 ||
        (!wslay_event_want_read(c->ws) && !wslay_event_want_write(c->ws)))
        conn_close(c);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    fconn_t *c = container_of((uv_tcp_t *)s, fconn_t, tcp);
    if (nread < 0) {
        conn_close(c);
        return;
    }
    if (nread == 0 || c->closing)
        return;
    if (c->ws) {
        ws_feed(c, (const uint8_t *)buf->base, (size_t)nread);
        return;
    }
    if (c->hslen + (size_t)nread > MAX_HANDSHAKE) {
        conn_close(c);
        return;
    }
    c->hs = realloc(c->hs, c->hslen + (size_t)nread + 1);
    if (!c->hs)
        abort();
    memcpy(c->hs + c->hslen, buf->base, (size_t)nread);
    c->hslen += (size_t)nread;
    c->hs[c->hslen] = 0;
    char *end = strstr(c->hs, "\r\n\r\n");
    if (!end)
        return;
    size_t used = (size_t)(end + 4 - c->hs);
    if (handshake(c) != 0) {
        static const char bad[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        conn_write(c, bad, sizeof(bad) - 1);
        conn_close(c);
        return;
    }
    /* frames that came with the request (none, normally), then the open packet goes out */
    char *rest = c->hs;
    size_t restlen = c->hslen - used;
    c->hs = NULL;
    c->hslen = 0;
    ws_feed(c, (const uint8_t *)rest + used, restlen);
    free(rest);
}

static void on_connection(uv_stream_t *server, int status)
{
    if (status < 0)
        return;
    fconn_t *c = calloc(1, sizeof(*c));
    if (!c)
        abort();
    uv_tcp_init(F.loop, &c->tcp);
    F.nconns++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

int main(int argc, char **argv)
{
    int port = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
            port = atoi(argv[++i]);
        else if (strcmp(argv[i], "--batch") == 0)
            F.batch = 1;
        else {
            fprintf(stderr, "usage: floor --port N [--batch]\n");
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    F.loop = uv_default_loop();
    uv_check_init(F.loop, &F.flush);
    uv_check_start(&F.flush, on_flush);
    uv_unref((uv_handle_t *)&F.flush);
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", port, &sa);
    uv_tcp_init(F.loop, &F.listener);
    int r = uv_tcp_bind(&F.listener, (const struct sockaddr *)&sa, 0);
    if (r == 0)
        r = uv_listen((uv_stream_t *)&F.listener, 511, on_connection);
    if (r != 0) {
        fprintf(stderr, "floor: listen: %s\n", uv_strerror(r));
        return 1;
    }
    struct sockaddr_storage ss;
    int sl = sizeof(ss);
    uv_tcp_getsockname(&F.listener, (struct sockaddr *)&ss, &sl);
    fprintf(stderr, "floor listening on http://127.0.0.1:%d\n", ntohs(((struct sockaddr_in *)&ss)->sin_port));
    return uv_run(F.loop, UV_RUN_DEFAULT);
}
