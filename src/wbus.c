/* wbus: see wbus.h. */
#include "wbus.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"

#define HEAD 9 /* u32 length, u8 type, u16 src, u16 dst */

typedef struct {
    uv_write_t req;
    void (*done)(void *arg, int status);
    void *arg;
    size_t len;
    char data[]; /* the frame */
} wreq_t;

void wbus_put16(char *p, unsigned v)
{
    p[0] = (char)(v >> 8);
    p[1] = (char)v;
}

unsigned wbus_get16(const char *p)
{
    return (unsigned)(uint8_t)p[0] << 8 | (uint8_t)p[1];
}

static uint32_t get32(const char *p)
{
    return (uint32_t)(uint8_t)p[0] << 24 | (uint32_t)(uint8_t)p[1] << 16 | (uint32_t)(uint8_t)p[2] << 8 |
           (uint8_t)p[3];
}

/* The socket of a HANDOFF frame that nobody took: closed (only that one: the next frame's may be
 * queued behind it). */
static void drop_free(uv_handle_t *h)
{
    free(h);
}

static void drop_pending(wbus_t *b)
{
    if (uv_pipe_pending_count(&b->pipe) == 0)
        return;
    uv_tcp_t *t = xmalloc(sizeof(*t));
    uv_tcp_init(b->pipe.loop, t);
    uv_accept((uv_stream_t *)&b->pipe, (uv_stream_t *)t);
    uv_close((uv_handle_t *)t, drop_free);
}

static void closed(wbus_t *b)
{
    if (!b->open)
        return;
    wbus_close(b);
    if (b->on_close != NULL)
        b->on_close(b, b->ud);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    wbus_t *b = h->data;
    (void)suggested;
    buf_reserve(&b->in, b->in.len + 65536);
    buf->base = b->in.base + b->in.len;
    buf->len = b->in.cap - b->in.len;
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    wbus_t *b = s->data;
    size_t off = 0;
    (void)buf;
    if (nread < 0) {
        closed(b);
        return;
    }
    b->in.len += (size_t)nread;
    while (b->open && b->in.len - off >= 4) {
        const char *f = b->in.base + off;
        uint32_t n = get32(f);
        if (n < HEAD - 4 || n > WBUS_MAX_FRAME) {
            log_error("siolua: workers: a broken frame on the local channel (%u bytes): closing it", n);
            closed(b);
            return;
        }
        if (b->in.len - off < 4 + (size_t)n)
            break;
        int type = (uint8_t)f[4];
        b->taken = 0;
        b->on_frame(b, type, wbus_get16(f + 5), wbus_get16(f + 7), f + HEAD, n + 4 - HEAD, b->ud);
        if (type == WBUS_HANDOFF && b->open && !b->taken)
            drop_pending(b);
        off += 4 + (size_t)n;
    }
    if (b->open)
        buf_consume(&b->in, off);
}

int wbus_start(wbus_t *b, uv_loop_t *loop, int fd, wbus_frame_cb on_frame, wbus_close_cb on_close, void *ud)
{
    int r;
    b->on_frame = on_frame;
    b->on_close = on_close;
    b->ud = ud;
    if (b->max_queued == 0)
        b->max_queued = 256u << 20;
    if (fd >= 0) {
        if ((r = uv_pipe_init(loop, &b->pipe, 1)) != 0)
            return r;
        if ((r = uv_pipe_open(&b->pipe, fd)) != 0) {
            uv_close((uv_handle_t *)&b->pipe, NULL);
            return r;
        }
    }
    b->pipe.data = b;
    b->open = 1;
    return uv_read_start((uv_stream_t *)&b->pipe, alloc_cb, read_cb);
}

static void write_cb(uv_write_t *req, int status)
{
    wreq_t *w = (wreq_t *)req;
    if (w->done != NULL)
        w->done(w->arg, status);
    free(w);
}

int wbus_send(wbus_t *b, int type, unsigned src, unsigned dst, const void *p1, size_t n1, const void *p2,
              size_t n2, uv_stream_t *handle, void (*done)(void *arg, int status), void *arg)
{
    size_t len = HEAD + n1 + n2;
    if (!b->open || len - 4 > WBUS_MAX_FRAME)
        return -1;
    if (type == WBUS_PUBLISH && uv_stream_get_write_queue_size((uv_stream_t *)&b->pipe) > b->max_queued) {
        b->dropped++;
        return -1;
    }
    wreq_t *w = xmalloc(sizeof(*w) + len);
    w->done = done;
    w->arg = arg;
    w->len = len;
    w->data[0] = (char)((len - 4) >> 24);
    w->data[1] = (char)((len - 4) >> 16);
    w->data[2] = (char)((len - 4) >> 8);
    w->data[3] = (char)(len - 4);
    w->data[4] = (char)type;
    wbus_put16(w->data + 5, src);
    wbus_put16(w->data + 7, dst);
    if (n1 > 0)
        memcpy(w->data + HEAD, p1, n1);
    if (n2 > 0)
        memcpy(w->data + HEAD + n1, p2, n2);
    uv_buf_t ub = uv_buf_init(w->data, (unsigned)len);
    int r = handle != NULL ? uv_write2(&w->req, (uv_stream_t *)&b->pipe, &ub, 1, handle, write_cb)
                           : uv_write(&w->req, (uv_stream_t *)&b->pipe, &ub, 1, write_cb);
    if (r != 0) {
        free(w);
        return -1;
    }
    return 0;
}

uv_stream_t *wbus_take(wbus_t *b)
{
    if (b->taken || uv_pipe_pending_count(&b->pipe) == 0)
        return NULL;
    b->taken = 1;
    return (uv_stream_t *)&b->pipe;
}

void wbus_close(wbus_t *b)
{
    if (!b->open)
        return;
    b->open = 0;
    uv_read_stop((uv_stream_t *)&b->pipe);
    if (!uv_is_closing((uv_handle_t *)&b->pipe))
        uv_close((uv_handle_t *)&b->pipe, b->on_pipe_closed);
}

void wbus_free(wbus_t *b)
{
    buf_free(&b->in);
    for (size_t i = 0; i < b->nsubs; i++)
        free(b->subs[i].name);
    free(b->subs);
    b->subs = NULL;
    b->nsubs = 0;
}

/* ---------------------------------------------------------------- subscriptions */

void wbus_subscribe(wbus_t *b, const char *name, size_t len, int pattern)
{
    if (pattern && (len == 0 || name[len - 1] != '*'))
        pattern = 0; /* only "prefix*" is a pattern here; anything else matches itself */
    for (size_t i = 0; i < b->nsubs; i++)
        if (b->subs[i].pattern == pattern && b->subs[i].len == len && memcmp(b->subs[i].name, name, len) == 0)
            return;
    b->subs = xrealloc(b->subs, (b->nsubs + 1) * sizeof(*b->subs));
    b->subs[b->nsubs++] = (wbus_sub_t){xstrndup(name, len), len, pattern};
}

int wbus_match(const wbus_t *b, const char *ch, size_t len, const char **pattern, size_t *plen)
{
    for (size_t i = 0; i < b->nsubs; i++) {
        const wbus_sub_t *s = &b->subs[i];
        if (!s->pattern && s->len == len && memcmp(s->name, ch, len) == 0) {
            *pattern = NULL;
            *plen = 0;
            return 1;
        }
        if (s->pattern && len >= s->len - 1 && memcmp(s->name, ch, s->len - 1) == 0) {
            *pattern = s->name;
            *plen = s->len;
            return 1;
        }
    }
    return 0;
}
