/* reload: see reload.h. */
#include "reload.h"

#include <lauxlib.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "lhost.h"
#include "log.h"
#include "lwait.h"
#include "server.h"

#define DEBOUNCE_MS 100

/* ---------------------------------------------------------------- calls into one VM */

typedef struct {
    sio_socket_t *s;
    const char *hook; /* take_socket_k: the prelude hook to run for s */
    char *json;       /* in: JSON to import; out: exported JSON (malloc'd) */
    int generation;
    char **files;     /* out: module files */
    size_t nfiles;
    const char *dir;
} rl_args_t;

/* Calls hook(args...) in L and copies a string result to a->json. */
static void take_string(lua_State *L, rl_args_t *a)
{
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    a->json = s ? xstrndup(s, len) : NULL;
}

static int export_stash_k(lua_State *L)
{
    rl_args_t *a = lua_touserdata(L, 1);
    lhost_push_hook(L, "export_stash");
    lua_call(L, 0, 1);
    take_string(L, a);
    return 0;
}

static int import_stash_k(lua_State *L)
{
    rl_args_t *a = lua_touserdata(L, 1);
    lhost_push_hook(L, "import_stash");
    lua_pushstring(L, a->json);
    lua_call(L, 1, 0);
    return 0;
}

/* A batch of sockets for the swap: one protected call per VM instead of several per socket. */
typedef struct {
    sio_socket_t **v;
    size_t n;
    char **json; /* per socket: what it keeps (malloc'd JSON), or NULL */
} batch_t;

static int export_all_k(lua_State *L)
{
    batch_t *b = lua_touserdata(L, 1);
    lhost_push_hook(L, "export_all");
    lua_createtable(L, (int)b->n, 0);
    for (size_t i = 0; i < b->n; i++) {
        if (b->v[i]->state == SIO_S_CLOSED)
            continue;
        lsocket_push(L, b->v[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_call(L, 1, 1);
    for (size_t i = 0; i < b->n; i++) {
        size_t len;
        lua_rawgeti(L, -1, (lua_Integer)i + 1);
        const char *s = lua_tolstring(L, -1, &len);
        if (s != NULL)
            b->json[i] = xstrndup(s, len);
        lua_pop(L, 1);
    }
    return 0;
}

static int release_all_k(lua_State *L)
{
    batch_t *b = lua_touserdata(L, 1);
    for (size_t i = 0; i < b->n; i++)
        lsocket_release(L, b->v[i]);
    return 0;
}

/* In the new VM: every socket gets its handle first (so none is left without one, whatever a
 * hook does), then what it kept. */
static int adopt_all_k(lua_State *L)
{
    batch_t *b = lua_touserdata(L, 1);
    for (size_t i = 0; i < b->n; i++) {
        if (b->v[i]->state == SIO_S_CLOSED)
            continue;
        lsocket_push_new(L, b->v[i]);
        lua_pop(L, 1);
    }
    for (size_t i = 0; i < b->n; i++) {
        if (b->v[i]->state == SIO_S_CLOSED)
            continue;
        lhost_push_hook(L, "adopt");
        lsocket_push(L, b->v[i]);
        if (b->json[i] != NULL)
            lua_pushstring(L, b->json[i]);
        else
            lua_pushnil(L);
        lua_pushboolean(L, b->v[i]->state == SIO_S_CONNECTED);
        if (lua_pcall(L, 3, 0, 0) != LUA_OK) {
            log_error("siolua: reload: socket %s: %s", b->v[i]->id, lua_tostring(L, -1));
            lua_pop(L, 1);
        }
    }
    return 0;
}

/* The new code takes a socket: hooks.reconnect (admitted: "connection" again) or hooks.connect
 * (still being admitted: the middlewares, then "connection"), named by a->hook. */
static int take_socket_k(lua_State *L)
{
    rl_args_t *a = lua_touserdata(L, 1);
    lhost_push_hook(L, a->hook);
    lserver_push_nsp(L, a->s->nsp);
    lsocket_push(L, a->s);
    lua_call(L, 2, 0);
    return 0;
}

static int reload_hook_k(lua_State *L)
{
    rl_args_t *a = lua_touserdata(L, 1);
    lhost_push_hook(L, "reload");
    lua_pushinteger(L, a->generation);
    lua_call(L, 1, 0);
    return 0;
}

/* The files of the modules the app required from its folder (package.loaded + searchpath). */
static int module_files_k(lua_State *L)
{
    rl_args_t *a = lua_touserdata(L, 1);
    size_t dlen = strlen(a->dir);
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "searchpath");
    lua_getfield(L, -2, "path");
    lua_getfield(L, -3, "loaded");
    int searchpath = lua_gettop(L) - 2, path = searchpath + 1, loaded = searchpath + 2;
    lua_pushnil(L);
    while (lua_next(L, loaded) != 0) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            continue;
        lua_pushvalue(L, searchpath);
        lua_pushvalue(L, -2);
        lua_pushvalue(L, path);
        lua_call(L, 2, 1);
        if (lua_type(L, -1) == LUA_TSTRING) {
            char real[PATH_MAX];
            if (realpath(lua_tostring(L, -1), real) != NULL && strncmp(real, a->dir, dlen) == 0 &&
                real[dlen] == '/') {
                a->files = xrealloc(a->files, (a->nfiles + 1) * sizeof(char *));
                a->files[a->nfiles++] = xstrndup(real, strlen(real));
            }
        }
        lua_pop(L, 1);
    }
    return 0;
}

/* ---------------------------------------------------------------- watching */

static void on_fs_event(uv_fs_event_t *ev, const char *filename, int events, int status);

static void free_files(reload_t *r)
{
    for (size_t i = 0; i < r->nfiles; i++)
        free(r->files[i]);
    free(r->files);
    r->files = NULL;
    r->nfiles = 0;
}

static void on_watch_closed(uv_handle_t *h)
{
    free(h->data);
}

static void unwatch(reload_t *r)
{
    while (r->watches != NULL) {
        reload_watch_t *w = r->watches;
        r->watches = w->next;
        w->ev.data = w;
        uv_close((uv_handle_t *)&w->ev, on_watch_closed);
    }
}

static void watch_dir(reload_t *r, const char *dir)
{
    reload_watch_t *w;
    for (w = r->watches; w; w = w->next) {
        char path[PATH_MAX];
        size_t len = sizeof(path);
        if (uv_fs_event_getpath(&w->ev, path, &len) == 0 && strcmp(path, dir) == 0)
            return;
    }
    w = xcalloc(1, sizeof(*w));
    uv_fs_event_init(r->srv->loop, &w->ev);
    w->ev.data = r;
    if (uv_fs_event_start(&w->ev, on_fs_event, dir, 0) != 0) {
        log_warn("siolua: cannot watch %s: changes there will not reload the app", dir);
        w->ev.data = w;
        uv_close((uv_handle_t *)&w->ev, on_watch_closed);
        return;
    }
    w->next = r->watches;
    r->watches = w;
}

/* (Re)computes the watched files: app.lua and the modules of the current VM from its folder. */
static void rewatch(reload_t *r)
{
    char app[PATH_MAX], dir[PATH_MAX];
    rl_args_t a = {0};
    if (!r->active)
        return;
    unwatch(r);
    free_files(r);
    if (realpath(r->srv->cfg.app, app) == NULL)
        return;
    strcpy(dir, app);
    *strrchr(dir, '/') = '\0';
    r->files = xmalloc(sizeof(char *));
    r->files[r->nfiles++] = xstrndup(app, strlen(app));
    a.dir = dir;
    lhost_protect(r->srv->lua, module_files_k, &a, "listing the app's modules");
    for (size_t i = 0; i < a.nfiles; i++) {
        r->files = xrealloc(r->files, (r->nfiles + 1) * sizeof(char *));
        r->files[r->nfiles++] = a.files[i];
    }
    free(a.files);
    for (size_t i = 0; i < r->nfiles; i++) {
        char d[PATH_MAX];
        strcpy(d, r->files[i]);
        *strrchr(d, '/') = '\0';
        watch_dir(r, d);
    }
}

static void on_debounce(uv_timer_t *t)
{
    reload_now(t->data, "file change");
}

/* Editors save by writing in place or by writing a new file and renaming it over the old one:
 * watching the folder and filtering by name catches both. */
static void on_fs_event(uv_fs_event_t *ev, const char *filename, int events, int status)
{
    reload_t *r = ev->data;
    char dir[PATH_MAX], full[2 * PATH_MAX];
    size_t len = sizeof(dir);
    (void)events;
    if (status != 0 || filename == NULL || uv_fs_event_getpath(ev, dir, &len) != 0)
        return;
    if ((size_t)snprintf(full, sizeof(full), "%s/%s", dir, filename) >= sizeof(full))
        return;
    for (size_t i = 0; i < r->nfiles; i++)
        if (strcmp(full, r->files[i]) == 0) {
            uv_timer_start(&r->debounce, on_debounce, DEBOUNCE_MS, 0);
            return;
        }
}

/* ---------------------------------------------------------------- the transaction */

int reload_now(reload_t *r, const char *why)
{
    sl_server_t *srv = r->srv;
    lhost_t *old = srv->lua, *nw;
    rl_args_t a = {0};
    sio_socket_t **v;
    size_t n;
    uint64_t t0 = uv_hrtime();

    if (srv->closing)
        return -1;
    log_info("siolua: reloading %s (%s)", srv->cfg.app, why);
    /* 1. the new code, in isolation */
    nw = lhost_new(srv);
    if (nw == NULL) {
        log_error("siolua: reload failed: cannot create a Lua VM; the old code keeps running");
        return -1;
    }
    if (lhost_protect(old, export_stash_k, &a, "exporting siolua.stash") == 0 && a.json != NULL) {
        lhost_protect(nw, import_stash_k, &a, "importing siolua.stash");
    }
    free(a.json);
    a.json = NULL;
    if (lhost_run_app(nw, srv->cfg.app) != 0) {
        /* 2. keep the old code; the error was logged with file:line */
        ltimer_close_all(nw);
        lwait_close_all(nw);
        lhost_free(nw);
        log_error("siolua: reload failed: the old code keeps running (fix %s and save again)", srv->cfg.app);
        return -1;
    }
    /* 3. the swap: every socket gets a handle in the new VM (the collectors wait meanwhile) */
    n = sio_all_sockets(&srv->sio, &v);
    {
        batch_t b = {v, n, xcalloc(n ? n : 1, sizeof(char *))};
        lua_gc(old->L, LUA_GCSTOP);
        lua_gc(nw->L, LUA_GCSTOP);
        lhost_protect(old, export_all_k, &b, "exporting the sockets");
        lhost_protect(old, release_all_k, &b, "releasing the sockets");
        lhost_protect(nw, adopt_all_k, &b, "re-binding the sockets");
        for (size_t i = 0; i < n; i++)
            free(b.json[i]);
        free(b.json);
        lua_gc(nw->L, LUA_GCRESTART);
    }
    srv->lua = nw;
    srv->sio.ud = nw;
    srv->eio.allow_ud = nw;
    ltimer_close_all(old);
    lwait_close_all(old); /* what the old code opened: clients, databases */
    lhost_free(old);
    r->generation++;
    /* the new code takes over: connection listeners run again (middlewares only for sockets that
     * were still being admitted) */
    for (size_t i = 0; i < n; i++) {
        rl_args_t sa = {.s = v[i], .hook = v[i]->state == SIO_S_CONNECTED ? "reconnect" : "connect"};
        if (v[i]->state != SIO_S_CLOSED)
            lhost_protect(nw, take_socket_k, &sa, "connection (reload)");
    }
    sio_release(v, n);
    a.generation = r->generation;
    lhost_protect(nw, reload_hook_k, &a, "reload listener");
    log_info("siolua: reloaded %s: generation %d, %zu sockets re-bound in %.1f ms", srv->cfg.app, r->generation, n,
             (double)(uv_hrtime() - t0) / 1e6);
    rewatch(r);
    return 0;
}

int reload_init(reload_t *r, struct sl_server *srv, int watch)
{
    memset(r, 0, sizeof(*r));
    r->srv = srv;
    r->generation = 1;
    r->active = watch;
    uv_timer_init(srv->loop, &r->debounce);
    r->debounce.data = r;
    rewatch(r);
    return 0;
}

void reload_close(reload_t *r)
{
    if (r->srv == NULL)
        return;
    unwatch(r);
    free_files(r);
    uv_close((uv_handle_t *)&r->debounce, NULL);
    r->srv = NULL;
}
