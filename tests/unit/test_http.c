/* http over a real loopback connection: the server runs on a uv loop in this process, the client
 * is a plain socket driven by the test between loop iterations. Responses are compared byte for
 * byte (they carry no Date header). */
#include <stdlib.h>
#include <unistd.h>

#include "http.h"
#include "loopback.h"
#include "net.h"
#include "test.h"

typedef struct {
    lb_t lb;
    http_limits_t lim;
    http_handler_t h;
    int nreq;
    int hold; /* keep requests instead of answering */
    http_req_t *held[8];
    int nheld;
    int aborted;
    int cut;    /* on_cut calls */
    buf_t log;  /* what the handler saw */
    buf_t rest; /* from http_detach */
    net_conn_t *detached;
} srv_t;

static void on_abort(http_req_t *req, void *data)
{
    (void)req;
    ((srv_t *)data)->aborted++;
}

static void on_cut(const http_req_t *req, void *data)
{
    srv_t *s = data;
    s->cut++;
    buf_appendstr(&s->log, "cut:");
    buf_append(&s->log, req->path.ptr, req->path.len);
    buf_appendc(&s->log, '|');
}

static void on_request(http_req_t *req, void *data)
{
    srv_t *s = data;
    buf_t v = BUF_INIT;
    s->nreq++;
    buf_append(&s->log, req->path.ptr, req->path.len);
    buf_appendc(&s->log, '|');
    if (req->upgrade) {
        s->detached = http_detach(req, &s->rest);
        net_set_owner(s->detached, NULL, NULL);
        net_close(s->detached);
        return;
    }
    if (req->too_large) {
        http_respond(req, 413, NULL, 0, NULL, 0);
        return;
    }
    if (s->hold) {
        req->on_abort = on_abort;
        req->abort_data = s;
        s->held[s->nheld++] = req;
        return;
    }
    if (slice_eq(req->path, "/q")) {
        /* decoded query values, '-' when absent */
        const char *names[] = {"a", "b", "e", "missing"};
        for (int i = 0; i < 4; i++) {
            if (http_query(req, names[i], &v) == 0)
                buf_append(&s->log, v.base, v.len);
            else
                buf_appendc(&s->log, '-');
            buf_appendc(&s->log, ',');
        }
    } else if (slice_eq(req->path, "/json")) {
        http_respond_json_error(req, 400, NULL, 0, 3, "Bad \"request\"\n\\");
        buf_free(&v);
        return;
    }
    slice_t x = http_header(req, "x-test");
    if (x.ptr)
        buf_append(&s->log, x.ptr, x.len);
    buf_appendc(&s->log, '|');
    buf_append(&s->log, req->body.base, req->body.len);
    buf_appendc(&s->log, '\n');
    /* the body echoes path and body */
    buf_append(&v, req->path.ptr, req->path.len);
    buf_append(&v, req->body.base, req->body.len);
    http_hdr_t hd[] = {{"Content-Type", "text/plain"}};
    http_respond(req, 200, hd, 1, v.base, v.len);
    buf_free(&v);
}

static void on_accept(net_conn_t *c, void *data)
{
    srv_t *s = data;
    http_conn_new(c, &s->h, &s->lim, s);
}

static void srv_start(srv_t *s)
{
    memset(s, 0, sizeof(*s));
    s->lim = (http_limits_t){.max_head = 1024, .max_headers = 8, .max_url = 256, .max_body = 100};
    s->h.on_request = on_request;
    s->h.on_cut = on_cut;
    CHECK_EQ_INT(lb_start(&s->lb, on_accept, s), 0);
}

static void srv_stop(srv_t *s)
{
    CHECK_EQ_INT(lb_stop(&s->lb), 0);
    buf_free(&s->log);
    buf_free(&s->rest);
}

#define RESP200(body)                                                                                                  \
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " #body "\r\nConnection: keep-alive\r\n\r\n"

#define EXPECT(in, lit) CHECK_EQ_MEM((in).base, (in).len, lit)

TEST(get_with_query)
{
    srv_t s;
    srv_start(&s);
    int fd = lb_connect(&s.lb);
    buf_t in = BUF_INIT;
    lb_sends(fd, "GET /q?a=x%20y+z&e=&b=%41%zz%4&c HTTP/1.1\r\nHost: h\r\nX-Test:   v  1 \t\r\n\r\n");
    const char *want = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n"
                       "Connection: keep-alive\r\n\r\n/q";
    lb_pump(&s.lb, fd, &in, strlen(want));
    CHECK_EQ_MEM(in.base, in.len,
                 "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n"
                 "Connection: keep-alive\r\n\r\n/q");
    EXPECT(s.log, "/q|x y z,A%zz%4,,-,v  1|\n");
    close(fd);
    srv_stop(&s);
    buf_free(&in);
}

TEST(head_split_byte_by_byte)
{
    srv_t s;
    srv_start(&s);
    int fd = lb_connect(&s.lb);
    buf_t in = BUF_INIT;
    const char *req = "POST /split?x=1 HTTP/1.1\r\nHost: h\r\nX-Test: hello world\r\nContent-Length: 5\r\n\r\nabcde";
    for (const char *p = req; *p; p++) {
        lb_send(fd, p, 1);
        lb_settle(&s.lb); /* the server reads each byte on its own */
    }
    lb_pump(&s.lb, fd, &in, sizeof(RESP200(11)) - 1 + 11);
    EXPECT(in, RESP200(11) "/splitabcde");
    EXPECT(s.log, "/split|hello world|abcde\n");
    close(fd);
    srv_stop(&s);
    buf_free(&in);
}

TEST(post_bodies)
{
    srv_t s;
    srv_start(&s);
    int fd = lb_connect(&s.lb);
    buf_t in = BUF_INIT;
    lb_sends(fd, "POST /p HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyz");
    lb_pump(&s.lb, fd, &in, sizeof(RESP200(5)) - 1 + 5);
    EXPECT(in, RESP200(5) "/pxyz");
    in.len = 0;
    lb_sends(fd, "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
    lb_pump(&s.lb, fd, &in, sizeof(RESP200(7)) - 1 + 7);
    EXPECT(in, RESP200(7) "/cabcde");
    close(fd);
    srv_stop(&s);
    buf_free(&in);
}

TEST(pipelined_in_order)
{
    srv_t s;
    srv_start(&s);
    int fd = lb_connect(&s.lb);
    buf_t in = BUF_INIT;
    lb_sends(fd, "GET /a HTTP/1.1\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 2\r\n\r\nzzGET /c HTTP/1.1\r\n\r\n");
    const char *want = RESP200(2) "/a" RESP200(4) "/bzz" RESP200(2) "/c";
    lb_pump(&s.lb, fd, &in, strlen(want));
    CHECK_EQ_MEM(in.base, in.len, RESP200(2) "/a" RESP200(4) "/bzz" RESP200(2) "/c");
    CHECK_EQ_INT(s.nreq, 3);

    /* A held request (long-polling) keeps the next one waiting until it is answered. */
    in.len = 0;
    s.hold = 1;
    lb_sends(fd, "GET /h1 HTTP/1.1\r\n\r\nGET /h2 HTTP/1.1\r\n\r\n");
    LB_UNTIL(&s.lb, s.nheld == 1);
    lb_settle(&s.lb);
    CHECK_EQ_INT(s.nheld, 1);
    CHECK_EQ_INT(s.nreq, 4);
    http_respond(s.held[0], 200, NULL, 0, "one", 3);
    CHECK_EQ_INT(s.nreq, 4); /* never synchronously */
    const char *one = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\none";
    lb_pump(&s.lb, fd, &in, strlen(one));
    CHECK_EQ_MEM(in.base, in.len, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\none");
    LB_UNTIL(&s.lb, s.nheld == 2);
    CHECK_EQ_INT(s.nheld, 2);
    http_respond(s.held[1], 204, NULL, 0, NULL, 0);
    in.len = 0;
#define R204 "HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n"
    lb_pump(&s.lb, fd, &in, sizeof(R204) - 1);
    CHECK_EQ_MEM(in.base, in.len, R204);
    close(fd);
    srv_stop(&s);
    CHECK_EQ_INT(s.aborted, 0);
    buf_free(&in);
}

/* Sends req on a fresh connection and expects `want` followed by the server closing. */
static void expect_close(srv_t *s, const char *req, const char *want)
{
    int fd = lb_connect(&s->lb);
    buf_t in = BUF_INIT;
    lb_sends(fd, req);
    int eof = lb_pump(&s->lb, fd, &in, 0);
    CHECK(eof);
    if (in.len != strlen(want) || memcmp(in.base, want, in.len) != 0) {
        fprintf(stderr, "  got: %.*s\n  want: %s\n", (int)in.len, in.base, want);
        test_failed_now = 1;
    }
    close(fd);
    buf_free(&in);
}

static void expect_error(srv_t *s, const char *req, int code, const char *text)
{
    char want[256];
    snprintf(want, sizeof(want),
             "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s", code,
             text, strlen(text), text);
    expect_close(s, req, want);
}

TEST(limits)
{
    srv_t s;
    srv_start(&s);
    char big[2048];
    /* 431: one header over max_head (1024) */
    snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nX-Big: %01100d\r\n\r\n", 0);
    expect_error(&s, big, 431, "Request Header Fields Too Large");
    /* 431: more than max_headers (8) lines */
    expect_error(&s, "GET / HTTP/1.1\r\nA: 1\r\nA: 2\r\nA: 3\r\nA: 4\r\nA: 5\r\nA: 6\r\nA: 7\r\nA: 8\r\nA: 9\r\n\r\n",
                 431, "Request Header Fields Too Large");
    /* exactly max_headers is fine */
    {
        int fd = lb_connect(&s.lb);
        buf_t in = BUF_INIT;
        lb_sends(fd, "GET /8 HTTP/1.1\r\nA: 1\r\nA: 2\r\nA: 3\r\nA: 4\r\nA: 5\r\nA: 6\r\nA: 7\r\nA: 8\r\n\r\n");
        lb_pump(&s.lb, fd, &in, sizeof(RESP200(2)) - 1 + 2);
        EXPECT(in, RESP200(2) "/8");
        close(fd);
        buf_free(&in);
    }
    /* 414: URL over max_url (256) */
    snprintf(big, sizeof(big), "GET /%0300d HTTP/1.1\r\n\r\n", 0);
    expect_error(&s, big, 414, "URI Too Long");
    /* 413: Content-Length over max_body (100): answered by the handler, body never read */
    expect_close(&s, "POST /big HTTP/1.1\r\nContent-Length: 101\r\n\r\n",
                 "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    /* 413: a chunked body that grows over it */
    snprintf(big, sizeof(big), "POST /big HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n%064d\r\n40\r\n%064d\r\n",
             0, 0);
    expect_close(&s, big, "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    /* 400: not HTTP, bad header name, both Content-Length and chunked */
    expect_error(&s, "BLAH\r\n\r\n", 400, "Bad Request");
    expect_error(&s, "GET / HTTP/1.1\r\nBad\x01: x\r\n\r\n", 400, "Bad Request");
    expect_error(&s, "POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400,
                 "Bad Request");
    buf_appendc(&s.log, '\0');
    CHECK(strstr(s.log.base, "/big|") != NULL);
    srv_stop(&s);
}

/* Chunk extensions are dropped, bounded per chunk (max_chunk_ext) and counted against max_body. */
TEST(chunk_extensions)
{
    srv_t s;
    char big[512];
    const char *r413 = "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    srv_start(&s);
    s.lim.max_chunk_ext = 16;
    /* within both limits: the body arrives without them (16 bytes of extensions in one chunk; llhttp
     * 8.1 refuses a second extension in one chunk, ";a=b;c=d", with a 400) */
    {
        int fd = lb_connect(&s.lb);
        buf_t in = BUF_INIT;
        lb_sends(fd, "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;aaaaaaa=\"bbbbbbb\"\r\nabc\r\n"
                     "2;z\r\nde\r\n0\r\n\r\n");
        lb_pump(&s.lb, fd, &in, sizeof(RESP200(7)) - 1 + 7);
        EXPECT(in, RESP200(7) "/xabcde");
        close(fd);
        buf_free(&in);
    }
    /* 17 bytes of extensions in one chunk: 413, closed, the handler saw it too large */
    expect_close(&s, "POST /one HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;aaaaaaaaa=bbbbbbbb\r\nx\r\n", r413);
    /* each chunk under the cap, but extensions + body over max_body (100): 413 */
    snprintf(big, sizeof(big), "POST /sum HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 9; i++)
        strcat(big, "1;abcdefghijklm\r\nx\r\n"); /* 13 + 1 bytes per chunk: 126 after 9 */
    expect_close(&s, big, r413);
    /* a lone extension stream that never ends, fed in pieces: refused once over, not at the end */
    {
        int fd = lb_connect(&s.lb);
        buf_t in = BUF_INIT;
        lb_sends(fd, "POST /slow HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;");
        for (int i = 0; i < 20 && s.nreq < 4; i++) {
            lb_sends(fd, "a");
            lb_settle(&s.lb);
        }
        CHECK(lb_pump(&s.lb, fd, &in, 0));
        CHECK_EQ_MEM(in.base, in.len,
                     "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        close(fd);
        buf_free(&in);
    }
    buf_appendc(&s.log, '\0');
    CHECK(strstr(s.log.base, "/one|") != NULL && strstr(s.log.base, "/sum|") != NULL);
    srv_stop(&s);
}

TEST(keep_alive_and_close)
{
    srv_t s;
    srv_start(&s);
    expect_close(&s, "GET /x HTTP/1.1\r\nConnection: close\r\n\r\n",
                 "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\n/x");
    expect_close(&s, "GET /y HTTP/1.0\r\n\r\n",
                 "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\n/y");
    /* HTTP/1.0 with keep-alive, then HEAD: the real Content-Length, no body */
    int fd = lb_connect(&s.lb);
    buf_t in = BUF_INIT;
    lb_sends(fd, "GET /k HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    lb_pump(&s.lb, fd, &in, sizeof(RESP200(2)) - 1 + 2);
    EXPECT(in, RESP200(2) "/k");
    in.len = 0;
    lb_sends(fd, "HEAD /hd HTTP/1.1\r\n\r\n");
    CHECK(!lb_pump(&s.lb, fd, &in, sizeof(RESP200(3)) - 1));
    EXPECT(in, RESP200(3));
    in.len = 0;
    lb_sends(fd, "GET /json HTTP/1.1\r\n\r\n");
    const char *json = "{\"code\":3,\"message\":\"Bad \\\"request\\\"\\u000a\\\\\"}";
    lb_pump(&s.lb, fd, &in, 100 + strlen(json));
    char want[256];
    snprintf(want, sizeof(want),
             "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
             "Connection: keep-alive\r\n\r\n%s",
             strlen(json), json);
    CHECK_EQ_INT(in.len, strlen(want));
    CHECK(in.len == strlen(want) && memcmp(in.base, want, in.len) == 0);
    close(fd);
    srv_stop(&s);
    buf_free(&in);
}

TEST(abort_and_detach)
{
    srv_t s;
    srv_start(&s);
    s.hold = 1;
    int fd = lb_connect(&s.lb);
    lb_sends(fd, "GET /wait HTTP/1.1\r\n\r\n");
    LB_UNTIL(&s.lb, s.nheld == 1);
    CHECK_EQ_INT(s.nheld, 1);
    close(fd);
    srv_stop(&s);
    CHECK_EQ_INT(s.aborted, 1);

    srv_start(&s);
    fd = lb_connect(&s.lb);
    lb_sends(fd, "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x05hello");
    LB_UNTIL(&s.lb, s.detached != NULL);
    CHECK(s.detached != NULL);
    EXPECT(s.rest, "\x81\x05hello");
    close(fd);
    srv_stop(&s);
    CHECK_EQ_INT(s.cut, 0);
}

/* on_cut: a request whose head was accepted and whose body never came whole, once, with its head. */
TEST(cut_bodies)
{
    srv_t s;
    int fd;
    srv_start(&s);
    /* closed in the middle of a Content-Length body, and of a chunked one */
    fd = lb_connect(&s.lb);
    lb_sends(fd, "POST /cl?sid=1 HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc");
    lb_settle(&s.lb);
    close(fd);
    fd = lb_connect(&s.lb);
    lb_sends(fd, "POST /ch HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab");
    lb_settle(&s.lb);
    close(fd);
    /* a malformed chunk: 400, and cut */
    expect_error(&s, "POST /bad HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400, "Bad Request");
    /* not cut: a complete request, a refused head, a closed connection between requests, a head cut
     * short, a body over the limit (delivered as too large) */
    expect_close(&s, "POST /ok HTTP/1.1\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                 "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: close\r\n\r\n/okok");
    expect_error(&s, "POST /h HTTP/1.1\r\nBad Name: x\r\nContent-Length: 5\r\n\r\nab", 400, "Bad Request");
    fd = lb_connect(&s.lb);
    lb_sends(fd, "POST /half HTTP/1.1\r\nContent-Le");
    lb_settle(&s.lb);
    close(fd);
    expect_close(&s, "POST /big HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n80\r\n",
                 "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    lb_settle(&s.lb);
    CHECK_EQ_INT(s.cut, 3);
    buf_appendc(&s.log, '\0');
    CHECK(strstr(s.log.base, "cut:/cl|") != NULL && strstr(s.log.base, "cut:/ch|") != NULL &&
          strstr(s.log.base, "cut:/bad|") != NULL);
    srv_stop(&s);
}

TEST(timeouts)
{
    srv_t s;
    srv_start(&s);
    s.lim.header_timeout = s.lim.body_timeout = s.lim.keepalive_timeout = s.lim.send_timeout = 50;
    /* slowloris: nothing, or a head that never ends, or a body that never ends: 408 and close */
    expect_error(&s, "", 408, "Request Timeout");
    expect_error(&s, "GET /slow HTTP/1.1\r\nHost: x\r\nX-A: aaa", 408, "Request Timeout");
    expect_error(&s, "POST /slow HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc", 408, "Request Timeout");
    CHECK_EQ_INT(s.nreq, 0);
    /* keep-alive: an idle connection after an answer is closed without a word */
    int fd = lb_connect(&s.lb);
    buf_t in = BUF_INIT;
    lb_sends(fd, "GET /k HTTP/1.1\r\n\r\n");
    lb_pump(&s.lb, fd, &in, sizeof(RESP200(2)) - 1 + 2);
    EXPECT(in, RESP200(2) "/k");
    in.len = 0;
    CHECK(lb_pump(&s.lb, fd, &in, 0));
    CHECK_EQ_INT(in.len, 0);
    close(fd);
    /* a held request (long-polling) has no HTTP deadline: its handler decides */
    s.hold = 1;
    fd = lb_connect(&s.lb);
    lb_sends(fd, "GET /held HTTP/1.1\r\n\r\n");
    lb_run_for(&s.lb, 200); /* 4 header timeouts */
    CHECK_EQ_INT(s.nheld, 1);
    CHECK_EQ_INT(s.aborted, 0);
    http_respond(s.held[0], 204, NULL, 0, NULL, 0);
    close(fd);
    srv_stop(&s);
    buf_free(&in);
}

TEST(pipelining_cap)
{
    srv_t s;
    srv_start(&s);
    s.lim.max_pipelined = 2;
    /* 1 + 2 pipelined requests are answered, the last with Connection: close; the rest dropped */
    expect_close(
        &s, "GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\nGET /3 HTTP/1.1\r\n\r\nGET /4 HTTP/1.1\r\n\r\n",
        RESP200(2) "/1" RESP200(
            2) "/2"
               "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\n/3");
    CHECK_EQ_INT(s.nreq, 3);
    srv_stop(&s);
}

TEST(connection_limits)
{
    srv_t s;
    srv_start(&s);
    s.lim.max_conns = 1;
    int a = lb_connect(&s.lb);
    LB_UNTIL(&s.lb, s.lb.net.nconns == 1);
    expect_error(&s, "GET / HTTP/1.1\r\n\r\n", 503, "Service Unavailable");
    close(a);
    LB_UNTIL(&s.lb, s.lb.net.nconns == 0);
    s.lim.max_conns = 0;
    s.lim.max_conns_per_ip = 1;
    a = lb_connect(&s.lb);
    LB_UNTIL(&s.lb, s.lb.net.nconns == 1);
    expect_error(&s, "GET / HTTP/1.1\r\n\r\n", 503, "Service Unavailable");
    close(a);
    LB_UNTIL(&s.lb, s.lb.net.nconns == 0);
    CHECK_EQ_INT(s.nreq, 0);
    srv_stop(&s);
}

TEST(header_names)
{
    srv_t s;
    srv_start(&s);
    /* RFC 9112 5.1: whitespace between a name and the colon, an empty name: 400 */
    expect_error(&s, "GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400, "Bad Request");
    expect_error(&s, "GET / HTTP/1.1\r\n: x\r\n\r\n", 400, "Bad Request");
    expect_error(&s, "POST / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400, "Bad Request");
    CHECK_EQ_INT(s.nreq, 0);
    srv_stop(&s);
}

TEST(status_text)
{
    CHECK(strcmp(http_status_text(404), "Not Found") == 0);
    CHECK(strcmp(http_status_text(431), "Request Header Fields Too Large") == 0);
    CHECK(strcmp(http_status_text(799), "Unknown") == 0);
}

int main(void)
{
    RUN(get_with_query);
    RUN(head_split_byte_by_byte);
    RUN(post_bodies);
    RUN(pipelined_in_order);
    RUN(limits);
    RUN(chunk_extensions);
    RUN(keep_alive_and_close);
    RUN(abort_and_detach);
    RUN(cut_bodies);
    RUN(timeouts);
    RUN(pipelining_cap);
    RUN(connection_limits);
    RUN(header_names);
    RUN(status_text);
    return test_summary();
}
