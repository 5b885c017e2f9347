/* metrics: the server's counters and histograms, and their Prometheus text exposition.
 * One metrics_t lives in sl_server_t; each layer that counts (net, eio, sio, the Lua host,
 * reload) is given a pointer to it (NULL: not counted, as in the unit tests) and bumps plain
 * fields with METRIC_ADD: one add in memory per event, no lock (one thread), no lookup. Gauges
 * (connections by transport, sockets by namespace, RSS, fds, event-loop lag) are not kept here:
 * whoever serves /metrics reads them from their owners at scrape time (ops.c), so they cost
 * nothing per message. A leaf module: it includes buf.h only. */
#ifndef SL_METRICS_H
#define SL_METRICS_H

#include <stdint.h>

#include "buf.h"

#define METRICS_NBUCKETS 12 /* histogram buckets, upper bounds in metrics.c (0.1 ms .. 10 s), +Inf apart */

typedef struct {
    uint64_t buckets[METRICS_NBUCKETS]; /* observations <= each bound (not cumulative: summed at exposition) */
    uint64_t count;                     /* all observations, +Inf included */
    double sum;                         /* seconds */
} metrics_hist_t;

#define METRICS_NDISC 10 /* disconnect reasons with a counter of their own (metrics.c), "other" last */
#define METRICS_NSIO_TYPES 7 /* Socket.IO packet types CONNECT .. BINARY_ACK */
#define METRICS_NEIO_ERRORS 6 /* eio_error_t */

typedef struct metrics {
    /* net */
    uint64_t bytes_in, bytes_out;            /* TCP payload read / written (TLS: the ciphertext) */
    uint64_t accepted;                       /* connections accepted */
    /* eio */
    uint64_t eio_handshakes;                 /* sessions opened */
    uint64_t eio_refused[METRICS_NEIO_ERRORS]; /* requests answered with an Engine.IO error, by code */
    uint64_t eio_upgrades;                   /* polling sessions upgraded to WebSocket */
    /* sio */
    uint64_t sio_in[METRICS_NSIO_TYPES];     /* packets received, by type */
    uint64_t sio_out;                        /* packets queued to a client (one per recipient) */
    uint64_t sio_connects;                   /* namespace CONNECTs accepted */
    uint64_t sio_connect_errors;             /* CONNECTs refused (middleware, unknown namespace) */
    uint64_t sio_disconnects[METRICS_NDISC]; /* connected sockets that left, by reason */
    uint64_t broadcasts;                     /* sends to a selection of sockets (rooms, namespace) */
    uint64_t broadcast_recipients;           /* the sockets those reached */
    /* the Lua host */
    metrics_hist_t handler_seconds;          /* one handler call's run (each slice of a preempted one) */
    uint64_t handler_errors;                 /* handler calls that raised (aborts included) */
    uint64_t handler_aborts;                 /* handler calls aborted by --handler-timeout (the watchdog) */
    uint64_t reloads_ok, reloads_failed;     /* hot reloads */
    double reload_last_swap;                 /* seconds the last successful reload took to swap */
    metrics_hist_t ack_seconds;              /* round trip of the acks the server asked for (emit with a callback) */
    uint64_t ack_timeouts;                   /* those that timed out (socket.timeout(ms).emit, emitWithAck) */
    /* the loop */
    metrics_hist_t loop_lag;                 /* how late a 500 ms timer fired (ops.c samples it) */
} metrics_t;

/* Adds one observation of v seconds to h (METRIC_OBSERVE: the same, compiled out with SL_NO_METRICS). */
void metrics_observe(metrics_hist_t *h, double seconds);

/* SL_NO_METRICS compiles the counting out: bench/metrics measures what it costs per message. */
#ifdef SL_NO_METRICS
#define METRIC_ADD(m, field, n) ((void)(m))
#define METRIC_OBSERVE(h, v) ((void)(h))
#else
#define METRIC_ADD(m, field, n)                                                                                 \
    do {                                                                                                        \
        if ((m) != NULL)                                                                                        \
            (m)->field += (n);                                                                                  \
    } while (0)
#define METRIC_OBSERVE(h, v) metrics_observe((h), (v))
#endif
/* The counter index of a disconnect reason (unknown reasons: "other", the last). */
int metrics_disconnect_index(const char *reason);
/* The reason string of index i (the label value). */
const char *metrics_disconnect_reason(int i);

/* Exposition (Prometheus text format 0.0.4). metrics_write appends every counter and histogram of
 * m; metrics_family, metrics_sample and metrics_single let the caller add its gauges in the same format: a family
 * header (# HELP, # TYPE), then samples, one label at most (lkey NULL: none; the value escaped). */
void metrics_write(buf_t *out, const metrics_t *m);
void metrics_family(buf_t *out, const char *name, const char *type, const char *help);
void metrics_sample(buf_t *out, const char *name, const char *lkey, const char *lval, double v);
/* A family of one unlabelled sample: metrics_family, then metrics_sample. */
void metrics_single(buf_t *out, const char *name, const char *type, const char *help, double v);

#endif
