/* lvm: the Lua VM core, as lapi.c/ldo.c are Lua's: the state and its allocator (memory cap, memory
 * given back after a bomb), the one protected-call path into Lua, handler coroutines and their pool,
 * their time budget and preemption (the scheduler below), print() into the log, source-only loading,
 * and the registry keys the prelude and C share. It knows none of the bindings: those include it.
 *
 * Time (the scheduler). Every handler runs in a coroutine whose instruction-count hook looks at
 * the clock every 10000 instructions:
 * - a loop turn (from one poll to the next) runs Lua for at most one slice (--handler-slice,
 *   100 ms): past it, the hook yields the running handler ("preempted") and the run queue resumes
 *   it on a later turn, after I/O was read. Handlers started once the slice is spent yield at their
 *   first check. The queue is round-robin by origin (the client socket whose packet started the
 *   handler), in order within an origin. Like emitWithAck, a preemption lets other sockets'
 *   handlers run in the middle of a long one: state it shares with them may change across it.
 * - an origin's events keep their order: the handlers of an event (or ack) of an origin that has
 *   handlers in the queue, or whose handler ran past this turn's slice, do not start now: they
 *   wait in the queue behind the earlier ones. So a client's burst of long events takes one slice
 *   (or one budget, where Lua cannot yield) per turn, with I/O and heartbeats between them.
 * - a handler call may run --handler-timeout (2000 ms) of its own time, all slices together; then
 *   it is aborted (logged with its traceback) and charged to its origin (lvm_origin_ops_t.aborted:
 *   the bindings disconnect a socket aborted too often). An abort that can yield cannot be caught
 *   by pcall. Resuming after emitWithAck starts a new call (a new budget).
 * Where Lua cannot yield (inside a table.sort comparator, a string.gsub callback, a metamethod
 * called from C, a coroutine of the app's own) only the budget applies; one C call (a string.find
 * with a pathological pattern, string.rep of a huge count) is never interrupted. */
#ifndef SL_LVM_H
#define SL_LVM_H

#include <lauxlib.h>
#include <lua.h>
#include <stdint.h>
#include <uv.h>

#include "metrics.h"

typedef struct lvm lvm_t;
typedef struct lvm_group lvm_group_t; /* preempted handlers of one origin (lvm.c) */

/* What a handler's origin is to the scheduler (an opaque object: a Socket.IO socket). */
typedef struct {
    void (*ref)(void *origin);   /* held while its handlers wait in the run queue */
    void (*unref)(void *origin);
    /* a call it started was aborted (once per call): its owner may lvm_cancel() it */
    void (*aborted)(lvm_t *vm, void *origin);
    /* for the log: its id, and its namespace in *nsp (optional) */
    const char *(*describe)(void *origin, const char **nsp);
} lvm_origin_ops_t;

/* The VM that serves now and the scheduler's loop handles, which outlive VMs. */
typedef struct lvm_loop {
    lvm_t *cur;               /* the current VM (a hot reload replaces it: lapp_swap) */
    uv_idle_t run;            /* runs the queue of preempted handlers while it is not empty */
    uv_check_t turn;          /* the end of each loop turn: a new slice, memory given back */
    void (*flush)(void *ud);  /* called before a slice of the run queue (what timers queued goes out) */
    void *flush_ud;
} lvm_loop_t;

typedef struct {
    size_t mem_limit;         /* bytes the VM may hold (0: no limit) */
    uint64_t budget_ms;       /* a handler call's own time (0: forever) */
    uint64_t slice_ms;        /* Lua time of one loop turn (0: never preempt) */
    lvm_loop_t *loop;         /* where preempted handlers are queued */
    const lvm_origin_ops_t *origin;
    void *ud;                 /* the bindings' environment (lenv_t), for lvm_ud() */
    metrics_t *metrics;       /* handler time, errors, aborts are counted there (NULL: not counted) */
} lvm_config_t;

struct lvm {
    lua_State *L;             /* the main thread */
    lua_State *cur;           /* the coroutine running now (NULL: none; C callbacks then use L) */
    void *ud;                 /* lvm_config_t.ud */
    lvm_loop_t *loop;
    const lvm_origin_ops_t *ops;
    metrics_t *metrics;       /* lvm_config_t.metrics */
    size_t mem_used;          /* bytes the VM holds (its allocator counts them) */
    size_t mem_limit;         /* cap on mem_used, 0 = none: allocations beyond fail ("not enough memory") */
    size_t mem_peak;          /* highest mem_used since freed memory was last given back to the OS */
    uint8_t mem_hit;          /* an allocation was refused at the cap: full GC at the end of the turn */
    uint8_t yield_abort;      /* with yielded: the hook yielded it to abort it, not to preempt it */
    int nopreempt;            /* > 0: handlers run to completion (the app's top level, shutdown) */
    uint64_t budget_ns;       /* a handler call may run this long (0 = forever), see lvm_call */
    uint64_t slice_ns;        /* Lua time of one loop turn before handlers yield (0 = never) */
    uint64_t deadline;        /* uv_hrtime() after which the running handler is aborted (0 = none) */
    uint64_t slice_end;       /* uv_hrtime() at which this turn's slice ends (0: no Lua ran yet) */
    uint64_t charged;         /* the deadline of the last abort charged to an origin (one per call) */
    lua_State *yielded;       /* the coroutine the hook just yielded (NULL: none) */
    /* set by the bindings around a call into Lua for a client's packet: */
    void *origin;             /* whose packet is being handled: new handlers are its own */
    void *in_event;           /* origin, while its EVENT or ACK is dispatched (handlers may wait) */
    void *overran;            /* the origin whose handler ran past this turn's slice (compared only) */
    lvm_group_t *runq, *runq_tail; /* preempted handlers, one group per origin, round-robin */
    lvm_group_t *running;     /* the group whose handler the run queue is resuming */
};

/* A VM with the standard libraries (load, loadfile, dofile and require read source only), cjson,
 * print() into the log, and empty `hooks`. NULL on failure (logged). */
lvm_t *lvm_new(const lvm_config_t *cfg);
/* Closes the VM; its preempted handlers are abandoned. NULL is a no-op. */
void lvm_free(lvm_t *vm);
/* The VM of a state, and the environment it was made with. [-0, +0, -] */
lvm_t *lvm_get(lua_State *L);
static inline void *lvm_ud(lua_State *L) { return lvm_get(L)->ud; }
/* The thread C callbacks must use now: the running coroutine, or the main thread. */
static inline lua_State *lvm_state(lvm_t *vm) { return vm->cur != NULL ? vm->cur : vm->L; }

/* The one way C enters Lua from a libuv or lower-layer callback: calls fn(arg) under lua_pcall
 * with a traceback handler, on the current thread. Returns 0, or -1 after logging "what: traceback".
 * The f form formats what (fmt with one %s) only if an error is logged. */
int lvm_protect(lvm_t *vm, lua_CFunction fn, void *arg, const char *what);
/* Logs a Lua error as "error in WHAT: MESSAGE": the part of err from "\nstack traceback:" on is
 * the event's traceback field (text: the lines after it); origin (NULL: none) gives the socket
 * id and namespace fields (lvm_origin_ops_t.describe), event (NULL: none) the event's name. */
void lvm_log_error(lvm_t *vm, const char *what, const char *err, void *origin, const char *event);
int lvm_protectf(lvm_t *vm, lua_CFunction fn, void *arg, const char *fmt, const char *a);
/* Runs an application function (a handler): the function at stack[-nargs-1] with nargs arguments,
 * in a coroutine of its own (from a pool), so it may suspend in emitWithAck or be preempted (it
 * then goes on later, from the run queue). On error or abort logs "what: message + traceback" and
 * returns -1; else 0 (also when it suspended). Pops function and args, pushes nothing. Raises only
 * on memory errors. The f form formats the description (fmt with two %s) only for the log. */
int lvm_call(lua_State *L, int nargs, const char *what);
int lvm_callf(lua_State *L, int nargs, const char *fmt, const char *a, const char *b);
/* Loads a file, source only, and runs it as the app's top level (never preempted, within the
 * budget) with require() finding modules next to it. Returns 0, or -1 with the error logged. */
int lvm_run_file(lvm_t *vm, const char *path);
/* Drops origin's preempted handlers (it is being disconnected for its aborts). */
void lvm_cancel(lvm_t *vm, void *origin);

/* The scheduler's loop handles (lvm_loop_t): started once, act on loop->cur. Closing them
 * (shutdown) leaves the preempted handlers where they are; later calls are not preempted. */
void lvm_loop_start(lvm_loop_t *loop, uv_loop_t *uv);
void lvm_loop_close(lvm_loop_t *loop);

/* ---- the prelude's entry points and members (registry, out of the app's reach) ---- */

/* registry[HOOKS] = the table at the top (popped): the prelude's entry points. [-1, +0, -] */
void lvm_set_hooks(lua_State *L);
/* Pushes hooks[name]. [-0, +1, -] */
void lvm_push_hook(lua_State *L, const char *name);
/* __index helper: if registry[props_key] has a function k, pushes its result for the object at
 * obj; else if registry[methods_key] has one, pushes it bound to obj (hooks.bind). Returns 1 when
 * something was pushed, 0 (stack unchanged) otherwise. [-0, +(0|1), e] */
int lvm_member(lua_State *L, int obj, const void *props_key, const void *methods_key, const char *k);
/* registry[props_key] = hooks[props], registry[methods_key] = hooks[methods]. [-0, +0, -] */
void lvm_bind_members(lua_State *L, const void *props_key, const char *props, const void *methods_key,
                      const char *methods);
/* If stack[1] is `self` (a colon call), removes it, so obj.m(x) and obj:m(x) both work. */
void lvm_selfcall(lua_State *L, int self_idx);
/* If list has a function named k, pushes it as a closure whose upvalue 1 is the object at obj and
 * returns 1; else 0. [-0, +(0|1), m] */
int lvm_method(lua_State *L, const luaL_Reg *list, int obj, const char *k);

/* A C object handed to Lua to be used once later (allowRequest's callback, a dynamic namespace's
 * answer): a userdata "siolua.box" holding obj, which release(obj) releases when the box is
 * collected, unless it was taken out first. push [-0, +1, m]; get and take check the type and
 * return obj or NULL (taken); take leaves the box empty (the caller releases obj). */
void lvm_box_push(lua_State *L, void *obj, void (*release)(void *obj));
void *lvm_box_get(lua_State *L, int idx);
void *lvm_box_take(lua_State *L, int idx);

/* core.resume(co, ...) and core.call(fn, what, ...), for the prelude (lapp's core list). */
int lvm_core_resume(lua_State *L);
int lvm_core_call(lua_State *L);

#endif
