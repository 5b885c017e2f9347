/* server: the root object. One sl_server_t holds the loop, the configuration (every limit), the
 * listener, the Engine.IO and Socket.IO layers and the Lua host; everything is reachable from it
 * and it is passed explicitly, never global. It also routes HTTP requests: the Socket.IO client
 * bundle, the Engine.IO path, and the static folder. */
#ifndef SL_SERVER_H
#define SL_SERVER_H

#include <uv.h>

#include "adapter_redis.h"
#include "eio.h"
#include "http.h"
#include "net.h"
#include "options.h"
#include "reload.h"
#include "sio.h"

struct lhost;
struct tls_ctx;

typedef struct sl_server {
    uv_loop_t *loop;
    sl_config_t cfg;
    net_ctx_t net;
    eio_server_t eio;
    sio_server_t sio;
    struct lhost *lua;         /* the current Lua VM (replaced by each hot reload) */
    uv_idle_t lua_run;         /* lhost's scheduler: runs the preempted handlers while there are any */
    uv_check_t lua_turn;       /* lhost's scheduler: the end of a loop turn (a new slice) */
    struct adapter_redis *redis; /* the Redis adapter (NULL: in-memory); outlives hot reloads */
    reload_t reload;
    struct tls_ctx *tls;       /* the certificate (NULL: plain HTTP); re-read on SIGHUP */
    tq_clock_t clock;          /* the loop's poll clock: deadlines that judge input wait for it */
    uv_signal_t sigint, sigterm, sighup;
    char client_etag[64];      /* "\"<socket.io-client version>\"" */
    uv_timer_t shutdown;       /* after close: stops the loop once connections are gone (or 2 s) */
    uint64_t closing_since;    /* loop time of sl_server_close */
    int closing;
} sl_server_t;

/* Creates the Lua host, runs the app (io.options may change cfg), then listens.
 * Returns 0, or -1 with the reason already logged. */
int sl_server_start(sl_server_t *srv, uv_loop_t *loop);
/* io.close() / SIGINT / SIGTERM: stop accepting, disconnect every socket ("server shutting
 * down"), close sessions and the listener; the loop then ends. */
void sl_server_close(sl_server_t *srv);
/* Frees what start allocated (after the loop ended). */
void sl_server_free(sl_server_t *srv);

#endif
