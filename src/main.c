/* main: the command line. Parses flags into the configuration (flags win over io.options in the
 * script), starts the server and runs the loop. Exit codes: 0 after a clean shutdown, 1 when the
 * app fails to load or the port cannot be bound, 2 for usage errors. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "server.h"

#define SIOLUA_VERSION "0.1.0"

static void usage(FILE *out)
{
    fputs("Usage: siolua APP.lua [options]\n"
          "\n"
          "Runs a Socket.IO v4 server whose handlers are written in Lua (see README.md).\n"
          "\n"
          "Options (flags win over io.options{} in the script):\n"
          "  --host HOST                 address to listen on (default 127.0.0.1; 0.0.0.0 for all)\n"
          "  --port N                    port (default 3000; 0 picks a free one)\n"
          "  --path PATH                 Socket.IO path (default /socket.io/)\n"
          "  --static DIR                serve DIR at / (default: public/ next to APP.lua, if present)\n"
          "  --ping-interval MS          heartbeat interval (default 25000)\n"
          "  --ping-timeout MS           heartbeat timeout (default 20000)\n"
          "  --upgrade-timeout MS        time to finish a transport upgrade (default 10000)\n"
          "  --connect-timeout MS        time for a client to join a namespace (default 45000)\n"
          "  --max-http-buffer-size N    largest message or polling body in bytes (default 1000000)\n"
          "  --transports LIST           polling,websocket (default both)\n"
          "  --no-upgrades               do not upgrade polling sessions to WebSocket\n"
          "  --cors-origin ORIGIN        allowed origin, repeatable; * for any (default: no CORS)\n"
          "  --cors-methods LIST         methods for preflight answers (default GET,HEAD,PUT,PATCH,POST,DELETE)\n"
          "  --cors-credentials          send Access-Control-Allow-Credentials: true\n"
          "  --no-serve-client           do not serve /socket.io/socket.io.js\n"
          "  --per-message-deflate       compress WebSocket messages of 1024 bytes or more (permessage-deflate)\n"
          "                              with clients that offer it (default off; parameters: io.options)\n"
          "  --no-http-compression       do not gzip/deflate polling answers of 1024 bytes or more (default on)\n"
          "  --parser msgpack            encode Socket.IO packets with msgpack, as socket.io-msgpack-parser\n"
          "                              (default: the JSON parser)\n"
          "  --allow-eio3                accept Socket.IO v2 clients (Engine.IO protocol v3; default: refused)\n"
          "  --no-watch                  do not reload when app.lua or its modules change (SIGHUP still does)\n"
          "  --lua-memory-limit BYTES    memory the Lua VM may use (default 536870912; 0: no limit)\n"
          "  --handler-timeout MS        longest a handler may run before it is aborted (default 2000; 0: none)\n"
          "  --handler-slice MS          Lua time per loop turn before a long handler is preempted, to go on\n"
          "                              once other clients were served (default 100; 0: never)\n"
          "  --output-memory-limit BYTES output queued for all clients together; over it the clients holding\n"
          "                              the most are disconnected (default: a quarter of the memory; 0: none)\n"
          "  --redis URL                 Redis adapter: share broadcasts and rooms with other nodes\n"
          "                              (redis://[:password@]host[:port]; see README \"Scaling out\")\n"
          "  --tls-cert FILE             serve HTTPS and WSS with this PEM certificate chain (needs --tls-key);\n"
          "                              SIGHUP reads it again\n"
          "  --tls-key FILE              the certificate's PEM private key (not encrypted)\n"
          "  --header-timeout MS         time to send a request head, from the connect or its first byte (default 10000)\n"
          "  --body-timeout MS           time to send a request body after its head (default 30000)\n"
          "  --keepalive-timeout MS      idle time allowed between keep-alive requests (default 5000)\n"
          "  --send-timeout MS           time for an answer to be written out to a non-reading client (default 10000)\n"
          "  --max-pipelined N           requests sent ahead of their answers before the connection closes (default 16)\n"
          "  --max-connections N         open connections; more get 503 (default: the open-files limit\n"
          "                              less 64, e.g. 19936 for 20000; 0: no limit)\n"
          "  --max-connections-per-ip N  open connections from one IP; more get 503 (default 0: no limit)\n"
          "  --ws-max-fragments N        WebSocket frames in one message; more: close 1009 (default 1024)\n"
          "  --ws-pause-bytes N          stop reading a WebSocket while this much output waits (default 65536)\n"
          "  --ws-close-timeout MS       time for a WebSocket close to be written (default 5000)\n"
          "  --log-level LEVEL           error, warn, info (default) or debug\n"
          "  -h, --help                  this help\n"
          "  -v, --version               print the version\n",
          out);
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;
    if (s == NULL || *s == '\0' || *s == '-')
        return -1;
    v = strtoull(s, &end, 10);
    if (*end != '\0')
        return -1;
    *out = v;
    return 0;
}

enum {
    OPT_HOST = 256, OPT_PORT, OPT_PATH, OPT_STATIC, OPT_PING_INTERVAL, OPT_PING_TIMEOUT, OPT_UPGRADE_TIMEOUT,
    OPT_CONNECT_TIMEOUT, OPT_MAX_BUFFER, OPT_TRANSPORTS, OPT_NO_UPGRADES, OPT_CORS_ORIGIN, OPT_CORS_METHODS,
    OPT_CORS_CREDENTIALS, OPT_NO_SERVE_CLIENT, OPT_LOG_LEVEL, OPT_LUA_MEMORY, OPT_HANDLER_TIMEOUT,
    OPT_NO_WATCH, OPT_OUTPUT_MEMORY, OPT_HANDLER_SLICE, OPT_PER_MESSAGE_DEFLATE, OPT_NO_HTTP_COMPRESSION,
    OPT_PARSER, OPT_ALLOW_EIO3,
    OPT_REDIS, /* the Redis adapter */
    OPT_TLS_CERT, OPT_TLS_KEY,
    /* transport limits */
    OPT_HEADER_TIMEOUT, OPT_BODY_TIMEOUT, OPT_KEEPALIVE_TIMEOUT, OPT_SEND_TIMEOUT, OPT_MAX_PIPELINED,
    OPT_MAX_CONNS, OPT_MAX_CONNS_PER_IP, OPT_WS_MAX_FRAGMENTS, OPT_WS_PAUSE_BYTES, OPT_WS_CLOSE_TIMEOUT,
};

static int parse_args(int argc, char **argv, sl_config_t *cfg)
{
    static const struct option opts[] = {
        {"host", required_argument, 0, OPT_HOST},
        {"port", required_argument, 0, OPT_PORT},
        {"path", required_argument, 0, OPT_PATH},
        {"static", required_argument, 0, OPT_STATIC},
        {"ping-interval", required_argument, 0, OPT_PING_INTERVAL},
        {"ping-timeout", required_argument, 0, OPT_PING_TIMEOUT},
        {"upgrade-timeout", required_argument, 0, OPT_UPGRADE_TIMEOUT},
        {"connect-timeout", required_argument, 0, OPT_CONNECT_TIMEOUT},
        {"max-http-buffer-size", required_argument, 0, OPT_MAX_BUFFER},
        {"transports", required_argument, 0, OPT_TRANSPORTS},
        {"no-upgrades", no_argument, 0, OPT_NO_UPGRADES},
        {"cors-origin", required_argument, 0, OPT_CORS_ORIGIN},
        {"cors-methods", required_argument, 0, OPT_CORS_METHODS},
        {"cors-credentials", no_argument, 0, OPT_CORS_CREDENTIALS},
        {"no-serve-client", no_argument, 0, OPT_NO_SERVE_CLIENT},
        {"per-message-deflate", no_argument, 0, OPT_PER_MESSAGE_DEFLATE},
        {"no-http-compression", no_argument, 0, OPT_NO_HTTP_COMPRESSION},
        {"parser", required_argument, 0, OPT_PARSER},
        {"allow-eio3", no_argument, 0, OPT_ALLOW_EIO3},
        {"log-level", required_argument, 0, OPT_LOG_LEVEL},
        {"lua-memory-limit", required_argument, 0, OPT_LUA_MEMORY},
        {"handler-timeout", required_argument, 0, OPT_HANDLER_TIMEOUT},
        {"output-memory-limit", required_argument, 0, OPT_OUTPUT_MEMORY},
        {"handler-slice", required_argument, 0, OPT_HANDLER_SLICE},
        {"header-timeout", required_argument, 0, OPT_HEADER_TIMEOUT},
        {"body-timeout", required_argument, 0, OPT_BODY_TIMEOUT},
        {"keepalive-timeout", required_argument, 0, OPT_KEEPALIVE_TIMEOUT},
        {"send-timeout", required_argument, 0, OPT_SEND_TIMEOUT},
        {"max-pipelined", required_argument, 0, OPT_MAX_PIPELINED},
        {"max-connections", required_argument, 0, OPT_MAX_CONNS},
        {"max-connections-per-ip", required_argument, 0, OPT_MAX_CONNS_PER_IP},
        {"ws-max-fragments", required_argument, 0, OPT_WS_MAX_FRAGMENTS},
        {"ws-pause-bytes", required_argument, 0, OPT_WS_PAUSE_BYTES},
        {"ws-close-timeout", required_argument, 0, OPT_WS_CLOSE_TIMEOUT},
        {"no-watch", no_argument, 0, OPT_NO_WATCH},
        {"redis", required_argument, 0, OPT_REDIS},
        {"tls-cert", required_argument, 0, OPT_TLS_CERT},
        {"tls-key", required_argument, 0, OPT_TLS_KEY},
        {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'v'},
        {0, 0, 0, 0},
    };
    int c;
    uint64_t v;
    eio_cors_t *cors = &cfg->eio.cors;
    while ((c = getopt_long(argc, argv, "hv", opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            usage(stdout);
            exit(0);
        case 'v':
            printf("siolua %s\n", SIOLUA_VERSION);
            exit(0);
        case OPT_HOST:
            free(cfg->host);
            cfg->host = strdup(optarg);
            cfg->cli_set |= CFG_HOST;
            break;
        case OPT_PORT:
            if (parse_u64(optarg, &v) != 0 || v > 65535)
                goto bad;
            cfg->port = (int)v;
            cfg->cli_set |= CFG_PORT;
            break;
        case OPT_PATH: {
            size_t n = strlen(optarg);
            free(cfg->path);
            cfg->path = malloc(n + 3);
            snprintf(cfg->path, n + 3, "%s%s%s", optarg[0] == '/' ? "" : "/", optarg,
                     n > 0 && optarg[n - 1] == '/' ? "" : "/");
            cfg->cli_set |= CFG_PATH;
            break;
        }
        case OPT_STATIC:
            free(cfg->static_dir);
            cfg->static_dir = strdup(optarg);
            cfg->cli_set |= CFG_STATIC;
            break;
        case OPT_PING_INTERVAL:
            if (parse_u64(optarg, &v) != 0)
                goto bad;
            cfg->eio.ping_interval = v;
            cfg->cli_set |= CFG_PING_INTERVAL;
            break;
        case OPT_PING_TIMEOUT:
            if (parse_u64(optarg, &v) != 0)
                goto bad;
            cfg->eio.ping_timeout = v;
            cfg->cli_set |= CFG_PING_TIMEOUT;
            break;
        case OPT_UPGRADE_TIMEOUT:
            if (parse_u64(optarg, &v) != 0)
                goto bad;
            cfg->eio.upgrade_timeout = v;
            cfg->cli_set |= CFG_UPGRADE_TIMEOUT;
            break;
        case OPT_CONNECT_TIMEOUT:
            if (parse_u64(optarg, &v) != 0)
                goto bad;
            cfg->sio.connect_timeout = v;
            cfg->cli_set |= CFG_CONNECT_TIMEOUT;
            break;
        case OPT_MAX_BUFFER:
            if (parse_u64(optarg, &v) != 0 || v == 0 || v > (1u << 30))
                goto bad;
            cfg->eio.max_payload = cfg->http.max_body = (size_t)v;
            cfg->cli_set |= CFG_MAX_BUFFER;
            break;
        case OPT_TRANSPORTS: {
            int t = 0;
            char *list = strdup(optarg), *save = NULL;
            for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                if (strcmp(tok, "polling") == 0)
                    t |= EIO_T_POLLING;
                else if (strcmp(tok, "websocket") == 0)
                    t |= EIO_T_WEBSOCKET;
                else {
                    free(list);
                    goto bad;
                }
            }
            free(list);
            if (t == 0)
                goto bad;
            cfg->eio.transports = t;
            cfg->cli_set |= CFG_TRANSPORTS;
            break;
        }
        case OPT_NO_UPGRADES:
            cfg->eio.allow_upgrades = 0;
            cfg->cli_set |= CFG_ALLOW_UPGRADES;
            break;
        case OPT_CORS_ORIGIN:
            if (strcmp(optarg, "*") == 0) {
                cors->origin_any = 1;
            } else {
                cors->origins = realloc(cors->origins, (cors->norigins + 1) * sizeof(char *));
                cors->origins[cors->norigins++] = strdup(optarg);
            }
            cfg->cli_set |= CFG_CORS;
            break;
        case OPT_CORS_METHODS:
            free(cors->methods);
            cors->methods = strdup(optarg);
            cfg->cli_set |= CFG_CORS;
            break;
        case OPT_CORS_CREDENTIALS:
            cors->credentials = 1;
            cfg->cli_set |= CFG_CORS;
            break;
        case OPT_NO_SERVE_CLIENT:
            cfg->serve_client = 0;
            cfg->cli_set |= CFG_SERVE_CLIENT;
            break;
        case OPT_PER_MESSAGE_DEFLATE:
            cfg->eio.per_message_deflate.enabled = 1;
            cfg->cli_set |= CFG_PER_MESSAGE_DEFLATE;
            break;
        case OPT_NO_HTTP_COMPRESSION:
            cfg->eio.http_compression.enabled = 0;
            cfg->cli_set |= CFG_HTTP_COMPRESSION;
            break;
        case OPT_PARSER:
            if (sio_parser_from_name(optarg, &cfg->sio.parser) != 0)
                goto bad;
            cfg->cli_set |= CFG_PARSER;
            break;
        case OPT_ALLOW_EIO3:
            cfg->eio.allow_eio3 = 1;
            cfg->cli_set |= CFG_ALLOW_EIO3;
            break;
        case OPT_LOG_LEVEL:
            if (strcmp(optarg, "error") == 0)
                log_level = LOG_ERROR;
            else if (strcmp(optarg, "warn") == 0)
                log_level = LOG_WARN;
            else if (strcmp(optarg, "info") == 0)
                log_level = LOG_INFO;
            else if (strcmp(optarg, "debug") == 0)
                log_level = LOG_DEBUG;
            else
                goto bad;
            break;
        case OPT_NO_WATCH:
            cfg->watch = 0;
            break;
        case OPT_REDIS: /* the Redis adapter */
            if (strncmp(optarg, "redis://", 8) != 0)
                goto bad;
            free(cfg->redis.url);
            cfg->redis.url = strdup(optarg);
            cfg->cli_set |= CFG_REDIS;
            break;
        case OPT_TLS_CERT:
        case OPT_TLS_KEY:
            if (optarg[0] == '\0')
                goto bad;
            sl_config_set_tls(cfg, c == OPT_TLS_CERT ? optarg : NULL, c == OPT_TLS_KEY ? optarg : NULL);
            cfg->cli_set |= CFG_TLS;
            break;
        case OPT_LUA_MEMORY:
        case OPT_OUTPUT_MEMORY:
            if (parse_u64(optarg, &v) != 0)
                goto bad;
            *(c == OPT_LUA_MEMORY ? &cfg->lua_memory_limit : &cfg->output_memory_limit) = (size_t)v;
            break;
        case OPT_HANDLER_TIMEOUT:
        case OPT_HANDLER_SLICE:
            if (parse_u64(optarg, &v) != 0 || v > 86400000)
                goto bad;
            *(c == OPT_HANDLER_TIMEOUT ? &cfg->handler_timeout : &cfg->handler_slice) = v;
            break;
        /* transport limits (http_limits_t); timeouts of 0 are refused: 0 would mean the default */
        case OPT_HEADER_TIMEOUT:
        case OPT_BODY_TIMEOUT:
        case OPT_KEEPALIVE_TIMEOUT:
        case OPT_SEND_TIMEOUT:
        case OPT_WS_CLOSE_TIMEOUT:
            if (parse_u64(optarg, &v) != 0 || v == 0 || v > 86400000)
                goto bad;
            *(c == OPT_HEADER_TIMEOUT      ? &cfg->http.header_timeout
              : c == OPT_BODY_TIMEOUT      ? &cfg->http.body_timeout
              : c == OPT_KEEPALIVE_TIMEOUT ? &cfg->http.keepalive_timeout
              : c == OPT_SEND_TIMEOUT      ? &cfg->http.send_timeout
                                           : &cfg->http.ws_close_timeout) = v;
            break;
        case OPT_MAX_PIPELINED:
        case OPT_WS_MAX_FRAGMENTS:
        case OPT_WS_PAUSE_BYTES:
            if (parse_u64(optarg, &v) != 0 || v == 0 || v > (1u << 30))
                goto bad;
            *(c == OPT_MAX_PIPELINED     ? &cfg->http.max_pipelined
              : c == OPT_WS_MAX_FRAGMENTS ? &cfg->http.ws_max_fragments
                                          : &cfg->http.ws_pause_bytes) = (size_t)v;
            break;
        case OPT_MAX_CONNS:
        case OPT_MAX_CONNS_PER_IP:
            if (parse_u64(optarg, &v) != 0 || v > (1u << 30))
                goto bad;
            *(c == OPT_MAX_CONNS ? &cfg->http.max_conns : &cfg->http.max_conns_per_ip) = (size_t)v;
            break;
        default:
            usage(stderr);
            return -1;
        }
        continue;
    bad:
        for (const struct option *o = opts; o->name; o++)
            if (o->val == c)
                fprintf(stderr, "siolua: invalid value for --%s: %s\n", o->name, optarg);
        return -1;
    }
    if (optind != argc - 1) {
        fprintf(stderr, optind >= argc ? "siolua: missing APP.lua\n" : "siolua: one APP.lua expected\n");
        usage(stderr);
        return -1;
    }
    cfg->app = strdup(argv[optind]);
    return 0;
}

int main(int argc, char **argv)
{
    sl_server_t srv;
    uv_loop_t *loop = uv_default_loop();
    int rc;
    memset(&srv, 0, sizeof(srv));
    sl_config_defaults(&srv.cfg);
    if (parse_args(argc, argv, &srv.cfg) != 0) {
        sl_server_free(&srv); /* the defaults' strings: a usage error exits 2, leak-free */
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stderr, NULL, _IOLBF, 0);
    rc = sl_server_start(&srv, loop);
    if (rc == 0) {
        uv_run(loop, UV_RUN_DEFAULT);
        uv_run(loop, UV_RUN_NOWAIT); /* close callbacks of what the shutdown closed */
    }
    sl_server_free(&srv);
    return rc == 0 ? 0 : 1;
}
