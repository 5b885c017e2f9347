/* loopback: see loopback.h.
 * Waiting: a turn poll()s the loop's backend fd and the client fd, for no longer than the loop's
 * next timer (capped at a few ms), then runs the loop once (UV_RUN_NOWAIT: due timers, I/O, and
 * the end-of-turn flush of net's corked output), so a wait wakes as soon as there is something
 * to do and never sleeps blindly. */
#include "loopback.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define TURN_MAX_WAIT_MS 5 /* a turn's longest poll: bounds how late a deadline is noticed */

/* ---------------------------------------------------------------- loop and listener */

int lb_start(lb_t *lb, net_accept_cb on_accept, void *data)
{
    const char *err = NULL;
    int rc;
    memset(lb, 0, sizeof(*lb));
    uv_loop_init(&lb->loop);
    rc = net_listen(&lb->net, &lb->loop, "127.0.0.1", 0, on_accept, data, &err);
    if (rc != 0)
        fprintf(stderr, "  loopback: listen: %s (%s)\n", uv_strerror(rc), err ? err : "?");
    return rc;
}

uint64_t lb_deadline(void)
{
    return uv_hrtime() + (uint64_t)LB_DEADLINE_MS * 1000000u;
}

/* Waits up to max_ms for loop I/O, a due timer or fd readable (fd < 0: none). */
static void wait_io(lb_t *lb, int fd, int max_ms)
{
    struct pollfd pf[2] = {{uv_backend_fd(&lb->loop), POLLIN, 0}, {fd, POLLIN, 0}};
    int t = uv_backend_timeout(&lb->loop);
    if (t < 0 || t > max_ms)
        t = max_ms;
    poll(pf, fd >= 0 ? 2 : 1, t);
}

int lb_turn(lb_t *lb, int fd, uint64_t deadline)
{
    if (uv_hrtime() >= deadline) {
        fprintf(stderr, "  loopback: deadline (%d ms) passed while waiting\n", LB_DEADLINE_MS);
        return 0;
    }
    if (lb->net.dirty == NULL) /* else output the test queued waits for the loop's flush */
        wait_io(lb, fd, TURN_MAX_WAIT_MS);
    uv_run(&lb->loop, UV_RUN_NOWAIT);
    return 1;
}

void lb_settle(lb_t *lb)
{
    uint64_t end = lb_deadline();
    /* two turns at least, then until a turn leaves nothing ready: the epoll set is level-
     * triggered, so a quiet backend fd means the server has read all that has reached it (bytes
     * a client wrote to loopback arrive within the write, or a moment later on a loaded machine:
     * the 1 ms poll waits for those) */
    for (int i = 0; uv_hrtime() < end; i++) {
        struct pollfd pf = {uv_backend_fd(&lb->loop), POLLIN, 0};
        uv_run(&lb->loop, UV_RUN_NOWAIT);
        if (i >= 1 && uv_backend_timeout(&lb->loop) != 0 && poll(&pf, 1, 1) == 0)
            return;
    }
}

void lb_run_for(lb_t *lb, int ms)
{
    uint64_t end = uv_hrtime() + (uint64_t)ms * 1000000u;
    while (uv_hrtime() < end) {
        uv_run(&lb->loop, UV_RUN_NOWAIT);
        wait_io(lb, -1, 1);
    }
    uv_run(&lb->loop, UV_RUN_NOWAIT);
}

static void print_handle(uv_handle_t *h, void *arg)
{
    (void)arg;
    fprintf(stderr, "  loopback: handle left open: %s%s\n", uv_handle_type_name(uv_handle_get_type(h)),
            uv_is_active(h) ? " (active)" : "");
}

int lb_stop(lb_t *lb)
{
    int rc = 0;
    LB_UNTIL(lb, lb->net.nconns == 0);
    if (lb->net.nconns != 0) {
        fprintf(stderr, "  loopback: %zu server connection(s) still open\n", lb->net.nconns);
        rc = -1;
    }
    net_stop(&lb->net);
    LB_UNTIL(lb, !uv_loop_alive(&lb->loop));
    uv_run(&lb->loop, UV_RUN_NOWAIT); /* close callbacks of the last handles */
    if (uv_loop_close(&lb->loop) != 0) {
        uv_walk(&lb->loop, print_handle, NULL);
        rc = -1;
    }
    return rc;
}

/* ---------------------------------------------------------------- client sockets */

int lb_connect(lb_t *lb)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)net_port(&lb->net))};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        perror("  loopback: connect");
        if (fd >= 0)
            close(fd);
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
}

void lb_send(int fd, const void *pv, size_t n)
{
    const char *p = pv;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
            struct pollfd pf = {fd, POLLOUT, 0};
            poll(&pf, 1, 10);
            continue;
        }
        if (w <= 0)
            return; /* the server closed: what the test reads next tells */
        p += w, n -= (size_t)w;
    }
}

void lb_sends(int fd, const char *s)
{
    lb_send(fd, s, strlen(s));
}

int lb_pump(lb_t *lb, int fd, buf_t *in, size_t want)
{
    uint64_t end = lb_deadline();
    for (;;) {
        char tmp[65536];
        ssize_t r;
        uv_run(&lb->loop, UV_RUN_NOWAIT);
        r = read(fd, tmp, sizeof(tmp));
        if (r > 0) {
            buf_append(in, tmp, (size_t)r);
            if (want && in->len >= want)
                return 0;
            continue;
        }
        if (r == 0 || (r < 0 && errno == ECONNRESET))
            return 1;
        if (want && in->len >= want)
            return 0;
        if (uv_hrtime() >= end) {
            fprintf(stderr, "  loopback: deadline passed waiting for %s (have %zu bytes)\n", want ? "bytes" : "EOF",
                    in->len);
            return 0;
        }
        wait_io(lb, fd, TURN_MAX_WAIT_MS);
    }
}

/* ---------------------------------------------------------------- HTTP client */

void lb_request(int fd, const char *method, const char *target, const char *headers, const void *body, size_t len)
{
    buf_t b = BUF_INIT;
    char cl[48];
    buf_appendstr(&b, method);
    buf_appendc(&b, ' ');
    buf_appendstr(&b, target);
    buf_appendstr(&b, " HTTP/1.1\r\nHost: x\r\n");
    if (headers)
        buf_appendstr(&b, headers);
    if (body) {
        snprintf(cl, sizeof(cl), "Content-Length: %zu\r\n", len);
        buf_appendstr(&b, cl);
    }
    buf_appendstr(&b, "\r\n");
    if (body)
        buf_append(&b, body, len);
    lb_send(fd, b.base, b.len);
    buf_free(&b);
}

/* Offset of the blank line ending the head in p[0..n), or -1. */
static long head_end(const char *p, size_t n)
{
    for (size_t i = 0; i + 3 < n; i++)
        if (memcmp(p + i, "\r\n\r\n", 4) == 0)
            return (long)i;
    return -1;
}

slice_t lb_header(const lb_response_t *r, const char *name)
{
    size_t nlen = strlen(name);
    const char *p = r->head.ptr, *end = r->head.ptr + r->head.len;
    const char *eol = memchr(p, '\n', r->head.len); /* skip the status line */
    while (eol != NULL && eol + 1 < end) {
        const char *line = eol + 1;
        const char *next = memchr(line, '\r', (size_t)(end - line));
        size_t llen = next ? (size_t)(next - line) : (size_t)(end - line);
        if (llen > nlen && line[nlen] == ':' && strncasecmp(line, name, nlen) == 0) {
            const char *v = line + nlen + 1;
            while (v < line + llen && *v == ' ')
                v++;
            return (slice_t){v, (size_t)(line + llen - v)};
        }
        eol = memchr(line, '\n', (size_t)(end - line));
    }
    return (slice_t){NULL, 0};
}

int lb_response(lb_t *lb, int fd, buf_t *in, lb_response_t *r)
{
    long he;
    size_t clen = 0;
    slice_t cl;
    memset(r, 0, sizeof(*r));
    while ((he = in->base ? head_end(in->base, in->len) : -1) < 0) {
        size_t had = in->len;
        lb_pump(lb, fd, in, had + 1);
        if (in->len == had)
            return -1; /* EOF or the deadline */
    }
    if (in->len < 12 || memcmp(in->base, "HTTP/1.1 ", 9) != 0)
        return -1;
    r->status = (in->base[9] - '0') * 100 + (in->base[10] - '0') * 10 + (in->base[11] - '0');
    r->head = (slice_t){in->base, (size_t)he};
    cl = lb_header(r, "Content-Length");
    for (size_t i = 0; cl.ptr && i < cl.len; i++)
        clen = clen * 10 + (size_t)(cl.ptr[i] - '0');
    if (in->len < (size_t)he + 4 + clen) {
        lb_pump(lb, fd, in, (size_t)he + 4 + clen);
        if (in->len < (size_t)he + 4 + clen)
            return -1;
    }
    r->head = (slice_t){in->base, (size_t)he}; /* in may have moved */
    r->body = (slice_t){in->base + he + 4, clen};
    r->size = (size_t)he + 4 + clen;
    return 0;
}

/* ---------------------------------------------------------------- WebSocket client */

int lb_ws_connect(lb_t *lb, const char *target, buf_t *in)
{
    lb_response_t r;
    int fd = lb_connect(lb);
    if (fd < 0)
        return -1;
    lb_request(fd, "GET", target, LB_WS_HEADERS, NULL, 0);
    if (lb_response(lb, fd, in, &r) != 0 || r.status != 101) {
        close(fd);
        return -1;
    }
    buf_consume(in, r.size);
    return fd;
}

void lb_ws_frame(buf_t *b, int fin, int op, const void *payload, size_t len)
{
    static const uint8_t key[4] = {0x12, 0x34, 0x56, 0x78};
    buf_appendc(b, (char)((fin ? 0x80 : 0) | op));
    if (len < 126) {
        buf_appendc(b, (char)(0x80 | len));
    } else if (len < 65536) {
        buf_appendc(b, (char)(0x80 | 126));
        buf_appendc(b, (char)(len >> 8));
        buf_appendc(b, (char)len);
    } else {
        buf_appendc(b, (char)(0x80 | 127));
        for (int i = 0; i < 8; i++)
            buf_appendc(b, (char)((uint64_t)len >> (56 - 8 * i)));
    }
    buf_append(b, key, 4);
    for (size_t i = 0; i < len; i++)
        buf_appendc(b, (char)(((const uint8_t *)payload)[i] ^ key[i % 4]));
}

void lb_ws_send(int fd, int fin, int op, const void *payload, size_t len)
{
    buf_t b = BUF_INIT;
    lb_ws_frame(&b, fin, op, payload, len);
    lb_send(fd, b.base, b.len);
    buf_free(&b);
}

int lb_ws_read(lb_t *lb, int fd, buf_t *in, buf_t *payload)
{
    size_t hdr = 2, len;
    int first;
    payload->len = 0;
    if (in->len < 2)
        lb_pump(lb, fd, in, 2);
    if (in->len < 2)
        return -1;
    len = (uint8_t)in->base[1] & 0x7f;
    if (len >= 126) {
        hdr = len == 126 ? 4 : 10;
        if (in->len < hdr)
            lb_pump(lb, fd, in, hdr);
        if (in->len < hdr)
            return -1;
        len = 0;
        for (size_t i = 2; i < hdr; i++)
            len = len << 8 | (uint8_t)in->base[i];
    }
    if ((uint8_t)in->base[1] & 0x80) {
        fprintf(stderr, "  loopback: the server sent a masked frame\n");
        return -1;
    }
    if (in->len < hdr + len)
        lb_pump(lb, fd, in, hdr + len);
    if (in->len < hdr + len)
        return -1;
    first = (uint8_t)in->base[0];
    buf_append(payload, in->base + hdr, len);
    buf_consume(in, hdr + len);
    return first;
}
