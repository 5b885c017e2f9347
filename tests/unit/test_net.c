/* net over a real loopback connection: write queue, close protocol, limits. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net.h"
#include "test.h"

typedef struct {
    uv_loop_t loop;
    net_ctx_t net;
    net_conn_t *conn[4];
    int nconn;
    int nclosed;
    int why;
    int ndrain;
    size_t nread;
    int pause_on_accept;
    int ntimeout;
} srv_t;

static void on_read(net_conn_t *c, const char *data, size_t len)
{
    srv_t *s = c->owner;
    (void)data;
    s->nread += len;
}

static void on_close(net_conn_t *c, net_close_reason_t why)
{
    srv_t *s = c->owner;
    s->nclosed++;
    s->why = (int)why;
    for (int i = 0; i < s->nconn; i++)
        if (s->conn[i] == c)
            s->conn[i] = NULL;
}

static void on_drain(net_conn_t *c)
{
    ((srv_t *)c->owner)->ndrain++;
}

static void on_timeout(net_conn_t *c)
{
    ((srv_t *)c->owner)->ntimeout++;
}

static const net_ops_t ops = {.on_read = on_read, .on_close = on_close, .on_drain = on_drain};
static const net_ops_t ops_to = {.on_read = on_read, .on_close = on_close, .on_timeout = on_timeout};

static void on_accept(net_conn_t *c, void *data)
{
    srv_t *s = data;
    net_set_owner(c, &ops, s);
    s->conn[s->nconn++] = c;
    if (s->pause_on_accept)
        net_pause(c);
}

static void srv_start(srv_t *s)
{
    const char *err;
    memset(s, 0, sizeof(*s));
    uv_loop_init(&s->loop);
    CHECK_EQ_INT(net_listen(&s->net, &s->loop, "127.0.0.1", 0, on_accept, s, &err), 0);
}

static int client(srv_t *s)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)net_port(&s->net))};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
        perror("connect");
    fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
}

static void settle(srv_t *s)
{
    for (int i = 0; i < 20; i++) {
        uv_run(&s->loop, UV_RUN_NOWAIT);
        usleep(200);
    }
}

/* Reads (and counts) until EOF; 1 on EOF. */
static int drain_client(srv_t *s, int fd, size_t *total)
{
    char tmp[65536];
    for (int i = 0; i < 5000; i++) {
        uv_run(&s->loop, UV_RUN_NOWAIT);
        ssize_t r = read(fd, tmp, sizeof(tmp));
        if (r > 0)
            *total += (size_t)r;
        else if (r == 0 || errno == ECONNRESET)
            return 1;
        else {
            struct pollfd pf = {fd, POLLIN, 0};
            poll(&pf, 1, 1);
        }
    }
    return 0;
}

static void srv_stop(srv_t *s)
{
    for (int i = 0; i < 2000 && s->net.nconns > 0; i++) {
        uv_run(&s->loop, UV_RUN_NOWAIT);
        usleep(500);
    }
    CHECK_EQ_INT(s->net.nconns, 0);
    net_stop(&s->net);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(uv_loop_close(&s->loop), 0);
}

TEST(read_peer_eof)
{
    srv_t s;
    srv_start(&s);
    int fd = client(&s);
    settle(&s);
    CHECK_EQ_INT(s.nconn, 1);
    CHECK_EQ_INT(s.net.nconns, 1);
    CHECK(strcmp(net_peer(s.conn[0]), "127.0.0.1") == 0);
    CHECK_EQ_INT(write(fd, "abc", 3), 3);
    settle(&s);
    CHECK_EQ_INT(s.nread, 3);
    close(fd);
    srv_stop(&s);
    CHECK_EQ_INT(s.nclosed, 1);
    CHECK_EQ_INT(s.why, NET_CLOSE_EOF);
}

TEST(pause_resume)
{
    srv_t s;
    srv_start(&s);
    s.pause_on_accept = 1;
    int fd = client(&s);
    settle(&s);
    CHECK_EQ_INT(write(fd, "abc", 3), 3);
    settle(&s);
    CHECK_EQ_INT(s.nread, 0);
    net_resume(s.conn[0]);
    settle(&s);
    CHECK_EQ_INT(s.nread, 3);
    net_close(s.conn[0]);
    net_close(s.conn[0]); /* idempotent */
    settle(&s);
    CHECK_EQ_INT(s.nclosed, 1);
    CHECK_EQ_INT(s.why, NET_CLOSE_LOCAL);
    close(fd);
    srv_stop(&s);
}

TEST(big_write_then_close)
{
    srv_t s;
    srv_start(&s);
    int fd = client(&s);
    settle(&s);
    /* 16 MiB: more than the socket buffers hold, so most of it is queued by reference */
    rbuf_t *b = rbuf_new(1 << 20);
    memset(rbuf_payload(b), 'x', b->len);
    for (int i = 0; i < 16; i++)
        net_write(s.conn[0], b, RBUF_HEADROOM, b->len);
    net_write_copy(s.conn[0], "tail", 4);
    CHECK(s.conn[0]->queued > 0);
    CHECK(b->refs > 1);
    net_close_after_write(s.conn[0]);
    size_t total = 0;
    CHECK(drain_client(&s, fd, &total));
    CHECK_EQ_INT(total, 16 * (1 << 20) + 4);
    CHECK_EQ_INT(b->refs, 1); /* every queued reference was released */
    rbuf_unref(b);
    close(fd);
    srv_stop(&s);
    CHECK_EQ_INT(s.why, NET_CLOSE_LOCAL);
}

TEST(drain_callback)
{
    srv_t s;
    srv_start(&s);
    int fd = client(&s);
    settle(&s);
    rbuf_t *b = rbuf_new(4 << 20);
    memset(rbuf_payload(b), 'y', b->len);
    net_write(s.conn[0], b, RBUF_HEADROOM, b->len);
    int queued = s.conn[0]->queued > 0; /* 4 MiB rarely fits in the socket buffers */
    rbuf_unref(b);                      /* the queue holds its own reference */
    size_t total = 0;
    char tmp[65536];
    for (int i = 0; i < 5000 && total < (4u << 20); i++) {
        uv_run(&s.loop, UV_RUN_NOWAIT);
        ssize_t r = read(fd, tmp, sizeof(tmp));
        if (r > 0)
            total += (size_t)r;
        else
            usleep(200);
    }
    settle(&s);
    CHECK_EQ_INT(total, 4 << 20);
    CHECK_EQ_INT(s.ndrain, queued);
    CHECK_EQ_INT(s.conn[0]->queued, 0);
    CHECK(s.conn[0]->pending == NULL); /* no idle per-connection buffers */
    close(fd);
    srv_stop(&s);
}

TEST(slow_reader_overflow)
{
    srv_t s;
    srv_start(&s);
    s.net.max_queued = 256 * 1024;
    int fd = client(&s);
    settle(&s);
    rbuf_t *b = rbuf_new(1 << 20);
    memset(rbuf_payload(b), 'z', b->len);
    for (int i = 0; i < 64 && s.conn[0] != NULL && !net_closing(s.conn[0]); i++)
        net_write(s.conn[0], b, RBUF_HEADROOM, b->len);
    settle(&s);
    CHECK_EQ_INT(s.nclosed, 1);
    CHECK_EQ_INT(s.why, NET_CLOSE_OVERFLOW);
    CHECK_EQ_INT(b->refs, 1);
    rbuf_unref(b);
    close(fd);
    srv_stop(&s);
}

TEST(max_conns)
{
    srv_t s;
    srv_start(&s);
    s.net.max_conns = 1;
    int a = client(&s);
    settle(&s);
    int b = client(&s);
    size_t total = 0;
    CHECK(drain_client(&s, b, &total)); /* refused: closed at once */
    CHECK_EQ_INT(s.nconn, 1);           /* the owner never saw it */
    CHECK_EQ_INT(s.net.nconns, 1);
    close(a);
    close(b);
    srv_stop(&s);
}

/* Runs the loop for about ms milliseconds. */
static void run_for(srv_t *s, int ms)
{
    uint64_t end = uv_now(&s->loop) + (uint64_t)ms;
    while (uv_now(&s->loop) < end) {
        uv_run(&s->loop, UV_RUN_NOWAIT);
        usleep(1000);
        uv_update_time(&s->loop);
    }
}

/* Runs the loop until *counter reaches want (or 5 s pass, on a loaded machine): counts the
 * callbacks instead of trusting a fixed sleep. */
static void run_until(srv_t *s, const int *counter, int want)
{
    uint64_t end = uv_now(&s->loop) + 5000;
    while (*counter < want && uv_now(&s->loop) < end) {
        uv_run(&s->loop, UV_RUN_NOWAIT);
        usleep(1000);
        uv_update_time(&s->loop);
    }
}

TEST(deadlines)
{
    srv_t s;
    srv_start(&s);
    int a = client(&s), b = client(&s);
    settle(&s);
    CHECK_EQ_INT(s.nconn, 2);
    net_set_owner(s.conn[0], &ops_to, &s);
    /* armed, re-armed, then fires once; the owner's on_timeout decides (the conn stays open) */
    net_set_timeout(s.conn[0], 30);
    net_set_timeout(s.conn[0], 40);
    run_until(&s, &s.ntimeout, 1);
    run_for(&s, 50); /* and not twice */
    CHECK_EQ_INT(s.ntimeout, 1);
    CHECK(!net_closing(s.conn[0]));
    /* disarmed: never fires; and the queue's timer is stopped, so the loop has nothing armed */
    net_set_timeout(s.conn[0], 30);
    net_set_timeout(s.conn[0], 0);
    run_for(&s, 60);
    CHECK_EQ_INT(s.ntimeout, 1);
    CHECK(!uv_is_active((uv_handle_t *)&s.net.tq[0].timer));
    /* no on_timeout: the connection closes with NET_CLOSE_TIMEOUT */
    net_set_timeout(s.conn[1], 20);
    run_until(&s, &s.nclosed, 1);
    CHECK_EQ_INT(s.nclosed, 1);
    CHECK_EQ_INT(s.why, NET_CLOSE_TIMEOUT);
    /* more durations than queues: each still fires (in the closest longer queue) */
    for (int i = 0; i < NET_MAX_TQ + 3; i++) {
        net_set_timeout(s.conn[0], 10 + (uint64_t)i);
        run_until(&s, &s.ntimeout, 2 + i);
    }
    CHECK_EQ_INT(s.net.ntq, NET_MAX_TQ);
    CHECK_EQ_INT(s.ntimeout, 1 + NET_MAX_TQ + 3);
    close(a);
    close(b);
    srv_stop(&s); /* net_stop closes every queue's timer: uv_loop_close() succeeds */
}

TEST(peer_counts)
{
    srv_t s;
    srv_start(&s);
    int a = client(&s), b = client(&s);
    settle(&s);
    CHECK_EQ_INT(net_peer_conns(s.conn[0]), 2);
    CHECK_EQ_INT(s.net.npeers, 1);
    close(a);
    settle(&s);
    CHECK_EQ_INT(net_peer_conns(s.conn[1]), 1);
    close(b);
    settle(&s);
    CHECK_EQ_INT(s.net.npeers, 0);
    srv_stop(&s);
}

int main(void)
{
    RUN(read_peer_eof);
    RUN(pause_resume);
    RUN(big_write_then_close);
    RUN(drain_callback);
    RUN(slow_reader_overflow);
    RUN(max_conns);
    RUN(deadlines);
    RUN(peer_counts);
    return test_summary();
}
