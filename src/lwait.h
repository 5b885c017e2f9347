/* lwait: what the bindings that talk to the world (lredis.c, lsqlite.c, lpg.c, lfetch.c, lhttp.c)
 * share. A binding starts an operation and suspends the calling handler (the coroutine lvm runs)
 * until a libuv callback hands back the result; waiting costs no CPU budget (a resume is a new
 * call for --handler-timeout). Every wait has a timeout: past it the handler is resumed with the
 * error "<what>: timed out after N ms" and the binding is told to drop the operation. Everything an
 * app opened (a client, a database, a pool) is on its VM's list, so lwait_close_all() releases it
 * when the VM goes away (hot reload, shutdown): nothing an app opened outlives its code.
 * Bindings get the loop and the limits they need from lwait_env(), not from the server.
 * Errors reach the handler as raised strings (pcall-able), never as a crash or a silent nil. */
#ifndef SL_LWAIT_H
#define SL_LWAIT_H

#include <lauxlib.h>
#include <lua.h>
#include <stdint.h>
#include <uv.h>

struct lvm;

typedef struct lwait lwait_t;
typedef struct lwait_res lwait_res_t;

/* What a binding may use of the server (one per VM, made by lwait_open). */
typedef struct {
    uv_loop_t *loop;
    struct lvm *h;                  /* the VM, for lvm_protect / lvm_call from libuv callbacks */
    int max_json_depth;               /* nesting of the JSON values bindings encode or decode */
    lwait_t *waits;                   /* handlers waiting now */
    lwait_res_t *res;                 /* what the app opened and has not closed */
    struct ready *ready, *ready_tail; /* handlers to resume at the end of this loop phase */
    uv_check_t *check;                /* resumes them (made on the first use) */
    int closed;                       /* lwait_close_all ran: nothing new may start */
} lwait_env_t;

/* Registers the environment of the VM being made (lapp's set-up).
 * [-0, +0, e] */
void lwait_open(lua_State *L);
/* The environment of L's VM. [-0, +0, -] */
lwait_env_t *lwait_env(lua_State *L);
/* The VM goes away (before lua_close, inside the loop): every waiting handler is abandoned (its
 * binding's cancel runs, it is never resumed), then every resource is closed. No Lua runs. */
void lwait_close_all(struct lvm *h);

/* ---------------------------------------------------------------- waiting */

/* The wait ended without the operation's result (timeout, VM closing): the binding forgets the
 * waiter (op->wait = NULL) and may drop or abandon the operation. No Lua may run in it. */
typedef void (*lwait_cancel_cb)(void *op);
/* Pushes the results of a completed operation in L and returns their number; or pushes an error
 * message and returns -1 (the handler then raises it). May raise (memory). */
typedef int (*lwait_push_cb)(lua_State *L, void *arg);

/* Raises unless L may wait: a handler's own coroutine, where Lua can yield, not the app's top level
 * (whose end the server waits for to listen or swap) nor a coroutine the app made. Call it before
 * allocating anything. [-0, +0, v] */
void lwait_check(lua_State *L, const char *what);
/* Starts a wait of the running handler (lwait_check passed), with a timeout (ms, > 0). `what`
 * (static) names the binding in errors ("siolua.redis"). It raises (memory) before it takes
 * anything, so allocate the operation after it, then lwait_bind(w, op), then start it: if that
 * fails at once, lwait_abort(w); else `return lwait_yield(L, w)`. [-0, +0, m] */
lwait_t *lwait_begin(lua_State *L, uint64_t timeout_ms, const char *what, lwait_cancel_cb cancel);
/* The operation cancel gets. */
void lwait_bind(lwait_t *w, void *op);
/* Ends a wait whose operation never started (nothing is resumed). */
void lwait_abort(lwait_t *w);
/* Suspends the handler; its C function returns what the completion pushed (or raises its error).
 * The stack below stays as it is (keep the object the operation uses there: it then cannot be
 * collected while the handler waits). */
int lwait_yield(lua_State *L, lwait_t *w);
/* The operation completed: push makes the results now (arg is push's, used only during this
 * call); the handler is resumed with them at the end of this loop phase (a uv_check), never inside
 * the caller: a binding may call this from its loops over its own structures, which the resumed
 * handler may close. w is ended (freed): the binding forgets it. */
void lwait_resume(lwait_t *w, lwait_push_cb push, void *arg);
/* The operation failed: the handler raises msg (copied). w is ended. */
void lwait_fail(lwait_t *w, const char *msg);

/* ---------------------------------------------------------------- resources */

struct lwait_res {
    void (*close)(lwait_res_t *r); /* the VM goes: release everything now or soon; no Lua may run */
    lwait_env_t *env;              /* NULL once removed */
    lwait_res_t *prev, *next;
};

/* Puts r on env's list (r->close set by the caller). */
void lwait_res_add(lwait_env_t *env, lwait_res_t *r);
/* Takes r off its list (the app closed it). No-op if it is not on one. */
void lwait_res_remove(lwait_res_t *r);
/* Raises "<what>: too many open (max N): close some" when the VM holds max resources of the kind
 * whose close function is `close` after a full garbage collection (handles the app dropped are
 * closed by their __gc). [-0, +0, v] */
void lwait_res_limit(lua_State *L, void (*close)(lwait_res_t *), int max, const char *what);

/* ---------------------------------------------------------------- helpers */

/* Box of a C object in a userdata "name": the pointer (NULL once closed). Binding objects have
 * this shape so that their __gc and their methods share the closed check. */
typedef struct {
    void *p;
} lwait_box_t;
/* Registers the class of a box: metatable `mt` with __index = methods, __gc = close (the
 * methods' close too), __tostring = tostring; and siolua[name] = ctor. [-0, +0, e] */
void lwait_class(lua_State *L, const char *mt, const luaL_Reg *methods, lua_CFunction close,
                 lua_CFunction tostring, const char *name, lua_CFunction ctor);
/* The object of the box at idx (a userdata with metatable `mt`), raising "<what> is closed" when
 * it was closed. [-0, +0, v] */
void *lwait_checkbox(lua_State *L, int idx, const char *mt, const char *what);
/* The body of obj:close() and of the box's __gc: close(p) unless already closed (close clears
 * the box). [-0, +0, v] */
int lwait_box_close(lua_State *L, const char *mt, void (*close)(void *p));
/* The parameters stack[first..top] of a database call, checked before anything is allocated (so
 * that copying them cannot raise): a table becomes its JSON text in place; anything but nil,
 * siolua.null, booleans, numbers, strings and siolua.binary raises "<what>: parameter N ...".
 * [-0, +0, v] */
void lwait_sql_params(lua_State *L, int first, const char *what);
/* An optional timeout option: t[key] at idx (a table or nil) as ms in [1, 86400000], else dflt.
 * Raises on a bad value. [-0, +0, v] */
uint64_t lwait_opt_ms(lua_State *L, int idx, const char *key, uint64_t dflt);
/* Pushes siolua.Error(msg) (a table with .message, printed as its message). [-0, +1, m] */
void lwait_push_error(lua_State *L, const char *msg, size_t len);

#endif
