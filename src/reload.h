/* reload: hot reload of app.lua without dropping a connection: the watching and the transaction
 * (the swap itself is lapp_swap, lapp.h).
 *
 * Trigger: a change to app.lua or to a Lua module it require()d from the app's folder (libuv fs
 * events on the folders, debounced 100 ms so an editor's save burst reloads once), or SIGHUP
 * (server.c, which re-reads the TLS certificate first, then calls reload_now).
 * `--no-watch` turns the watching off; SIGHUP works either way.
 *
 * A reload is a transaction (Redis functionsCreateWithLibraryCtx):
 *   1. a fresh Lua VM loads the prelude, gets the old VM's siolua.stash (its JSON-able values),
 *      and runs app.lua;
 *   2. if that fails (syntax error, error at top level) the new VM is thrown away, the old one keeps
 *      serving untouched, and the error is logged with file:line;
 *   3. else every connected socket is re-bound to the new VM in one step: it keeps its id, rooms,
 *      handshake and Engine.IO session, gets a new handle with socket.reloaded == true and the old
 *      handle's socket.data and fields (JSON-able values: tables, strings, numbers, booleans,
 *      siolua.null, with their marks: arrays stay arrays, received objects keep their key order,
 *      strings keep their bytes; a sparse array becomes an object with string keys), and
 *      its namespace's "connection" listeners run again for it (middlewares do not: the socket was
 *      admitted already). Then io's "reload" listeners run with the generation number, and the old
 *      VM is closed.
 *
 * What of the old code survives: nothing runs after the swap. Its timers are cancelled, its pending
 * acknowledgement callbacks are dropped (a late ACK from a client is ignored, as an unknown id is),
 * and handlers suspended in emitWithAck are abandoned. Socket listeners registered by the old code
 * are gone: the new "connection" listener registers the new ones.
 * io.options{} is read at start-up only: a reloaded app's io.options call only takes allowRequest
 * (code, not configuration) and ignores the rest, with a log line. A socket that was still in the
 * middlewares runs the new code's middlewares, then "connection" (with socket.reloaded == false). */
#ifndef SL_RELOAD_H
#define SL_RELOAD_H

#include <uv.h>

struct lapp;

typedef struct reload_watch {
    uv_fs_event_t ev;          /* watches one folder */
    struct reload_watch *next;
} reload_watch_t;

typedef struct {
    struct lapp *app;          /* the Lua layer: new VMs, the swap */
    const char *path;          /* app.lua (the server's configuration owns it) */
    uv_timer_t debounce;       /* fires 100 ms after the last relevant change */
    reload_watch_t *watches;   /* folders of app.lua and of its modules */
    char **files;              /* absolute paths of the watched files */
    size_t nfiles;
    int generation;            /* 1 for the app as started, +1 per successful reload */
    int active;
} reload_t;

/* Starts the file watching of path if watch. Returns 0 or a UV_E* code. */
int reload_init(reload_t *r, uv_loop_t *loop, struct lapp *app, const char *path, int watch);
/* Reloads now (the transaction above). Returns 0 on success, -1 when the old code stays. */
int reload_now(reload_t *r, const char *why);
void reload_close(reload_t *r);

#endif
