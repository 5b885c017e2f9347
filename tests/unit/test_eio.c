/* eio over the real http/ws/net stack on loopback: the server (an eio_server_t behind an HTTP
 * handler, as server.c routes it) runs on the test's loop; clients are raw sockets speaking HTTP
 * long-polling and WebSocket (loopback.h). The handler records what it sees; an observer records
 * the error answers. Heartbeats use short intervals and are counted, never timed. */
#include <stdlib.h>
#include <unistd.h>

#include "eio.h"
#include "http.h"
#include "loopback.h"
#include "test.h"

#define PATH "/engine.io/"
#define MAXS 8

typedef struct {
    lb_t lb;
    http_limits_t lim;
    eio_config_t cfg;
    eio_server_t eio;
    int fds[16]; /* client sockets, closed by srv_stop */
    int nfds;
    /* what the handler saw */
    eio_session_t *sess[MAXS]; /* open sessions, in order of opening (NULL once closed) */
    int nopen, nclose, nupgrade, nconnection;
    buf_t msgs;    /* "T:text\n" / "B:bytes\n" */
    buf_t reasons; /* "reason\n" per close */
    int echo;      /* send each message back */
    int close_on;  /* eio_close() on a message */
    /* what the observer saw */
    buf_t errors; /* "code name|\n" per refused request */
    int npings, npongs;
    int refuse; /* allowRequest answers 0 */
    const char *refuse_msg;
    int defer;  /* allowRequest answers later: the request waits in `pending` */
    eio_allow_t *pending;
    int freed;
} srv_t;

/* ---------------------------------------------------------------- the server side */

static int index_of(srv_t *s, const eio_session_t *e)
{
    for (int i = 0; i < s->nopen && i < MAXS; i++)
        if (s->sess[i] == e)
            return i;
    return -1;
}

static void h_open(eio_session_t *e, void *ud)
{
    srv_t *s = ud;
    if (s->nopen < MAXS)
        s->sess[s->nopen] = e;
    s->nopen++;
}

static void h_message(eio_session_t *e, int binary, const char *data, size_t len, void *ud)
{
    srv_t *s = ud;
    buf_appendstr(&s->msgs, binary ? "B:" : "T:");
    buf_append(&s->msgs, data, len);
    buf_appendc(&s->msgs, '\n');
    if (s->echo) {
        rbuf_t *b;
        if (binary) {
            b = rbuf_from(data, len);
            b->flags |= RBUF_BINARY;
        } else {
            b = eio_packet_new(EIO_MESSAGE, data, len);
        }
        eio_send(e, b);
        rbuf_unref(b);
    }
    if (s->close_on)
        eio_close(e);
}

static void h_close(eio_session_t *e, const char *reason, void *ud)
{
    srv_t *s = ud;
    int i = index_of(s, e);
    if (i >= 0)
        s->sess[i] = NULL;
    s->nclose++;
    buf_appendstr(&s->reasons, reason);
    buf_appendc(&s->reasons, '\n');
}

static void h_upgrade(eio_session_t *e, void *ud)
{
    (void)e;
    ((srv_t *)ud)->nupgrade++;
}

static const eio_handler_t handler = {h_open, h_message, h_close, h_upgrade};

static void o_connection(eio_session_t *e, void *ud)
{
    (void)e;
    ((srv_t *)ud)->nconnection++;
}

static void o_packet(eio_session_t *e, const eio_packet_t *p, void *ud)
{
    srv_t *s = ud;
    (void)e;
    s->npings += p->type == EIO_PING;
    s->npongs += p->type == EIO_PONG;
}

static void o_error(const http_req_t *req, eio_error_t code, const char *context, const char *name, void *ud)
{
    srv_t *s = ud;
    char line[128];
    (void)req;
    (void)context;
    snprintf(line, sizeof(line), "%d %s|", (int)code, name ? name : "-");
    buf_appendstr(&s->errors, line);
}

static const eio_observer_t observer = {.on_connection = o_connection, .on_packet = o_packet, .on_error = o_error};

static void allow(eio_allow_t *a, const http_req_t *req, void *ud)
{
    srv_t *s = ud;
    (void)req;
    if (s->defer) {
        eio_allow_ref(a);
        s->pending = a;
        return;
    }
    eio_allow_done(a, !s->refuse, s->refuse_msg);
}

static void on_request(http_req_t *req, void *data)
{
    srv_t *s = data;
    if (req->path.len >= sizeof(PATH) - 1 && memcmp(req->path.ptr, PATH, sizeof(PATH) - 1) == 0)
        eio_handle_request(&s->eio, req);
    else
        http_respond(req, 404, NULL, 0, NULL, 0);
}

/* A request cut before its body was whole (http.h on_cut), routed as server.c routes it. */
static void on_cut(const http_req_t *req, void *data)
{
    srv_t *s = data;
    if (req->path.len >= sizeof(PATH) - 1 && memcmp(req->path.ptr, PATH, sizeof(PATH) - 1) == 0)
        eio_handle_cut(&s->eio, req);
}

static const http_handler_t http_handler = {.on_request = on_request, .on_cut = on_cut};

static void on_accept(net_conn_t *c, void *data)
{
    srv_t *s = data;
    http_conn_new(c, &http_handler, &s->lim, s);
}

static void on_freed(eio_server_t *e)
{
    srv_t *s = (srv_t *)((char *)e - offsetof(srv_t, eio));
    s->freed = 1;
}

/* The reference's defaults, with a few limits small enough to go over. */
static void srv_config(srv_t *s)
{
    memset(s, 0, sizeof(*s));
    s->cfg.ping_interval = 25000;
    s->cfg.ping_timeout = 20000;
    s->cfg.upgrade_timeout = 10000;
    s->cfg.max_payload = 1000;
    s->cfg.transports = EIO_T_POLLING | EIO_T_WEBSOCKET;
    s->cfg.allow_upgrades = 1;
    s->cfg.max_packets_per_post = 10;
    s->cfg.max_buffered = 1u << 20;
    s->cfg.allow_timeout = 45000;
    s->lim.max_body = s->cfg.max_payload; /* as server.c sets it */
}

static void srv_start(srv_t *s)
{
    http_limits_fill(&s->lim);
    eio_server_init(&s->eio, &s->lb.loop, &s->cfg, &s->lim, &handler, s);
    s->eio.obs = &observer;
    s->eio.obs_ud = s;
    s->eio.allow_request = allow;
    s->eio.allow_ud = s;
}

/* lb_start() must come first (it initialises the loop eio_server_init takes). */
static void srv_open(srv_t *s)
{
    CHECK_EQ_INT(lb_start(&s->lb, on_accept, s), 0);
    srv_start(s);
}

static void srv_stop(srv_t *s)
{
    eio_server_shutdown(&s->eio, "forced close", on_freed);
    CHECK(!s->freed); /* never synchronously */
    for (int i = 0; i < s->nfds; i++)
        close(s->fds[i]);
    LB_UNTIL(&s->lb, s->freed);
    CHECK(s->freed);
    CHECK_EQ_INT(lb_stop(&s->lb), 0);
}

static void srv_free(srv_t *s)
{
    buf_free(&s->msgs);
    buf_free(&s->reasons);
    buf_free(&s->errors);
}

/* ---------------------------------------------------------------- the client side */

typedef struct {
    int fd;
    buf_t in;
    size_t used; /* bytes of the previous response, consumed before the next is read */
    lb_response_t r;
} cli_t;

static void cli_open(srv_t *s, cli_t *c)
{
    memset(c, 0, sizeof(*c));
    c->fd = lb_connect(&s->lb);
    s->fds[s->nfds++] = c->fd;
}

static void cli_free(cli_t *c)
{
    buf_free(&c->in);
}

/* Reads the next response into c->r. Returns its status, or -1. */
static int read_resp(srv_t *s, cli_t *c)
{
    buf_consume(&c->in, c->used);
    c->used = 0;
    if (lb_response(&s->lb, c->fd, &c->in, &c->r) != 0)
        return -1;
    c->used = c->r.size;
    return c->r.status;
}

static int exchange(srv_t *s, cli_t *c, const char *method, const char *target, const char *body, size_t blen)
{
    lb_request(c->fd, method, target, NULL, body, blen);
    return read_resp(s, c);
}

#define BODY_IS(c, lit) CHECK_EQ_MEM((c)->r.body.ptr, (c)->r.body.len, lit)
#define HDR_IS(c, name, lit)                                                                                           \
    do {                                                                                                               \
        slice_t v_ = lb_header(&(c)->r, name);                                                                         \
        CHECK_EQ_MEM(v_.ptr ? v_.ptr : "", v_.len, lit);                                                               \
    } while (0)

static void target(char *out, size_t n, const char *transport, const char *sid)
{
    snprintf(out, n, PATH "?EIO=4&transport=%s&sid=%s", transport, sid);
}

/* A polling handshake on c; the new session's id goes to sid (21 bytes) and, unless poll is NULL,
 * the URL of its polling requests to poll (128 bytes). Returns 0 or -1. */
static int handshake(srv_t *s, cli_t *c, char *sid, char *poll)
{
    if (exchange(s, c, "GET", PATH "?EIO=4&transport=polling", NULL, 0) != 200 || c->r.body.len < 30 ||
        memcmp(c->r.body.ptr, "0{\"sid\":\"", 9) != 0)
        return -1;
    memcpy(sid, c->r.body.ptr + 9, 20);
    sid[20] = '\0';
    if (poll != NULL)
        target(poll, 128, "polling", sid);
    return 0;
}

/* A WebSocket session (or probe, with sid) on a new connection: returns the fd, -1 on failure. */
static int ws_open(srv_t *s, buf_t *in, const char *sid)
{
    char t[128];
    int fd;
    if (sid)
        target(t, sizeof(t), "websocket", sid);
    else
        snprintf(t, sizeof(t), PATH "?EIO=4&transport=websocket");
    fd = lb_ws_connect(&s->lb, t, in);
    if (fd >= 0)
        s->fds[s->nfds++] = fd;
    return fd;
}

/* ---------------------------------------------------------------- handshake */

TEST(handshake_polling)
{
    srv_t s;
    cli_t c;
    char sid[21], want[256];
    srv_config(&s);
    s.cfg.ping_interval = 300;
    s.cfg.ping_timeout = 200;
    srv_open(&s);
    cli_open(&s, &c);
    lb_request(c.fd, "GET", PATH "?EIO=4&transport=polling&t=abc", "X-Custom: yes\r\n", NULL, 0);
    CHECK_EQ_INT(read_resp(&s, &c), 200);
    CHECK(c.r.body.len > 29);
    memcpy(sid, c.r.body.ptr + 9, 20);
    sid[20] = '\0';
    snprintf(want, sizeof(want),
             "0{\"sid\":\"%s\",\"upgrades\":[\"websocket\"],\"pingInterval\":300,\"pingTimeout\":200,"
             "\"maxPayload\":1000}",
             sid);
    CHECK(c.r.body.len == strlen(want) && memcmp(c.r.body.ptr, want, strlen(want)) == 0);
    HDR_IS(&c, "Content-Type", "text/plain; charset=UTF-8");
    HDR_IS(&c, "cache-control", "no-store");
    CHECK(lb_header(&c.r, "Set-Cookie").ptr == NULL); /* no cookie option: no cookie */
    /* the handler saw one session with that id and the request that opened it */
    CHECK_EQ_INT(s.nopen, 1);
    CHECK_EQ_INT(s.nconnection, 1);
    CHECK(strcmp(eio_session_id(s.sess[0]), sid) == 0);
    CHECK_EQ_INT(eio_session_transport(s.sess[0]), EIO_T_POLLING);
    CHECK(eio_session_is_open(s.sess[0]) && !eio_session_upgraded(s.sess[0]));
    const eio_handshake_t *hs = eio_session_handshake(s.sess[0]);
    CHECK_EQ_MEM(hs->url.ptr, hs->url.len, PATH "?EIO=4&transport=polling&t=abc");
    CHECK_EQ_MEM(hs->query.ptr, hs->query.len, "EIO=4&transport=polling&t=abc");
    CHECK(strcmp(hs->address, "127.0.0.1") == 0);
    CHECK(hs->issued > 0);
    CHECK_EQ_INT(hs->nheaders, 2);
    const char *p = hs->headers;
    slice_t name, value;
    eio_header_next(&p, &name, &value);
    CHECK_EQ_MEM(name.ptr, name.len, "Host");
    eio_header_next(&p, &name, &value);
    CHECK_EQ_MEM(name.ptr, name.len, "X-Custom");
    CHECK_EQ_MEM(value.ptr, value.len, "yes");
    /* the snapshot of open sessions */
    eio_session_t **v;
    size_t n = eio_server_sessions(&s.eio, &v);
    CHECK(n == 1 && v[0] == s.sess[0]);
    eio_sessions_release(v, n);
    srv_stop(&s);
    CHECK_EQ_INT(s.nclose, 1);
    CHECK_EQ_MEM(s.reasons.base, s.reasons.len, "forced close\n");
    cli_free(&c);
    srv_free(&s);
}

/* What the open packet offers, and the cookie option. */
TEST(handshake_options)
{
    srv_t s;
    cli_t c;
    char sid[21], want[128], t[128];
    srv_config(&s);
    s.cfg.transports = EIO_T_POLLING; /* no WebSocket: no upgrade offered */
    static char io[] = "io", slash[] = "/", lax[] = "Lax";
    s.cfg.cookie = (eio_cookie_t){.name = io, .path = slash, .same_site = lax, .max_age = -1, .http_only = 1};
    srv_open(&s);
    cli_open(&s, &c);
    CHECK_EQ_INT(handshake(&s, &c, sid, t), 0);
    CHECK(c.r.body.len > 29 && memmem(c.r.body.ptr, c.r.body.len, "\"upgrades\":[]", 13) != NULL);
    snprintf(want, sizeof(want), "io=%s; Path=/; HttpOnly; SameSite=Lax", sid);
    slice_t ck = lb_header(&c.r, "Set-Cookie");
    CHECK(ck.len == strlen(want) && memcmp(ck.ptr, want, ck.len) == 0);
    /* only on the handshake */
    CHECK_EQ_INT(exchange(&s, &c, "POST", t, "4x", 2), 200);
    CHECK(lb_header(&c.r, "Set-Cookie").ptr == NULL);
    /* a WebSocket handshake is refused: the transport is off */
    buf_t in = BUF_INIT;
    CHECK_EQ_INT(ws_open(&s, &in, NULL), -1);
    CHECK(strstr(s.errors.base ? s.errors.base : "", "0 -|") != NULL);
    srv_stop(&s);
    cli_free(&c);
    buf_free(&in);
    srv_free(&s);

    srv_config(&s);
    s.cfg.allow_upgrades = 0;
    srv_open(&s);
    cli_open(&s, &c);
    CHECK_EQ_INT(handshake(&s, &c, sid, NULL), 0);
    CHECK(c.r.body.len > 29 && memmem(c.r.body.ptr, c.r.body.len, "\"upgrades\":[]", 13) != NULL);
    srv_stop(&s);
    cli_free(&c);
    srv_free(&s);
}

/* ---------------------------------------------------------------- polling */

TEST(polling_round_trips)
{
    srv_t s;
    cli_t get, post;
    char sid[21], t[128];
    srv_config(&s);
    srv_open(&s);
    cli_open(&s, &get);
    cli_open(&s, &post);
    CHECK_EQ_INT(handshake(&s, &get, sid, t), 0);
    /* client -> server: several packets in one POST, text and base64 binary, in order */
    static const char several[] = "4hello\x1e"
                                  "4\xc3\xa9t\xc3\xa9\x1e"
                                  "bAQID\x1e"
                                  "4";
    CHECK_EQ_INT(exchange(&s, &post, "POST", t, several, sizeof(several) - 1), 200);
    BODY_IS(&post, "ok");
    HDR_IS(&post, "Content-Type", "text/html");
    CHECK_EQ_MEM(s.msgs.base, s.msgs.len, "T:hello\nT:\xc3\xa9t\xc3\xa9\nB:\x01\x02\x03\nT:\n");
    /* server -> client: queued packets go out with the next GET, joined by the separator */
    rbuf_t *a = eio_packet_new(EIO_MESSAGE, "abc", 3), *b = rbuf_from("\x00\xff", 2);
    b->flags |= RBUF_BINARY;
    CHECK(!eio_session_writable(s.sess[0])); /* no GET held */
    eio_send(s.sess[0], a);
    eio_send(s.sess[0], b);
    CHECK_EQ_INT(exchange(&s, &get, "GET", t, NULL, 0), 200);
    BODY_IS(&get, "4abc\x1e"
                  "bAP8=");
    /* a GET with nothing to send is held until something is sent (long-polling) */
    lb_request(get.fd, "GET", t, NULL, NULL, 0);
    LB_UNTIL(&s.lb, eio_session_writable(s.sess[0]));
    CHECK(eio_session_writable(s.sess[0]));
    eio_send(s.sess[0], a);
    CHECK_EQ_INT(read_resp(&s, &get), 200);
    BODY_IS(&get, "4abc");
    CHECK_EQ_INT(a->refs, 1); /* the queue's references were released */
    CHECK_EQ_INT(b->refs, 1);
    rbuf_unref(a);
    rbuf_unref(b);
    /* echo: what the handler sends while handling a POST waits for the next GET */
    s.echo = 1;
    CHECK_EQ_INT(exchange(&s, &post, "POST", t, "4ping?", 6), 200);
    CHECK_EQ_INT(exchange(&s, &get, "GET", t, NULL, 0), 200);
    BODY_IS(&get, "4ping?");
    CHECK_EQ_INT(s.nclose, 0);
    srv_stop(&s);
    cli_free(&get);
    cli_free(&post);
    srv_free(&s);
}

/* ---------------------------------------------------------------- the error table */

TEST(error_answers)
{
    static const struct {
        const char *method, *target, *headers;
        int status;
        const char *body;
        const char *observed; /* "code name|" */
    } v[] = {
        {"GET", PATH "?EIO=4&transport=carrier-pigeon", NULL, 400, "{\"code\":0,\"message\":\"Transport unknown\"}",
         "0 -|"},
        {"GET", PATH "?EIO=4", NULL, 400, "{\"code\":0,\"message\":\"Transport unknown\"}", "0 -|"},
        {"GET", PATH "?EIO=4&transport=polling&sid=AAAAAAAAAAAAAAAAAAAA", NULL, 400,
         "{\"code\":1,\"message\":\"Session ID unknown\"}", "1 -|"},
        {"GET", PATH "?EIO=4&transport=polling&sid=short", NULL, 400, "{\"code\":1,\"message\":\"Session ID unknown\"}",
         "1 -|"},
        {"POST", PATH "?EIO=4&transport=polling", NULL, 400, "{\"code\":2,\"message\":\"Bad handshake method\"}",
         "2 -|"},
        {"GET", PATH "?EIO=4&transport=websocket", NULL, 400, "{\"code\":3,\"message\":\"Bad request\"}",
         "3 TRANSPORT_HANDSHAKE_ERROR|"},
        {"GET", PATH "?EIO=3&transport=polling", NULL, 400, "{\"code\":5,\"message\":\"Unsupported protocol version\"}",
         "5 -|"},
        {"GET", PATH "?transport=polling", NULL, 400, "{\"code\":5,\"message\":\"Unsupported protocol version\"}",
         "5 -|"},
        /* an upgrade request is refused with a text/html body, as the reference's abortUpgrade */
        {"GET", PATH "?EIO=3&transport=websocket", LB_WS_HEADERS, 400, "Unsupported protocol version", "5 -|"},
    };
    srv_t s;
    srv_config(&s);
    srv_open(&s);
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        cli_t c;
        cli_open(&s, &c);
        s.errors.len = 0;
        lb_request(c.fd, v[i].method, v[i].target, v[i].headers, v[i].method[0] == 'P' ? "" : NULL, 0);
        int st = read_resp(&s, &c);
        size_t blen = strlen(v[i].body), olen = strlen(v[i].observed);
        if (st != v[i].status || c.r.body.len != blen || memcmp(c.r.body.ptr, v[i].body, blen) != 0 ||
            s.errors.len != olen || memcmp(s.errors.base, v[i].observed, olen) != 0) {
            fprintf(stderr, "  %s %s: %d %.*s (observed %.*s)\n", v[i].method, v[i].target, st, (int)c.r.body.len,
                    c.r.body.ptr, (int)s.errors.len, s.errors.base);
            test_failed_now = 1;
        }
        if (v[i].headers != NULL)
            HDR_IS(&c, "Content-type", "text/html");
        else
            HDR_IS(&c, "Content-Type", "application/json");
        cli_free(&c);
    }
    /* 4: allowRequest refuses (403), with its own message or the table's */
    static const char *msgs[] = {"not you", NULL};
    for (int i = 0; i < 2; i++) {
        cli_t c;
        cli_open(&s, &c);
        s.refuse = 1;
        s.refuse_msg = msgs[i];
        CHECK_EQ_INT(exchange(&s, &c, "GET", PATH "?EIO=4&transport=polling", NULL, 0), 403);
        if (i == 0)
            BODY_IS(&c, "{\"code\":4,\"message\":\"not you\"}");
        else
            BODY_IS(&c, "{\"code\":4,\"message\":\"Forbidden\"}");
        cli_free(&c);
    }
    s.refuse = 0;
    CHECK_EQ_INT(s.nopen, 0);
    /* 3 (TRANSPORT_MISMATCH): a session named with the other transport */
    cli_t c;
    char sid[21], t[128];
    cli_open(&s, &c);
    CHECK_EQ_INT(handshake(&s, &c, sid, NULL), 0);
    target(t, sizeof(t), "websocket", sid);
    s.errors.len = 0;
    CHECK_EQ_INT(exchange(&s, &c, "GET", t, NULL, 0), 400);
    BODY_IS(&c, "{\"code\":3,\"message\":\"Bad request\"}");
    CHECK_EQ_MEM(s.errors.base, s.errors.len, "3 TRANSPORT_MISMATCH|");
    CHECK_EQ_INT(s.nclose, 0); /* a refused request does not touch the session */
    for (int code = 0; code <= 5; code++)
        CHECK(strlen(eio_error_message((eio_error_t)code)) > 0);
    CHECK(strcmp(eio_error_message((eio_error_t)77), "Bad request") == 0);
    srv_stop(&s);
    cli_free(&c);
    srv_free(&s);
}

/* allowRequest answering later: the request waits; an answer after the client left, or a second
 * answer, is ignored; no answer within allow_timeout refuses with 403. */
TEST(allow_later)
{
    srv_t s;
    cli_t c;
    srv_config(&s);
    s.cfg.allow_timeout = 200;
    srv_open(&s);
    s.defer = 1;
    cli_open(&s, &c);
    lb_request(c.fd, "GET", PATH "?EIO=4&transport=polling", NULL, NULL, 0);
    LB_UNTIL(&s.lb, s.pending != NULL);
    CHECK(eio_allow_pending(s.pending));
    CHECK_EQ_INT(s.nopen, 0);
    eio_allow_done(s.pending, 1, NULL); /* later: the handshake goes on */
    CHECK_EQ_INT(s.nopen, 1);
    CHECK(!eio_allow_pending(s.pending));
    eio_allow_done(s.pending, 0, "too late"); /* a second answer: ignored */
    eio_allow_unref(s.pending);
    s.pending = NULL;
    CHECK_EQ_INT(read_resp(&s, &c), 200);
    CHECK(c.r.body.len > 9 && memcmp(c.r.body.ptr, "0{\"sid\":\"", 9) == 0);
    /* a later refusal carries its message */
    lb_request(c.fd, "GET", PATH "?EIO=4&transport=polling", NULL, NULL, 0);
    LB_UNTIL(&s.lb, s.pending != NULL);
    eio_allow_done(s.pending, 0, "not you");
    eio_allow_unref(s.pending);
    s.pending = NULL;
    CHECK_EQ_INT(read_resp(&s, &c), 403);
    BODY_IS(&c, "{\"code\":4,\"message\":\"not you\"}");
    /* no answer: refused at the deadline */
    lb_request(c.fd, "GET", PATH "?EIO=4&transport=polling", NULL, NULL, 0);
    CHECK_EQ_INT(read_resp(&s, &c), 403);
    BODY_IS(&c, "{\"code\":4,\"message\":\"Forbidden\"}");
    CHECK(s.pending != NULL && !eio_allow_pending(s.pending));
    eio_allow_unref(s.pending);
    s.pending = NULL;
    cli_free(&c);
    /* the client leaves while it waits: the answer finds nothing to answer */
    s.cfg.allow_timeout = 45000;
    cli_open(&s, &c);
    lb_request(c.fd, "GET", PATH "?EIO=4&transport=polling", NULL, NULL, 0);
    LB_UNTIL(&s.lb, s.pending != NULL);
    close(c.fd);
    s.fds[--s.nfds] = -1;
    LB_UNTIL(&s.lb, !eio_allow_pending(s.pending));
    eio_allow_done(s.pending, 1, NULL);
    eio_allow_unref(s.pending);
    s.pending = NULL;
    CHECK_EQ_INT(s.nopen, 1);
    /* a request still waiting when the server shuts down is answered 503 */
    cli_open(&s, &c);
    lb_request(c.fd, "GET", PATH "?EIO=4&transport=polling", NULL, NULL, 0);
    LB_UNTIL(&s.lb, s.pending != NULL);
    eio_server_shutdown(&s.eio, "forced close", on_freed);
    CHECK(!eio_allow_pending(s.pending));
    eio_allow_unref(s.pending);
    CHECK_EQ_INT(read_resp(&s, &c), 503);
    for (int i = 0; i < s.nfds; i++)
        close(s.fds[i]);
    LB_UNTIL(&s.lb, s.freed);
    CHECK_EQ_INT(lb_stop(&s.lb), 0);
    cli_free(&c);
    srv_free(&s);
}

/* ---------------------------------------------------------------- heartbeat */

/* Reads frames until a text frame other than a ping arrives or `pings` pings were answered. */
static int answer_pings(srv_t *s, int fd, buf_t *in, int pings)
{
    buf_t p = BUF_INIT;
    int n = 0;
    while (n < pings) {
        int op = lb_ws_read(&s->lb, fd, in, &p);
        if (op != 0x81 || p.len != 1 || p.base[0] != '2')
            break;
        lb_ws_send(fd, 1, 1, "3", 1);
        n++;
    }
    buf_free(&p);
    return n;
}

TEST(heartbeat_websocket)
{
    srv_t s;
    buf_t in = BUF_INIT, p = BUF_INIT;
    srv_config(&s);
    s.cfg.ping_interval = 10;
    s.cfg.ping_timeout = 5000; /* answered at once here: only a stalled machine would reach it */
    srv_open(&s);
    int fd = ws_open(&s, &in, NULL);
    CHECK(fd >= 0);
    CHECK_EQ_INT(lb_ws_read(&s.lb, fd, &in, &p), 0x81);
    CHECK(p.len > 10 && memmem(p.base, p.len, "\"upgrades\":[]", 13) != NULL); /* nothing to upgrade to */
    CHECK_EQ_INT(eio_session_transport(s.sess[0]), EIO_T_WEBSOCKET);
    CHECK_EQ_INT(answer_pings(&s, fd, &in, 5), 5);
    LB_UNTIL(&s.lb, s.npongs == 5);
    CHECK_EQ_INT(s.npongs, 5);
    CHECK_EQ_INT(s.nclose, 0);
    srv_stop(&s);
    buf_free(&in);
    buf_free(&p);
    srv_free(&s);
}

/* No pong: the session closes with "ping timeout", whatever the transport. */
TEST(heartbeat_timeout)
{
    srv_t s;
    buf_t in = BUF_INIT, p = BUF_INIT;
    cli_t c;
    char sid[21], t[128];
    srv_config(&s);
    s.cfg.ping_interval = 10;
    s.cfg.ping_timeout = 30;
    srv_open(&s);
    int fd = ws_open(&s, &in, NULL);
    CHECK_EQ_INT(lb_ws_read(&s.lb, fd, &in, &p), 0x81); /* open */
    CHECK_EQ_INT(lb_ws_read(&s.lb, fd, &in, &p), 0x81); /* ping, unanswered */
    CHECK_EQ_MEM(p.base, p.len, "2");
    CHECK_EQ_INT(lb_ws_read(&s.lb, fd, &in, &p), 0x88); /* then the close frame */
    CHECK_EQ_INT(s.nclose, 1);
    CHECK_EQ_MEM(s.reasons.base, s.reasons.len, "ping timeout\n");
    /* polling: the ping is in a GET's answer, the pong comes in a POST */
    cli_open(&s, &c);
    CHECK_EQ_INT(handshake(&s, &c, sid, t), 0);
    CHECK_EQ_INT(exchange(&s, &c, "GET", t, NULL, 0), 200);
    BODY_IS(&c, "2");
    CHECK_EQ_INT(exchange(&s, &c, "POST", t, "3", 1), 200);
    CHECK_EQ_INT(exchange(&s, &c, "GET", t, NULL, 0), 200);
    BODY_IS(&c, "2");
    LB_UNTIL(&s.lb, s.nclose == 2); /* this one unanswered */
    CHECK_EQ_MEM(s.reasons.base, s.reasons.len, "ping timeout\nping timeout\n");
    CHECK_EQ_INT(exchange(&s, &c, "GET", t, NULL, 0), 400); /* the session is gone */
    BODY_IS(&c, "{\"code\":1,\"message\":\"Session ID unknown\"}");
    srv_stop(&s);
    cli_free(&c);
    buf_free(&in);
    buf_free(&p);
    srv_free(&s);
}

/* ---------------------------------------------------------------- upgrade */

TEST(upgrade_to_websocket)
{
    srv_t s;
    cli_t get, post;
    buf_t in = BUF_INIT, p = BUF_INIT;
    char sid[21], t[128];
    srv_config(&s);
    srv_open(&s);
    cli_open(&s, &get);
    cli_open(&s, &post);
    CHECK_EQ_INT(handshake(&s, &get, sid, t), 0);
    lb_request(get.fd, "GET", t, NULL, NULL, 0); /* held */
    LB_UNTIL(&s.lb, eio_session_writable(s.sess[0]));
    /* the probe: a WebSocket naming the session; no open packet on it */
    int fd = ws_open(&s, &in, sid);
    CHECK(fd >= 0);
    CHECK_EQ_INT(in.len, 0);
    lb_ws_send(fd, 1, 1, "2probe", 6);
    CHECK_EQ_INT(lb_ws_read(&s.lb, fd, &in, &p), 0x81);
    CHECK_EQ_MEM(p.base, p.len, "3probe");
    /* the held GET is released with a noop so that the client can pause polling */
    CHECK_EQ_INT(read_resp(&s, &get), 200);
    BODY_IS(&get, "6");
    /* still polling until the upgrade packet: a message sent now waits, then goes over the
     * WebSocket, in order */
    rbuf_t *m = eio_packet_new(EIO_MESSAGE, "queued", 6);
    eio_send(s.sess[0], m);
    rbuf_unref(m);
    CHECK_EQ_INT(s.nupgrade, 0);
    CHECK_EQ_INT(eio_session_transport(s.sess[0]), EIO_T_POLLING);
    lb_ws_send(fd, 1, 1, "5", 1);
    CHECK_EQ_INT(lb_ws_read(&s.lb, fd, &in, &p), 0x81);
    CHECK_EQ_MEM(p.base, p.len, "4queued");
    CHECK_EQ_INT(s.nupgrade, 1);
    CHECK_EQ_INT(eio_session_transport(s.sess[0]), EIO_T_WEBSOCKET);
    CHECK(eio_session_upgraded(s.sess[0]));
    /* both ways over the WebSocket now, binary included */
    s.echo = 1;
    lb_ws_send(fd, 1, 1, "4hi", 3);
    CHECK_EQ_INT(lb_ws_read(&s.lb, fd, &in, &p), 0x81);
    CHECK_EQ_MEM(p.base, p.len, "4hi");
    lb_ws_send(fd, 1, 2, "\x01\x02", 2);
    CHECK_EQ_INT(lb_ws_read(&s.lb, fd, &in, &p), 0x82);
    CHECK_EQ_MEM(p.base, p.len, "\x01\x02");
    CHECK_EQ_MEM(s.msgs.base, s.msgs.len, "T:hi\nB:\x01\x02\n");
    /* polling requests naming it are refused now */
    CHECK_EQ_INT(exchange(&s, &post, "POST", t, "4x", 2), 400);
    BODY_IS(&post, "{\"code\":3,\"message\":\"Bad request\"}");
    CHECK_EQ_INT(s.nclose, 0);
    srv_stop(&s);
    CHECK_EQ_INT(s.nclose, 1);
    cli_free(&get);
    cli_free(&post);
    buf_free(&in);
    buf_free(&p);
    srv_free(&s);
}

/* A probe that never sends the upgrade packet is dropped after upgradeTimeout; polling goes on,
 * and a second probe can then succeed. */
TEST(upgrade_timeout)
{
    srv_t s;
    cli_t c;
    buf_t in = BUF_INIT, p = BUF_INIT;
    char sid[21], t[128];
    srv_config(&s);
    s.cfg.upgrade_timeout = 20;
    srv_open(&s);
    cli_open(&s, &c);
    CHECK_EQ_INT(handshake(&s, &c, sid, t), 0);
    int fd = ws_open(&s, &in, sid);
    lb_ws_send(fd, 1, 1, "2probe", 6);
    CHECK_EQ_INT(lb_ws_read(&s.lb, fd, &in, &p), 0x81);
    CHECK(lb_pump(&s.lb, fd, &in, 0)); /* no "5": the probe is closed */
    CHECK_EQ_INT(s.nupgrade, 0);
    CHECK_EQ_INT(s.nclose, 0);
    CHECK_EQ_INT(exchange(&s, &c, "POST", t, "4still here", 11), 200);
    CHECK_EQ_MEM(s.msgs.base, s.msgs.len, "T:still here\n");
    in.len = 0;
    fd = ws_open(&s, &in, sid);
    lb_ws_send(fd, 1, 1, "2probe", 6);
    CHECK_EQ_INT(lb_ws_read(&s.lb, fd, &in, &p), 0x81);
    lb_ws_send(fd, 1, 1, "5", 1);
    LB_UNTIL(&s.lb, s.nupgrade == 1);
    CHECK_EQ_INT(s.nupgrade, 1);
    srv_stop(&s);
    cli_free(&c);
    buf_free(&in);
    buf_free(&p);
    srv_free(&s);
}

/* ---------------------------------------------------------------- closing */

/* eio_close() on a polling session: what is queued goes out with the next GET, the close packet
 * with the one after; with a GET held, the close packet answers it at once. */
TEST(close_polling)
{
    srv_t s;
    cli_t c;
    char sid[21], t[128];
    srv_config(&s);
    srv_open(&s);
    cli_open(&s, &c);
    CHECK_EQ_INT(handshake(&s, &c, sid, t), 0);
    rbuf_t *m = eio_packet_new(EIO_MESSAGE, "last", 4);
    eio_send(s.sess[0], m);
    rbuf_unref(m);
    eio_close(s.sess[0]);
    CHECK_EQ_INT(s.nclose, 0); /* waits for a GET to carry "last" */
    CHECK(!eio_session_is_open(s.sess[0]));
    CHECK_EQ_INT(exchange(&s, &c, "GET", t, NULL, 0), 200);
    BODY_IS(&c, "4last");
    CHECK_EQ_INT(exchange(&s, &c, "GET", t, NULL, 0), 200);
    BODY_IS(&c, "1");
    CHECK_EQ_INT(s.nclose, 1);
    CHECK_EQ_MEM(s.reasons.base, s.reasons.len, "forced close\n");
    /* a GET held: answered with the close packet at once */
    CHECK_EQ_INT(handshake(&s, &c, sid, t), 0);
    lb_request(c.fd, "GET", t, NULL, NULL, 0);
    LB_UNTIL(&s.lb, eio_session_writable(s.sess[1]));
    eio_session_t **v; /* a snapshot holds references: the pointer outlives the close */
    size_t n = eio_server_sessions(&s.eio, &v);
    CHECK(n == 1 && v[0] == s.sess[1]);
    eio_close(s.sess[1]);
    CHECK_EQ_INT(s.nclose, 2);
    CHECK_EQ_INT(read_resp(&s, &c), 200);
    BODY_IS(&c, "1");
    /* sending to or closing a closed session is a no-op */
    rbuf_t *late = eio_packet_new(EIO_MESSAGE, "late", 4);
    eio_send(v[0], late);
    eio_close(v[0]);
    CHECK_EQ_INT(late->refs, 1);
    CHECK(!eio_session_is_open(v[0]) && !eio_session_writable(v[0]));
    CHECK_EQ_INT(s.nclose, 2);
    rbuf_unref(late);
    eio_sessions_release(v, n);
    CHECK_EQ_INT(eio_server_sessions(&s.eio, &v), 0);
    eio_sessions_release(v, 0);
    /* the client's close packet while a GET is held: that GET gets a noop (polling.ts onClose) */
    cli_t g;
    cli_open(&s, &g);
    CHECK_EQ_INT(handshake(&s, &c, sid, t), 0);
    lb_request(g.fd, "GET", t, NULL, NULL, 0);
    LB_UNTIL(&s.lb, eio_session_writable(s.sess[2]));
    CHECK_EQ_INT(exchange(&s, &c, "POST", t, "1", 1), 200);
    CHECK_EQ_INT(read_resp(&s, &g), 200);
    BODY_IS(&g, "6");
    CHECK_EQ_INT(s.nclose, 3);
    CHECK_EQ_MEM(s.reasons.base, s.reasons.len, "forced close\nforced close\ntransport close\n");
    srv_stop(&s);
    cli_free(&c);
    cli_free(&g);
    srv_free(&s);
}

/* How a session ends, and the reason its handler gets (the reference's reasons). */
TEST(close_reasons)
{
    srv_t s;
    cli_t c, g;
    buf_t in = BUF_INIT, p = BUF_INIT;
    char sid[21], t[128], big[1100];
    srv_config(&s);
    srv_open(&s);
    cli_open(&s, &c);
    cli_open(&s, &g);
    /* polling: the client's close packet */
    CHECK_EQ_INT(handshake(&s, &c, sid, t), 0);
    CHECK_EQ_INT(exchange(&s, &c, "POST", t, "1", 1), 200);
    /* an invalid payload */
    CHECK_EQ_INT(handshake(&s, &c, sid, t), 0);
    CHECK_EQ_INT(exchange(&s, &c, "POST", t, "9nope", 5), 200);
    /* more packets in one POST than max_packets_per_post (10) */
    CHECK_EQ_INT(handshake(&s, &c, sid, t), 0);
    static const char eleven[] = "6\x1e"
                                 "6\x1e"
                                 "6\x1e"
                                 "6\x1e"
                                 "6\x1e"
                                 "6\x1e"
                                 "6\x1e"
                                 "6\x1e"
                                 "6\x1e"
                                 "6\x1e"
                                 "6";
    CHECK_EQ_INT(exchange(&s, &c, "POST", t, eleven, sizeof(eleven) - 1), 200);
    /* a body over maxHttpBufferSize: 413 */
    CHECK_EQ_INT(handshake(&s, &c, sid, t), 0);
    memset(big, '4', sizeof(big));
    lb_request(c.fd, "POST", t, NULL, big, sizeof(big));
    CHECK_EQ_INT(read_resp(&s, &c), 413);
    cli_free(&c); /* the connection closes after a 413 */
    cli_open(&s, &c);
    /* binary POST bodies are not protocol v4 */
    CHECK_EQ_INT(handshake(&s, &c, sid, t), 0);
    lb_request(c.fd, "POST", t, "Content-Type: application/octet-stream\r\n", "4x", 2);
    CHECK_EQ_INT(read_resp(&s, &c), 400);
    /* two GETs at once: the second is refused and the session closed */
    CHECK_EQ_INT(handshake(&s, &c, sid, t), 0);
    lb_request(g.fd, "GET", t, NULL, NULL, 0);
    LB_UNTIL(&s.lb, s.sess[5] != NULL && eio_session_writable(s.sess[5]));
    CHECK_EQ_INT(exchange(&s, &c, "GET", t, NULL, 0), 400);
    CHECK_EQ_INT(read_resp(&s, &g), 200); /* the first one gets the close packet */
    BODY_IS(&g, "1");
    /* a held GET whose connection goes away */
    CHECK_EQ_INT(handshake(&s, &c, sid, t), 0);
    lb_request(c.fd, "GET", t, NULL, NULL, 0);
    LB_UNTIL(&s.lb, s.sess[6] != NULL && eio_session_writable(s.sess[6]));
    shutdown(c.fd, SHUT_RDWR);
    LB_UNTIL(&s.lb, s.nclose == 7);
    /* a POST whose connection goes away in the middle of its body (the reference: "data request
     * connection closed prematurely") */
    cli_free(&c);
    cli_open(&s, &c);
    CHECK_EQ_INT(handshake(&s, &c, sid, t), 0);
    lb_sends(c.fd, "POST ");
    lb_sends(c.fd, t);
    lb_sends(c.fd, " HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n4hel");
    lb_settle(&s.lb);
    CHECK_EQ_INT(s.nclose, 7); /* waiting for the rest of the body */
    shutdown(c.fd, SHUT_RDWR);
    LB_UNTIL(&s.lb, s.nclose == 8);
    CHECK_EQ_MEM(s.reasons.base, s.reasons.len,
                 "transport close\nparse error\nparse error\ntransport error\ntransport error\ntransport error\n"
                 "transport error\ntransport error\n");
    /* WebSocket: a close packet (ignored there, as the reference: the invalid packet sent after it
     * closes the session), an invalid packet, a client ping (v4: only the server pings), the
     * connection closing, a protocol error */
    static const struct {
        int op;
        const char *data;
        size_t len;
        const char *reason;
    } ws[] = {
        {1, "1\0x", 3, "parse error\n"},     {1, "x", 1, "parse error\n"},        {1, "2", 1, "transport error\n"},
        {-1, NULL, 0, "transport close\n"}, {1, "\xff", 1, "transport error\n"}, /* invalid UTF-8: close 1007 */
    };
    for (size_t i = 0; i < sizeof(ws) / sizeof(ws[0]); i++) {
        s.reasons.len = 0;
        in.len = 0;
        int n = s.nclose, fd = ws_open(&s, &in, NULL);
        CHECK_EQ_INT(lb_ws_read(&s.lb, fd, &in, &p), 0x81);
        if (ws[i].op < 0)
            shutdown(fd, SHUT_RDWR);
        for (size_t k = 0; ws[i].op > 0 && k < ws[i].len; k += strlen(ws[i].data + k) + 1)
            lb_ws_send(fd, 1, ws[i].op, ws[i].data + k, strlen(ws[i].data + k)); /* NUL-separated frames */
        LB_UNTIL(&s.lb, s.nclose == n + 1);
        CHECK(s.reasons.len == strlen(ws[i].reason) && memcmp(s.reasons.base, ws[i].reason, s.reasons.len) == 0);
    }
    srv_stop(&s);
    cli_free(&c);
    cli_free(&g);
    buf_free(&in);
    buf_free(&p);
    srv_free(&s);
}

/* The handler closes its session from inside on_message (WebSocket): a close frame follows. */
TEST(close_from_the_handler)
{
    srv_t s;
    buf_t in = BUF_INIT, p = BUF_INIT;
    srv_config(&s);
    srv_open(&s);
    s.echo = 1;
    s.close_on = 1;
    int fd = ws_open(&s, &in, NULL);
    CHECK_EQ_INT(lb_ws_read(&s.lb, fd, &in, &p), 0x81);
    lb_ws_send(fd, 1, 1, "4bye", 4);
    CHECK_EQ_INT(lb_ws_read(&s.lb, fd, &in, &p), 0x81); /* the echo, sent before the close */
    CHECK_EQ_MEM(p.base, p.len, "4bye");
    CHECK_EQ_INT(lb_ws_read(&s.lb, fd, &in, &p), 0x88);
    CHECK(lb_pump(&s.lb, fd, &in, 0));
    CHECK_EQ_INT(s.nclose, 1);
    CHECK_EQ_MEM(s.reasons.base, s.reasons.len, "forced close\n");
    srv_stop(&s);
    buf_free(&in);
    buf_free(&p);
    srv_free(&s);
}

/* More than max_buffered bytes waiting for a polling client: the session closes. */
TEST(polling_buffer_limit)
{
    srv_t s;
    cli_t c;
    char sid[21];
    srv_config(&s);
    s.cfg.max_buffered = 200; /* the open packet (about 110 bytes) goes through it too */
    srv_open(&s);
    cli_open(&s, &c);
    CHECK_EQ_INT(handshake(&s, &c, sid, NULL), 0);
    rbuf_t *m = rbuf_new(120);
    memset(rbuf_payload(m), '4', 120);
    eio_send(s.sess[0], m);
    CHECK_EQ_INT(s.nclose, 0);
    eio_send(s.sess[0], m);
    CHECK_EQ_INT(s.nclose, 1);
    CHECK_EQ_MEM(s.reasons.base, s.reasons.len, "transport error\n");
    LB_UNTIL(&s.lb, m->refs == 1); /* the queued reference goes with the session, freed from the loop */
    CHECK_EQ_INT(m->refs, 1);
    rbuf_unref(m);
    srv_stop(&s);
    cli_free(&c);
    srv_free(&s);
}

/* ---------------------------------------------------------------- CORS */

TEST(cors_headers)
{
    static char a[] = "https://a.example", b[] = "https://b.example";
    char *two[] = {a, b};
    slice_t names[] = {SLICE_LIT("Origin")}, values[] = {SLICE_LIT("https://b.example")};
    http_req_t req = {.nheaders = 1, .names = names, .values = values};
    http_req_t none = {0};
    http_hdr_t h[8];
    eio_config_t cfg = {0};
    CHECK_EQ_INT(eio_cors_headers(&cfg, &req, h), 0); /* CORS off */
    cfg.cors.origin_any = 1;
    CHECK_EQ_INT(eio_cors_headers(&cfg, &req, h), 1);
    CHECK(strcmp(h[0].name, "Access-Control-Allow-Origin") == 0 && strcmp(h[0].value, "*") == 0);
    cfg.cors = (eio_cors_t){.origins = two, .norigins = 1, .credentials = 1};
    CHECK_EQ_INT(eio_cors_headers(&cfg, &none, h), 3); /* one origin: sent whatever the request's */
    CHECK(strcmp(h[0].value, "https://a.example") == 0 && strcmp(h[1].name, "Vary") == 0);
    CHECK(strcmp(h[2].name, "Access-Control-Allow-Credentials") == 0 && strcmp(h[2].value, "true") == 0);
    cfg.cors = (eio_cors_t){.origins = two, .norigins = 2};
    CHECK_EQ_INT(eio_cors_headers(&cfg, &req, h), 2); /* a list: the request's origin when listed */
    CHECK(strcmp(h[0].value, "https://b.example") == 0 && strcmp(h[1].value, "Origin") == 0);
    CHECK_EQ_INT(eio_cors_headers(&cfg, &none, h), 1);
    CHECK(strcmp(h[0].name, "Vary") == 0);
}

TEST(cors_on_the_wire)
{
    srv_t s;
    cli_t c;
    static char app[] = "https://app.example", methods[] = "GET,POST";
    char *one[] = {app};
    srv_config(&s);
    s.cfg.cors = (eio_cors_t){.origins = one, .norigins = 1, .methods = methods};
    srv_open(&s);
    cli_open(&s, &c);
    /* the preflight is answered before Engine.IO looks at the request */
    lb_request(c.fd, "OPTIONS", PATH "?EIO=4&transport=polling",
               "Origin: https://app.example\r\nAccess-Control-Request-Headers: x-a\r\n", NULL, 0);
    CHECK_EQ_INT(read_resp(&s, &c), 204);
    HDR_IS(&c, "Access-Control-Allow-Origin", "https://app.example");
    HDR_IS(&c, "Access-Control-Allow-Methods", "GET,POST");
    HDR_IS(&c, "Access-Control-Allow-Headers", "x-a");
    /* every answer carries them, error answers included */
    CHECK_EQ_INT(exchange(&s, &c, "GET", PATH "?EIO=4&transport=nope", NULL, 0), 400);
    HDR_IS(&c, "Access-Control-Allow-Origin", "https://app.example");
    CHECK_EQ_INT(exchange(&s, &c, "GET", PATH "?EIO=4&transport=polling", NULL, 0), 200);
    HDR_IS(&c, "Access-Control-Allow-Origin", "https://app.example");
    srv_stop(&s);
    cli_free(&c);
    srv_free(&s);
}

int main(void)
{
    RUN(handshake_polling);
    RUN(handshake_options);
    RUN(polling_round_trips);
    RUN(error_answers);
    RUN(allow_later);
    RUN(heartbeat_websocket);
    RUN(heartbeat_timeout);
    RUN(upgrade_to_websocket);
    RUN(upgrade_timeout);
    RUN(close_polling);
    RUN(close_reasons);
    RUN(close_from_the_handler);
    RUN(polling_buffer_limit);
    RUN(cors_headers);
    RUN(cors_on_the_wire);
    return test_summary();
}
