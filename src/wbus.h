/* wbus: the local channel of --workers. One framed pipe (a Unix socket, libuv ipc) joins each worker
 * to the supervisor, which relays frames between workers (a star, as Node's cluster module relays
 * process.send). A frame is a u32 length (of what follows, big-endian), a u8 type, the u16 source
 * and destination worker numbers, then the payload. A HANDOFF frame carries a socket with it
 * (SCM_RIGHTS through uv_write2): a client connection moved to the worker that owns its session.
 * The subscriptions of the Redis adapter's protocol when it runs over this channel (no Redis) are
 * kept here too, so that they outlive a hot reload as the Redis connections' do. Nothing here
 * knows Lua or HTTP: frames go to the owner's callback. */
#ifndef SL_WBUS_H
#define SL_WBUS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "buf.h"

enum {
    WBUS_READY = 1, /* worker -> supervisor: listening (payload: none) */
    WBUS_COUNT,     /* supervisor -> worker: the number of workers running (payload: u16) */
    WBUS_PUBLISH,   /* worker -> every other worker, relayed: u16 channel length, channel, message */
    WBUS_HANDOFF,   /* worker -> worker, relayed, with a socket: the bytes already read from it */
};
#define WBUS_ALL 0xffffu  /* dst: every worker but the source */
#define WBUS_SUPERVISOR 0xfffeu
#define WBUS_MAX_FRAME (64u << 20) /* a frame over this is a broken peer: the channel closes */

typedef struct wbus wbus_t;

/* A frame arrived. p is valid during the call. For a HANDOFF frame, its socket is taken with
 * wbus_take() during the call; one not taken is closed after it. */
typedef void (*wbus_frame_cb)(wbus_t *b, int type, unsigned src, unsigned dst, const char *p, size_t len, void *ud);
/* The peer closed the channel (or it broke). No frame after it. */
typedef void (*wbus_close_cb)(wbus_t *b, void *ud);

typedef struct wbus_sub {
    char *name;
    size_t len;
    int pattern; /* name ends with '*': a prefix match, the only glob the adapter's channels use */
} wbus_sub_t;

struct wbus {
    uv_pipe_t pipe;         /* ipc = 1; its data is the wbus */
    buf_t in;               /* bytes of a frame not whole yet */
    wbus_frame_cb on_frame;
    wbus_close_cb on_close;
    void *ud;
    size_t max_queued;      /* bytes queued to the peer over which PUBLISH frames are dropped */
    uint64_t dropped;       /* frames dropped over max_queued */
    wbus_sub_t *subs;       /* subscriptions (wbus_subscribe) */
    size_t nsubs;
    int open;               /* reading; 0 once closed */
    int taken;              /* the HANDOFF frame being delivered had its socket taken */
    uv_close_cb on_pipe_closed; /* optional: libuv's close callback of the pipe (its data is the wbus) */
};

/* Makes b's pipe (uv_pipe_init with ipc, by the caller or by uv_spawn's UV_CREATE_PIPE) a framed
 * channel and starts reading; with fd >= 0, opens that inherited descriptor first. 0 or a UV_E*
 * code. Callbacks never fire synchronously. */
int wbus_start(wbus_t *b, uv_loop_t *loop, int fd, wbus_frame_cb on_frame, wbus_close_cb on_close, void *ud);
/* Sends one frame (payload in two parts, either may be empty). With `handle`, the socket goes with
 * it; done(arg) runs once it has been written (or failed): the caller closes its copy then. 0, or
 * -1 (closed, or a PUBLISH dropped over max_queued: done is not called). */
int wbus_send(wbus_t *b, int type, unsigned src, unsigned dst, const void *p1, size_t n1, const void *p2,
              size_t n2, uv_stream_t *handle, void (*done)(void *arg, int status), void *arg);
/* The socket of the HANDOFF frame being delivered: returns the stream to uv_accept() it from, once
 * (NULL if there is none or it was taken). */
uv_stream_t *wbus_take(wbus_t *b);
/* Stops and closes the pipe; no callback after it. The struct's memory stays the caller's; free
 * the rest with wbus_free once the loop has run the close. */
void wbus_close(wbus_t *b);
void wbus_free(wbus_t *b);

/* The u16 of the frame format (big-endian), for the payloads too (the count, a channel's length). */
void wbus_put16(char *p, unsigned v);
unsigned wbus_get16(const char *p);

/* Subscriptions: exact names, or "prefix*". Idempotent. */
void wbus_subscribe(wbus_t *b, const char *name, size_t len, int pattern);
/* The subscription a channel matches: 1 with *pattern and *plen set to the pattern that matched (NULL
 * for an exact one), or 0 if none. */
int wbus_match(const wbus_t *b, const char *ch, size_t len, const char **pattern, size_t *plen);

#endif
