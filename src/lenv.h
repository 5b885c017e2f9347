/* lenv: what the Lua bindings may see of the server, handed to them explicitly (as luv hands each
 * handle its loop and nothing else): the loop, the protocol objects they drive, the options and
 * limits, a few facts, and the operations they may request. A binding that needs something new
 * asks for it here, where a reader sees it. One lenv_t serves every VM of the process (lapp.h owns
 * it); lvm_ud(L) returns it, and the lower layers' callbacks get it as their context. */
#ifndef SL_LENV_H
#define SL_LENV_H

#include "eio.h"
#include "lvm.h"
#include "metrics.h"
#include "options.h"
#include "rstore.h"
#include "sio.h"
#include "tq.h"

struct adapter_redis;
struct wbus;

typedef struct lenv {
    uv_loop_t *loop;
    sl_config_t *cfg;          /* the options: io.options{} writes them at start-up, bindings read
                                  their limits here */
    sio_server_t *sio;         /* Socket.IO: namespaces, sockets */
    eio_server_t *eio;         /* the Socket.IO endpoint's Engine.IO server (loop NULL until listening) */
    tq_clock_t *clock;         /* the loop's poll clock, for the deadlines of siolua.engine endpoints */
    lvm_loop_t vms;            /* the current VM (vms.cur) and the scheduler */
    struct adapter_redis *redis;       /* the Redis adapter's connections (NULL: in-memory) */
    struct wbus *bus;          /* --workers: this worker's channel to the others (NULL: one process);
                                  without Redis the adapter's protocol runs over it */
    int worker;                /* this worker's number (-1: one process) */
    int workers_live;          /* workers running now, as the supervisor last said */
    char bus_uid[7];           /* the adapter's node uid over the channel */
    int listening;             /* the server listens: its options are set (a hot-reloaded app's
                                  io.options{} takes allowRequest only), endpoints mount at once */
    int closing;               /* the server is shutting down */
    metrics_t *metrics;        /* the server's counters (metrics.h): handler time, acks, reloads */
    lvm_t *rooms_vm;           /* the VM whose Admin UI watches joins and leaves (ladmin.h; NULL: none) */
    rstore_t *rstore;          /* connection state recovery's store (NULL: recovery off); the
                                  server's, outlives VMs */
    uint64_t wall_base;        /* wall-clock ms at loop time 0: lenv_wall_ms() */
    void (*close)(void *ud);   /* io.close(): asks the server to shut down (close_ud) */
    void *close_ud;
} lenv_t;

/* Wall-clock ms now (as of the loop's last update), for the times recovery keeps across restarts. */
static inline uint64_t lenv_wall_ms(const lenv_t *e) { return e->wall_base + uv_now(e->loop); }

/* The environment of the VM running L. [-0, +0, -] */
static inline lenv_t *lenv_get(lua_State *L) { return lvm_ud(L); }

#endif
