/* server: the root object. One sl_server_t holds the loop, the configuration (every limit), the
 * listener, the Engine.IO and Socket.IO layers and the Lua layer (lapp); everything is reachable
 * from it and it is passed explicitly, never global. It also routes HTTP requests: the Socket.IO client
 * bundle, the Engine.IO path, and the static folder. */
#ifndef SL_SERVER_H
#define SL_SERVER_H

#include <uv.h>

#include "eio.h"
#include "http.h"
#include "lapp.h"
#include "metrics.h"
#include "net.h"
#include "options.h"
#include "reload.h"
#include "sio.h"
#include "wbus.h"

struct tls_ctx;

typedef struct sl_server {
    uv_loop_t *loop;
    sl_config_t cfg;
    net_ctx_t net;
    eio_server_t eio;
    sio_server_t sio;
    lapp_t app;                /* the Lua layer: its environment, the VM serving now, the adapter */
    reload_t reload;
    metrics_t metrics;         /* counters of every layer (metrics.h); served by ops.c */
    struct tls_ctx *tls;       /* the certificate (NULL: plain HTTP); re-read on SIGHUP */
    struct ops *ops;           /* probes, metrics, drain (ops.h); NULL before ops_start */
    tq_clock_t clock;          /* the loop's poll clock: deadlines that judge input wait for it */
    uv_signal_t sigint, sigterm, sighup;
    char client_etag[64];      /* "\"<socket.io-client version>\"" */
    uv_timer_t shutdown;       /* after close: stops the loop once connections are gone (or 2 s) */
    uv_timer_t window;         /* --shutdown-window: disconnects clients in batches until it ends */
    size_t window_batch;       /* clients per tick */
    int windowing;             /* the window runs: a second close request ends it at once */
    uint64_t closing_since;    /* loop time of sl_server_close */
    int closing;
    int started;               /* sl_server_start got past the app's top level */
    int close_early;           /* io.close() at the app's top level: closed before listening */
    wbus_t bus;                /* --workers: the channel to the supervisor and the other workers */
} sl_server_t;

/* Creates the Lua VM, runs the app (io.options may change cfg), then listens. Returns 0 (run the
 * loop), 1 (the app called io.close() at its top level: the server closed without listening; run
 * the loop to let the closing finish, then exit 0), 2 (io.options{workers = N > 1} in a process
 * that is no worker: nothing was listened, the caller starts the supervisor instead), or -1 with
 * the reason already logged.
 * A worker of --workers (cfg.worker >= 0) listens on the supervisor's socket (fd 3) and talks to
 * it on fd 4 (wbus.h): requests naming a session of another worker are handed to it there. */
int sl_server_start(sl_server_t *srv, uv_loop_t *loop);
/* io.close() / SIGINT / SIGTERM: stop accepting, disconnect every socket ("server shutting
 * down"), close sessions and the listener; the loop then ends. */
void sl_server_close(sl_server_t *srv);
/* Frees what start allocated (after the loop ended). */
void sl_server_free(sl_server_t *srv);

#endif
