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
#include "reload.h"
#include "sio.h"

struct lhost;
struct tls_ctx;

/* Options set on the command line: io.options() in the script does not override them. */
enum {
    CFG_HOST = 1 << 0, CFG_PORT = 1 << 1, CFG_PATH = 1 << 2, CFG_STATIC = 1 << 3,
    CFG_PING_INTERVAL = 1 << 4, CFG_PING_TIMEOUT = 1 << 5, CFG_UPGRADE_TIMEOUT = 1 << 6,
    CFG_CONNECT_TIMEOUT = 1 << 7, CFG_MAX_BUFFER = 1 << 8, CFG_TRANSPORTS = 1 << 9,
    CFG_ALLOW_UPGRADES = 1 << 10, CFG_CORS = 1 << 11, CFG_SERVE_CLIENT = 1 << 12,
    CFG_COOKIE = 1 << 13, /* no flag: for siolua.engine's own options (lserver_eio_option) */
    CFG_PER_MESSAGE_DEFLATE = 1 << 14, CFG_HTTP_COMPRESSION = 1 << 15,
    CFG_ALLOW_EIO3 = 1 << 16, CFG_PARSER = 1 << 17,
    CFG_REDIS = 1 << 20, /* --redis (the Redis adapter) */
    CFG_TLS = 1 << 21,   /* --tls-cert / --tls-key */
};

typedef struct {
    char *app;                 /* path of app.lua */
    char *host;                /* "127.0.0.1" */
    int port;                  /* 3000; 0 = any free port */
    char *path;                /* "/socket.io/" (always ends with '/') */
    char *static_dir;          /* NULL = no static files */
    int serve_client;          /* serve /socket.io/socket.io.js, 1 */
    unsigned cli_set;          /* CFG_* bits given on the command line */
    eio_config_t eio;          /* pingInterval, pingTimeout, maxHttpBufferSize, transports, cors, ... */
    sio_config_t sio;          /* connectTimeout, parser limits */
    http_limits_t http;        /* request head/url/body limits */
    size_t max_write_queue;    /* output bytes per connection before it is closed as a slow reader */
    size_t output_memory_limit; /* output queued on all connections together; over it the biggest
                                   holders are closed (0 = none; default a quarter of the memory) */
    int max_json_depth;        /* JSON nesting accepted from clients */
    size_t lua_memory_limit;   /* bytes the Lua VM may hold (0 = no limit) */
    int watch;                 /* reload when app.lua or its modules change (--no-watch: 0) */
    uint64_t handler_timeout;  /* ms one handler call may run before it is aborted (0 = no limit) */
    uint64_t handler_slice;    /* ms of Lua per loop turn before handlers are preempted (0 = never) */
    adapter_redis_config_t redis; /* --redis / io.options{adapter = ...}: the Redis adapter (url NULL: none) */
    char *tls_cert;            /* --tls-cert / io.options{tls = {cert = ...}}: PEM chain file (NULL: plain HTTP) */
    char *tls_key;             /* --tls-key / tls.key: its PEM private key file */
} sl_config_t;

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

/* Sets cfg's TLS certificate and key files (copied; NULL leaves one as it is). For the command
 * line and io.options alike. */
void sl_config_set_tls(sl_config_t *cfg, const char *cert, const char *key);
/* Fills cfg with the reference's defaults. */
void sl_config_defaults(sl_config_t *cfg);

/* Creates the Lua host, runs the app (io.options may change cfg), then listens.
 * Returns 0, or -1 with the reason already logged. */
int sl_server_start(sl_server_t *srv, uv_loop_t *loop);
/* io.close() / SIGINT / SIGTERM: stop accepting, disconnect every socket ("server shutting
 * down"), close sessions and the listener; the loop then ends. */
void sl_server_close(sl_server_t *srv);
/* Frees what start allocated (after the loop ended). */
void sl_server_free(sl_server_t *srv);

#endif
