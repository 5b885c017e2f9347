/* server: see server.h. Request routing, in the reference's order: the client bundle
 * (/socket.io/socket.io.js ...), then the Engine.IO path, then the static folder, else 404. */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "embed.h"
#include "lhost.h"
#include "lhttp.h"
#include "log.h"
#include "lwait.h"
#include "tls.h"
#include "ws.h"
#include "zip.h"

#define MAX_STATIC_FILE (64u << 20) /* static files are read whole: keep them reasonable */

void sl_config_set_tls(sl_config_t *cfg, const char *cert, const char *key)
{
    if (cert != NULL) {
        free(cfg->tls_cert);
        cfg->tls_cert = xstrndup(cert, strlen(cert));
    }
    if (key != NULL) {
        free(cfg->tls_key);
        cfg->tls_key = xstrndup(key, strlen(key));
    }
}

void sl_config_defaults(sl_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->host = xstrndup("127.0.0.1", 9);
    cfg->port = 3000;
    cfg->path = xstrndup("/socket.io/", 11);
    cfg->serve_client = 1;
    cfg->eio.ping_interval = 25000;
    cfg->eio.ping_timeout = 20000;
    cfg->eio.upgrade_timeout = 10000;
    cfg->eio.max_payload = 1000000;
    cfg->eio.transports = EIO_T_POLLING | EIO_T_WEBSOCKET;
    cfg->eio.allow_upgrades = 1;
    cfg->eio.cookie.max_age = -1;
    cfg->eio.max_packets_per_post = 1000;
    cfg->eio.max_buffered = 16u << 20;
    cfg->eio.http_compression = (eio_http_compression_t)EIO_HTTP_COMPRESSION_DEFAULTS; /* httpCompression */
    cfg->eio.per_message_deflate = (pmd_config_t)PMD_CONFIG_DEFAULTS;           /* perMessageDeflate: off */
    cfg->sio.connect_timeout = 45000;
    cfg->sio.limits.max_attachments = 10;
    cfg->sio.limits.max_nsp = 256;
    cfg->sio.max_nsps_per_client = 100;
    cfg->http.max_body = cfg->eio.max_payload;
    {
        /* as many connections as file descriptors allow, less a reserve for files, Redis, the
         * listener: past that, accept() would fail with EMFILE anyway */
        struct rlimit rl;
        cfg->http.max_conns = 10000;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur > 128)
            cfg->http.max_conns = (size_t)rl.rlim_cur - 64;
    }
    cfg->http.max_conns_per_ip = 0;
    http_limits_fill(&cfg->http); /* the transport's defaults (http.h) */
    cfg->max_write_queue = 16u << 20;
    {
        /* a quarter of the machine's memory, or of the cgroup's limit when that is lower: enough
         * for any honest backlog, and a flood of clients that never read cannot take it all */
        uint64_t mem = uv_get_total_memory(), lim = uv_get_constrained_memory();
        if (lim != 0 && lim < mem)
            mem = lim;
        cfg->output_memory_limit = (size_t)(mem / 4);
    }
    cfg->max_json_depth = 64;
    cfg->lua_memory_limit = (size_t)512 << 20;
    cfg->watch = 1;
    cfg->handler_timeout = 2000;
    cfg->handler_slice = 100;
}

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

static void on_request(http_req_t *req, void *data)
{
    sl_server_t *srv = data;
    size_t plen = strlen(srv->cfg.path);
    if (srv->closing) {
        respond_text(req, 503, "Service Unavailable");
        return;
    }
    if (serve_client(srv, req))
        return;
    /* the reference matches the Engine.IO path as a prefix of the URL */
    if (req->url.len >= plen && memcmp(req->url.ptr, srv->cfg.path, plen) == 0) {
        eio_handle_request(&srv->eio, req);
        return;
    }
    {
        /* Engine.IO-only endpoints of the app (siolua.engine), on their own paths */
        eio_server_t *raw = lengine_route(srv->lua, req);
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
    if (lhttp_handle(srv->lua, req)) /* the app's siolua.route endpoints */
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
        eio = lengine_route(srv->lua, req);
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
    log_info("siolua: %s received, shutting down", signum == SIGINT ? "SIGINT" : "SIGTERM");
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
    if (srv->cfg.tls_cert == NULL && srv->cfg.tls_key == NULL)
        return 0;
    if (srv->cfg.tls_cert == NULL || srv->cfg.tls_key == NULL) {
        log_error("siolua: tls: a certificate needs its key and a key its certificate (--tls-cert FILE --tls-key FILE)");
        return -1;
    }
    srv->tls = tls_ctx_new(srv->cfg.tls_cert, srv->cfg.tls_key, err, sizeof(err));
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

int sl_server_start(sl_server_t *srv, uv_loop_t *loop)
{
    const char *err = NULL;
    int rc;
    struct stat st;
    srv->loop = loop;
    tq_clock_init(&srv->clock, loop);
    sio_server_init(&srv->sio, loop, &srv->cfg.sio, &lhost_sio_handler, NULL);
    tq_watch(&srv->sio.q_connect, &srv->clock);
    lhost_loop_start(srv);
    srv->lua = lhost_new(srv);
    if (srv->lua == NULL)
        return -1;
    srv->sio.ud = srv->lua;
    if (lhost_run_app(srv->lua, srv->cfg.app) != 0)
        return -1;
    /* the app may have changed timeouts with io.options: they apply from here on */
    srv->sio.q_connect.timeout = srv->sio.q_resolve.timeout = srv->cfg.sio.connect_timeout;
    srv->cfg.eio.allow_timeout = srv->cfg.sio.connect_timeout; /* allowRequest answers within it */
    srv->cfg.http.max_body = srv->cfg.eio.max_payload;
    if (srv->cfg.static_dir == NULL && !(srv->cfg.cli_set & CFG_STATIC)) {
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
    srv->eio.allow_request = lhost_allow_request;
    srv->eio.allow_ud = srv->lua;
    lengine_start(srv->lua); /* io.engine events, siolua.engine endpoints */
    /* Redis adapter (adapter_redis.h): connects in the background, survives reloads */
    if (srv->cfg.redis.url != NULL && adapter_redis_start(srv) != 0)
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
    rc = net_listen(&srv->net, loop, srv->cfg.host, srv->cfg.port, on_accept, srv, &err);
    if (rc != 0) {
        log_error("siolua: cannot listen on %s:%d: %s (%s)", srv->cfg.host, srv->cfg.port, uv_strerror(rc),
                  err ? err : "listen");
        return -1;
    }
    uv_signal_init(loop, &srv->sigint);
    uv_signal_init(loop, &srv->sigterm);
    uv_signal_init(loop, &srv->sighup);
    srv->sigint.data = srv->sigterm.data = srv->sighup.data = srv;
    uv_signal_start(&srv->sigint, on_signal, SIGINT);
    uv_signal_start(&srv->sigterm, on_signal, SIGTERM);
    uv_signal_start(&srv->sighup, on_sighup, SIGHUP);
    reload_init(&srv->reload, srv, srv->cfg.watch);
    log_info("siolua listening on %s://%s:%d", srv->tls ? "https" : "http", srv->cfg.host, net_port(&srv->net));
    if (srv->cfg.static_dir)
        log_info("siolua: serving %s at /", srv->cfg.static_dir);
    return 0;
}

static void on_shutdown_tick(uv_timer_t *t)
{
    sl_server_t *srv = t->data;
    if (srv->net.nconns == 0 || uv_now(srv->loop) - srv->closing_since > 2000)
        uv_stop(srv->loop);
}

void sl_server_close(sl_server_t *srv)
{
    if (srv->closing)
        return;
    srv->closing = 1;
    srv->closing_since = uv_now(srv->loop);
    lhost_loop_close(srv); /* the disconnect handlers below run to their end */
    net_stop(&srv->net);
    reload_close(&srv->reload);
    sio_server_close(&srv->sio, "server shutting down");
    adapter_redis_close(srv->redis); /* after the disconnect handlers: their publishes are flushed */
    if (srv->lua != NULL) {
        ltimer_close_all(srv->lua);
        lwait_close_all(srv->lua); /* what the app opened: clients, databases */
    }
    eio_server_close(&srv->eio, "forced close");
    lengine_close(srv->lua); /* siolua.engine endpoints */
    uv_close((uv_handle_t *)&srv->sio.q_connect.timer, NULL);
    uv_close((uv_handle_t *)&srv->sio.q_resolve.timer, NULL);
    uv_close((uv_handle_t *)&srv->sigint, NULL);
    uv_close((uv_handle_t *)&srv->sigterm, NULL);
    uv_close((uv_handle_t *)&srv->sighup, NULL);
    tq_clock_close(&srv->clock); /* from here deadlines are judged at once */
    /* Keep-alive HTTP connections and closing WebSockets may linger: give them a moment, then
     * stop the loop. */
    uv_timer_init(srv->loop, &srv->shutdown);
    srv->shutdown.data = srv;
    uv_timer_start(&srv->shutdown, on_shutdown_tick, 50, 50);
}

void sl_server_free(sl_server_t *srv)
{
    adapter_redis_free(srv->redis); /* Redis adapter */
    srv->redis = NULL;
    zip_release(); /* the deflate streams kept for compression */
    lhost_free(srv->lua);
    srv->lua = NULL;
    while (srv->sio.nsps != NULL) {
        sio_nsp_t *n = srv->sio.nsps;
        srv->sio.nsps = n->next;
        room_index_free(&n->rooms);
        free(n->name);
        free(n);
    }
    eio_config_free(&srv->cfg.eio);
    free(srv->cfg.host);
    free(srv->cfg.path);
    free(srv->cfg.static_dir);
    free(srv->cfg.app);
    free(srv->cfg.redis.url); /* Redis adapter */
    free(srv->cfg.redis.key);
    free(srv->cfg.tls_cert);
    free(srv->cfg.tls_key);
    /* After the loop: sessions of connections still open at exit are not freed (they stay
     * reachable from the loop's handles), the context is. */
    tls_ctx_free(srv->tls);
    srv->tls = NULL;
}
