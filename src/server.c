/* server: see server.h. Request routing, in the reference's order: the client bundle
 * (/socket.io/socket.io.js ...), then the Engine.IO path, then the static folder, else 404. */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "embed.h"
#include "ladapter_redis.h"
#include "log.h"
#include "ops.h"
#include "rstore.h"
#include "tls.h"
#include "ws.h"
#include "zip.h"

#define MAX_STATIC_FILE (64u << 20) /* static files are read whole: keep them reasonable */

/* ---------------------------------------------------------------- client bundle and static files */

static const char *mime_type(const char *path)
{
    static const struct {
        const char *ext, *type;
    } types[] = {{".html", "text/html; charset=utf-8"},  {".js", "application/javascript; charset=utf-8"},
                 {".mjs", "application/javascript; charset=utf-8"}, {".css", "text/css; charset=utf-8"},
                 {".json", "application/json; charset=utf-8"}, {".map", "application/json; charset=utf-8"},
                 {".svg", "image/svg+xml"},                   {".png", "image/png"},
                 {".jpg", "image/jpeg"},                      {".ico", "image/x-icon"},
                 {".txt", "text/plain; charset=utf-8"},       {".wasm", "application/wasm"}};
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && i < sizeof(types) / sizeof(types[0]); i++)
        if (strcmp(dot, types[i].ext) == 0)
            return types[i].type;
    return "application/octet-stream";
}

static void respond_text(http_req_t *req, int status, const char *text)
{
    http_hdr_t h = {"Content-Type", "text/plain; charset=utf-8"};
    http_respond(req, status, &h, 1, text, strlen(text));
}

/* /socket.io/socket.io.js and friends: the reference's serve(), with its ETag and 304, in the
 * encoding the request prefers among br, gzip and deflate (its choice, by negotiator's rules), from
 * the forms compressed at build time (embed_client_z). Unlike the reference, every answer says
 * Vary: Accept-Encoding (the body depends on it; the ETag is the reference's, one for all). */
static int serve_client(sl_server_t *srv, http_req_t *req)
{
    size_t plen = strlen(srv->cfg.path);
    const embed_file_t *f;
    if (!srv->cfg.serve_client || req->path.len <= plen || memcmp(req->path.ptr, srv->cfg.path, plen) != 0)
        return 0;
    f = embed_find(embed_client, req->path.ptr + plen, req->path.len - plen);
    if (f == NULL)
        return 0;
    if ((req->method != HTTP_M_GET && req->method != HTTP_M_HEAD) || req->too_large)
        return 0;
    slice_t inm = http_header(req, "If-None-Match");
    if (inm.ptr != NULL && (slice_eq(inm, srv->client_etag) ||
                            (inm.len == strlen(srv->client_etag) + 2 && memcmp(inm.ptr, "W/", 2) == 0 &&
                             memcmp(inm.ptr + 2, srv->client_etag, inm.len - 2) == 0))) {
        http_hdr_t h304[1] = {{"ETag", srv->client_etag}};
        http_respond(req, 304, h304, 1, NULL, 0);
        return 1;
    }
    static const char *const encodings[] = {"br", "gzip", "deflate"}, *const ext[] = {".br", ".gz", ".zz"};
    buf_t tmp = BUF_INIT;
    slice_t ae = http_header_all(req, "accept-encoding", &tmp);
    int k = zip_accept_encoding(ae.ptr, ae.len, encodings, 3);
    const embed_file_t *z = NULL;
    if (k >= 0) {
        char name[128];
        int n = snprintf(name, sizeof(name), "%s%s", f->name, ext[k]);
        z = embed_find(embed_client_z, name, (size_t)n);
    }
    buf_free(&tmp);
    http_hdr_t hdrs[] = {{"Content-Type", mime_type(f->name)}, {"Cache-Control", "public, max-age=0"},
                         {"ETag", srv->client_etag}, {"Vary", "Accept-Encoding"},
                         {"Content-Encoding", z ? encodings[k] : ""}};
    http_respond(req, 200, hdrs, z ? 5 : 4, z ? z->data : f->data, z ? z->len : f->len);
    return 1;
}

/* The Admin UI's page (embed_adminui) at --admin-ui-path or io.instrument{uiPath}: "/admin" is
 * redirected to "/admin/" (the page's links are relative), "/admin/" is index.html. Without the
 * files (npm's package was not installed when siolua was built) the path answers 404, as logged at
 * the start. */
static const char *admin_ui_path(const sl_server_t *srv)
{
    return srv->cfg.admin.ui_path != NULL ? srv->cfg.admin.ui_path : srv->cfg.admin.ui_path_app;
}

static int serve_admin_ui(sl_server_t *srv, http_req_t *req)
{
    const char *base = admin_ui_path(srv);
    size_t blen = base != NULL ? strlen(base) : 0;
    const embed_file_t *f;
    if (base == NULL || (req->method != HTTP_M_GET && req->method != HTTP_M_HEAD) || req->upgrade)
        return 0;
    if (req->path.len == blen - 1 && memcmp(req->path.ptr, base, blen - 1) == 0) {
        http_hdr_t h[] = {{"Location", base}, {"Content-Type", "text/plain; charset=utf-8"}};
        http_respond(req, 301, h, 2, "Moved Permanently", 17);
        return 1;
    }
    if (req->path.len < blen || memcmp(req->path.ptr, base, blen) != 0)
        return 0;
    if (req->path.len == blen)
        f = embed_find(embed_adminui, "index.html", 10);
    else
        f = embed_find(embed_adminui, req->path.ptr + blen, req->path.len - blen);
    if (f == NULL) {
        respond_text(req, 404, "Not Found");
        return 1;
    }
    http_hdr_t hdrs[] = {{"Content-Type", mime_type(f->name)}, {"Cache-Control", "no-cache"}};
    http_respond(req, 200, hdrs, 2, f->data, f->len);
    return 1;
}

/* Percent-decodes the path and refuses anything that could leave the folder. */
static int safe_path(slice_t p, buf_t *out)
{
    out->len = 0;
    for (size_t i = 0; i < p.len; i++) {
        char c = p.ptr[i];
        if (c == '%') {
            if (i + 2 >= p.len)
                return -1;
            char hx[3] = {p.ptr[i + 1], p.ptr[i + 2], 0};
            char *end;
            long v = strtol(hx, &end, 16);
            if (*end != '\0' || v == 0)
                return -1;
            c = (char)v;
            i += 2;
        }
        if (c == '\0' || c == '\\')
            return -1;
        buf_appendc(out, c);
    }
    buf_appendc(out, '\0');
    out->len--;
    /* no "." or ".." segment, no hidden files */
    for (size_t i = 0; i < out->len; i++)
        if (out->base[i] == '/' && i + 1 < out->len && out->base[i + 1] == '.')
            return -1;
    return out->len > 0 && out->base[0] == '/' ? 0 : -1;
}

static void serve_static(sl_server_t *srv, http_req_t *req)
{
    buf_t rel = BUF_INIT, full = BUF_INIT, body = BUF_INIT;
    struct stat st;
    int fd = -1;
    if (srv->cfg.static_dir == NULL || (req->method != HTTP_M_GET && req->method != HTTP_M_HEAD)) {
        respond_text(req, 404, "Not Found");
        return;
    }
    if (safe_path(req->path, &rel) != 0) {
        respond_text(req, 404, "Not Found");
        goto done;
    }
    buf_appendstr(&full, srv->cfg.static_dir);
    buf_append(&full, rel.base, rel.len);
    if (rel.base[rel.len - 1] == '/')
        buf_appendstr(&full, "index.html");
    buf_appendc(&full, '\0');
    fd = open(full.base, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > MAX_STATIC_FILE) {
        respond_text(req, 404, "Not Found");
        goto done;
    }
    /* static files are small (the app's page); a blocking read keeps this simple */
    buf_reserve(&body, (size_t)st.st_size + 1);
    while (body.len < (size_t)st.st_size) {
        ssize_t n = read(fd, body.base + body.len, (size_t)st.st_size - body.len);
        if (n <= 0) {
            if (n < 0 && errno == EINTR)
                continue;
            break;
        }
        body.len += (size_t)n;
    }
    {
        http_hdr_t h[] = {{"Content-Type", mime_type(full.base)}, {"Cache-Control", "no-cache"}};
        http_respond(req, 200, h, 2, body.base, body.len);
    }
done:
    if (fd >= 0)
        close(fd);
    buf_free(&rel);
    buf_free(&full);
    buf_free(&body);
}

/* ---------------------------------------------------------------- --workers: sticky sessions */


/* The request as bytes again, for its new worker: the head as received (one HTTP/1.1 request line,
 * the headers as sent but the framing ones), the body with its length (a chunked body arrived
 * whole). Returns 0, or -1 for a method this cannot write (not one Engine.IO answers). */
static int request_bytes(const http_req_t *req, buf_t *out)
{
    const char *m = http_method_name(req->method);
    int has_connection = 0;
    char len[32];
    if (m == NULL)
        return -1;
    buf_appendstr(out, m);
    buf_appendc(out, ' ');
    buf_append(out, req->url.ptr, req->url.len);
    buf_appendstr(out, " HTTP/1.1\r\n");
    for (size_t i = 0; i < req->nheaders; i++) {
        slice_t n = req->names[i];
        if (slice_caseeq(n, "content-length") || slice_caseeq(n, "transfer-encoding"))
            continue;
        has_connection |= slice_caseeq(n, "connection");
        buf_append(out, n.ptr, n.len);
        buf_append(out, ": ", 2);
        buf_append(out, req->values[i].ptr, req->values[i].len);
        buf_append(out, "\r\n", 2);
    }
    if (!req->keep_alive && !has_connection)
        buf_appendstr(out, "Connection: close\r\n");
    if (req->body.len > 0 || req->method == HTTP_M_POST) {
        snprintf(len, sizeof(len), "Content-Length: %zu\r\n", req->body.len);
        buf_appendstr(out, len);
    }
    buf_append(out, "\r\n", 2);
    buf_append(out, req->body.base, req->body.len);
    return 0;
}

static void handed(void *arg, int status)
{
    (void)status; /* written or not, this worker's copy of the socket goes */
    net_close(arg);
}

/* A request naming (sid=) a session another worker holds goes to that worker with its connection:
 * the socket and the bytes read from it (the request, and what followed it) are sent over the
 * channel, and the owner serves it and whatever comes next on that connection (a later request
 * naming yet another worker moves it again: per request, so keep-alive connections and proxies
 * that reuse theirs for several clients work). 1 if handed (req is gone), else 0. */
static int hand_off(sl_server_t *srv, http_req_t *req)
{
    buf_t sid = BUF_INIT, out = BUF_INIT, rest = BUF_INIT;
    int w;
    if (srv->cfg.worker < 0 || req->query.len == 0 || http_query(req, "sid", &sid) != 0) {
        buf_free(&sid);
        return 0;
    }
    w = eio_worker_of(sid.base, sid.len);
    buf_free(&sid);
    /* its own sessions, ids no worker made, and what cannot be moved are answered here */
    if (w < 0 || w == srv->cfg.worker || w >= srv->cfg.workers || req->too_large || !srv->bus.open ||
        request_bytes(req, &out) != 0) {
        buf_free(&out);
        return 0;
    }
    net_conn_t *nc = http_detach(req, &rest);
    buf_append(&out, rest.base, rest.len);
    if (wbus_send(&srv->bus, WBUS_HANDOFF, (unsigned)srv->cfg.worker, (unsigned)w, out.base, out.len, NULL, 0,
                  (uv_stream_t *)&nc->tcp, handed, nc) != 0)
        net_close(nc);
    buf_free(&out);
    buf_free(&rest);
    return 1;
}

static void on_bus_frame(wbus_t *b, int type, unsigned src, unsigned dst, const char *p, size_t len, void *ud)
{
    sl_server_t *srv = ud;
    (void)src;
    (void)dst;
    switch (type) {
    case WBUS_HANDOFF: {
        uv_stream_t *from = srv->closing ? NULL : wbus_take(b);
        if (from != NULL)
            net_adopt(&srv->net, from, p, len);
        break;
    }
    case WBUS_PUBLISH:
        ladapter_redis_bus_message(&srv->app.env, p, len);
        break;
    case WBUS_COUNT:
        if (len >= 2)
            srv->app.env.workers_live = (int)wbus_get16(p);
        break;
    default:
        break;
    }
}

static void on_bus_close(wbus_t *b, void *ud)
{
    sl_server_t *srv = ud;
    (void)b;
    if (!srv->closing) {
        log_error("siolua: the supervisor's channel closed: shutting down");
        sl_server_close(srv);
    }
}

static void on_request(http_req_t *req, void *data)
{
    sl_server_t *srv = data;
    size_t plen = strlen(srv->cfg.path);
    if (ops_route(srv, req)) /* /healthz, /readyz, /metrics: answered while shutting down too */
        return;
    if (srv->closing) {
        respond_text(req, 503, "Service Unavailable");
        return;
    }
    if (hand_off(srv, req)) /* --workers: a session of another worker */
        return;
    if (serve_client(srv, req))
        return;
    /* the reference matches the Engine.IO path as a prefix of the URL */
    if (req->url.len >= plen && memcmp(req->url.ptr, srv->cfg.path, plen) == 0) {
        eio_handle_request(&srv->eio, req);
        return;
    }
    {
        /* Engine.IO-only endpoints of the app (siolua.engine), on their own paths */
        eio_server_t *raw = lapp_route(&srv->app, req);
        if (raw != NULL) {
            eio_handle_request(raw, req);
            return;
        }
    }
    if (req->upgrade) {
        respond_text(req, 400, "Bad Request");
        return;
    }
    if (req->too_large) { /* (Engine.IO answers its own, above, and closes the session) */
        respond_text(req, 413, "Payload Too Large");
        return;
    }
    if (serve_admin_ui(srv, req)) /* (after Socket.IO's paths: a UI at "/" leaves them alone) */
        return;
    if (lapp_http_route(&srv->app, req)) /* the app's siolua.route endpoints */
        return;
    serve_static(srv, req);
}

/* A request cut before its body was whole: Engine.IO closes the session it was posting to. */
static void on_cut(const http_req_t *req, void *data)
{
    sl_server_t *srv = data;
    size_t plen = strlen(srv->cfg.path);
    eio_server_t *eio = &srv->eio;
    if (srv->closing)
        return;
    if (req->url.len < plen || memcmp(req->url.ptr, srv->cfg.path, plen) != 0)
        eio = lapp_route(&srv->app, req);
    if (eio != NULL)
        eio_handle_cut(eio, req);
}

static const http_handler_t http_handler = {.on_request = on_request, .on_cut = on_cut};

static void on_accept(net_conn_t *c, void *data)
{
    sl_server_t *srv = data;
    http_conn_new(c, &http_handler, &srv->cfg.http, srv);
}

/* ---------------------------------------------------------------- signals and lifecycle */

static void on_signal(uv_signal_t *sig, int signum)
{
    sl_server_t *srv = sig->data;
    log_with(LOG_INFO, LOG_FIELDS(LOG_S("signal", signum == SIGINT ? "SIGINT" : "SIGTERM")),
             "siolua: %s received, shutting down", signum == SIGINT ? "SIGINT" : "SIGTERM");
    if (signum == SIGTERM)
        ops_drain(srv); /* --drain-delay: /readyz fails first, then the shutdown */
    else
        sl_server_close(srv);
}

/* SIGHUP: the certificate and key are read again (certificate rotation: new handshakes use the
 * new ones, open connections go on with theirs; files that cannot be used are logged and the
 * loaded ones stay), then app.lua is reloaded (reload.h). */
static void on_sighup(uv_signal_t *sig, int signum)
{
    sl_server_t *srv = sig->data;
    (void)signum;
    if (srv->tls != NULL) {
        char err[512];
        if (tls_ctx_reload(srv->tls, err, sizeof(err)) == 0)
            log_info("siolua: tls: certificate reloaded (SIGHUP): %s", tls_ctx_describe(srv->tls));
        else
            log_error("siolua: %s; the loaded certificate stays in use", err);
    }
    reload_now(&srv->reload, "SIGHUP");
}

/* The TLS context, from the options: 0, or -1 with the reason logged. */
static int start_tls(sl_server_t *srv)
{
    char err[512];
    if (srv->cfg.tls.cert == NULL && srv->cfg.tls.key == NULL)
        return 0;
    if (srv->cfg.tls.cert == NULL || srv->cfg.tls.key == NULL) {
        log_error("siolua: tls: a certificate needs its key and a key its certificate (--tls-cert FILE --tls-key FILE)");
        return -1;
    }
    srv->tls = tls_ctx_new(srv->cfg.tls.cert, srv->cfg.tls.key, err, sizeof(err));
    if (srv->tls == NULL) {
        log_error("siolua: %s", err);
        return -1;
    }
    srv->net.tls = srv->tls;
    srv->net.tls_timeout = srv->cfg.http.header_timeout; /* the handshake is part of the request head's time */
    srv->net.tls_max_per_ip = srv->cfg.http.max_conns_per_ip; /* before the handshake's cost, not after */
    log_info("siolua: tls: %s", tls_ctx_describe(srv->tls));
    return 0;
}

static void client_version(sl_server_t *srv)
{
    /* the bundle's banner: "Socket.IO v4.8.1" */
    const embed_file_t *f = embed_find(embed_client, "socket.io.js", 12);
    const char *v = f ? strstr(f->data, "Socket.IO v") : NULL;
    size_t n = 0;
    if (v != NULL) {
        v += 11;
        while (n < 20 && v[n] && v[n] != ' ' && v[n] != '\n' && v[n] != '\r' && v[n] != '*')
            n++;
    }
    snprintf(srv->client_etag, sizeof(srv->client_etag), "\"%.*s\"", (int)(n ? n : 1), n ? v : "0");
}

/* io.close() (lenv_t.close): at the app's top level, before the server is set up, it is noted and
 * acted on once the rest is set up (without listening); later it closes at once. */
static void close_request(void *ud)
{
    sl_server_t *srv = ud;
    if (!srv->started)
        srv->close_early = 1;
    else
        sl_server_close(srv);
}

static void flush_output(void *ud)
{
    net_flush(ud);
}

/* ---------------------------------------------------------------- connection state recovery */

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The recovery store, with what --state-file kept from the previous process (read once, then
 * removed: a crash later does not bring back an old state; a file that cannot be used is logged
 * and left alone, and the server starts with an empty store). */
static void start_recovery(sl_server_t *srv)
{
    options_recovery_t *r = &srv->cfg.recovery;
    uint64_t now = wall_ms();
    rstore_t *st = NULL;
    const char *err = NULL;
    int loaded;
    if (!r->enabled)
        return;
    if (r->state_file != NULL && srv->cfg.worker >= 0) {
        /* --workers: each worker keeps its own sessions, in a file of its own (PATH.N) */
        size_t n = strlen(r->state_file) + 16;
        char *path = xmalloc(n);
        snprintf(path, n, "%s.%d", r->state_file, srv->cfg.worker);
        free(r->state_file);
        r->state_file = path;
    }
    if (r->state_file != NULL) {
        st = rstore_load(r->state_file, srv->cfg.sio.parser, &err);
        if (st == NULL && strcmp(err, "no such file") == 0)
            log_info("siolua: recovery: no state file at %s yet (it is written on shutdown)", r->state_file);
        else if (st == NULL)
            log_with(LOG_WARN, LOG_FIELDS(LOG_S("state_file", r->state_file), LOG_S("error", err)),
                     "siolua: recovery: state file %s ignored: %s", r->state_file, err);
    }
    loaded = st != NULL;
    if (st == NULL)
        st = rstore_new(now << 10); /* offsets after any a previous process gave (1024 a ms) */
    /* (maxDisconnectionDuration 0: sessions expire at once, as in the reference; rstore's 0 is none) */
    rstore_set_limits(st, r->max_duration ? r->max_duration : 1, r->max_bytes);
    if (loaded) {
        rstore_stats_t stats;
        rstore_trim(st, now); /* what expired while no process ran */
        rstore_stats(st, &stats);
        log_with(LOG_INFO,
                 LOG_FIELDS(LOG_S("state_file", r->state_file), LOG_I("sessions", (long long)stats.sessions),
                            LOG_I("packets", (long long)stats.packets)),
                 "siolua: recovery: %zu sessions and %zu packets restored from %s", stats.sessions, stats.packets,
                 r->state_file);
        if (unlink(r->state_file) != 0)
            log_warn("siolua: recovery: cannot remove %s after reading it: %s", r->state_file, strerror(errno));
    }
    srv->app.env.rstore = st;
}

/* On shutdown, once every socket left (their sessions kept): the store goes to --state-file. */
static void save_recovery(sl_server_t *srv)
{
    rstore_t *st = srv->app.env.rstore;
    const char *path = srv->cfg.recovery.state_file, *err = NULL;
    rstore_stats_t stats;
    if (st == NULL || path == NULL)
        return;
    rstore_trim(st, wall_ms());
    rstore_stats(st, &stats);
    if (rstore_save(st, path, srv->cfg.sio.parser, &err) != 0) {
        log_with(LOG_ERROR, LOG_FIELDS(LOG_S("state_file", path), LOG_S("error", err)),
                 "siolua: recovery: cannot write %s: %s (%s)", path, err, strerror(errno));
        return;
    }
    log_with(LOG_INFO,
             LOG_FIELDS(LOG_S("state_file", path), LOG_I("sessions", (long long)stats.sessions),
                        LOG_I("packets", (long long)stats.packets), LOG_I("bytes", (long long)stats.bytes)),
             "siolua: recovery: %zu sessions and %zu packets written to %s", stats.sessions, stats.packets, path);
}

int sl_server_start(sl_server_t *srv, uv_loop_t *loop)
{
    const char *err = NULL;
    int rc;
    struct stat st;
    lvm_t *vm;
    srv->loop = loop;
    tq_clock_init(&srv->clock, loop);
    lapp_init(&srv->app, loop, &srv->cfg, &srv->sio, &srv->eio, &srv->clock, close_request, srv);
    srv->app.env.vms.flush = flush_output; /* before a slice of preempted handlers */
    srv->app.env.vms.flush_ud = &srv->net;
    sio_server_init(&srv->sio, loop, &srv->cfg.sio, lapp_sio_handler(), &srv->app.env);
    srv->sio.metrics = srv->net.metrics = srv->app.env.metrics = &srv->metrics;
    tq_watch(&srv->sio.q_connect, &srv->clock);
    vm = lapp_vm_new(&srv->app);
    if (vm == NULL)
        return -1;
    lapp_serve(&srv->app, vm);
    if (lvm_run_file(vm, srv->cfg.app) != 0)
        return -1;
    srv->started = 1;
    srv->app.env.wall_base = wall_ms() - uv_now(loop);
    start_recovery(srv); /* (io.options may have turned it on) */
    /* the app may have changed timeouts with io.options: they apply from here on */
    srv->sio.q_connect.timeout = srv->sio.q_resolve.timeout = srv->cfg.sio.connect_timeout;
    srv->cfg.eio.allow_timeout = srv->cfg.sio.connect_timeout; /* allowRequest answers within it */
    srv->cfg.http.max_body = srv->cfg.eio.max_payload;
    if (srv->cfg.static_dir == NULL) { /* (--static sets it) */
        const char *slash = strrchr(srv->cfg.app, '/');
        char dir[4096];
        snprintf(dir, sizeof(dir), "%.*s%spublic", slash ? (int)(slash - srv->cfg.app) : 0, srv->cfg.app,
                 slash ? "/" : "");
        if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
            srv->cfg.static_dir = xstrndup(dir, strlen(dir));
    }
    client_version(srv);
    eio_server_init(&srv->eio, loop, &srv->cfg.eio, &srv->cfg.http, &sio_eio_handler, &srv->sio);
    eio_server_watch(&srv->eio, &srv->clock);
    srv->eio.metrics = &srv->metrics;
    if (srv->cfg.workers > 1 && srv->cfg.worker < 0) /* io.options{workers = N}: the caller supervises */
        return 2;
    if (srv->cfg.worker >= 0) {
        /* (the supervisor then says that worker 0 could not start, and exits 1) */
        if (srv->cfg.tls.cert != NULL || srv->cfg.tls.key != NULL) {
            log_error("siolua: --workers cannot serve TLS itself (a connection moves between workers with "
                      "its socket, not its TLS session): terminate TLS in front of it (see README)");
            return -1;
        }
        if (srv->cfg.ops.metrics_listen != NULL) {
            log_error("siolua: --workers cannot share --metrics-listen (one address per worker would be needed): "
                      "serve the metrics on the main port, where each scrape is answered by one worker");
            return -1;
        }
        if (wbus_start(&srv->bus, loop, 4, on_bus_frame, on_bus_close, srv) != 0) {
            log_error("siolua: worker %d: no channel to the supervisor (fd 4)", srv->cfg.worker);
            return -1;
        }
        srv->app.env.bus = &srv->bus;
        srv->app.env.worker = srv->cfg.worker;
        srv->app.env.workers_live = srv->cfg.workers;
    }
    if (lapp_listening(&srv->app) != 0) /* allowRequest, io.engine, endpoints, the Redis adapter */
        return -1;
    srv->net.max_queued = srv->cfg.max_write_queue;
    srv->net.max_total_queued = srv->cfg.output_memory_limit;
    srv->net.clock = &srv->clock;
    if (start_tls(srv) != 0)
        return -1;
    {
        /* OpenSSL sets up its default provider (SHA-1, the DRBG) on first use, ~2 MB of library
         * pages. Do it now rather than inside the first client's handshake: a broken libcrypto
         * fails here, the first client is not slowed, and that fixed cost is not counted as
         * memory of whoever connects first. */
        char id[21], accept[29];
        eio_generate_id(id);
        ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", 24, accept);
    }
    if (srv->close_early) {
        /* io.close() at the app's top level: nothing is listened, the closing finishes in the loop */
        sl_server_close(srv);
        return 1;
    }
    rc = srv->cfg.worker >= 0 ? net_listen_fd(&srv->net, loop, 3, on_accept, srv, &err)
                              : net_listen(&srv->net, loop, srv->cfg.host, srv->cfg.port, on_accept, srv, &err);
    if (rc != 0) {
        log_error("siolua: cannot listen on %s:%d: %s (%s)", srv->cfg.host, srv->cfg.port, uv_strerror(rc),
                  err ? err : "listen");
        return -1;
    }
    if (ops_start(srv) != 0) /* probes, metrics, their listener */
        return -1;
    uv_signal_init(loop, &srv->sigint);
    uv_signal_init(loop, &srv->sigterm);
    uv_signal_init(loop, &srv->sighup);
    srv->sigint.data = srv->sigterm.data = srv->sighup.data = srv;
    uv_signal_start(&srv->sigint, on_signal, SIGINT);
    uv_signal_start(&srv->sigterm, on_signal, SIGTERM);
    uv_signal_start(&srv->sighup, on_sighup, SIGHUP);
    reload_init(&srv->reload, loop, &srv->app, srv->cfg.app, srv->cfg.watch);
    if (srv->cfg.worker >= 0) { /* the supervisor says "listening" once every worker is ready */
        wbus_send(&srv->bus, WBUS_READY, (unsigned)srv->cfg.worker, WBUS_SUPERVISOR, NULL, 0, NULL, 0, NULL, NULL,
                  NULL);
        log_info("siolua: worker %d ready (pid %d)", srv->cfg.worker, (int)uv_os_getpid());
        return 0;
    }
    log_with(LOG_INFO,
             LOG_FIELDS(LOG_S("scheme", srv->tls ? "https" : "http"), LOG_S("host", srv->cfg.host),
                        LOG_I("port", net_port(&srv->net))),
             "siolua listening on %s://%s:%d", srv->tls ? "https" : "http", srv->cfg.host, net_port(&srv->net));
    if (srv->cfg.static_dir)
        log_info("siolua: serving %s at /", srv->cfg.static_dir);
    if (admin_ui_path(srv) != NULL && embed_adminui[0].name != NULL)
        log_info("siolua: admin ui: the page at %s://%s:%d%s", srv->tls ? "https" : "http", srv->cfg.host,
                 net_port(&srv->net), admin_ui_path(srv));
    else if (admin_ui_path(srv) != NULL)
        log_warn("siolua: admin ui: the UI's files were not built in (npm's @socket.io/admin-ui was not "
                 "installed when siolua was built: run 'make setup', then make): %s answers 404",
                 admin_ui_path(srv));
    return 0;
}

static void on_shutdown_tick(uv_timer_t *t)
{
    sl_server_t *srv = t->data;
    if ((srv->net.nconns == 0 && ops_nconns(srv) == 0) || uv_now(srv->loop) - srv->closing_since > 2000)
        uv_stop(srv->loop);
}

/* The shutdown proper: every socket left, what remains closes, the loop ends soon after. */
static void close_now(sl_server_t *srv)
{
    if (srv->windowing) {
        srv->windowing = 0;
        uv_close((uv_handle_t *)&srv->window, NULL);
    }
    lapp_stop(&srv->app); /* the disconnect handlers below run to their end */
    net_stop(&srv->net);
    ops_close(srv);
    reload_close(&srv->reload);
    sio_server_close(&srv->sio, "server shutting down");
    save_recovery(srv); /* (the sessions of the sockets that just left are in it) */
    eio_server_close(&srv->eio, "forced close");
    lapp_close(&srv->app); /* the adapter (the disconnect handlers' publishes are flushed), timers, endpoints */
    uv_close((uv_handle_t *)&srv->sio.q_connect.timer, NULL);
    uv_close((uv_handle_t *)&srv->sio.q_resolve.timer, NULL);
    if (srv->sigint.loop != NULL) { /* (not set up when the app closed at its top level) */
        uv_close((uv_handle_t *)&srv->sigint, NULL);
        uv_close((uv_handle_t *)&srv->sigterm, NULL);
        uv_close((uv_handle_t *)&srv->sighup, NULL);
    }
    tq_clock_close(&srv->clock); /* from here deadlines are judged at once */
    wbus_close(&srv->bus);
    /* Keep-alive HTTP connections and closing WebSockets may linger: give them a moment, then
     * stop the loop. */
    uv_timer_init(srv->loop, &srv->shutdown);
    srv->shutdown.data = srv;
    uv_timer_start(&srv->shutdown, on_shutdown_tick, 50, 50);
}

#define WINDOW_TICK 50 /* ms between two batches of the shutdown window */

/* --shutdown-window: a batch of clients is disconnected ("server shutting down": their sessions
 * are kept for recovery) every tick, the same number each time, until none is left or the window
 * is over; then the shutdown proper. */
static void on_window_tick(uv_timer_t *t)
{
    sl_server_t *srv = t->data;
    size_t left = sio_close_clients(&srv->sio, srv->window_batch, "server shutting down");
    if (left == 0 || uv_now(srv->loop) - srv->closing_since >= srv->cfg.shutdown_window)
        close_now(srv);
}

void sl_server_close(sl_server_t *srv)
{
    if (srv->closing) {
        if (srv->windowing) /* a second request (SIGTERM, SIGINT, io.close()) ends the window */
            close_now(srv);
        return;
    }
    srv->closing = 1;
    srv->closing_since = uv_now(srv->loop);
    if (srv->cfg.shutdown_window >= WINDOW_TICK && srv->started && srv->sio.nclients > 1) {
        uint64_t ticks = srv->cfg.shutdown_window / WINDOW_TICK;
        srv->window_batch = (size_t)((srv->sio.nclients + ticks - 1) / ticks);
        log_with(LOG_INFO, LOG_FIELDS(LOG_I("clients", (long long)srv->sio.nclients), LOG_I("window_ms", (long long)srv->cfg.shutdown_window)),
                 "siolua: disconnecting %zu clients over %llu ms (--shutdown-window), %zu every %d ms",
                 srv->sio.nclients, (unsigned long long)srv->cfg.shutdown_window, srv->window_batch, WINDOW_TICK);
        net_stop(&srv->net); /* no new connection meanwhile: they would be cut again */
        srv->windowing = 1;
        uv_timer_init(srv->loop, &srv->window);
        srv->window.data = srv;
        uv_timer_start(&srv->window, on_window_tick, 0, WINDOW_TICK);
        return;
    }
    close_now(srv);
}

void sl_server_free(sl_server_t *srv)
{
    lapp_free(&srv->app); /* the VM (its namespace objects), the adapter */
    rstore_free(srv->app.env.rstore);
    srv->app.env.rstore = NULL;
    zip_release();        /* the deflate streams kept for compression */
    sio_server_free(&srv->sio);
    options_free(&srv->cfg);
    ops_free(srv);
    /* After the loop: sessions of connections still open at exit are not freed (they stay
     * reachable from the loop's handles), the context is. */
    tls_ctx_free(srv->tls);
    srv->tls = NULL;
    wbus_free(&srv->bus);
}
