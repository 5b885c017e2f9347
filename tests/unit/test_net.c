/* net over a real loopback connection: write queue, close protocol, limits. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "loopback.h"
#include "net.h"
#include "test.h"

typedef struct {
    lb_t lb;
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
    memset(s, 0, sizeof(*s));
    CHECK_EQ_INT(lb_start(&s->lb, on_accept, s), 0);
}

/* A client, once the server has accepted it (s->nconn counts up). */
static int client(srv_t *s)
{
    int n = s->nconn, fd = lb_connect(&s->lb);
    LB_UNTIL(&s->lb, s->nconn > n);
    return fd;
}

/* Reads (and counts, without keeping) until EOF; 1 on EOF. */
static int drain_client(srv_t *s, int fd, size_t *total)
{
    uint64_t end = lb_deadline();
    do {
        char tmp[65536];
        ssize_t r = read(fd, tmp, sizeof(tmp));
        if (r > 0)
            *total += (size_t)r;
        else if (r == 0 || errno == ECONNRESET)
            return 1;
    } while (lb_turn(&s->lb, fd, end));
    return 0;
}

static void srv_stop(srv_t *s)
{
    CHECK_EQ_INT(lb_stop(&s->lb), 0);
}

TEST(read_peer_eof)
{
    srv_t s;
    srv_start(&s);
    int fd = client(&s);
    CHECK_EQ_INT(s.nconn, 1);
    CHECK_EQ_INT(s.lb.net.nconns, 1);
    CHECK(strcmp(net_peer(s.conn[0]), "127.0.0.1") == 0);
    CHECK_EQ_INT(write(fd, "abc", 3), 3);
    LB_UNTIL(&s.lb, s.nread == 3);
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
    CHECK_EQ_INT(write(fd, "abc", 3), 3);
    lb_settle(&s.lb);
    CHECK_EQ_INT(s.nread, 0);
    net_resume(s.conn[0]);
    LB_UNTIL(&s.lb, s.nread == 3);
    CHECK_EQ_INT(s.nread, 3);
    net_close(s.conn[0]);
    net_close(s.conn[0]); /* idempotent */
    LB_UNTIL(&s.lb, s.nclosed == 1);
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
    rbuf_t *b = rbuf_new(4 << 20);
    memset(rbuf_payload(b), 'y', b->len);
    net_write(s.conn[0], b, RBUF_HEADROOM, b->len);
    int queued = s.conn[0]->queued > 0; /* 4 MiB rarely fits in the socket buffers */
    rbuf_unref(b);                      /* the queue holds its own reference */
    size_t total = 0;
    uint64_t end = lb_deadline();
    do {
        char tmp[65536];
        ssize_t r = read(fd, tmp, sizeof(tmp));
        if (r > 0)
            total += (size_t)r;
    } while (total < (4u << 20) && lb_turn(&s.lb, fd, end));
    LB_UNTIL(&s.lb, s.ndrain == queued);
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
    s.lb.net.max_queued = 256 * 1024;
    int fd = client(&s);
    rbuf_t *b = rbuf_new(1 << 20);
    memset(rbuf_payload(b), 'z', b->len);
    for (int i = 0; i < 64 && s.conn[0] != NULL && !net_closing(s.conn[0]); i++)
        net_write(s.conn[0], b, RBUF_HEADROOM, b->len);
    LB_UNTIL(&s.lb, s.nclosed == 1);
    CHECK_EQ_INT(s.nclosed, 1);
    CHECK_EQ_INT(s.why, NET_CLOSE_OVERFLOW);
    CHECK_EQ_INT(b->refs, 1);
    rbuf_unref(b);
    close(fd);
    srv_stop(&s);
}

/* The server-wide budget: over it, the connection holding the most is closed, not the one that
 * wrote last; the others keep their output, and the total is kept right. */
TEST(output_budget)
{
    srv_t s;
    int fd[3], small = 4096;
    size_t got[3] = {0, 0, 0};
    srv_start(&s);
    s.lb.net.max_total_queued = 4u << 20;
    for (int i = 0; i < 3; i++) {
        fd[i] = socket(AF_INET, SOCK_STREAM, 0); /* a tiny window: the bytes stay queued with us */
        setsockopt(fd[i], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)net_port(&s.lb.net))};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        CHECK_EQ_INT(connect(fd[i], (struct sockaddr *)&sa, sizeof(sa)), 0);
        fcntl(fd[i], F_SETFL, O_NONBLOCK);
        LB_UNTIL(&s.lb, s.nconn > i);
    }
    CHECK_EQ_INT(s.nconn, 3);
    for (int i = 0; i < 3; i++)
        uv_send_buffer_size((uv_handle_t *)&s.conn[i]->tcp, &small);
    rbuf_t *b = rbuf_new(1 << 20);
    memset(rbuf_payload(b), 'q', b->len);
    for (int i = 0; i < 3; i++) /* conn 1: about 3 MiB queued */
        net_write(s.conn[1], b, RBUF_HEADROOM, b->len);
    net_write(s.conn[2], b, RBUF_HEADROOM, b->len);
    CHECK(s.lb.net.total_queued <= s.lb.net.max_total_queued);
    CHECK_EQ_INT(s.nclosed, 0);
    net_write(s.conn[0], b, RBUF_HEADROOM, b->len); /* over: conn 1 holds the most */
    CHECK(s.conn[1] != NULL && net_closing(s.conn[1]));
    CHECK(!net_closing(s.conn[0]) && !net_closing(s.conn[2]));
    CHECK(s.lb.net.total_queued <= s.lb.net.max_total_queued);
    CHECK_EQ_INT(s.lb.net.total_queued, s.conn[0]->queued + s.conn[2]->queued);
    LB_UNTIL(&s.lb, s.nclosed == 1);
    CHECK_EQ_INT(s.nclosed, 1);
    CHECK_EQ_INT(s.why, NET_CLOSE_OVERFLOW);
    /* the others get every byte once they read */
    for (int i = 0; i < 3; i += 2)
        net_close_after_write(s.conn[i]);
    for (int i = 0; i < 3; i++)
        CHECK(drain_client(&s, fd[i], &got[i]));
    CHECK_EQ_INT(got[0], 1 << 20);
    CHECK_EQ_INT(got[2], 1 << 20);
    CHECK(got[1] < 3u << 20);
    CHECK_EQ_INT(s.lb.net.total_queued, 0);
    CHECK_EQ_INT(b->refs, 1);
    rbuf_unref(b);
    for (int i = 0; i < 3; i++)
        close(fd[i]);
    srv_stop(&s);
}

TEST(max_conns)
{
    srv_t s;
    srv_start(&s);
    s.lb.net.max_conns = 1;
    int a = client(&s);
    int b = lb_connect(&s.lb); /* not client(): the owner never sees this one */
    size_t total = 0;
    CHECK(drain_client(&s, b, &total)); /* refused: closed at once */
    CHECK_EQ_INT(s.nconn, 1);           /* the owner never saw it */
    CHECK_EQ_INT(s.lb.net.nconns, 1);
    close(a);
    close(b);
    srv_stop(&s);
}

TEST(deadlines)
{
    srv_t s;
    srv_start(&s);
    int a = client(&s), b = client(&s);
    CHECK_EQ_INT(s.nconn, 2);
    net_set_owner(s.conn[0], &ops_to, &s);
    /* armed, re-armed, then fires once; the owner's on_timeout decides (the conn stays open) */
    net_set_timeout(s.conn[0], 30);
    net_set_timeout(s.conn[0], 40);
    LB_UNTIL(&s.lb, s.ntimeout == 1);
    lb_run_for(&s.lb, 50); /* and not twice */
    CHECK_EQ_INT(s.ntimeout, 1);
    CHECK(!net_closing(s.conn[0]));
    /* disarmed: never fires; and the queue's timer is stopped, so the loop has nothing armed */
    net_set_timeout(s.conn[0], 30);
    net_set_timeout(s.conn[0], 0);
    lb_run_for(&s.lb, 60);
    CHECK_EQ_INT(s.ntimeout, 1);
    CHECK(!uv_is_active((uv_handle_t *)&s.lb.net.tq[0].timer));
    /* no on_timeout: the connection closes with NET_CLOSE_TIMEOUT */
    net_set_timeout(s.conn[1], 20);
    LB_UNTIL(&s.lb, s.nclosed == 1);
    CHECK_EQ_INT(s.nclosed, 1);
    CHECK_EQ_INT(s.why, NET_CLOSE_TIMEOUT);
    /* more durations than queues: each still fires (in the closest longer queue) */
    for (int i = 0; i < NET_MAX_TQ + 3; i++) {
        net_set_timeout(s.conn[0], 10 + (uint64_t)i);
        LB_UNTIL(&s.lb, s.ntimeout == 2 + i);
    }
    CHECK_EQ_INT(s.lb.net.ntq, NET_MAX_TQ);
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
    CHECK_EQ_INT(net_peer_conns(s.conn[0]), 2);
    CHECK_EQ_INT(s.lb.net.npeers, 1);
    close(a);
    LB_UNTIL(&s.lb, s.nclosed == 1);
    CHECK_EQ_INT(net_peer_conns(s.conn[1]), 1);
    close(b);
    LB_UNTIL(&s.lb, s.nclosed == 2);
    CHECK_EQ_INT(s.lb.net.npeers, 0);
    srv_stop(&s);
}

int main(void)
{
    RUN(read_peer_eof);
    RUN(pause_resume);
    RUN(big_write_then_close);
    RUN(drain_callback);
    RUN(slow_reader_overflow);
    RUN(output_budget);
    RUN(max_conns);
    RUN(deadlines);
    RUN(peer_counts);
    return test_summary();
}
