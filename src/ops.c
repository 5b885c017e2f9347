/* ops: see ops.h. The answers are plain text: "ok", "ready", "draining", "redis adapter down"
 * (load balancers read the status code; a person reads the word). */
#include "ops.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "adapter_redis.h"
#include "log.h"
#include "metrics.h"
#include "server.h"

#define LAG_INTERVAL_MS 500 /* the event-loop lag timer's period */

typedef struct ops ops_t;

struct ops {
    net_ctx_t *net;        /* the second listener (--metrics-listen), NULL: none */
    uv_timer_t lag;        /* samples the event-loop lag (with metrics on) */
    uint64_t lag_last;     /* uv_hrtime() of its last tick */
    uv_timer_t drain;      /* the end of the drain: sl_server_close() */
    int lag_on, drain_on;  /* the timers were started (and must be closed) */
};

static void respond(http_req_t *req, int status, const char *type, const char *body, size_t len)
{
    http_hdr_t h[] = {{"Content-Type", type}, {"Cache-Control", "no-store"}};
    http_respond(req, status, h, 2, body, len);
}

static void text(http_req_t *req, int status, const char *body)
{
    respond(req, status, "text/plain; charset=utf-8", body, strlen(body));
}

int ops_draining(const sl_server_t *srv)
{
    return srv->closing || (srv->ops != NULL && srv->ops->drain_on);
}

/* ---------------------------------------------------------------- probes */

static void readyz(sl_server_t *srv, http_req_t *req)
{
    if (ops_draining(srv)) {
        text(req, 503, srv->closing ? "shutting down\n" : "draining\n");
        return;
    }
    if (srv->app.env.redis != NULL && !srv->cfg.ops.ready_ignore_redis) {
        adapter_redis_status_t st;
        adapter_redis_status(srv->app.env.redis, &st);
        if (!st.up) {
            text(req, 503, "redis adapter down\n");
            return;
        }
    }
    text(req, 200, "ready\n");
}

/* ---------------------------------------------------------------- /metrics */

static size_t open_fds(void)
{
    size_t n = 0;
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    if (d == NULL)
        return 0;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n > 0 ? n - 1 : 0; /* less the directory's own descriptor */
}

static void gauge(buf_t *out, const char *name, const char *help, double v)
{
    metrics_single(out, name, "gauge", help, v);
}

/* The gauges, read from their owners now. */
static void gauges(sl_server_t *srv, buf_t *out)
{
    eio_session_t **v;
    size_t n = eio_server_sessions(&srv->eio, &v), ws = 0;
    size_t rss = 0;
    struct rlimit rl;
    for (size_t i = 0; i < n; i++)
        ws += eio_session_transport(v[i]) == EIO_T_WEBSOCKET;
    eio_sessions_release(v, n);
    metrics_family(out, "siolua_connections", "gauge", "Open Engine.IO sessions, by current transport.");
    metrics_sample(out, "siolua_connections", "transport", "polling", (double)(n - ws));
    metrics_sample(out, "siolua_connections", "transport", "websocket", (double)ws);
    gauge(out, "siolua_tcp_connections", "Open TCP connections of the main listener.", (double)srv->net.nconns);
    metrics_family(out, "siolua_sockets", "gauge", "Connected Socket.IO sockets, by namespace.");
    for (sio_nsp_t *nsp = srv->sio.nsps; nsp != NULL; nsp = nsp->next)
        metrics_sample(out, "siolua_sockets", "namespace", nsp->name, (double)nsp->nsockets);
    if (srv->app.env.redis != NULL) {
        adapter_redis_status_t st;
        adapter_redis_status(srv->app.env.redis, &st);
        gauge(out, "siolua_redis_up", "1 while the Redis adapter is connected and subscribed, else 0.", st.up);
        gauge(out, "siolua_redis_down_seconds", "Time since the Redis adapter's link went down (0 while up).",
              (double)st.down_ms / 1000);
        gauge(out, "siolua_redis_pending_bytes", "Bytes queued to Redis and not yet written (the adapter's backlog).",
              (double)st.pending_out);
        metrics_single(out, "siolua_redis_dropped_messages_total", "counter",
                       "Cluster messages dropped while Redis was down or too far behind.", (double)st.dropped);
    }
    uv_resident_set_memory(&rss);
    gauge(out, "process_resident_memory_bytes", "Resident memory size in bytes.", (double)rss);
    gauge(out, "process_open_fds", "Number of open file descriptors.", (double)open_fds());
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        gauge(out, "process_max_fds", "Maximum number of open file descriptors.", (double)rl.rlim_cur);
}

static void serve_metrics(sl_server_t *srv, http_req_t *req)
{
    buf_t out = BUF_INIT;
    metrics_write(&out, &srv->metrics);
    gauges(srv, &out);
    respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", out.base, out.len);
    buf_free(&out);
}

/* ---------------------------------------------------------------- routing */

/* Answers a probe (probes on) or /metrics (with_metrics and a metrics path): 1, else 0. */
static int route(sl_server_t *srv, http_req_t *req, int with_metrics)
{
    int probe = srv->cfg.ops.probes && (slice_eq(req->path, "/healthz") || slice_eq(req->path, "/readyz"));
    int metrics = with_metrics && srv->cfg.ops.metrics_path != NULL && slice_eq(req->path, srv->cfg.ops.metrics_path);
    if (!probe && !metrics)
        return 0;
    if (req->method != HTTP_M_GET && req->method != HTTP_M_HEAD) {
        http_hdr_t h[] = {{"Allow", "GET, HEAD"}};
        http_respond(req, 405, h, 1, NULL, 0);
    } else if (metrics) {
        serve_metrics(srv, req);
    } else if (req->path.ptr[1] == 'h') {
        text(req, 200, "ok\n"); /* alive: the loop got here */
    } else {
        readyz(srv, req);
    }
    return 1;
}

int ops_route(sl_server_t *srv, http_req_t *req)
{
    return route(srv, req, srv->cfg.ops.metrics_listen == NULL);
}

/* The second listener: probes and metrics, nothing else. */
static void ops_request(http_req_t *req, void *data)
{
    if (!route(data, req, 1))
        text(req, 404, "Not Found\n");
}

static const http_handler_t ops_handler = {.on_request = ops_request};

static void ops_accept(net_conn_t *c, void *data)
{
    sl_server_t *srv = data;
    http_conn_new(c, &ops_handler, &srv->cfg.http, srv);
}

/* ---------------------------------------------------------------- the loop's lag, the drain */

static void on_lag(uv_timer_t *t)
{
    sl_server_t *srv = t->data;
    uint64_t now = uv_hrtime(), due = srv->ops->lag_last + (uint64_t)LAG_INTERVAL_MS * 1000000;
    metrics_observe(&srv->metrics.loop_lag, now > due ? (double)(now - due) / 1e9 : 0);
    srv->ops->lag_last = now;
}

static void on_drained(uv_timer_t *t)
{
    sl_server_t *srv = t->data;
    log_info("siolua: drain over (--drain-delay), shutting down");
    sl_server_close(srv);
}

void ops_drain(sl_server_t *srv)
{
    ops_t *o = srv->ops;
    if (o == NULL || srv->cfg.ops.drain_delay == 0 || o->drain_on) {
        sl_server_close(srv);
        return;
    }
    log_with(LOG_INFO, LOG_FIELDS(LOG_I("drain_ms", srv->cfg.ops.drain_delay)),
             "siolua: draining for %llu ms: /readyz answers 503, clients are served as before",
             (unsigned long long)srv->cfg.ops.drain_delay);
    uv_timer_init(srv->loop, &o->drain);
    o->drain.data = srv;
    o->drain_on = 1;
    uv_timer_start(&o->drain, on_drained, srv->cfg.ops.drain_delay, 0);
}

/* ---------------------------------------------------------------- lifecycle */

/* "HOST:PORT" (the host may be [v6]) into host (a copy) and port: 0, or -1. */
static int split_addr(const char *s, char **host, int *port)
{
    const char *colon = strrchr(s, ':');
    char *end;
    long p;
    size_t hl;
    if (colon == NULL || colon == s)
        return -1;
    p = strtol(colon + 1, &end, 10);
    if (*end != '\0' || colon[1] == '\0' || p < 0 || p > 65535)
        return -1;
    hl = (size_t)(colon - s);
    if (s[0] == '[' && hl >= 2 && s[hl - 1] == ']')
        *host = xstrndup(s + 1, hl - 2);
    else
        *host = xstrndup(s, hl);
    *port = (int)p;
    return 0;
}

int ops_start(sl_server_t *srv)
{
    ops_t *o = xcalloc(1, sizeof(*o));
    srv->ops = o;
    if (srv->cfg.ops.metrics_path != NULL) {
        uv_timer_init(srv->loop, &o->lag);
        o->lag.data = srv;
        o->lag_on = 1;
        o->lag_last = uv_hrtime();
        uv_timer_start(&o->lag, on_lag, LAG_INTERVAL_MS, LAG_INTERVAL_MS);
        uv_unref((uv_handle_t *)&o->lag);
    }
    if (srv->cfg.ops.metrics_listen != NULL) {
        const char *err = NULL;
        char *host;
        int port, rc;
        if (split_addr(srv->cfg.ops.metrics_listen, &host, &port) != 0) {
            log_error("siolua: --metrics-listen %s: HOST:PORT expected", srv->cfg.ops.metrics_listen);
            return -1;
        }
        o->net = xcalloc(1, sizeof(*o->net));
        o->net->max_queued = srv->cfg.max_write_queue;
        o->net->max_conns = 64; /* scrapers and probes, not clients */
        rc = net_listen(o->net, srv->loop, host, port, ops_accept, srv, &err);
        if (rc != 0) {
            log_error("siolua: cannot listen on %s:%d for metrics: %s (%s)", host, port, uv_strerror(rc),
                      err ? err : "listen");
            free(host);
            return -1;
        }
        log_with(LOG_INFO, LOG_FIELDS(LOG_S("host", host), LOG_I("port", net_port(o->net))),
                 "siolua: metrics and probes on http://%s:%d%s", host, net_port(o->net), srv->cfg.ops.metrics_path);
        free(host);
    }
    return 0;
}

void ops_close(sl_server_t *srv)
{
    ops_t *o = srv->ops;
    if (o == NULL)
        return;
    if (o->net != NULL)
        net_stop(o->net);
    if (o->lag_on)
        uv_close((uv_handle_t *)&o->lag, NULL);
    if (o->drain_on)
        uv_close((uv_handle_t *)&o->drain, NULL);
    o->lag_on = 0;
}

size_t ops_nconns(const sl_server_t *srv)
{
    return srv->ops != NULL && srv->ops->net != NULL ? srv->ops->net->nconns : 0;
}

void ops_free(sl_server_t *srv)
{
    if (srv->ops == NULL)
        return;
    free(srv->ops->net);
    free(srv->ops);
    srv->ops = NULL;
}
