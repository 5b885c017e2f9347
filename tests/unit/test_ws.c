/* ws over a real loopback connection: http accepts the upgrade, the client is a plain socket that
 * sends masked frames and parses the server's frames. */
#include <stdlib.h>
#include <unistd.h>
#include <zlib.h>

#include "http.h"
#include "loopback.h"
#include "net.h"
#include "test.h"
#include "ws.h"

typedef struct {
    lb_t lb;
    http_limits_t lim;
    http_handler_t h;
    ws_handler_t wh;
    ws_limits_t wlim;
    ws_conn_t *ws[4];
    int nws;
    int echo;     /* echo messages back */
    int close_on; /* ws_close() when a message arrives */
    int nmsg;
    int nclosed;
    int why;   /* last ws_close_reason_t */
    buf_t log; /* "T:msg\n" / "B:msg\n" */
} srv_t;

static void on_message(ws_conn_t *ws, int binary, const char *data, size_t len, void *ud)
{
    srv_t *s = ud;
    s->nmsg++;
    buf_appendstr(&s->log, binary ? "B:" : "T:");
    buf_append(&s->log, data, len);
    buf_appendc(&s->log, '\n');
    if (s->echo) {
        rbuf_t *b = rbuf_from(data, len);
        if (binary)
            b->flags |= RBUF_BINARY;
        ws_send(ws, b);
        rbuf_unref(b);
    }
    if (s->close_on)
        ws_close(ws, 4000, "bye");
}

static void on_wsclose(ws_conn_t *ws, ws_close_reason_t why, void *ud)
{
    srv_t *s = ud;
    s->nclosed++;
    s->why = (int)why;
    for (int i = 0; i < s->nws; i++)
        if (s->ws[i] == ws)
            s->ws[i] = NULL;
}

static void on_request(http_req_t *req, void *data)
{
    srv_t *s = data;
    const char *err;
    if (ws_check_request(req, &s->wlim, &err) != 0) {
        http_respond(req, 400, NULL, 0, err, strlen(err));
        return;
    }
    http_hdr_t extra[] = {{"X-Extra", "1"}};
    ws_conn_t *ws = ws_accept(req, extra, 1, &s->wh, &s->wlim, s);
    s->ws[s->nws++] = ws;
    ws_start(ws);
}

static void on_accept(net_conn_t *c, void *data)
{
    srv_t *s = data;
    http_conn_new(c, &s->h, &s->lim, s);
}

static void srv_start(srv_t *s)
{
    memset(s, 0, sizeof(*s));
    s->lim = (http_limits_t){.max_head = 4096, .max_headers = 32, .max_url = 256, .max_body = 1000};
    s->h.on_request = on_request;
    s->wh.on_message = on_message;
    s->wh.on_close = on_wsclose;
    s->wlim.max_message = 300;
    CHECK_EQ_INT(lb_start(&s->lb, on_accept, s), 0);
}

static void srv_stop(srv_t *s)
{
    CHECK_EQ_INT(lb_stop(&s->lb), 0);
    buf_free(&s->log);
}

#define HANDSHAKE "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n" LB_WS_HEADERS "\r\n"
#define RESP101                                                                                                        \
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"                                \
    "Sec-WebSocket-Accept: " LB_WS_ACCEPT "\r\nX-Extra: 1\r\n\r\n"

/* Connects and completes the handshake, offering `offer` as Sec-WebSocket-Extensions (NULL: none)
 * and checking that the 101 answers `answer` (NULL: no extension); `extra` bytes are sent in the
 * same write. */
static int ws_client_ext(srv_t *s, const char *offer, const char *answer, const void *extra, size_t nextra)
{
    int fd = lb_connect(&s->lb);
    buf_t out = BUF_INIT, in = BUF_INIT, want = BUF_INIT;
    buf_append(&out, HANDSHAKE, sizeof(HANDSHAKE) - 3); /* without the blank line */
    if (offer != NULL) {
        buf_appendstr(&out, "Sec-WebSocket-Extensions: ");
        buf_appendstr(&out, offer);
        buf_appendstr(&out, "\r\n");
    }
    buf_appendstr(&out, "\r\n");
    buf_append(&out, extra, nextra);
    lb_send(fd, out.base, out.len);
    buf_append(&want, RESP101, sizeof(RESP101) - 1 - 14); /* up to X-Extra */
    if (answer != NULL) {
        buf_appendstr(&want, "Sec-WebSocket-Extensions: ");
        buf_appendstr(&want, answer);
        buf_appendstr(&want, "\r\n");
    }
    buf_appendstr(&want, "X-Extra: 1\r\n\r\n");
    lb_pump(&s->lb, fd, &in, want.len);
    CHECK(in.len == want.len && memcmp(in.base, want.base, in.len) == 0);
    buf_free(&out);
    buf_free(&in);
    buf_free(&want);
    return fd;
}

static int ws_client(srv_t *s, const void *extra, size_t nextra)
{
    return ws_client_ext(s, NULL, NULL, extra, nextra);
}

/* Reads one server frame; nothing more than that frame must have been sent. Returns its first
 * byte (FIN + opcode), or -1. */
static int read_frame(srv_t *s, int fd, buf_t *payload)
{
    buf_t in = BUF_INIT;
    int op = lb_ws_read(&s->lb, fd, &in, payload);
    CHECK_EQ_INT(in.len, 0);
    buf_free(&in);
    return op;
}

TEST(accept_key)
{
    char out[29];
    ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", 24, out);
    CHECK(strcmp(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") == 0);
}

TEST(frame_headers)
{
    static const struct {
        size_t len;
        int binary;
        uint8_t hdr;
        uint8_t bytes[10];
    } v[] = {
        {0, 0, 2, {0x81, 0}},
        {125, 1, 2, {0x82, 125}},
        {126, 0, 4, {0x81, 126, 0, 126}},
        {65535, 0, 4, {0x81, 126, 0xff, 0xff}},
        {65536, 1, 10, {0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0}},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        rbuf_t *b = rbuf_new(v[i].len);
        if (v[i].binary)
            b->flags |= RBUF_BINARY;
        CHECK(ws_frame(b) == b);
        CHECK_EQ_INT(b->hdr, v[i].hdr);
        CHECK(b->flags & RBUF_FRAMED);
        CHECK(memcmp(b->data + RBUF_HEADROOM - b->hdr, v[i].bytes, v[i].hdr) == 0);
        ws_frame(b); /* once: a second call changes nothing */
        CHECK_EQ_INT(b->hdr, v[i].hdr);
        rbuf_unref(b);
    }
}

TEST(messages_and_idle_context)
{
    srv_t s;
    srv_start(&s);
    s.echo = 1;
    int fd = ws_client(&s, NULL, 0);
    buf_t p = BUF_INIT;
    CHECK_EQ_INT(s.nws, 1);
    CHECK(!ws_has_ctx(s.ws[0]));
    lb_ws_send(fd, 1, 1, "hello", 5);
    CHECK_EQ_INT(read_frame(&s, fd, &p), 0x81);
    CHECK_EQ_MEM(p.base, p.len, "hello");
    CHECK(!ws_has_ctx(s.ws[0])); /* released after a whole message */
    lb_ws_send(fd, 1, 2, "\x00\x01\xff", 3);
    CHECK_EQ_INT(read_frame(&s, fd, &p), 0x82);
    CHECK_EQ_MEM(p.base, p.len, "\x00\x01\xff");
    CHECK(!ws_has_ctx(s.ws[0]));
    /* a 200-byte message (16-bit length) cut at every byte: the context lives while it is partial */
    char m[200];
    memset(m, 'm', sizeof(m));
    buf_t f = BUF_INIT;
    lb_ws_frame(&f, 1, 1, m, sizeof(m));
    for (size_t i = 0; i < f.len; i++) {
        lb_send(fd, f.base + i, 1);
        lb_settle(&s.lb);
        if (i + 1 < f.len)
            CHECK(ws_has_ctx(s.ws[0]));
    }
    CHECK_EQ_INT(read_frame(&s, fd, &p), 0x81);
    CHECK_EQ_INT(p.len, sizeof(m));
    CHECK(!ws_has_ctx(s.ws[0]));
    CHECK_EQ_INT(s.nmsg, 3);
    /* an empty text message */
    lb_ws_send(fd, 1, 1, "", 0);
    CHECK_EQ_INT(read_frame(&s, fd, &p), 0x81);
    CHECK_EQ_INT(p.len, 0);
    close(fd);
    srv_stop(&s);
    CHECK_EQ_INT(s.nclosed, 1);
    CHECK_EQ_INT(s.why, WS_CLOSED_PEER);
    buf_free(&p);
    buf_free(&f);
}

TEST(fragments_and_ping)
{
    srv_t s;
    srv_start(&s);
    int fd = ws_client(&s, NULL, 0);
    buf_t p = BUF_INIT;
    lb_ws_send(fd, 0, 1, "Hel", 3);
    lb_settle(&s.lb);
    CHECK(ws_has_ctx(s.ws[0])); /* a fragmented message is in progress */
    CHECK_EQ_INT(s.nmsg, 0);
    lb_ws_send(fd, 1, 9, "pp", 2); /* a ping between fragments */
    CHECK_EQ_INT(read_frame(&s, fd, &p), 0x8a);
    CHECK_EQ_MEM(p.base, p.len, "pp");
    CHECK(ws_has_ctx(s.ws[0]));
    lb_ws_send(fd, 1, 0, "lo", 2);
    lb_settle(&s.lb);
    CHECK_EQ_INT(s.nmsg, 1);
    CHECK_EQ_MEM(s.log.base, s.log.len, "T:Hello\n");
    CHECK(!ws_has_ctx(s.ws[0]));
    /* a lone ping: pong, and nothing kept */
    lb_ws_send(fd, 1, 9, "", 0);
    CHECK_EQ_INT(read_frame(&s, fd, &p), 0x8a);
    CHECK(!ws_has_ctx(s.ws[0]));
    close(fd);
    srv_stop(&s);
    buf_free(&p);
}

TEST(handshake_with_frames)
{
    srv_t s;
    srv_start(&s);
    buf_t f = BUF_INIT;
    lb_ws_frame(&f, 1, 1, "early", 5);
    lb_ws_frame(&f, 1, 1, "bird", 4);
    int fd = ws_client(&s, f.base, f.len);
    lb_settle(&s.lb);
    CHECK_EQ_MEM(s.log.base, s.log.len, "T:early\nT:bird\n");
    close(fd);
    srv_stop(&s);
    buf_free(&f);
}

/* Sends `frames`, expects one close frame with `code` back, then EOF, and the given reason. */
static pmd_config_t zcfg = {1, 100, -1, 0, 0, 0, ZIP_DEFAULTS}; /* threshold 100 bytes */
#define ZOFFER "permessage-deflate"

/* Sends frames on a new connection (that offered `offer`, agreed as it is, or NULL: nothing; the
 * server has permessage-deflate on) and expects a close with `code`, then EOF. */
static void expect_close(const char *offer, const void *frames, size_t n, int code, int why)
{
    srv_t s;
    srv_start(&s);
    s.wlim.deflate = &zcfg;
    int fd = ws_client_ext(&s, offer, offer, NULL, 0);
    buf_t p = BUF_INIT, in = BUF_INIT;
    lb_send(fd, frames, n);
    CHECK_EQ_INT(read_frame(&s, fd, &p), 0x88);
    CHECK(p.len >= 2);
    if (p.len >= 2)
        CHECK_EQ_INT((uint8_t)p.base[0] << 8 | (uint8_t)p.base[1], code);
    CHECK(lb_pump(&s.lb, fd, &in, 0)); /* then the server closes */
    CHECK_EQ_INT(in.len, 0);
    close(fd);
    srv_stop(&s);
    CHECK_EQ_INT(s.nclosed, 1);
    CHECK_EQ_INT(s.why, why);
    CHECK_EQ_INT(s.nmsg, 0); /* nothing of a failing message reaches the handler */
    buf_free(&p);
    buf_free(&in);
}

static void expect_ws_close(const void *frames, size_t n, int code, int why)
{
    expect_close(NULL, frames, n, code, why);
}

TEST(close_handshake)
{
    buf_t f = BUF_INIT;
    lb_ws_frame(&f, 1, 8,
                "\x03\xe8"
                "done",
                6);
    expect_ws_close(f.base, f.len, 1000, WS_CLOSED_PEER);
    buf_free(&f);
}

TEST(protocol_errors)
{
    buf_t f = BUF_INIT;
    char big[301];
    memset(big, 'x', sizeof(big));
    lb_ws_frame(&f, 1, 1, big, sizeof(big)); /* over max_message (300) */
    expect_ws_close(f.base, f.len, 1009, WS_CLOSED_ERROR);
    f.len = 0;
    lb_ws_frame(&f, 0, 1, big, 160);
    lb_ws_frame(&f, 1, 0, big, 160); /* 320 bytes in two fragments */
    expect_ws_close(f.base, f.len, 1009, WS_CLOSED_ERROR);
    f.len = 0;
    lb_ws_frame(&f, 1, 1, "\xc3\x28", 2); /* invalid UTF-8 */
    expect_ws_close(f.base, f.len, 1007, WS_CLOSED_ERROR);
    f.len = 0;
    lb_ws_frame(&f, 1, 1, "ab", 2);
    f.base[1] &= 0x7f; /* unmasked client frame */
    buf_t g = BUF_INIT;
    buf_append(&g, f.base, 2);
    buf_append(&g, "ab", 2);
    expect_ws_close(g.base, g.len, 1002, WS_CLOSED_ERROR);
    f.len = 0;
    lb_ws_frame(&f, 1, 0, "x", 1); /* continuation with nothing to continue */
    expect_ws_close(f.base, f.len, 1002, WS_CLOSED_ERROR);
    f.len = 0;
    lb_ws_frame(&f, 0, 9, "x", 1); /* fragmented ping */
    expect_ws_close(f.base, f.len, 1002, WS_CLOSED_ERROR);
    f.len = 0;
    lb_ws_frame(&f, 1, 8, "\x03", 1); /* a close body of 1 byte: no room for a code (wslay would answer
                                  it as an empty close) */
    expect_ws_close(f.base, f.len, 1002, WS_CLOSED_ERROR);
    f.len = 0;
    lb_ws_frame(&f, 0, 1, "4", 1); /* fragments over ws_max_fragments (default 1024), bytes under max */
    for (int i = 0; i < 1100; i++)
        lb_ws_frame(&f, 0, 0, "", 0);
    expect_ws_close(f.base, f.len, 1009, WS_CLOSED_ERROR);
    f.len = 0;
    lb_ws_frame(&f, 0, 2, "4", 1); /* the same, ending with FIN in the same read: not delivered */
    for (int i = 0; i < 1023; i++)
        lb_ws_frame(&f, 0, 0, "", 0);
    lb_ws_frame(&f, 1, 0, "5", 1);
    expect_ws_close(f.base, f.len, 1009, WS_CLOSED_ERROR);
    f.len = 0;
    lb_ws_frame(&f, 0, 1, big, 10); /* 31 fragments of 10 bytes: 310 > 300, each frame under it */
    for (int i = 0; i < 29; i++)
        lb_ws_frame(&f, 0, 0, big, 10);
    lb_ws_frame(&f, 1, 0, big, 10);
    expect_ws_close(f.base, f.len, 1009, WS_CLOSED_ERROR);
    f.len = 0;
    lb_ws_frame(&f, 0, 1, big, 150); /* 300 bytes, then an empty fragment and one more byte */
    lb_ws_frame(&f, 0, 0, big, 150);
    lb_ws_frame(&f, 0, 0, "", 0);
    lb_ws_frame(&f, 1, 0, "x", 1);
    expect_ws_close(f.base, f.len, 1009, WS_CLOSED_ERROR);
    f.len = 0;
    lb_ws_frame(&f, 0, 1, "a\xc3", 2); /* invalid UTF-8 across fragments */
    lb_ws_frame(&f, 1, 0, "\x28", 1);
    expect_ws_close(f.base, f.len, 1007, WS_CLOSED_ERROR);
    f.len = 0;
    lb_ws_frame(&f, 0, 1, "ok", 2); /* invalid UTF-8 in a later fragment, a ping in between */
    lb_ws_frame(&f, 1, 9, "p", 1);
    lb_ws_frame(&f, 1, 0, "\xff", 1);
    buf_t h = BUF_INIT;
    buf_append(&h, f.base, f.len);
    f.len = 0;
    lb_ws_frame(&f, 1, 1, "a\xe2\x82", 3); /* a text message that ends inside a character */
    expect_ws_close(f.base, f.len, 1007, WS_CLOSED_ERROR);
    f.len = 0;
    lb_ws_frame(&f, 0, 1, "\xe2", 1); /* the same, fragmented */
    lb_ws_frame(&f, 1, 0, "\x82", 1);
    expect_ws_close(f.base, f.len, 1007, WS_CLOSED_ERROR);
    {
        /* the ping case: the 1007 close (wslay drops the pong queued before it in the same read) */
        srv_t s;
        srv_start(&s);
        int fd = ws_client(&s, NULL, 0);
        buf_t p = BUF_INIT, in = BUF_INIT;
        lb_send(fd, h.base, h.len);
        lb_pump(&s.lb, fd, &in, 0);
        if (in.len >= 3 && (uint8_t)in.base[0] == 0x8a)
            buf_consume(&in, 3); /* a pong, if this wslay sends it */
        CHECK_EQ_MEM(in.base, in.len, "\x88\x02\x03\xef");
        buf_free(&in);
        close(fd);
        srv_stop(&s);
        CHECK_EQ_INT(s.nmsg, 0);
        buf_free(&p);
    }
    buf_free(&h);
    buf_free(&f);
    buf_free(&g);
}

TEST(pong_before_answer)
{
    srv_t s;
    srv_start(&s);
    s.echo = 1;
    buf_t f = BUF_INIT, p = BUF_INIT;
    lb_ws_frame(&f, 0, 1, "ab", 2);
    lb_ws_frame(&f, 1, 9, "p", 1); /* a ping between the fragments */
    lb_ws_frame(&f, 1, 0, "cd", 2);
    int fd = ws_client(&s, NULL, 0);
    lb_send(fd, f.base, f.len);
    lb_pump(&s.lb, fd, &p, 9);
    CHECK_EQ_MEM(p.base, p.len,
                 "\x8a\x01p"
                 "\x81\x04"
                 "abcd"); /* the pong, then the echo */
    close(fd);
    srv_stop(&s);
    buf_free(&f);
    buf_free(&p);
}

/* Reads and drops what the server has sent so far. */
static void discard(int fd)
{
    char tmp[65536];
    while (read(fd, tmp, sizeof(tmp)) > 0)
        ;
}

/* Runs the loop (reading and dropping what the server sends) until `pred` holds. */
#define RUN_UNTIL(s, fd, pred)                                                                                         \
    for (uint64_t end_ = lb_deadline(); !(pred) && lb_turn(&(s)->lb, fd, end_);)                                       \
    discard(fd)

/* Sends 60 KB messages (echoed) without reading until the server stops reading (the client
 * cannot write for a while). Returns 1 if it stopped; *maxq is the largest output queue seen. */
static int flood(srv_t *s, int fd, ws_conn_t *ws, size_t *maxq)
{
    static char msg[60000];
    buf_t all = BUF_INIT;
    memset(msg, 'm', sizeof(msg));
    for (int i = 0; i < 400; i++) /* 24 MB: more than the socket buffers of both ends hold */
        lb_ws_frame(&all, 1, 2, msg, sizeof(msg));
    size_t off = 0;
    int idle = 0;
    while (off < all.len && idle < 300) {
        ssize_t w = write(fd, all.base + off, all.len - off);
        if (w > 0) {
            off += (size_t)w;
            idle = 0;
        } else {
            idle++;
            usleep(500);
        }
        uv_run(&s->lb.loop, UV_RUN_NOWAIT);
        if (s->nws > 0 && s->ws[s->nws - 1] == ws && ws_queued(ws) > *maxq)
            *maxq = ws_queued(ws);
    }
    int stopped = off < all.len;
    buf_free(&all);
    return stopped;
}

TEST(backpressure_and_close_timeout)
{
    srv_t s;
    srv_start(&s);
    s.echo = 1;
    s.wlim.max_message = 70000;
    s.lim.ws_pause_bytes = 4096;
    s.lim.ws_close_timeout = 50;
    int fd = ws_client(&s, NULL, 0);
    size_t maxq = 0;
    /* a client that sends and never reads: the server stops reading, its queue stays bounded
     * (the threshold plus what one read can produce) */
    CHECK(flood(&s, fd, s.ws[0], &maxq));
    CHECK(maxq > 0);
    CHECK(maxq < 4096 + 2 * 65536 + 64);
    int before = s.nmsg;
    lb_run_for(&s.lb, 50);
    CHECK_EQ_INT(s.nmsg, before); /* paused: nothing more is read */
    /* once the client reads, the queue drains and reading resumes */
    RUN_UNTIL(&s, fd, s.nmsg >= before + 10);
    CHECK(s.nmsg >= before + 10);
    close(fd);
    lb_settle(&s.lb);
    /* a close whose frame cannot be written (the client does not read) ends at the close timeout */
    fd = ws_client(&s, NULL, 0);
    maxq = 0;
    CHECK(flood(&s, fd, s.ws[1], &maxq));
    CHECK(s.ws[1] != NULL && ws_queued(s.ws[1]) > 0);
    int closed = s.nclosed;
    if (s.ws[1] != NULL)
        ws_close(s.ws[1], 1000, "");
    LB_UNTIL(&s.lb, s.nclosed != closed);
    CHECK_EQ_INT(s.nclosed, closed + 1);
    CHECK_EQ_INT(s.why, WS_CLOSED_LOCAL);
    close(fd);
    srv_stop(&s);
}

TEST(server_close_and_shared_buffer)
{
    srv_t s;
    srv_start(&s);
    int a = ws_client(&s, NULL, 0), b = ws_client(&s, NULL, 0);
    buf_t p = BUF_INIT, in = BUF_INIT;
    CHECK_EQ_INT(s.nws, 2);
    /* encode once, send to both */
    rbuf_t *m = rbuf_from("broadcast", 9);
    ws_send(s.ws[0], m);
    ws_send(s.ws[1], m);
    /* queued by reference on both (one buffer, no copy) until the end of the loop turn */
    CHECK_EQ_INT(m->refs, 3);
    CHECK_EQ_INT(read_frame(&s, a, &p), 0x81);
    CHECK_EQ_MEM(p.base, p.len, "broadcast");
    CHECK_EQ_INT(read_frame(&s, b, &p), 0x81);
    CHECK_EQ_MEM(p.base, p.len, "broadcast");
    CHECK_EQ_INT(m->refs, 1); /* the flush released both references */
    rbuf_unref(m);
    /* the handler closes: close frame with code and reason, then EOF */
    s.close_on = 1;
    lb_ws_send(a, 1, 1, "x", 1);
    CHECK_EQ_INT(read_frame(&s, a, &p), 0x88);
    CHECK_EQ_MEM(p.base, p.len,
                 "\x0f\xa0"
                 "bye");
    CHECK(lb_pump(&s.lb, a, &in, 0));
    CHECK_EQ_INT(s.nclosed, 1);
    CHECK_EQ_INT(s.why, WS_CLOSED_LOCAL);
    CHECK(s.ws[0] == NULL);
    /* ws_abort: no close frame */
    ws_abort(s.ws[1]);
    in.len = 0;
    CHECK(lb_pump(&s.lb, b, &in, 0));
    CHECK_EQ_INT(in.len, 0);
    close(a);
    close(b);
    srv_stop(&s);
    CHECK_EQ_INT(s.nclosed, 2);
    buf_free(&p);
    buf_free(&in);
}

TEST(bad_handshake)
{
    srv_t s;
    srv_start(&s);
    int fd = lb_connect(&s.lb);
    CHECK(fd >= 0);
    const char *req = "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\n"
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    lb_send(fd, req, strlen(req));
    buf_t in = BUF_INIT;
    CHECK(lb_pump(&s.lb, fd, &in, 0)); /* answered, then closed: an unanswered upgrade cannot go on */
    buf_appendc(&in, '\0');
    CHECK(strncmp(in.base, "HTTP/1.1 400 Bad Request\r\n", 26) == 0);
    CHECK(strstr(in.base, "unsupported Sec-WebSocket-Version") != NULL);
    close(fd);
    srv_stop(&s);
    CHECK_EQ_INT(s.nws, 0);
    buf_free(&in);
}

/* Sends the frames f in two writes cut at `cut` (the server reads the first part before the second
 * is sent) and expects one message, logged as `want`. */
static void send_cut(srv_t *s, int fd, const buf_t *f, size_t cut, const buf_t *want)
{
    int n = s->nmsg;
    s->log.len = 0;
    lb_send(fd, f->base, cut);
    if (cut > 0)
        RUN_UNTIL(s, fd, s->ws[0] == NULL || ws_has_ctx(s->ws[0])); /* a partial frame or message is held */
    CHECK_EQ_INT(s->nmsg, n);
    lb_send(fd, f->base + cut, f->len - cut);
    RUN_UNTIL(s, fd, s->ws[0] == NULL || (s->nmsg > n && !ws_has_ctx(s->ws[0])));
    CHECK_EQ_INT(s->nmsg, n + 1);
    CHECK(s->log.len == want->len && memcmp(s->log.base, want->base, want->len) == 0);
    CHECK(s->ws[0] != NULL && !ws_has_ctx(s->ws[0]));
}

/* Each message, whole or in fragments, cut between two reads at every byte (every byte around the
 * 4 KB wslay reads at a time for a long one): the handler gets the same message each time. */
TEST(messages_cut_everywhere)
{
    srv_t s;
    srv_start(&s);
    s.wlim.max_message = 20000;
    int fd = ws_client(&s, NULL, 0);
    uint8_t bin[256], big[9000];
    for (size_t i = 0; i < sizeof(bin); i++)
        bin[i] = (uint8_t)i; /* binary: any byte, no UTF-8 check */
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (uint8_t) "\xc3\xa9-\xe2\x82\xac-"[i % 8]; /* "é-€-" repeated: UTF-8 split across chunks */
    struct {
        int fin, op;
        const void *p;
        size_t len;
    } v[][6] = {
        {{1, 1, "h\xc3\xa9llo \xe2\x82\xac", 10}},
        {{0, 1, "h\xc3", 2}, {1, 9, "pi", 2}, {0, 0, "\xa9llo \xe2\x82", 7}, {1, 0, "\xac", 1}},
        {{0, 1, "\xf0", 1}, {0, 0, "\x9f", 1}, {0, 0, "\x98", 1}, {1, 0, "\x80", 1}}, /* U+1F600 byte by byte */
        {{1, 2, bin, sizeof(bin)}},
        {{0, 2, bin, 100}, {0, 0, "", 0}, {1, 0, bin + 100, 156}},
        {{1, 1, "", 0}},
        {{1, 2, "", 0}},
        {{0, 1, "", 0}, {0, 0, "", 0}, {1, 0, "", 0}},
        {{0, 2, "", 0}, {1, 0, "z", 1}},
        {{1, 1, big, 8000}},                           /* 16-bit length, two 4 KB reads */
        {{0, 1, big, 5000}, {1, 0, big + 5000, 4000}}, /* big + 5000 starts with '-' */
    };
    buf_t f = BUF_INIT, want = BUF_INIT;
    for (size_t m = 0; m < sizeof(v) / sizeof(v[0]); m++) {
        f.len = want.len = 0;
        int binary = 0;
        for (int k = 0; k < 6 && v[m][k].p != NULL; k++) {
            lb_ws_frame(&f, v[m][k].fin, v[m][k].op, v[m][k].p, v[m][k].len);
            if (v[m][k].op == 2)
                binary = 1;
            if (v[m][k].op < 8)
                buf_append(&want, v[m][k].p, v[m][k].len);
        }
        buf_t line = BUF_INIT;
        buf_appendstr(&line, binary ? "B:" : "T:");
        buf_append(&line, want.base, want.len);
        buf_appendc(&line, '\n');
        for (size_t cut = 0; cut < f.len; cut++) {
            if (f.len > 1000 && cut > 20 && (cut < 4080 || cut > 4110) && cut + 20 < f.len && cut % 499 != 0)
                continue;
            send_cut(&s, fd, &f, cut, &line);
            if (s.ws[0] == NULL) {
                fprintf(stderr, "  message %zu cut at %zu: closed\n", m, cut);
                break;
            }
        }
        buf_free(&line);
    }
    /* several messages in one read, some whole, some not */
    f.len = 0;
    lb_ws_frame(&f, 1, 1, "one", 3);
    lb_ws_frame(&f, 0, 1, "tw", 2);
    lb_ws_frame(&f, 1, 0, "o", 1);
    lb_ws_frame(&f, 1, 2, "", 0);
    lb_ws_frame(&f, 1, 1, big, 6000);
    lb_ws_frame(&f, 1, 1, "four", 4);
    s.log.len = 0;
    int n = s.nmsg;
    lb_send(fd, f.base, f.len);
    RUN_UNTIL(&s, fd, s.nmsg == n + 5);
    want.len = 0;
    buf_appendstr(&want, "T:one\nT:two\nB:\nT:");
    buf_append(&want, big, 6000);
    buf_appendstr(&want, "\nT:four\n");
    CHECK(s.log.len == want.len && memcmp(s.log.base, want.base, want.len) == 0);
    CHECK(!ws_has_ctx(s.ws[0]));
    close(fd);
    srv_stop(&s);
    buf_free(&f);
    buf_free(&want);
}

/* Connections take turns with the spare wslay context: each holds its own while a frame is
 * partial, gives it back when idle, and gets its own message limit whoever held the context before.
 * A context that saw a violation is not lent again: the others keep parsing from a clean state. */
TEST(context_reuse)
{
    srv_t s;
    srv_start(&s);
    s.echo = 1;
    int a = ws_client(&s, NULL, 0); /* ws[0]: max_message 300 */
    s.wlim.max_message = 10;
    int b = ws_client(&s, NULL, 0); /* ws[1]: max_message 10 */
    s.wlim.max_message = 300;
    int c = ws_client(&s, NULL, 0); /* ws[2]: max_message 300 */
    CHECK_EQ_INT(s.nws, 3);
    buf_t p = BUF_INIT, fa = BUF_INIT, fc = BUF_INIT, in = BUF_INIT;
    char m[200];
    memset(m, 'a', sizeof(m));
    lb_ws_frame(&fa, 1, 1, m, sizeof(m));
    lb_ws_frame(&fc, 0, 2, "\x01\x02", 2);
    lb_ws_frame(&fc, 1, 9, "pi", 2);
    lb_ws_frame(&fc, 1, 0, "\x03", 1);
    /* a and c cut at every byte, interleaved: both hold a context at once */
    size_t n = fa.len > fc.len ? fa.len : fc.len;
    for (size_t i = 0; i < n; i++) {
        if (i < fa.len)
            lb_send(a, fa.base + i, 1);
        if (i < fc.len)
            lb_send(c, fc.base + i, 1);
        lb_settle(&s.lb);
        if (i + 1 < fa.len)
            CHECK(ws_has_ctx(s.ws[0]));
        if (i + 1 < fc.len)
            CHECK(ws_has_ctx(s.ws[2]));
        CHECK(!ws_has_ctx(s.ws[1]));
    }
    CHECK_EQ_INT(read_frame(&s, a, &p), 0x81);
    CHECK_EQ_INT(p.len, sizeof(m));
    lb_pump(&s.lb, c, &in, 4 + 5);
    CHECK_EQ_MEM(in.base, in.len, "\x8a\x02pi\x82\x03\x01\x02\x03"); /* the pong, then the echo */
    CHECK(!ws_has_ctx(s.ws[0]));
    CHECK(!ws_has_ctx(s.ws[2]));
    /* b's limit is its own (10), a's and c's theirs (300), whoever held the context before */
    lb_ws_send(b, 1, 1, "0123456789", 10);
    CHECK_EQ_INT(read_frame(&s, b, &p), 0x81);
    CHECK(!ws_has_ctx(s.ws[1]));
    lb_ws_send(c, 1, 1, "eleven byte", 11);
    CHECK_EQ_INT(read_frame(&s, c, &p), 0x81);
    CHECK_EQ_MEM(p.base, p.len, "eleven byte");
    /* a holds a context while b goes over its limit and is closed (its context is freed) */
    lb_send(a, fa.base, 3);
    lb_settle(&s.lb);
    CHECK(ws_has_ctx(s.ws[0]));
    lb_ws_send(b, 1, 1, "eleven byte", 11);
    CHECK_EQ_INT(read_frame(&s, b, &p), 0x88);
    CHECK_EQ_MEM(p.base, p.len, "\x03\xf1"); /* 1009 */
    in.len = 0;
    CHECK(lb_pump(&s.lb, b, &in, 0));
    CHECK_EQ_INT(s.nclosed, 1);
    CHECK(s.ws[1] == NULL);
    lb_ws_send(c, 1, 1, "after", 5); /* c takes the spare (or a new context), not b's */
    CHECK_EQ_INT(read_frame(&s, c, &p), 0x81);
    CHECK_EQ_MEM(p.base, p.len, "after");
    CHECK(ws_has_ctx(s.ws[0]));
    lb_send(a, fa.base + 3, fa.len - 3);
    CHECK_EQ_INT(read_frame(&s, a, &p), 0x81);
    CHECK_EQ_INT(p.len, sizeof(m));
    CHECK(!ws_has_ctx(s.ws[0]));
    /* a closes cleanly while c holds a context; c then finishes its message */
    lb_send(c, fc.base, 4);
    lb_settle(&s.lb);
    CHECK(ws_has_ctx(s.ws[2]));
    lb_ws_send(a, 1, 8, "\x03\xe8", 2);
    CHECK_EQ_INT(read_frame(&s, a, &p), 0x88);
    in.len = 0;
    CHECK(lb_pump(&s.lb, a, &in, 0));
    CHECK_EQ_INT(s.nclosed, 2);
    CHECK_EQ_INT(s.why, WS_CLOSED_PEER);
    lb_send(c, fc.base + 4, fc.len - 4);
    in.len = 0;
    lb_pump(&s.lb, c, &in, 4 + 5);
    CHECK_EQ_MEM(in.base, in.len, "\x8a\x02pi\x82\x03\x01\x02\x03");
    CHECK(!ws_has_ctx(s.ws[2]));
    close(a);
    close(b);
    close(c);
    srv_stop(&s);
    CHECK_EQ_INT(s.nclosed, 3);
    buf_free(&p);
    buf_free(&fa);
    buf_free(&fc);
    buf_free(&in);
}

/* ---------------------------------------------------------------- permessage-deflate */


static int ws_client_z(srv_t *s, const char *offer, const char *answer)
{
    return ws_client_ext(s, offer, answer, NULL, 0);
}

/* Inflates a server message on its own (the server keeps no context). */
static void inflate_server(const buf_t *p, buf_t *out)
{
    pmd_inflater_t *z = pmd_inflater_new();
    int over;
    out->len = 0;
    pmd_inflate_start(z, 15, NULL);
    CHECK_EQ_INT(pmd_inflate(z, p->base, p->len, out, 1 << 20), PMD_OK);
    CHECK_EQ_INT(pmd_inflate_finish(z, out, 1 << 20, &over), PMD_OK);
    pmd_inflater_free(z);
}

static const zip_params_t zdef = ZIP_DEFAULTS;

TEST(deflate_messages_both_ways)
{
    srv_t s;
    srv_start(&s);
    s.wlim.deflate = &zcfg;
    s.wlim.max_message = 3000;
    s.echo = 1;
    int fd = ws_client_z(&s, "permessage-deflate; client_max_window_bits", "permessage-deflate");
    buf_t p = BUF_INIT, m = BUF_INIT;
    size_t win = 0;
    CHECK(ws_deflate_state(s.ws[0], &win) == 1 && win == 0);
    char text[1000];
    unsigned r = 3;
    for (size_t i = 0; i < sizeof(text); i++) /* letters at random: compresses to ~60%, alone */
        text[i] = (char)('a' + ((r = r * 1103515245u + 12345u) >> 16) % 26);
    /* a compressed text message in: the handler gets it inflated; the echo (>= 100) goes out
     * compressed (RSV1), a short one as it is */
    rbuf_t *c = pmd_compress(&zdef, 15, text, sizeof(text));
    lb_ws_send(fd, 1, 0x41, rbuf_payload(c), c->len);
    CHECK_EQ_INT(read_frame(&s, fd, &p), 0xc1);
    CHECK(p.len < sizeof(text));
    inflate_server(&p, &m);
    CHECK(m.len == sizeof(text) && memcmp(m.base, text, m.len) == 0);
    CHECK_EQ_INT(s.nmsg, 1);
    CHECK(!ws_has_ctx(s.ws[0])); /* idle: the inflate stream went back with the context... */
    ws_deflate_state(s.ws[0], &win);
    CHECK_EQ_INT(win, sizeof(text)); /* ...and the client's window stayed, its exact size */
    /* the same message again, compressed against the first (context takeover) */
    z_stream d;
    memset(&d, 0, sizeof(d));
    deflateInit2(&d, 6, Z_DEFLATED, -15, 8, 0);
    unsigned char cb[2048];
    for (int k = 0; k < 2; k++) {
        d.next_in = (Bytef *)text;
        d.avail_in = sizeof(text);
        d.next_out = cb;
        d.avail_out = sizeof(cb);
        deflate(&d, Z_SYNC_FLUSH);
        size_t clen = sizeof(cb) - d.avail_out - 4;
        if (k == 1) {
            CHECK(clen < 40); /* it refers to the first: ~600 bytes alone */
            /* cut at every byte: pieces arrive over several reads */
            for (size_t i = 0; i < clen; i++) {
                buf_t f = BUF_INIT;
                lb_ws_frame(&f, i + 1 == clen, i == 0 ? 0x41 : 0, cb + i, 1);
                lb_send(fd, f.base, f.len);
                buf_free(&f);
                lb_settle(&s.lb);
            }
        } else {
            lb_ws_send(fd, 1, 0x41, cb, clen);
        }
        CHECK_EQ_INT(read_frame(&s, fd, &p), 0xc1);
        inflate_server(&p, &m);
        CHECK(m.len == sizeof(text) && memcmp(m.base, text, m.len) == 0);
    }
    deflateEnd(&d);
    lb_ws_send(fd, 1, 1, "short", 5); /* uncompressed in, under the threshold out */
    CHECK_EQ_INT(read_frame(&s, fd, &p), 0x81);
    CHECK_EQ_MEM(p.base, p.len, "short");
    /* binary, compressed */
    char bin[500];
    memset(bin, 0xee, sizeof(bin));
    rbuf_unref(c);
    c = pmd_compress(&zdef, 15, bin, sizeof(bin));
    lb_ws_send(fd, 1, 0x42, rbuf_payload(c), c->len);
    CHECK_EQ_INT(read_frame(&s, fd, &p), 0xc2);
    inflate_server(&p, &m);
    CHECK(m.len == sizeof(bin) && memcmp(m.base, bin, m.len) == 0);
    CHECK_EQ_INT(s.nmsg, 5);
    rbuf_unref(c);
    close(fd);
    srv_stop(&s);
    buf_free(&p);
    buf_free(&m);
}

TEST(deflate_once_for_every_recipient)
{
    srv_t s;
    srv_start(&s);
    s.wlim.deflate = &zcfg;
    int a = ws_client_z(&s, "permessage-deflate", "permessage-deflate");
    int b = ws_client_z(&s, "permessage-deflate; client_no_context_takeover",
                        "permessage-deflate; client_no_context_takeover");
    int c = ws_client(&s, NULL, 0); /* no compression offered */
    int d =
        ws_client_z(&s, "permessage-deflate; server_max_window_bits=9", "permessage-deflate; server_max_window_bits=9");
    buf_t p = BUF_INIT, pa = BUF_INIT, m = BUF_INIT;
    char text[2000];
    for (size_t i = 0; i < sizeof(text); i++)
        text[i] = "socket.io "[i % 10];
    rbuf_t *msg = rbuf_from(text, sizeof(text));
    for (int i = 0; i < 4; i++)
        ws_send(s.ws[i], msg);
    CHECK(msg->alt != NULL);         /* compressed once, kept with the message */
    CHECK_EQ_INT(msg->alt->refs, 3); /* the message's, and a and b's queued writes */
    CHECK_EQ_INT(read_frame(&s, a, &pa), 0xc1);
    CHECK_EQ_INT(read_frame(&s, b, &p), 0xc1);
    CHECK(p.len == pa.len && memcmp(p.base, pa.base, p.len) == 0); /* the same bytes */
    inflate_server(&p, &m);
    CHECK(m.len == sizeof(text) && memcmp(m.base, text, m.len) == 0);
    CHECK_EQ_INT(read_frame(&s, c, &p), 0x81); /* as it is */
    CHECK_EQ_INT(p.len, sizeof(text));
    CHECK_EQ_INT(read_frame(&s, d, &p), 0xc1); /* its own, for a 512-byte window */
    inflate_server(&p, &m);
    CHECK(m.len == sizeof(text) && memcmp(m.base, text, m.len) == 0);
    CHECK_EQ_INT(msg->alt->refs, 1);
    rbuf_unref(msg);
    /* incompressible: sent as it is, and flagged so that the next recipient does not try again */
    char rnd[300];
    unsigned r = 5;
    for (size_t i = 0; i < sizeof(rnd); i++)
        rnd[i] = (char)((r = r * 1103515245u + 12345u) >> 16);
    msg = rbuf_from(rnd, sizeof(rnd));
    msg->flags |= RBUF_BINARY;
    ws_send(s.ws[3], msg); /* first to the client with its own window: the same outcome */
    CHECK(msg->alt == NULL && (msg->flags & RBUF_NODEFLATE));
    CHECK_EQ_INT(msg->refs, 2); /* the caller's and d's queued write, nothing released */
    ws_send(s.ws[0], msg);
    CHECK(msg->alt == NULL && (msg->flags & RBUF_NODEFLATE));
    CHECK_EQ_INT(read_frame(&s, a, &p), 0x82);
    CHECK(p.len == sizeof(rnd) && memcmp(p.base, rnd, p.len) == 0);
    CHECK_EQ_INT(read_frame(&s, d, &p), 0x82);
    CHECK(p.len == sizeof(rnd) && memcmp(p.base, rnd, p.len) == 0);
    rbuf_unref(msg);
    close(a);
    close(b);
    close(c);
    close(d);
    srv_stop(&s);
    buf_free(&p);
    buf_free(&pa);
    buf_free(&m);
}

/* An Engine.IO v3 binary message (ws_send_prefixed: its type byte, then the shared bytes): as it
 * is under the threshold or to a client without the extension, compressed whole (the byte
 * included) from the threshold, the shared message left as it was. */
TEST(deflate_prefixed)
{
    srv_t s;
    srv_start(&s);
    s.wlim.deflate = &zcfg;
    int a = ws_client_z(&s, "permessage-deflate", "permessage-deflate");
    int c = ws_client(&s, NULL, 0);
    buf_t p = BUF_INIT, m = BUF_INIT;
    char bin[600];
    for (size_t i = 0; i < sizeof(bin); i++)
        bin[i] = "binary "[i % 7];
    for (size_t n = 0; n <= sizeof(bin); n += 100) { /* 98 and 99 bytes + the type byte: under 100 */
        size_t len = n == 100 ? 98 : n;
        rbuf_t *msg = rbuf_from(bin, len);
        msg->flags |= RBUF_BINARY;
        ws_send_prefixed(s.ws[0], 4, msg);
        ws_send_prefixed(s.ws[1], 4, msg);
        CHECK(msg->alt == NULL && msg->refs >= 1);
        int op = read_frame(&s, a, &p);
        if (len + 1 >= 100) {
            CHECK_EQ_INT(op, 0xc2);
            CHECK(p.len < len);
            inflate_server(&p, &m);
        } else {
            CHECK_EQ_INT(op, 0x82);
            m.len = 0;
            buf_append(&m, p.base, p.len);
        }
        CHECK(m.len == len + 1 && m.base[0] == 4 && memcmp(m.base + 1, bin, len) == 0);
        CHECK_EQ_INT(read_frame(&s, c, &p), 0x82);
        CHECK(p.len == len + 1 && p.base[0] == 4 && memcmp(p.base + 1, bin, len) == 0);
        rbuf_unref(msg);
    }
    close(a);
    close(c);
    srv_stop(&s);
    buf_free(&p);
    buf_free(&m);
}

TEST(deflate_violations)
{
    buf_t f = BUF_INIT;
    char zeros[100000];
    memset(zeros, 0, sizeof(zeros));
    rbuf_t *bomb = pmd_compress(&zdef, 15, zeros, sizeof(zeros)); /* ~100 bytes -> 100 KB > 3000 */
    lb_ws_frame(&f, 1, 0x41, rbuf_payload(bomb), bomb->len);
    expect_close(ZOFFER, f.base, f.len, 1009, WS_CLOSED_ERROR);
    f.len = 0; /* the same bomb in 4 fragments */
    size_t q = bomb->len / 4;
    lb_ws_frame(&f, 0, 0x42, rbuf_payload(bomb), q);
    lb_ws_frame(&f, 0, 0, rbuf_payload(bomb) + q, q);
    lb_ws_frame(&f, 0, 0, rbuf_payload(bomb) + 2 * q, q);
    lb_ws_frame(&f, 1, 0, rbuf_payload(bomb) + 3 * q, bomb->len - 3 * q);
    expect_close(ZOFFER, f.base, f.len, 1009, WS_CLOSED_ERROR);
    rbuf_unref(bomb);
    f.len = 0;
    lb_ws_frame(&f, 1, 0x41, "\xff\xff\xff\xff", 4); /* not deflate data */
    expect_close(ZOFFER, f.base, f.len, 1007, WS_CLOSED_ERROR);
    f.len = 0;
    rbuf_t *bad = pmd_compress(&zdef, 15, "\xc3\x28 not UTF-8 .................................", 45);
    lb_ws_frame(&f, 1, 0x41, rbuf_payload(bad), bad->len); /* text that is not UTF-8 once inflated */
    expect_close(ZOFFER, f.base, f.len, 1007, WS_CLOSED_ERROR);
    f.len = 0;
    lb_ws_frame(&f, 1, 0x42, rbuf_payload(bad), bad->len - 1); /* cut: no block ends there */
    expect_close(ZOFFER, f.base, f.len, 1007, WS_CLOSED_ERROR);
    f.len = 0;
    lb_ws_frame(&f, 1, 0x41, rbuf_payload(bad), bad->len); /* RSV1 where it was not agreed */
    expect_close(NULL, f.base, f.len, 1002, WS_CLOSED_ERROR);
    f.len = 0;
    lb_ws_frame(&f, 0, 0x41, rbuf_payload(bad), 3); /* RSV1 on a continuation frame */
    lb_ws_frame(&f, 1, 0x40, rbuf_payload(bad) + 3, bad->len - 3);
    expect_close(ZOFFER, f.base, f.len, 1002, WS_CLOSED_ERROR);
    f.len = 0;
    lb_ws_frame(&f, 1, 0x49, "p", 1); /* RSV1 on a ping */
    expect_close(ZOFFER, f.base, f.len, 1002, WS_CLOSED_ERROR);
    rbuf_unref(bad);
    buf_free(&f);
}

TEST(deflate_refused_offer)
{
    srv_t s;
    srv_start(&s);
    s.wlim.deflate = &zcfg;
    int fd = lb_connect(&s.lb);
    buf_t out = BUF_INIT, in = BUF_INIT;
    buf_append(&out, HANDSHAKE, sizeof(HANDSHAKE) - 3);
    buf_appendstr(&out, "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=20\r\n\r\n");
    lb_send(fd, out.base, out.len);
    lb_pump(&s.lb, fd, &in, 0);
    CHECK(in.len > 12 && memcmp(in.base, "HTTP/1.1 400", 12) == 0);
    buf_appendc(&in, '\0');
    CHECK(strstr(in.base, "Invalid or unacceptable Sec-WebSocket-Extensions header") != NULL);
    close(fd);
    srv_stop(&s);
    CHECK_EQ_INT(s.nws, 0);
    buf_free(&out);
    buf_free(&in);
}

int main(void)
{
    RUN(accept_key);
    RUN(frame_headers);
    RUN(messages_and_idle_context);
    RUN(fragments_and_ping);
    RUN(handshake_with_frames);
    RUN(close_handshake);
    RUN(protocol_errors);
    RUN(server_close_and_shared_buffer);
    RUN(bad_handshake);
    RUN(pong_before_answer);
    RUN(backpressure_and_close_timeout);
    RUN(context_reuse);
    RUN(messages_cut_everywhere);
    RUN(deflate_messages_both_ways);
    RUN(deflate_once_for_every_recipient);
    RUN(deflate_prefixed);
    RUN(deflate_violations);
    RUN(deflate_refused_offer);
    return test_summary();
}
