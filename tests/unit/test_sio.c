/* sio through its public API: a fake upper layer (sio_handler_t) records what sio tells it and
 * answers CONNECTs as each case asks, over real Engine.IO sessions (eio_server_t + sio_eio_handler
 * on the loopback harness) whose clients are raw WebSocket (and, for the upgrade, polling)
 * connections sending Socket.IO packets by hand. The fake layer holds a reference on every socket
 * it was given, from on_connect to on_disconnect/on_release, as the Lua layer's handles do. */
#include <stdarg.h>
#include <stdlib.h>
#include <unistd.h>

#include "eio.h"
#include "http.h"
#include "loopback.h"
#include "sio.h"
#include "test.h"

#define PATH  "/socket.io/"
#define MAXSK 32

enum { ACCEPT = 0, REFUSE, DEFER };

typedef struct {
    lb_t lb;
    http_limits_t lim;
    eio_config_t ecfg;
    eio_server_t eio;
    sio_config_t cfg;
    sio_handler_t h;
    sio_server_t sio;
    int mode;                /* how on_connect answers */
    sio_socket_t *sk[MAXSK]; /* sockets given to on_connect, in order; NULL once released */
    int nsk;
    sio_resolve_t *pending;  /* a CONNECT whose namespace the test resolves later */
    int npackets;
    buf_t log; /* one line per call of the handler */
    int fds[16];
    int nfds;
    int freed;
} srv_t;

/* ---------------------------------------------------------------- the fake upper layer */

static void __attribute__((format(printf, 2, 3))) logf_(srv_t *s, const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    buf_appendstr(&s->log, line);
}

static void forget(srv_t *s, sio_socket_t *so)
{
    for (int i = 0; i < s->nsk; i++)
        if (s->sk[i] == so) {
            s->sk[i] = NULL;
            sio_socket_unref(so);
        }
}

static void on_connect(sio_socket_t *so, slice_t auth, void *ud)
{
    srv_t *s = ud;
    static const char no[] = "{\"message\":\"no\"}";
    logf_(s, "connect %.*s %s\n", (int)auth.len, auth.ptr, so->nsp->name);
    sio_socket_ref(so);
    if (s->nsk < MAXSK)
        s->sk[s->nsk++] = so;
    if (s->mode == ACCEPT)
        sio_socket_accept(so);
    else if (s->mode == REFUSE)
        sio_socket_refuse(so, no, sizeof(no) - 1);
}

static int on_packet(sio_socket_t *so, const sio_packet_t *p, rbuf_t *const *att, size_t natt, void *ud)
{
    srv_t *s = ud;
    s->npackets++;
    logf_(s, "packet %d %s %lld ", (int)p->type, so->nsp->name, (long long)p->id);
    buf_append(&s->log, p->data.ptr, p->data.len);
    for (size_t i = 0; i < natt; i++) {
        buf_appendstr(&s->log, " +");
        buf_append(&s->log, rbuf_payload(att[i]), att[i]->len);
    }
    buf_appendc(&s->log, '\n');
    return p->data.len >= 6 && memcmp(p->data.ptr, "[\"bad\"", 6) == 0 ? -1 : 0;
}

static void on_disconnect(sio_socket_t *so, const char *reason, void *ud)
{
    srv_t *s = ud;
    logf_(s, "disconnect %s %s\n", so->nsp->name, reason);
    forget(s, so);
}

static void on_release(sio_socket_t *so, void *ud)
{
    srv_t *s = ud;
    logf_(s, "release %s\n", so->nsp->name);
    forget(s, so);
}

/* Namespaces named /dyn-* are made on demand (a dynamic namespace's children), removable; the
 * answer for /later-* waits in `pending` for the test to give it. */
static void resolve(sio_resolve_t *r, slice_t name, slice_t auth, void *ud)
{
    srv_t *s = ud;
    sio_nsp_t *n = NULL;
    (void)auth;
    if (name.len >= 7 && memcmp(name.ptr, "/later-", 7) == 0) {
        sio_resolve_ref(r);
        s->pending = r;
        return;
    }
    if (name.len >= 5 && memcmp(name.ptr, "/dyn-", 5) == 0) {
        n = sio_nsp_create(&s->sio, name.ptr, name.len);
        n->removable = 1;
    }
    sio_resolve_done(r, n);
}

static void on_nsp_free(sio_nsp_t *nsp, void *ud)
{
    logf_(ud, "nsp_free %s\n", nsp->name);
}

/* ---------------------------------------------------------------- server */

static void on_request(http_req_t *req, void *data)
{
    eio_handle_request(&((srv_t *)data)->eio, req);
}

static const http_handler_t http_handler = {.on_request = on_request};

static void on_accept(net_conn_t *c, void *data)
{
    srv_t *s = data;
    http_conn_new(c, &http_handler, &s->lim, s);
}

static void on_freed(eio_server_t *e)
{
    ((srv_t *)((char *)e - offsetof(srv_t, eio)))->freed = 1;
}

/* Defaults as sl_config_defaults has them; the cases change some before srv_start. */
static void srv_config(srv_t *s)
{
    memset(s, 0, sizeof(*s));
    s->ecfg = (eio_config_t){.ping_interval = 25000,
                             .ping_timeout = 20000,
                             .upgrade_timeout = 10000,
                             .max_payload = 1000000,
                             .transports = EIO_T_POLLING | EIO_T_WEBSOCKET,
                             .allow_upgrades = 1,
                             .max_packets_per_post = 1000,
                             .max_buffered = 1u << 20};
    s->cfg = (sio_config_t){.connect_timeout = 45000, .limits = {10, 256}, .max_nsps_per_client = 100};
    s->h = (sio_handler_t){on_connect, on_packet, on_disconnect, on_release, resolve, on_nsp_free};
}

static void srv_start(srv_t *s)
{
    CHECK_EQ_INT(lb_start(&s->lb, on_accept, s), 0);
    http_limits_fill(&s->lim);
    sio_server_init(&s->sio, &s->lb.loop, &s->cfg, &s->h, s);
    eio_server_init(&s->eio, &s->lb.loop, &s->ecfg, &s->lim, &sio_eio_handler, &s->sio);
}

/* As sl_server_close and sl_server_free take it down. */
static void srv_stop(srv_t *s)
{
    sio_server_close(&s->sio, "server shutting down");
    eio_server_shutdown(&s->eio, "forced close", on_freed);
    for (int i = 0; i < s->nfds; i++)
        close(s->fds[i]);
    LB_UNTIL(&s->lb, s->freed);
    CHECK(s->freed);
    CHECK_EQ_INT(s->sio.nclients, 0);
    for (int i = 0; i < s->nsk; i++)
        CHECK(s->sk[i] == NULL); /* every socket was released to the upper layer */
    uv_close((uv_handle_t *)&s->sio.q_connect.timer, NULL);
    uv_close((uv_handle_t *)&s->sio.q_resolve.timer, NULL);
    CHECK_EQ_INT(lb_stop(&s->lb), 0);
    for (sio_nsp_t *n = s->sio.nsps; n; n = n->next)
        CHECK_EQ_INT(n->nrefs, 0);
    sio_server_free(&s->sio);
    CHECK(s->sio.nsps == NULL);
    buf_free(&s->log);
}

#define LOG_IS(s, lit) CHECK_EQ_MEM((s)->log.base, (s)->log.len, lit)

/* ---------------------------------------------------------------- clients */

typedef struct {
    int fd;
    buf_t in, p;
} cl_t;

/* A WebSocket Engine.IO session; its open packet is read. */
static void cl_open(srv_t *s, cl_t *c)
{
    memset(c, 0, sizeof(*c));
    c->fd = lb_ws_connect(&s->lb, PATH "?EIO=4&transport=websocket", &c->in);
    CHECK(c->fd >= 0);
    s->fds[s->nfds++] = c->fd;
    CHECK_EQ_INT(lb_ws_read(&s->lb, c->fd, &c->in, &c->p), 0x81);
    CHECK(c->p.len > 0 && c->p.base[0] == '0');
}

static void cl_free(cl_t *c)
{
    buf_free(&c->in);
    buf_free(&c->p);
}

static void cl_send(cl_t *c, const char *text)
{
    lb_ws_send(c->fd, 1, 1, text, strlen(text));
}

static void cl_sendbin(cl_t *c, const void *p, size_t n)
{
    lb_ws_send(c->fd, 1, 2, p, n);
}

/* Reads one frame: its first byte (0x81 text, 0x82 binary, 0x88 close), payload in c->p. */
static int cl_read(srv_t *s, cl_t *c)
{
    return lb_ws_read(&s->lb, c->fd, &c->in, &c->p);
}

/* The next frame is the text `lit`. */
#define EXPECT(s, c, lit)                                                                                              \
    do {                                                                                                               \
        CHECK_EQ_INT(cl_read((s), (c)), 0x81);                                                                         \
        CHECK_EQ_MEM((c)->p.base, (c)->p.len, lit);                                                                    \
    } while (0)

/* The next frame is the CONNECT answer for socket so ("40" + nsp + {"sid":id}). */
static void expect_connected(srv_t *s, cl_t *c, const sio_socket_t *so, const char *nsp_prefix)
{
    char want[96];
    snprintf(want, sizeof(want), "40%s{\"sid\":\"%s\"}", nsp_prefix, so ? so->id : "?");
    CHECK_EQ_INT(cl_read(s, c), 0x81);
    CHECK(c->p.len == strlen(want) && memcmp(c->p.base, want, c->p.len) == 0);
}

/* Sends a CONNECT to nsp ("" for the main namespace, "/admin") without auth, waits for the upper
 * layer's answer (ACCEPT mode) and reads it. Returns the new socket. */
static sio_socket_t *cl_join(srv_t *s, cl_t *c, const char *nsp)
{
    char pkt[320], prefix[300];
    int n = s->nsk;
    snprintf(prefix, sizeof(prefix), "%s%s", nsp, *nsp ? "," : "");
    snprintf(pkt, sizeof(pkt), "40%s", prefix);
    cl_send(c, pkt);
    LB_UNTIL(&s->lb, s->nsk > n);
    if (s->nsk <= n)
        return NULL;
    expect_connected(s, c, s->sk[n], prefix);
    return s->sk[n];
}

/* The server closed the connection: a close frame, then EOF. */
static void expect_closed(srv_t *s, cl_t *c)
{
    CHECK_EQ_INT(cl_read(s, c), 0x88);
    CHECK(lb_pump(&s->lb, c->fd, &c->in, 0));
}

/* ---------------------------------------------------------------- connect, events, acks */

TEST(connect_events_acks)
{
    srv_t s;
    cl_t c;
    srv_config(&s);
    srv_start(&s);
    cl_open(&s, &c);
    CHECK_EQ_INT(s.sio.nclients, 1);
    cl_send(&c, "40{\"token\":\"abc\"}");
    LB_UNTIL(&s.lb, s.nsk == 1);
    expect_connected(&s, &c, s.sk[0], "");
    LOG_IS(&s, "connect {\"token\":\"abc\"} /\n");
    sio_nsp_t *main_nsp = sio_nsp_find(&s.sio, "/", 1);
    CHECK(main_nsp != NULL && s.sk[0]->nsp == main_nsp);
    CHECK_EQ_INT(s.sk[0]->state, SIO_S_CONNECTED);
    CHECK_EQ_INT(main_nsp->nsockets, 1);
    CHECK(sio_socket_session(s.sk[0]) != NULL);
    CHECK(room_find_id(&main_nsp->rooms, s.sk[0]->id, 20) == s.sk[0]); /* its own room */
    /* events and acks reach the handler as decoded, payload as text */
    s.log.len = 0;
    cl_send(&c, "42[\"hello\",1,{\"a\":[]}]");
    cl_send(&c, "4217[\"with ack\"]");
    cl_send(&c, "43[\"not an ack: no id\"]");
    cl_send(&c, "435[\"ack for 5\"]");
    LB_UNTIL(&s.lb, s.npackets == 4);
    LOG_IS(&s, "packet 2 / -1 [\"hello\",1,{\"a\":[]}]\n"
               "packet 2 / 17 [\"with ack\"]\n"
               "packet 3 / -1 [\"not an ack: no id\"]\n"
               "packet 3 / 5 [\"ack for 5\"]\n");
    /* the server acks 17: one packet from sio_encode, sent to the socket */
    sio_packet_t ack = {SIO_ACK, 0, SLICE_LIT("/"), 17, SLICE_LIT("[\"ok\"]"), NULL};
    rbuf_t *b = sio_encode(&ack);
    sio_socket_send(s.sk[0], b, NULL, 0);
    rbuf_unref(b);
    EXPECT(&s, &c, "4317[\"ok\"]");
    /* a second CONNECT to the same namespace is ignored */
    s.log.len = 0;
    cl_send(&c, "40");
    cl_send(&c, "42[\"after\"]");
    LB_UNTIL(&s.lb, s.log.len > 0);
    LOG_IS(&s, "packet 2 / -1 [\"after\"]\n");
    CHECK_EQ_INT(s.nsk, 1);
    srv_stop(&s);
    cl_free(&c);
}

TEST(namespaces)
{
    srv_t s;
    cl_t c;
    srv_config(&s);
    srv_start(&s);
    sio_nsp_t *admin = sio_nsp_create(&s.sio, "/admin", 6);
    CHECK(sio_nsp_create(&s.sio, "/admin", 6) == admin); /* made once */
    cl_open(&s, &c);
    /* an existing namespace */
    cl_join(&s, &c, "/admin");
    CHECK(s.sk[0]->nsp == admin);
    /* unknown: resolve says no -> connect_error, and the connection stays */
    cl_send(&c, "40/nope,{\"x\":1}");
    EXPECT(&s, &c, "44/nope,{\"message\":\"Invalid namespace\"}");
    /* resolve makes one */
    cl_join(&s, &c, "/dyn-1");
    CHECK(sio_nsp_find(&s.sio, "/dyn-1", 6) == s.sk[1]->nsp);
    /* events for a namespace the client did not join are ignored */
    s.log.len = 0;
    cl_send(&c, "42/other,[\"x\"]");
    cl_send(&c, "42/admin,[\"y\"]");
    LB_UNTIL(&s.lb, s.log.len > 0);
    LOG_IS(&s, "packet 2 /admin -1 [\"y\"]\n");
    CHECK_EQ_INT(admin->nsockets, 1);
    CHECK_EQ_INT(sio_nsp_find(&s.sio, "/", 1)->nsockets, 0);
    srv_stop(&s);
    cl_free(&c);

    /* without resolve, any unknown namespace is refused */
    srv_config(&s);
    s.h.resolve = NULL;
    srv_start(&s);
    cl_open(&s, &c);
    cl_send(&c, "40/dyn-1,");
    EXPECT(&s, &c, "44/dyn-1,{\"message\":\"Invalid namespace\"}");
    CHECK_EQ_INT(s.nsk, 0);
    srv_stop(&s);
    cl_free(&c);
}

TEST(namespace_limit)
{
    srv_t s;
    cl_t c;
    srv_config(&s);
    s.cfg.max_nsps_per_client = 2;
    srv_start(&s);
    sio_nsp_create(&s.sio, "/a", 2);
    sio_nsp_create(&s.sio, "/b", 2);
    cl_open(&s, &c);
    cl_join(&s, &c, "");
    cl_join(&s, &c, "/a");
    cl_send(&c, "40/b,");
    EXPECT(&s, &c, "44/b,{\"message\":\"Too many namespaces\"}");
    /* leaving one makes room */
    cl_send(&c, "41/a,");
    cl_join(&s, &c, "/b");
    /* a namespace name over the limit (256 bytes) is an invalid packet: the client goes */
    char big[300] = "40/";
    memset(big + 3, 'n', 280);
    big[283] = ',';
    cl_send(&c, big);
    expect_closed(&s, &c);
    srv_stop(&s);
    cl_free(&c);
}

/* ---------------------------------------------------------------- answering CONNECT */

TEST(refuse_and_deferred_accept)
{
    srv_t s;
    cl_t c, d;
    srv_config(&s);
    srv_start(&s);
    cl_open(&s, &c);
    s.mode = REFUSE;
    cl_send(&c, "40");
    EXPECT(&s, &c, "44{\"message\":\"no\"}");
    LOG_IS(&s, "connect  /\nrelease /\n"); /* refused: released, never "disconnect" */
    /* deferred: nothing is answered until the upper layer decides */
    s.mode = DEFER;
    s.log.len = 0;
    cl_send(&c, "40");
    LB_UNTIL(&s.lb, s.nsk == 2);
    sio_socket_t *so = s.sk[1];
    CHECK_EQ_INT(so->state, SIO_S_CONNECTING);
    sio_socket_t **v;
    size_t n = sio_all_sockets(&s.sio, &v); /* every socket, connecting ones too */
    CHECK(n == 1 && v[0] == so);
    sio_release(v, n);
    sio_target_t all = {0};
    n = sio_select(&s.sio, so->nsp, &all, &v); /* ... but broadcasts reach connected ones only */
    CHECK_EQ_INT(n, 0);
    sio_release(v, n);
    CHECK_EQ_INT(sio_socket_join(so, "r", 1), 0); /* no rooms before it is connected */
    cl_send(&c, "42[\"too early\"]");             /* ignored */
    lb_settle(&s.lb);
    LOG_IS(&s, "connect  /\n");
    sio_socket_accept(so);
    expect_connected(&s, &c, so, "");
    sio_socket_accept(so); /* answered already: both are no-ops */
    sio_socket_refuse(so, "{}", 2);
    cl_send(&c, "42[\"now\"]");
    LB_UNTIL(&s.lb, s.npackets == 1);
    LOG_IS(&s, "connect  /\npacket 2 / -1 [\"now\"]\n");
    sio_packet_t ev = {SIO_EVENT, 0, SLICE_LIT("/"), -1, SLICE_LIT("[\"next\"]"), NULL};
    rbuf_t *b = sio_encode(&ev);
    sio_socket_send(so, b, NULL, 0);
    rbuf_unref(b);
    EXPECT(&s, &c, "42[\"next\"]"); /* nothing was sent in between */
    /* a socket still waiting for its answer when the client goes: released, not disconnected */
    cl_open(&s, &d);
    s.log.len = 0;
    cl_send(&d, "40");
    LB_UNTIL(&s.lb, s.nsk == 3);
    shutdown(d.fd, SHUT_RDWR);
    LB_UNTIL(&s.lb, s.sk[2] == NULL);
    LOG_IS(&s, "connect  /\nrelease /\n");
    CHECK_EQ_INT(s.sio.nclients, 1);
    srv_stop(&s);
    cl_free(&c);
    cl_free(&d);
}

/* ---------------------------------------------------------------- binary packets */

TEST(binary_reassembly)
{
    srv_t s;
    cl_t c;
    srv_config(&s);
    srv_start(&s);
    sio_nsp_create(&s.sio, "/admin", 6);
    cl_open(&s, &c);
    cl_send(&c, "40");
    cl_send(&c, "40/admin,");
    LB_UNTIL(&s.lb, s.nsk == 2);
    s.log.len = 0;
    /* one attachment */
    cl_send(&c, "451-[\"file\",{\"_placeholder\":true,\"num\":0}]");
    cl_sendbin(&c, "\x01\x02\x03", 3);
    /* two, with an ack id, the second empty: nothing is dispatched before the last one */
    cl_send(&c, "452-4[{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]");
    cl_sendbin(&c, "a", 1);
    LB_UNTIL(&s.lb, s.npackets == 1);
    lb_settle(&s.lb);
    CHECK_EQ_INT(s.npackets, 1);
    cl_sendbin(&c, "", 0);
    /* a binary ack in another namespace */
    cl_send(&c, "461-/admin,7[{\"_placeholder\":true,\"num\":0}]");
    cl_sendbin(&c, "z", 1);
    LB_UNTIL(&s.lb, s.npackets == 3);
    LOG_IS(&s, "packet 5 / -1 [\"file\",{\"_placeholder\":true,\"num\":0}] +\x01\x02\x03\n"
               "packet 5 / 4 [{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}] +a +\n"
               "packet 6 /admin 7 [{\"_placeholder\":true,\"num\":0}] +z\n");
    srv_stop(&s);
    cl_free(&c);
}

/* What makes sio close a client: every socket of it is disconnected with "forced close" (the
 * reference closes the connection on a decoding error, and Engine.IO reports "forced close"). */
TEST(invalid_input_closes_the_client)
{
    static const struct {
        const char *text[2]; /* sent first (NULL: none) */
        const char *binary;  /* then this binary message (NULL: none) */
        int npackets;        /* packets the upper layer saw */
    } v[] = {
        {{NULL}, "\x01", 0}, /* an attachment nobody announced */
        {{"451-[{\"_placeholder\":true,\"num\":0}]", "42[\"text instead of the attachment\"]"}, NULL, 0},
        {{"4511-[\"too many attachments\"]"}, NULL, 0},                /* over max_attachments (10) */
        {{"49"}, NULL, 0},                                             /* no such packet type */
        {{"42{\"not\":\"an array\"}"}, NULL, 0},                       /* an EVENT payload must be an array */
        {{"41{\"data\":1}"}, NULL, 0},                                 /* a DISCONNECT has none */
        {{"42[\"bad\"]"}, NULL, 1},                                    /* the upper layer says invalid (-1) */
        {{"451-[\"bad\",{\"_placeholder\":true,\"num\":0}]"}, "x", 1}, /* the same, once reassembled */
    };
    srv_t s;
    srv_config(&s);
    srv_start(&s);
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        cl_t c;
        cl_open(&s, &c);
        cl_join(&s, &c, "");
        s.log.len = 0;
        s.npackets = 0;
        for (int k = 0; k < 2 && v[i].text[k] != NULL; k++)
            cl_send(&c, v[i].text[k]);
        if (v[i].binary)
            cl_sendbin(&c, v[i].binary, strlen(v[i].binary));
        expect_closed(&s, &c);
        buf_appendc(&s.log, '\0');
        CHECK(strstr(s.log.base, "disconnect / forced close\n") != NULL);
        if (strstr(s.log.base, "disconnect / forced close\n") == NULL)
            fprintf(stderr, "  case %zu: %s\n", i, s.log.base);
        CHECK_EQ_INT(s.npackets, v[i].npackets);
        cl_free(&c);
    }
    CHECK_EQ_INT(s.sio.nclients, 0);
    srv_stop(&s);
}

/* ---------------------------------------------------------------- disconnecting */

TEST(disconnects)
{
    srv_t s;
    cl_t c, d;
    srv_config(&s);
    srv_start(&s);
    sio_nsp_t *admin = sio_nsp_create(&s.sio, "/admin", 6);
    cl_open(&s, &c);
    cl_join(&s, &c, "");
    cl_join(&s, &c, "/admin");
    sio_socket_t *m = s.sk[0], *a = s.sk[1];
    sio_socket_ref(a); /* the test's own, to look at it once closed */
    /* the client leaves one namespace; the other stays */
    s.log.len = 0;
    cl_send(&c, "41/admin,");
    LB_UNTIL(&s.lb, s.sk[1] == NULL);
    LOG_IS(&s, "disconnect /admin client namespace disconnect\n");
    CHECK_EQ_INT(a->state, SIO_S_CLOSED);
    CHECK(sio_socket_session(a) == NULL);
    CHECK_EQ_INT(admin->nsockets, 0);
    sio_socket_disconnect(a, 0); /* closed: a no-op */
    sio_socket_unref(a);
    CHECK_EQ_INT(m->state, SIO_S_CONNECTED);
    /* the server disconnects a socket: DISCONNECT is sent, the connection stays */
    s.log.len = 0;
    sio_socket_disconnect(m, 0);
    LOG_IS(&s, "disconnect / server namespace disconnect\n");
    EXPECT(&s, &c, "41");
    cl_join(&s, &c, "");
    /* with close: every namespace of the client, then the connection */
    cl_join(&s, &c, "/admin");
    s.log.len = 0;
    sio_socket_disconnect(s.sk[2], 1);
    EXPECT(&s, &c, "41/admin,");
    EXPECT(&s, &c, "41");
    expect_closed(&s, &c);
    LOG_IS(&s, "disconnect /admin server namespace disconnect\ndisconnect / server namespace disconnect\n");
    /* the transport goes away */
    cl_open(&s, &d);
    cl_join(&s, &d, "");
    s.log.len = 0;
    shutdown(d.fd, SHUT_RDWR);
    LB_UNTIL(&s.lb, s.sk[4] == NULL);
    LOG_IS(&s, "disconnect / transport close\n");
    CHECK_EQ_INT(s.sio.nclients, 0);
    srv_stop(&s);
    cl_free(&c);
    cl_free(&d);
}

/* sio_server_close: every connected socket is told, with the given reason. */
TEST(server_close)
{
    srv_t s;
    cl_t c, d;
    srv_config(&s);
    srv_start(&s);
    sio_nsp_create(&s.sio, "/admin", 6);
    cl_open(&s, &c);
    cl_open(&s, &d);
    cl_send(&c, "40");
    LB_UNTIL(&s.lb, s.nsk == 1);
    cl_send(&d, "40/admin,");
    LB_UNTIL(&s.lb, s.nsk == 2);
    s.log.len = 0;
    sio_server_close(&s.sio, "server shutting down");
    LOG_IS(&s, "disconnect / server shutting down\ndisconnect /admin server shutting down\n");
    for (sio_nsp_t *n = s.sio.nsps; n; n = n->next)
        CHECK(n->nsockets == 0 && n->head.nnext == &n->head);
    srv_stop(&s);
    cl_free(&c);
    cl_free(&d);
}

/* A session that joins no namespace within connect_timeout is closed; one that did is not. */
TEST(connect_timeout)
{
    srv_t s;
    cl_t idle, busy;
    srv_config(&s);
    s.cfg.connect_timeout = 30;
    s.ecfg.ping_interval = 300; /* the first ping comes long after the connect timeout */
    s.ecfg.ping_timeout = 5000;
    srv_start(&s);
    cl_open(&s, &idle);
    cl_open(&s, &busy);
    cl_send(&busy, "40");
    LB_UNTIL(&s.lb, s.nsk == 1);
    expect_closed(&s, &idle);
    CHECK_EQ_INT(s.sio.nclients, 1);
    expect_connected(&s, &busy, s.sk[0], "");
    EXPECT(&s, &busy, "2"); /* a ping: the connect timeout has passed, and busy is still here */
    CHECK_EQ_INT(s.sk[0]->state, SIO_S_CONNECTED);
    LOG_IS(&s, "connect  /\n");
    srv_stop(&s);
    cl_free(&idle);
    cl_free(&busy);
}

/* ---------------------------------------------------------------- selection and broadcast */

TEST(select_rooms_and_except)
{
    enum { N = 4 };
    srv_t s;
    cl_t c[N];
    srv_config(&s);
    srv_start(&s);
    for (int i = 0; i < N; i++) {
        cl_open(&s, &c[i]);
        cl_send(&c[i], "40");
        LB_UNTIL(&s.lb, s.nsk == i + 1);
    }
    sio_socket_t **sk = s.sk; /* A B C D */
    sio_nsp_t *nsp = sk[0]->nsp;
    CHECK_EQ_INT(sio_socket_join(sk[0], "r1", 2), 1);
    CHECK_EQ_INT(sio_socket_join(sk[0], "r1", 2), 0);
    CHECK_EQ_INT(sio_socket_join(sk[1], "r1", 2), 1);
    CHECK_EQ_INT(sio_socket_join(sk[1], "r2", 2), 1);
    CHECK_EQ_INT(sio_socket_join(sk[2], "r2", 2), 1);
    CHECK_EQ_INT(sio_socket_join(sk[3], "gone", 4), 1);
    CHECK_EQ_INT(sio_socket_leave(sk[3], "gone", 4), 1);
    CHECK_EQ_INT(sio_socket_leave(sk[3], "gone", 4), 0);
    slice_t d = {sk[3]->id, 20}, a = {sk[0]->id, 20};
    slice_t r1 = SLICE_LIT("r1"), r2 = SLICE_LIT("r2"), nope = SLICE_LIT("nope");
    const struct {
        slice_t rooms[2];
        size_t nrooms;
        slice_t except[2];
        size_t nexcept;
        const char *want; /* selected sockets, in order (A = sk[0], ...) */
    } v[] = {
        {{{0}}, 0, {{0}}, 0, "ABCD"},   {{r1}, 1, {{0}}, 0, "AB"},     {{r1, r2}, 2, {{0}}, 0, "ABC"},
        {{r2, r1}, 2, {{0}}, 0, "BCA"}, {{r1}, 1, {r2}, 1, "A"},       {{{0}}, 0, {r1}, 1, "CD"},
        {{d}, 1, {{0}}, 0, "D"},        {{d, r1}, 2, {{0}}, 0, "DAB"}, {{{0}}, 0, {a}, 1, "BCD"},
        {{nope}, 1, {{0}}, 0, ""},      {{r1}, 1, {r1}, 1, ""},        {{r1, r2}, 2, {a, nope}, 2, "BC"},
    };
    for (int round = 0; round < 2; round++) {
        if (round == 1)
            s.sio.epoch = UINT32_MAX - 3; /* the selection counter wraps during this round */
        for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
            sio_target_t t = {v[i].rooms, v[i].nrooms, v[i].except, v[i].nexcept};
            sio_socket_t **out;
            char got[8] = "";
            uint32_t refs[N];
            for (int k = 0; k < N; k++)
                refs[k] = sk[k]->refs;
            size_t n = sio_select(&s.sio, nsp, &t, &out);
            for (size_t k = 0; k < n && k < 7; k++)
                for (int j = 0; j < N; j++)
                    if (out[k] == sk[j]) {
                        got[k] = (char)('A' + j);
                        CHECK_EQ_INT(sk[j]->refs, refs[j] + 1); /* referenced while in the snapshot */
                    }
            if (strcmp(got, v[i].want) != 0) {
                fprintf(stderr, "  round %d case %zu: got \"%s\", want \"%s\"\n", round, i, got, v[i].want);
                test_failed_now = 1;
            }
            sio_release(out, n);
            for (int k = 0; k < N; k++)
                CHECK_EQ_INT(sk[k]->refs, refs[k]);
        }
    }
    CHECK(s.sio.epoch < 100);
    srv_stop(&s);
    for (int i = 0; i < N; i++)
        cl_free(&c[i]);
}

TEST(send_many_encode_once)
{
    enum { N = 3 };
    srv_t s;
    cl_t c[N];
    srv_config(&s);
    srv_start(&s);
    for (int i = 0; i < N; i++) {
        cl_open(&s, &c[i]);
        cl_join(&s, &c[i], "");
    }
    sio_target_t all = {0};
    sio_socket_t **v;
    size_t n = sio_select(&s.sio, s.sk[0]->nsp, &all, &v);
    CHECK_EQ_INT(n, N);
    /* one encoded packet queued by reference on every socket: no copy per recipient */
    sio_packet_t ev = {SIO_EVENT, 0, SLICE_LIT("/"), -1, SLICE_LIT("[\"news\",1]"), NULL};
    rbuf_t *pkt = sio_encode(&ev);
    CHECK_EQ_INT(sio_send_many(v, n, 0, pkt, NULL, 0), N);
    CHECK_EQ_INT(pkt->refs, 1 + N);
    /* volatile: the transports are busy with that packet, so it is dropped for all of them */
    rbuf_t *vol = sio_encode(&(sio_packet_t){SIO_EVENT, 0, SLICE_LIT("/"), -1, SLICE_LIT("[\"volatile\"]"), NULL});
    CHECK_EQ_INT(sio_send_many(v, n, 1, vol, NULL, 0), 0);
    for (int i = 0; i < N; i++)
        EXPECT(&s, &c[i], "42[\"news\",1]");
    LB_UNTIL(&s.lb, pkt->refs == 1);
    CHECK_EQ_INT(pkt->refs, 1);
    /* idle now: a volatile packet goes out */
    CHECK_EQ_INT(sio_send_many(v, n, 1, vol, NULL, 0), N);
    for (int i = 0; i < N; i++)
        EXPECT(&s, &c[i], "42[\"volatile\"]");
    /* with an attachment: the packet, then the binary message, both shared */
    sio_packet_t bev = {SIO_BINARY_EVENT, 1, SLICE_LIT("/"), -1,
                        SLICE_LIT("[\"bin\",{\"_placeholder\":true,\"num\":0}]"), NULL};
    rbuf_t *bpkt = sio_encode(&bev), *att = rbuf_from("\xde\xad", 2);
    att->flags |= RBUF_BINARY;
    CHECK_EQ_INT(sio_send_many(v, n, 0, bpkt, &att, 1), N);
    CHECK_EQ_INT(att->refs, 1 + N);
    for (int i = 0; i < N; i++) {
        EXPECT(&s, &c[i], "451-[\"bin\",{\"_placeholder\":true,\"num\":0}]");
        CHECK_EQ_INT(cl_read(&s, &c[i]), 0x82);
        CHECK_EQ_MEM(c[i].p.base, c[i].p.len, "\xde\xad");
    }
    /* a socket of the snapshot that left in the meantime is skipped */
    sio_socket_disconnect(s.sk[1], 0);
    EXPECT(&s, &c[1], "41");
    CHECK_EQ_INT(sio_send_many(v, n, 0, pkt, NULL, 0), N - 1);
    EXPECT(&s, &c[0], "42[\"news\",1]");
    EXPECT(&s, &c[2], "42[\"news\",1]");
    sio_release(v, n);
    LB_UNTIL(&s.lb, pkt->refs == 1 && att->refs == 1 && bpkt->refs == 1 && vol->refs == 1);
    CHECK(pkt->refs == 1 && att->refs == 1 && bpkt->refs == 1 && vol->refs == 1);
    rbuf_unref(pkt);
    rbuf_unref(vol);
    rbuf_unref(bpkt);
    rbuf_unref(att);
    srv_stop(&s);
    for (int i = 0; i < N; i++)
        cl_free(&c[i]);
}

/* ---------------------------------------------------------------- dynamic namespaces */

TEST(empty_children_are_freed)
{
    srv_t s;
    cl_t c, d;
    srv_config(&s);
    s.cfg.cleanup_empty_children = 1;
    srv_start(&s);
    cl_open(&s, &c);
    cl_open(&s, &d);
    cl_join(&s, &c, "/dyn-7");
    cl_join(&s, &d, "/dyn-7");
    CHECK(s.sk[0]->nsp == s.sk[1]->nsp);
    s.log.len = 0;
    cl_send(&c, "41/dyn-7,");
    LB_UNTIL(&s.lb, s.sk[0] == NULL);
    CHECK(sio_nsp_find(&s.sio, "/dyn-7", 6) != NULL); /* d is still in it */
    cl_send(&d, "41/dyn-7,");
    LB_UNTIL(&s.lb, s.sk[1] == NULL);
    LOG_IS(&s, "disconnect /dyn-7 client namespace disconnect\ndisconnect /dyn-7 client namespace disconnect\n"
               "nsp_free /dyn-7\n");
    CHECK(sio_nsp_find(&s.sio, "/dyn-7", 6) == NULL);
    /* made again on the next CONNECT */
    cl_join(&s, &c, "/dyn-7");
    /* closing the server closes its last socket: the namespace goes in the middle of the walk */
    s.log.len = 0;
    sio_server_close(&s.sio, "server shutting down");
    LOG_IS(&s, "disconnect /dyn-7 server shutting down\nnsp_free /dyn-7\n");
    CHECK(sio_nsp_find(&s.sio, "/dyn-7", 6) == NULL);
    srv_stop(&s);
    cl_free(&c);
    cl_free(&d);

    /* off: an empty child stays */
    srv_config(&s);
    srv_start(&s);
    cl_open(&s, &c);
    cl_send(&c, "40/dyn-7,");
    LB_UNTIL(&s.lb, s.nsk == 1);
    cl_send(&c, "41/dyn-7,");
    LB_UNTIL(&s.lb, s.sk[0] == NULL);
    CHECK(sio_nsp_find(&s.sio, "/dyn-7", 6) != NULL);
    srv_stop(&s);
    cl_free(&c);
}

/* resolve answering later: the CONNECT waits for it (the same CONNECT again waits with it); a second
 * answer is ignored; no answer within connect_timeout refuses it; a client that closes meanwhile
 * leaves the answer nothing to do. */
TEST(resolve_later)
{
    srv_t s;
    cl_t c;
    srv_config(&s);
    s.cfg.connect_timeout = 300;
    srv_start(&s);
    cl_open(&s, &c);
    cl_join(&s, &c, ""); /* "/": the connection outlives the connect timeout */
    cl_send(&c, "40/later-1,");
    LB_UNTIL(&s.lb, s.pending != NULL);
    CHECK(sio_resolve_pending(s.pending));
    sio_resolve_t *first = s.pending;
    cl_send(&c, "40/later-1,");
    cl_send(&c, "42[\"mark\"]");
    LB_UNTIL(&s.lb, s.npackets == 1);
    CHECK(s.pending == first); /* asked once */
    CHECK_EQ_INT(s.nsk, 1);
    sio_resolve_done(s.pending, sio_nsp_create(&s.sio, "/later-1", 8));
    CHECK_EQ_INT(s.nsk, 2);
    expect_connected(&s, &c, s.sk[1], "/later-1,");
    CHECK(!sio_resolve_pending(s.pending));
    sio_resolve_done(s.pending, NULL); /* a second answer: ignored */
    sio_resolve_unref(s.pending);
    s.pending = NULL;
    /* no answer: refused at the deadline */
    cl_send(&c, "40/later-2,");
    EXPECT(&s, &c, "44/later-2,{\"message\":\"Invalid namespace\"}");
    CHECK(s.pending != NULL && !sio_resolve_pending(s.pending));
    sio_resolve_unref(s.pending);
    s.pending = NULL;
    /* the client closes while it waits */
    cl_send(&c, "40/later-3,");
    LB_UNTIL(&s.lb, s.pending != NULL);
    close(c.fd);
    s.fds[--s.nfds] = -1;
    LB_UNTIL(&s.lb, !sio_resolve_pending(s.pending));
    sio_resolve_done(s.pending, sio_nsp_create(&s.sio, "/later-3", 8));
    sio_resolve_unref(s.pending);
    s.pending = NULL;
    CHECK_EQ_INT(s.nsk, 2);
    srv_stop(&s);
    cl_free(&c);
}

/* ---------------------------------------------------------------- upgrade */

/* A client that connected over polling moves to WebSocket: its sockets stay, and packets then flow
 * over the WebSocket. */
TEST(upgrade)
{
    srv_t s;
    buf_t in = BUF_INIT, ws = BUF_INIT, p = BUF_INIT;
    lb_response_t r;
    char sid[21], t[128];
    srv_config(&s);
    srv_start(&s);
    int fd = lb_connect(&s.lb);
    s.fds[s.nfds++] = fd;
    lb_request(fd, "GET", PATH "?EIO=4&transport=polling", NULL, NULL, 0);
    CHECK_EQ_INT(lb_response(&s.lb, fd, &in, &r), 0);
    CHECK(r.body.len > 29);
    memcpy(sid, r.body.ptr + 9, 20);
    sid[20] = '\0';
    buf_consume(&in, r.size);
    snprintf(t, sizeof(t), PATH "?EIO=4&transport=polling&sid=%s", sid);
    lb_request(fd, "POST", t, NULL, "40", 2);
    CHECK_EQ_INT(lb_response(&s.lb, fd, &in, &r), 0);
    buf_consume(&in, r.size);
    LB_UNTIL(&s.lb, s.nsk == 1);
    lb_request(fd, "GET", t, NULL, NULL, 0);
    CHECK_EQ_INT(lb_response(&s.lb, fd, &in, &r), 0);
    char want[64];
    snprintf(want, sizeof(want), "40{\"sid\":\"%s\"}", s.sk[0]->id);
    CHECK(r.body.len == strlen(want) && memcmp(r.body.ptr, want, r.body.len) == 0);
    buf_consume(&in, r.size);
    snprintf(t, sizeof(t), PATH "?EIO=4&transport=websocket&sid=%s", sid);
    int wfd = lb_ws_connect(&s.lb, t, &ws);
    CHECK(wfd >= 0);
    s.fds[s.nfds++] = wfd;
    lb_ws_send(wfd, 1, 1, "2probe", 6);
    CHECK_EQ_INT(lb_ws_read(&s.lb, wfd, &ws, &p), 0x81);
    lb_ws_send(wfd, 1, 1, "5", 1);
    LB_UNTIL(&s.lb, eio_session_upgraded(sio_socket_session(s.sk[0])));
    lb_ws_send(wfd, 1, 1, "42[\"over ws\"]", 13);
    LB_UNTIL(&s.lb, s.npackets == 1);
    buf_appendc(&s.log, '\0');
    CHECK(strstr(s.log.base, "packet 2 / -1 [\"over ws\"]\n") != NULL);
    srv_stop(&s);
    buf_free(&in);
    buf_free(&ws);
    buf_free(&p);
}

int main(void)
{
    RUN(connect_events_acks);
    RUN(namespaces);
    RUN(namespace_limit);
    RUN(refuse_and_deferred_accept);
    RUN(binary_reassembly);
    RUN(invalid_input_closes_the_client);
    RUN(disconnects);
    RUN(server_close);
    RUN(connect_timeout);
    RUN(select_rooms_and_except);
    RUN(send_many_encode_once);
    RUN(empty_children_are_freed);
    RUN(resolve_later);
    RUN(upgrade);
    return test_summary();
}
