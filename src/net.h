/* net: TCP listener and connections on libuv.
 * A connection embeds its uv_tcp_t, reads into one loop-wide buffer (no per-connection read
 * buffer), writes through a bounded queue of rbuf references, and closes by request: net_close()
 * only marks it; memory is freed in libuv's close_cb, after every callback for it has returned.
 * With a TLS context (net_ctx.tls) every connection is a TLS session (tls.h): net does the
 * handshake before the owner hears of the connection, and owners read and write plaintext through
 * the same calls as on plain TCP. */
#ifndef SL_NET_H
#define SL_NET_H

#include <uv.h>

#include "buf.h"
#include "tq.h"

typedef struct net_conn net_conn_t;
typedef struct net_ctx net_ctx_t;

/* Why a connection closed, as given to on_close. */
typedef enum {
    NET_CLOSE_LOCAL = 0, /* net_close() by us */
    NET_CLOSE_EOF,       /* the peer closed its side */
    NET_CLOSE_ERROR,     /* read/write error (reset, ...) */
    NET_CLOSE_OVERFLOW,  /* our output queue for it went over net_ctx.max_queued (a slow reader), or
                            it held the most of a total over net_ctx.max_total_queued */
    NET_CLOSE_TIMEOUT,   /* its deadline (net_set_timeout) passed and the owner has no on_timeout */
} net_close_reason_t;

/* Owner's callbacks. The owner (http, then ws after an upgrade) may change with net_set_owner(). */
typedef struct {
    /* Bytes arrived. `data` is borrowed from the loop-wide buffer: use or copy it before returning.
     * Not called once the connection is closing. */
    void (*on_read)(net_conn_t *c, const char *data, size_t len);
    /* The connection is gone (libuv close_cb). Last call for c; c is freed right after it returns.
     * Called for every connection, whoever closed it. */
    void (*on_close)(net_conn_t *c, net_close_reason_t why);
    /* Optional: the output queue became empty. */
    void (*on_drain)(net_conn_t *c);
    /* Optional: the deadline set with net_set_timeout() passed (it is disarmed now). NULL: the
     * connection is closed with NET_CLOSE_TIMEOUT. Called from a timer, never from inside a call
     * of the owner. */
    void (*on_timeout)(net_conn_t *c);
} net_ops_t;

struct net_wreq;
struct tls_ctx;
struct tls_conn;
struct metrics;

enum {
    NET_F_CLOSING = 1,     /* uv_close() has been called */
    NET_F_CLOSE_AFTER = 2, /* close once the output queue has drained */
    NET_F_PAUSED = 8,      /* net_pause() is in force (4 is private to net.c) */
};

struct net_conn {
    uv_tcp_t tcp;              /* embedded handle; container_of gives the conn */
    net_ctx_t *ctx;            /* loop-wide context */
    const net_ops_t *ops;      /* owner's callbacks */
    void *owner;               /* owner's object (http_conn_t, ws_conn_t) */
    struct net_wreq *inflight; /* the uv_write in progress, or NULL */
    struct net_witem *pending; /* queued items not yet handed to uv_write (NULL when none) */
    uint32_t npending;         /* items in pending */
    uint32_t cap_pending;      /* allocated items in pending */
    size_t queued;             /* bytes in inflight + pending */
    uint8_t flags;             /* NET_F_* */
    uint8_t why;               /* net_close_reason_t once closing */
    tq_entry_t deadline;       /* in one of ctx->tq while a deadline is armed */
    struct net_conn *dirty_next; /* ctx->dirty list: has output waiting for the end-of-turn flush */
    struct net_peer *peer_ent; /* this IP's entry in ctx->peers (NULL if the address is unknown) */
    struct tls_conn *tls;      /* the TLS session on a TLS listener, else NULL */
};

typedef void (*net_accept_cb)(net_conn_t *c, void *data);

#define NET_MAX_TQ       8    /* distinct deadline durations with a timer queue of their own */
#define NET_PEER_BUCKETS 1024 /* buckets of the per-IP table */

struct net_ctx {
    uv_loop_t *loop;
    uv_tcp_t listener;
    net_accept_cb on_accept; /* the new conn has no owner yet: set one before returning. On a TLS
                                listener, called once the handshake is complete */
    void *data;
    /* TLS (NULL: plain TCP). Set before net_listen; the context stays the caller's (it may reload
     * it: sessions already open keep their certificate). A handshake not complete within
     * tls_timeout ms is closed; failed handshakes (garbage, plain HTTP, no common version) close
     * the connection, and each is logged, at most one line a second. */
    struct tls_ctx *tls;
    uint64_t tls_timeout;
    size_t tls_max_per_ip;  /* a connection from an IP that has this many open already is closed
                               before its handshake (0 = no limit; the owner's limits apply after) */
    uint64_t tls_warned;    /* loop time of the last line about a failed handshake */
    size_t tls_quiet;       /* failed handshakes not logged since that line */
    size_t max_queued; /* output bytes per connection before it is closed as a slow reader */
    /* The server-wide output budget: output queued on all connections together (each counted as
     * above, a broadcast's shared bytes once per recipient). Past it, the connections holding the
     * most are closed (NET_CLOSE_OVERFLOW), largest first, until the total is back under it; a
     * warning says so at most once a second. 0 = no budget. */
    size_t max_total_queued;
    size_t total_queued;      /* output queued on connections that are not closing */
    uint64_t budget_warned;   /* loop time of the last over-budget warning */
    size_t nconns;     /* open connections (for tests and limits) */
    size_t max_conns;  /* refuse (close at once) beyond this; 0 = unlimited */
    /* Deadlines: one timeout queue (one uv_timer) per distinct duration in use, made on first
     * use; a connection is in at most one. Beyond NET_MAX_TQ durations, the closest longer one
     * is used. Closed by net_stop() once no connection is left. */
    tq_t tq[NET_MAX_TQ];
    uint8_t ntq;
    const tq_clock_t *clock; /* the loop's poll clock, watched by those queues (NULL: none) */
    uint8_t stopped; /* net_stop() was called: close the queues with the last conn */
    /* Open connections per peer IP (for limits): a chained hash whose buckets live here, so that
     * nothing of it is left unreachable if the process exits with connections open. */
    struct net_peer *peers[NET_PEER_BUCKETS];
    size_t npeers;          /* distinct IPs connected */
    uint64_t accept_warned; /* loop time of the last accept error or "full" warning logged */
    size_t fd_limit;        /* RLIMIT_NOFILE when listening started (0: unknown or unlimited) */
    /* Output is corked for one loop turn: writes queue references, and the connections with
     * output are flushed once, before the loop polls again (prepare) and after the I/O callbacks
     * of the turn (check), with one writev each. A burst of packets to one peer (a broadcast of
     * several messages, an ack and an event) costs one syscall instead of one per packet. */
    struct net_conn *dirty;
    uv_prepare_t flush_prepare;
    uv_check_t flush_check;
    uint8_t flush_ready;
    struct metrics *metrics; /* bytes in/out, accepts are counted there (NULL: not counted) */
    char readbuf[65536];    /* the loop-wide read buffer */
};

/* Binds and listens on host:port (port 0 picks one; net_port() tells which).
 * Returns 0 or a UV_E* code; on error *err names the failed step. */
/* Logs "refusing connections: <why>" as a warning, at most once a second per ctx: an operator
 * sees that clients are turned away, and a flood of them cannot flood the log. */
void net_warn_full(net_ctx_t *ctx, const char *why);

int net_listen(net_ctx_t *ctx, uv_loop_t *loop, const char *host, int port, net_accept_cb cb, void *data,
               const char **err);
/* The same on the address of a socket inherited from the supervisor of --workers (fd, bound with
 * SO_REUSEPORT, closed here): a socket of this worker's own, bound there with SO_REUSEPORT too, so
 * that the kernel spreads new connections over the workers. */
int net_listen_fd(net_ctx_t *ctx, uv_loop_t *loop, int fd, net_accept_cb cb, void *data, const char **err);
/* A TCP socket bound (not listening) to sa with SO_REUSEADDR and SO_REUSEPORT, close-on-exec: the
 * address the processes of --workers share (the supervisor's, then each worker's own). The
 * descriptor, or -1 with errno set. */
int net_bind_shared(const struct sockaddr *sa, unsigned salen);
/* Takes a connection handed over the local channel of --workers (wbus.h): from is the channel's
 * pipe with the socket pending, data the bytes the other worker already read from it (borrowed).
 * The connection goes through on_accept as a new one, then its owner gets data as if just read. */
void net_adopt(net_ctx_t *ctx, uv_stream_t *from, const char *data, size_t len);
int net_port(net_ctx_t *ctx);
/* Stops accepting; open connections are not touched. */
void net_stop(net_ctx_t *ctx);

void net_set_owner(net_conn_t *c, const net_ops_t *ops, void *owner);

/* Queues b's bytes [off, off+len) for writing; takes its own reference when it must keep them.
 * off counts from b->data, headroom included (a payload starts at RBUF_HEADROOM, a ws frame at
 * RBUF_HEADROOM - b->hdr).
 * Writes synchronously with uv_try_write when nothing is queued. A no-op on a closing connection.
 * If the queue goes over ctx->max_queued the connection is closed with NET_CLOSE_OVERFLOW; if the
 * total goes over ctx->max_total_queued, the biggest holders are (c or others). */
void net_write(net_conn_t *c, rbuf_t *b, size_t off, size_t len);
/* Same for bytes the caller keeps: copied only if they cannot be written at once.
 * On TLS both encrypt at once (one record per call, up to 16 KiB each) and queue the ciphertext. */
void net_write_copy(net_conn_t *c, const void *p, size_t len);

/* Writes now what the connections have queued for the end of the turn (before a long task: the
 * pings the timers just queued go out before it). Runs the owners' on_drain; never called from
 * inside a net callback. */
void net_flush(net_ctx_t *ctx);

/* Requests the close. Deferred: on_close and the free happen in libuv's close_cb. Idempotent. */
void net_close(net_conn_t *c);
/* Closes once every queued byte has been written (or at once if nothing is queued). A TLS
 * connection sends close_notify first; what is written after this call is dropped. */
void net_close_after_write(net_conn_t *c);
static inline int net_closing(const net_conn_t *c)
{
    return (c->flags & NET_F_CLOSING) != 0;
}

/* Stops / resumes reading from the peer (backpressure). A connection paused inside on_accept is
 * not started by the listener; reading begins at net_resume(). No on_read comes while paused: on
 * TLS, plaintext already decrypted from the bytes read waits, and net_resume() hands it to the
 * owner in the same loop turn, never from inside the net_resume() call. */
void net_pause(net_conn_t *c);
void net_resume(net_conn_t *c);
static inline int net_paused(const net_conn_t *c)
{
    return (c->flags & NET_F_PAUSED) != 0;
}

/* Arms c's one deadline `ms` from now, replacing any earlier one; ms == 0 disarms it. When it
 * passes, ops->on_timeout(c) runs (or c closes). O(1): no per-connection timer. A no-op on a
 * closing connection. */
void net_set_timeout(net_conn_t *c, uint64_t ms);
/* 1 if c is a TLS connection (the owner sees plaintext either way). */
static inline int net_secure(const net_conn_t *c)
{
    return c->tls != NULL;
}
/* Open connections from c's peer IP, c included (0 if c was never counted). */
size_t net_peer_conns(const net_conn_t *c);
/* The peer's IP as text ("127.0.0.1"), for logs and handshake.address; "" if unknown. Valid while
 * c is open (the text is shared by the connections from that IP). */
const char *net_peer(const net_conn_t *c);

#endif
