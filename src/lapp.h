/* lapp: the wiring of the Lua layer, one floor above the bindings. It knows which bindings exist
 * and in what order they open, the one list of primitives the prelude gets (`core`), the prelude
 * files in their order, and the hot reload's swap: lapp_swap is the one place where a new VM takes
 * over from the old one. It owns the bindings' environment (lenv_t), which outlives VMs.
 *
 * A VM's life: lapp_vm_new (libraries, bindings, prelude) -> lvm_run_file (app.lua) -> it serves
 * (lapp_start, or lapp_swap after a reload) -> lapp_vm_free. */
#ifndef SL_LAPP_H
#define SL_LAPP_H

#include "lenv.h"

typedef struct lapp {
    lenv_t env;               /* what the bindings see; env.vms.cur is the VM that serves */
} lapp_t;

/* Sets up a's environment (the server's objects, which outlive a) and the scheduler's handles. */
void lapp_init(lapp_t *a, uv_loop_t *loop, sl_config_t *cfg, sio_server_t *sio, eio_server_t *eio,
               tq_clock_t *clock, void (*close)(void *ud), void *close_ud);
/* A new VM with every binding and the prelude, for a (not serving yet). NULL on failure (logged). */
lvm_t *lapp_vm_new(lapp_t *a);
/* Stops vm's timers, closes its endpoints (without running Lua) and closes it. NULL: no-op. */
void lapp_vm_free(lvm_t *vm);
/* Copies siolua.stash (its JSON-able values) from one VM to another. 0, or -1 (logged). */
int lapp_carry_stash(lvm_t *from, lvm_t *to);

/* The handler to give sio_server_init, with ud = &a->env. */
const sio_handler_t *lapp_sio_handler(void);
/* The first VM serves: env.vms.cur = vm. */
void lapp_serve(lapp_t *a, lvm_t *vm);
/* The server is about to listen (env.eio initialised): options are set from now on; allowRequest,
 * io.engine and the endpoints start, and the Redis adapter if configured. 0, or -1 (logged). */
int lapp_listening(lapp_t *a);
/* The siolua.engine endpoint whose path prefixes req's URL, or NULL. */
eio_server_t *lapp_route(lapp_t *a, const http_req_t *req);
/* Answers req if the app has a siolua.route for its path (lhttp.h): 1; else 0 (req untouched). */
int lapp_http_route(lapp_t *a, http_req_t *req);
/* Hot reload, the swap (reload.h step 3): every socket gets a handle in nw with what it kept,
 * nw becomes the current VM (the one pointer that sio, eio, the adapter and the scheduler read),
 * the old VM's timers stop, its endpoints are handed over and it is closed; then the new code's
 * "connection" listeners run for every socket and io's "reload" listeners with generation.
 * Returns the number of sockets re-bound. */
size_t lapp_swap(lapp_t *a, lvm_t *nw, int generation);

/* Shutdown, first step (before the sockets are disconnected): what Lua runs from now on runs to
 * its end; later steps see env.closing. */
void lapp_stop(lapp_t *a);
/* Shutdown, last step (after Socket.IO and Engine.IO closed): the adapter disconnects (what the
 * disconnect handlers published is flushed), timers stop, what the app opened (clients,
 * databases) closes, endpoints close. */
void lapp_close(lapp_t *a);
/* After the loop ended: the current VM is closed, the adapter freed. */
void lapp_free(lapp_t *a);

#endif
