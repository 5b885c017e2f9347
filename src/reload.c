/* reload: see reload.h. */
#include "reload.h"

#include <lauxlib.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "lapp.h"
#include "log.h"

#define DEBOUNCE_MS 100

/* ---------------------------------------------------------------- the app's modules */

typedef struct {
    char **files;     /* out: module files */
    size_t nfiles;
    const char *dir;
} modules_t;

/* The files of the modules the app required from its folder (package.loaded + searchpath). */
static int module_files_k(lua_State *L)
{
    modules_t *a = lua_touserdata(L, 1);
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
    uv_fs_event_init(r->debounce.loop, &w->ev);
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
    modules_t a = {0};
    if (!r->active)
        return;
    unwatch(r);
    free_files(r);
    if (realpath(r->path, app) == NULL)
        return;
    strcpy(dir, app);
    *strrchr(dir, '/') = '\0';
    r->files = xmalloc(sizeof(char *));
    r->files[r->nfiles++] = xstrndup(app, strlen(app));
    a.dir = dir;
    lvm_protect(r->app->env.vms.cur, module_files_k, &a, "listing the app's modules");
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
    lapp_t *app = r->app;
    lvm_t *nw;
    size_t n;
    uint64_t t0 = uv_hrtime();

    if (app->env.closing)
        return -1;
    log_info("siolua: reloading %s (%s)", r->path, why);
    /* 1. the new code, in isolation, with the old code's siolua.stash */
    nw = lapp_vm_new(app);
    if (nw == NULL) {
        app->env.metrics->reloads_failed++;
        log_error("siolua: reload failed: cannot create a Lua VM; the old code keeps running");
        return -1;
    }
    lapp_carry_stash(app->env.vms.cur, nw);
    if (lvm_run_file(nw, r->path) != 0) {
        /* 2. keep the old code; the error was logged with file:line */
        lapp_vm_free(nw);
        app->env.metrics->reloads_failed++;
        log_error("siolua: reload failed: the old code keeps running (fix %s and save again)", r->path);
        return -1;
    }
    /* 3. the swap */
    r->generation++;
    n = lapp_swap(app, nw, r->generation);
    {
        double ms = (double)(uv_hrtime() - t0) / 1e6;
        app->env.metrics->reloads_ok++;
        app->env.metrics->reload_last_swap = ms / 1000;
        log_with(LOG_INFO, LOG_FIELDS(LOG_S("app", r->path), LOG_I("generation", r->generation), LOG_I("sockets", n),
                                      LOG_N("swap_ms", ms)),
                 "siolua: reloaded %s: generation %d, %zu sockets re-bound in %.1f ms", r->path, r->generation, n, ms);
    }
    rewatch(r);
    return 0;
}

int reload_init(reload_t *r, uv_loop_t *loop, lapp_t *app, const char *path, int watch)
{
    memset(r, 0, sizeof(*r));
    r->app = app;
    r->path = path;
    r->generation = 1;
    r->active = watch;
    uv_timer_init(loop, &r->debounce);
    r->debounce.data = r;
    rewatch(r);
    return 0;
}

void reload_close(reload_t *r)
{
    if (r->app == NULL)
        return;
    unwatch(r);
    free_files(r);
    uv_close((uv_handle_t *)&r->debounce, NULL);
    r->app = NULL;
}
