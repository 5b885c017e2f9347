/* wbus: the workers' channel, two ends on a socketpair in one loop. Frames of every size arrive
 * whole and in order (a large one split over many reads), with their type, source and destination;
 * a HANDOFF frame brings its socket (checked by the port it is bound to); the socket of a frame the
 * receiver does not take is closed and the next frame's socket is still the next frame's; a
 * broken frame closes the channel; subscriptions match exactly or by prefix. Each case ends with
 * uv_loop_close() == 0. */
#include <arpa/inet.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "test.h"
#include "wbus.h"

typedef struct {
    int type[16];
    unsigned src[16], dst[16];
    size_t len[16];
    char first[16], last[16];
    int port[16]; /* HANDOFF: the port of the socket taken (-1: none taken) */
    int n;
    int take;     /* take the sockets of HANDOFF frames from the take-th on (1: all; 0: none) */
    int want;     /* the loop stops once this many frames arrived */
    int closed;
    uv_loop_t *loop;
} rx_t;

static int local_port(uv_tcp_t *t)
{
    struct sockaddr_in sa;
    int sl = sizeof(sa);
    if (uv_tcp_getsockname(t, (struct sockaddr *)&sa, &sl) != 0)
        return -1;
    return ntohs(sa.sin_port);
}

static void on_frame(wbus_t *b, int type, unsigned src, unsigned dst, const char *p, size_t len, void *ud)
{
    rx_t *rx = ud;
    int i = rx->n++;
    rx->type[i] = type;
    rx->src[i] = src;
    rx->dst[i] = dst;
    rx->len[i] = len;
    rx->first[i] = len ? p[0] : 0;
    rx->last[i] = len ? p[len - 1] : 0;
    rx->port[i] = -1;
    if (type == WBUS_HANDOFF && rx->take && i + 1 >= rx->take) {
        uv_tcp_t t;
        uv_stream_t *from = wbus_take(b);
        uv_tcp_init(rx->loop, &t);
        if (from != NULL && uv_accept(from, (uv_stream_t *)&t) == 0)
            rx->port[i] = local_port(&t);
        uv_close((uv_handle_t *)&t, NULL);
        uv_run(rx->loop, UV_RUN_NOWAIT); /* (t lives on this frame: let its close finish) */
    }
    if (rx->n >= rx->want)
        uv_stop(rx->loop);
}

static void on_close(wbus_t *b, void *ud)
{
    (void)b;
    ((rx_t *)ud)->closed = 1;
}

/* A TCP socket bound to 127.0.0.1:0 (not connected), as a uv handle, and its port. */
static int bound_tcp(uv_loop_t *loop, uv_tcp_t *t)
{
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    uv_tcp_init(loop, t);
    uv_tcp_bind(t, (struct sockaddr *)&sa, 0);
    return local_port(t);
}

static void pair(uv_loop_t *loop, wbus_t *a, wbus_t *b, rx_t *rx)
{
    int sv[2];
    memset(a, 0, sizeof(*a));
    memset(b, 0, sizeof(*b));
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    rx->loop = loop;
    CHECK_EQ_INT(wbus_start(a, loop, sv[0], on_frame, on_close, rx), 0);
    CHECK_EQ_INT(wbus_start(b, loop, sv[1], on_frame, on_close, rx), 0);
}

static void finish(uv_loop_t *loop, wbus_t *a, wbus_t *b)
{
    wbus_close(a);
    wbus_close(b);
    uv_run(loop, UV_RUN_DEFAULT);
    wbus_free(a);
    wbus_free(b);
    CHECK_EQ_INT(uv_loop_close(loop), 0);
}

TEST(frames)
{
    uv_loop_t loop;
    wbus_t a, b;
    rx_t rx = {0};
    size_t big = 3u << 20;
    char *p = malloc(big);
    memset(p, 'x', big);
    p[0] = 'A';
    p[big - 1] = 'Z';
    uv_loop_init(&loop);
    pair(&loop, &a, &b, &rx);
    rx.take = 1;
    rx.want = 3;
    CHECK_EQ_INT(wbus_send(&a, WBUS_PUBLISH, 1, WBUS_ALL, "\0\2ch", 4, "msg", 3, NULL, NULL, NULL), 0);
    CHECK_EQ_INT(wbus_send(&a, WBUS_COUNT, WBUS_SUPERVISOR, 7, NULL, 0, NULL, 0, NULL, NULL, NULL), 0);
    CHECK_EQ_INT(wbus_send(&a, WBUS_PUBLISH, 4095, 3, p, big / 2, p + big / 2, big - big / 2, NULL, NULL, NULL), 0);
    free(p);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(rx.n, 3);
    CHECK_EQ_INT(rx.type[0], WBUS_PUBLISH);
    CHECK_EQ_INT(rx.src[0], 1);
    CHECK_EQ_INT(rx.dst[0], WBUS_ALL);
    CHECK_EQ_INT(rx.len[0], 7);
    CHECK_EQ_INT(rx.last[0], 'g');
    CHECK_EQ_INT(rx.type[1], WBUS_COUNT);
    CHECK_EQ_INT(rx.len[1], 0);
    CHECK_EQ_INT(rx.dst[1], 7);
    CHECK_EQ_INT(rx.src[2], 4095);
    CHECK_EQ_INT(rx.len[2], big);
    CHECK_EQ_INT(rx.first[2], 'A');
    CHECK_EQ_INT(rx.last[2], 'Z');
    CHECK_EQ_INT(rx.closed, 0);
    finish(&loop, &a, &b);
}

static void close_handle(void *arg, int status)
{
    (void)status;
    uv_close(arg, NULL);
}

TEST(handoff)
{
    uv_loop_t loop;
    wbus_t a, b;
    rx_t rx = {0};
    uv_tcp_t t1, t2;
    uv_loop_init(&loop);
    pair(&loop, &a, &b, &rx);
    int p1 = bound_tcp(&loop, &t1), p2 = bound_tcp(&loop, &t2);
    CHECK(p1 > 0 && p2 > 0 && p1 != p2);
    /* both sent at once (their sockets may come in one read): the first is not taken (wbus closes
     * it), the second is, and it must be the second socket */
    rx.take = 2;
    rx.want = 2;
    CHECK_EQ_INT(wbus_send(&a, WBUS_HANDOFF, 0, 1, "GET /", 5, NULL, 0, (uv_stream_t *)&t1, close_handle, &t1), 0);
    CHECK_EQ_INT(wbus_send(&a, WBUS_HANDOFF, 0, 1, "POST /", 6, NULL, 0, (uv_stream_t *)&t2, close_handle, &t2), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(rx.n, 2);
    CHECK_EQ_INT(rx.port[0], -1);
    CHECK_EQ_INT(rx.port[1], p2);
    CHECK_EQ_INT(rx.len[1], 6);
    finish(&loop, &a, &b);
}

TEST(broken_frame)
{
    uv_loop_t loop;
    wbus_t a, b;
    rx_t rx = {0};
    int sv[2];
    uv_loop_init(&loop);
    memset(&b, 0, sizeof(b));
    memset(&a, 0, sizeof(a));
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    rx.loop = &loop;
    CHECK_EQ_INT(wbus_start(&b, &loop, sv[1], on_frame, on_close, &rx), 0);
    CHECK_EQ_INT(write(sv[0], "\0\0\0\2xx", 6), 6); /* a length shorter than a header */
    uv_run(&loop, UV_RUN_DEFAULT);                 /* b closes: nothing is left armed */
    CHECK_EQ_INT(rx.closed, 1);
    CHECK_EQ_INT(rx.n, 0);
    CHECK_EQ_INT(wbus_send(&b, WBUS_COUNT, 0, 0, NULL, 0, NULL, 0, NULL, NULL, NULL), -1);
    close(sv[0]);
    finish(&loop, &a, &b);
}

TEST(subscriptions)
{
    wbus_t b;
    const char *pat;
    size_t plen;
    memset(&b, 0, sizeof(b));
    wbus_subscribe(&b, "socket.io-request#/#", 20, 0);
    wbus_subscribe(&b, "socket.io#/#*", 13, 1);
    wbus_subscribe(&b, "socket.io#/#*", 13, 1); /* idempotent */
    CHECK_EQ_INT(b.nsubs, 2);
    CHECK_EQ_INT(wbus_match(&b, "socket.io-request#/#", 20, &pat, &plen), 1);
    CHECK(pat == NULL);
    CHECK_EQ_INT(wbus_match(&b, "socket.io-request#/admin#", 25, &pat, &plen), 0);
    CHECK_EQ_INT(wbus_match(&b, "socket.io#/#room#", 17, &pat, &plen), 1);
    CHECK_EQ_MEM(pat, plen, "socket.io#/#*");
    CHECK_EQ_INT(wbus_match(&b, "socket.io#/#", 12, &pat, &plen), 1);
    CHECK_EQ_INT(wbus_match(&b, "socket.io#/admin#", 17, &pat, &plen), 0);
    wbus_free(&b);
}

int main(void)
{
    RUN(frames);
    RUN(handoff);
    RUN(broken_frame);
    RUN(subscriptions);
    return test_summary();
}
