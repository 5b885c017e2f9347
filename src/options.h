/* options: siolua's configuration and its one schema. sl_config_t holds every option and limit;
 * the table in options.c has one row per option (command-line flag, io.options key, type, default,
 * bounds, whether siolua.engine{} takes it and whether a hot-reloaded app may set it, --help text),
 * and that table alone drives the defaults, --help, the command line, io.options{}, siolua.engine{}
 * and the frees. Command-line flags win over io.options{}: a key whose flag was given is checked
 * but not applied.
 * Adding an option: a field in the config struct of the module that uses it, and one row. */
#ifndef SL_OPTIONS_H
#define SL_OPTIONS_H

#include <lua.h>
#include <stdint.h>
#include <stdio.h>

#include "adapter_redis.h"
#include "eio.h"
#include "http.h"
#include "sio.h"

typedef struct {
    char *cert;                /* --tls-cert / io.options{tls = {cert = ...}}: PEM chain file (NULL: plain HTTP) */
    char *key;                 /* --tls-key / tls.key: its PEM private key file */
} options_tls_t;

/* The operator's endpoints (ops.h): probes, metrics, the drain. */
typedef struct {
    int probes;             /* serve /healthz and /readyz (--no-probes: 0) */
    char *metrics_path;     /* --metrics / --metrics-path: Prometheus metrics there (NULL: off) */
    char *metrics_listen;   /* --metrics-listen HOST:PORT: probes and metrics on a listener of their
                               own, metrics no longer on the main one (NULL: none) */
    uint64_t drain_delay;   /* --drain-delay MS: after SIGTERM, /readyz says "draining" this long
                               while everything else is served, then the shutdown (0: at once) */
    int ready_ignore_redis; /* --ready-ignore-redis: /readyz stays 200 while the Redis adapter is down */
} options_ops_t;

/* The Admin UI (lua/admin.lua, ladmin.h) from the command line: what is not given is the app's
 * io.instrument{} (or the reference's default). */
typedef struct {
    char *auth;             /* --admin-ui USER:BCRYPT_HASH: on, with basic auth (NULL: not given) */
    int no_auth;            /* --admin-ui-no-auth: on, without authentication */
    char *ui_path;          /* --admin-ui-path PATH: the UI's files served there (NULL: not given) */
    char *ui_path_app;      /* io.instrument{uiPath = ...} (--admin-ui-path wins) */
    int readonly;           /* --admin-ui-readonly */
    int mode;               /* --admin-ui-mode: 0 not given, 1 development, 2 production */
    char *server_id;        /* --admin-ui-server-id ID (NULL: not given) */
    char *nsp;              /* --admin-ui-namespace NSP (NULL: not given) */
} options_admin_t;
/* connectionStateRecovery (rstore.h): off unless the option or --state-file is given. */
typedef struct {
    int enabled;
    uint64_t max_duration;     /* maxDisconnectionDuration, ms: 120000 */
    int skip_middlewares;      /* skipMiddlewares: 1 */
    size_t max_bytes;          /* maxBytes: packets and sessions kept, 64 MiB (0: no limit) */
    char *state_file;          /* stateFile / --state-file: written on shutdown, read at start */
    uint8_t cli_file, cli_bytes; /* given on the command line (io.options{} leaves them alone) */
} options_recovery_t;

typedef struct {
    char *app;                 /* path of app.lua (the positional argument) */
    char *host;                /* "127.0.0.1" */
    int port;                  /* 3000; 0 = any free port */
    char *path;                /* "/socket.io/" (always ends with '/') */
    char *static_dir;          /* NULL = no static files */
    int serve_client;          /* serve /socket.io/socket.io.js, 1 */
    uint64_t cli_set;          /* rows given on the command line (options_given) */
    eio_config_t eio;          /* pingInterval, pingTimeout, maxHttpBufferSize, transports, cors, ... */
    sio_config_t sio;          /* connectTimeout, parser limits */
    http_limits_t http;        /* request head/url/body limits */
    size_t max_write_queue;    /* output bytes per connection before it is closed as a slow reader */
    size_t output_memory_limit; /* output queued on all connections together; over it the biggest
                                   holders are closed (0 = none; default a quarter of the memory) */
    int max_json_depth;        /* JSON nesting accepted from clients */
    size_t lua_memory_limit;   /* bytes the Lua VM may hold (0 = no limit) */
    int watch;                 /* reload when app.lua or its modules change (--no-watch: 0) */
    int workers;               /* --workers N / io.options{workers = N}: worker processes (1: this one) */
    int worker;                /* this process is worker number `worker` of a supervisor (-1: not) */
    uint64_t handler_timeout;  /* ms one handler call may run before it is aborted (0 = no limit) */
    uint64_t handler_slice;    /* ms of Lua per loop turn before handlers are preempted (0 = never) */
    adapter_redis_config_t redis;      /* --redis / io.options{adapter = ...}: the Redis adapter (url NULL: none) */
    options_tls_t tls;         /* --tls-cert, --tls-key / io.options{tls = ...} */
    options_ops_t ops;         /* probes, metrics, the drain (ops.h) */
    options_admin_t admin;     /* --admin-ui... (ladmin.h) */
    options_recovery_t recovery; /* connectionStateRecovery */
    uint64_t shutdown_window;  /* --shutdown-window MS: clients disconnected in batches over it */
} sl_config_t;

/* Fills cfg with the defaults (the reference's, where it has the option). */
void options_defaults(sl_config_t *cfg);
/* Frees what cfg's options allocated. */
void options_free(sl_config_t *cfg);

/* Parses argv (getopt_long, from the rows' flags) into cfg: the app path and the flags.
 * Returns 0; 1 after printing --help or --version (exit 0); -1 after printing a usage error
 * (exit 2). With --options-json, prints the schema (for the test that keeps README.md true). */
int options_parse_argv(sl_config_t *cfg, int argc, char **argv, const char *version);
/* The --help text. */
void options_usage(FILE *out);

/* io.options{...} at stack[idx]: each key's row checks the value and, unless its flag was given,
 * applies it to cfg. With `reloaded` (a hot-reloaded app) only rows a reload may change
 * (allowRequest) apply; the others are counted in *ignored. Raises on an unknown key or a bad
 * value ("io.options: ..."). [-0, +0, e] */
void options_lua(lua_State *L, int idx, sl_config_t *cfg, int reloaded, int *ignored);
/* siolua.engine{...}: reads key k's value (stack top) into eio, a scratch Engine.IO config the
 * caller owns, if k is an option an endpoint takes. Returns the row's bit (for ep_options_apply),
 * 0 when k is no such option. Raises on a bad value ("siolua.engine: ..."). [-0, +0, e] */
uint64_t options_engine(lua_State *L, const char *k, eio_config_t *eio);
/* Copies the endpoint options `set` (bits from options_engine) from `from` over `to` (shallow:
 * strings stay owned by `from`). */
void options_engine_apply(eio_config_t *to, const eio_config_t *from, uint64_t set);
/* Pushes io.options' allowRequest function, or nil. [-0, +1, -] */
void options_push_allow_request(lua_State *L);

/* "/x/" from "x", "/x" or "x/": the reference's normalisation of a path option, malloc'd; or
 * pushed as a Lua string ([-0, +1, m]). */
char *options_path(const char *p);
const char *options_push_path(lua_State *L, const char *p);

#endif
