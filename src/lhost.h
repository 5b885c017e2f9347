/* lhost: the Lua host - the VM, the one protected-call path into Lua, print() into the log, and
 * the app's loading. It implements sio's handler (connection, events, acks, disconnect) on top of
 * the bindings in lserver.c (the global `io`, namespaces, options) and lsocket.c (socket handles).
 * Ownership: C owns every socket; Lua holds handles (userdata "siolua.socket") that C keeps alive
 * with a registry ref while the socket lives and turns into "closed" handles when it dies: their
 * methods become no-ops (emit returns false) instead of touching freed memory.
 *
 * Time (the scheduler). Every handler runs in a coroutine whose instruction-count hook looks at
 * the clock every 10000 instructions:
 * - a loop turn (from one poll to the next) runs Lua for at most one slice (--handler-slice,
 *   100 ms): past it, the hook yields the running handler ("preempted") and the run queue resumes
 *   it on a later turn, after I/O was read. Handlers started once the slice is spent yield at their
 *   first check. The queue is round-robin by client socket (the one whose packet started the
 *   handler), in order within a socket. Like emitWithAck, a preemption lets other sockets' handlers
 *   run in the middle of a long one: state it shares with them may change across it.
 * - a socket's events keep their order: the handlers of an event (or ack) of a socket that has
 *   handlers in the queue, or whose handler ran past this turn's slice, do not start now: they
 *   wait in the queue behind the earlier ones. So a client's burst of long events takes one slice
 *   (or one budget, where Lua cannot yield) per turn, with I/O and heartbeats between them.
 * - a handler call may run --handler-timeout (2000 ms) of its own time, all slices together; then
 *   it is aborted (logged with its traceback). An abort that can yield cannot be caught by pcall.
 *   Resuming after emitWithAck starts a new call (a new budget).
 * - a socket whose handlers are aborted LHOST_ABORTS_MAX times within LHOST_ABORTS_WINDOW seconds
 *   is disconnected ("server namespace disconnect", as by socket.disconnect(true)) and its
 *   preempted handlers are dropped.
 * Where Lua cannot yield (inside a table.sort comparator, a string.gsub callback, a metamethod
 * called from C, a coroutine of the app's own) only the budget applies; one C call (a string.find
 * with a pathological pattern, string.rep of a huge count) is never interrupted. tq's poll clock
 * keeps such stalls from costing other clients their heartbeats. */
#ifndef SL_LHOST_H
#define SL_LHOST_H

#include <lua.h>
#include <stdint.h>

#include "server.h"
#include "sio.h"

#define LHOST_ABORTS_MAX    3  /* aborted handler calls of one socket that get it disconnected... */
#define LHOST_ABORTS_WINDOW 60 /* ...within this many seconds */

typedef struct lhost_group lhost_group_t; /* preempted handlers of one socket (lhost.c) */

typedef struct lhost {
    lua_State *L;       /* the main thread */
    lua_State *cur;     /* the coroutine running now (NULL: none; C callbacks then use L) */
    sl_server_t *srv;
    size_t mem_used;     /* bytes the VM holds (its allocator counts them) */
    size_t mem_limit;    /* cap on mem_used, 0 = none: allocations beyond fail ("not enough memory") */
    size_t mem_peak;     /* highest mem_used since freed memory was last given back to the OS */
    uint8_t mem_hit;     /* an allocation was refused at the cap: full GC at the end of the turn */
    uint8_t yield_abort; /* with yielded: the hook yielded it to abort it, not to preempt it */
    int nopreempt;       /* > 0: handlers run to completion (the app's top level) */
    uint64_t budget_ns;  /* a handler call may run this long (0 = forever), see lhost_call */
    uint64_t slice_ns;   /* Lua time of one loop turn before handlers yield (0 = never) */
    uint64_t deadline;   /* uv_hrtime() after which the running handler is aborted (0 = none) */
    uint64_t slice_end;  /* uv_hrtime() at which this turn's slice ends (0: no Lua ran yet) */
    uint64_t charged;    /* the deadline of the last abort charged to a socket (one per call) */
    lua_State *yielded;  /* the coroutine the hook just yielded (NULL: none) */
    sio_socket_t *origin; /* the socket whose packet is being handled: new handlers are its own */
    sio_socket_t *in_event; /* origin, while its EVENT or ACK is dispatched (handlers may wait) */
    sio_socket_t *overran;  /* the socket whose handler ran past this turn's slice (compared only) */
    lhost_group_t *runq, *runq_tail; /* preempted handlers, one group per socket, round-robin */
    lhost_group_t *running; /* the group whose handler the run queue is resuming */
} lhost_t;

/* Creates the VM with the standard libraries, `siolua`, `io` and the prelude. NULL on failure. */
lhost_t *lhost_new(sl_server_t *srv);
void lhost_free(lhost_t *h);
/* Runs the app file (its top level is never preempted). Returns 0, or -1 with the error
 * (file:line: message + traceback) logged. */
int lhost_run_app(lhost_t *h, const char *path);
/* The scheduler's loop handles, which outlive VMs (they act on srv->lua): an idle handle that runs
 * the queue of preempted handlers while it is not empty, and a check handle that ends each turn's
 * slice (and gives memory back to the OS after a memory bomb: a full GC, then malloc_trim).
 * Closing them (shutdown) leaves the preempted handlers where they are; later calls are not
 * preempted. */
void lhost_loop_start(sl_server_t *srv);
void lhost_loop_close(sl_server_t *srv);

/* The handler sio calls into (ud = lhost_t *). */
extern const sio_handler_t lhost_sio_handler;
/* allowRequest, for eio (ud = lhost_t *): io.options' function decides, now or later. */
void lhost_allow_request(eio_allow_t *a, const http_req_t *req, void *ud);

/* ---- for the binding files (lserver.c, lsocket.c) ---- */

/* The lhost_t of a state. [-0, +0, -] */
lhost_t *lhost_get(lua_State *L);
/* The thread C callbacks must use now: the running coroutine, or the main thread. */
lua_State *lhost_state(lhost_t *h);
/* Runs an application function (a handler): the function at stack[-nargs-1] with nargs arguments,
 * in a coroutine of its own (from a pool), so it may suspend in emitWithAck or be preempted (it
 * then goes on later, from the run queue). On error or abort logs "what: message + traceback" and
 * returns -1; else 0 (also when it suspended). Pops function and args, pushes nothing. Raises only
 * on memory errors. */
int lhost_call(lua_State *L, int nargs, const char *what);
/* Same, with the description formatted (fmt with two %s) only if an error is logged. */
int lhost_callf(lua_State *L, int nargs, const char *fmt, const char *a, const char *b);
/* The one way C enters Lua from a libuv or sio callback: calls fn(arg) under lua_pcall with a
 * traceback handler, on the current thread. Returns 0, or -1 after logging "what: traceback". */
int lhost_protect(lhost_t *h, lua_CFunction fn, void *arg, const char *what);
/* Same, with the description formatted (fmt with one %s) only if an error is logged. */
int lhost_protectf(lhost_t *h, lua_CFunction fn, void *arg, const char *fmt, const char *a);
/* Pushes a query string's decoded key/value pairs as a table ('+' and %XX decoded). [-0, +1, m] */
void lhost_push_query(lua_State *L, const char *p, size_t len);
/* Pushes a request as the app sees it: {method, url, headers, address, _query}; from a live
 * request, or from an Engine.IO session's copy of its first one. [-0, +1, m] */
void lhost_push_request(lua_State *L, const http_req_t *req);
void lhost_push_handshake_request(lua_State *L, const eio_handshake_t *hs);
/* A C object handed to Lua to be used once later (allowRequest's callback, a dynamic namespace's
 * answer): a userdata "siolua.box" holding obj, which release(obj) releases when the box is
 * collected, unless it was taken out first. push [-0, +1, m]; get and take check the type and
 * return obj or NULL (taken); take leaves the box empty (the caller releases obj). */
void lhost_box_push(lua_State *L, void *obj, void (*release)(void *obj));
void *lhost_box_get(lua_State *L, int idx);
void *lhost_box_take(lua_State *L, int idx);
/* Pushes headers as a table, names lower-cased as Node does. [-0, +1, m] */
void lhost_push_headers(lua_State *L, size_t n, const slice_t *names, const slice_t *values);
/* Same for an Engine.IO handshake's packed headers (eio_handshake_t.headers). [-0, +1, m] */
void lhost_push_packed_headers(lua_State *L, size_t n, const char *packed);
/* __index helper: if the prelude's table at registry[props_key] has a function k, pushes its
 * result for the object at obj; else if registry[methods_key] has one, pushes it bound to obj.
 * Returns 1 when something was pushed, 0 (stack unchanged) otherwise. [-0, +(0|1), e] */
int lhost_prelude_member(lua_State *L, int obj, const void *props_key, const void *methods_key, const char *k);
/* Once the prelude has run: registry[props_key] = siolua[props_field], registry[methods_key] =
 * siolua[methods_field], the tables lhost_prelude_member reads. [-0, +0, -] */
void lhost_bind_prelude_members(lua_State *L, const void *props_key, const char *props_field, const void *methods_key,
                                const char *methods_field);
/* Pushes the prelude's entry point siolua._hooks[name]. [-0, +1, -] */
void lhost_push_hook(lua_State *L, const char *name);
/* If stack[1] is `self` (a colon call), removes it, so obj.m(x) and obj:m(x) both work. */
void lhost_selfcall(lua_State *L, int self_idx);

/* lserver.c: registers `io` (the main namespace + server) and the namespace primitives of
 * siolua._core. [-0, +0, e] */
void lserver_open(lua_State *L);
/* After the prelude ran: takes its namespace methods for the namespace metatable. [-0, +0, e] */
void lserver_bind_prelude(lua_State *L);
/* Pushes the namespace object for nsp (created on first use). [-0, +1, e] */
void lserver_push_nsp(lua_State *L, sio_nsp_t *nsp);
/* The C namespace of the namespace object at idx (raises if it is not one, or was removed). */
sio_nsp_t *lserver_check_nsp(lua_State *L, int idx);
/* nsp is being freed: its object no longer reaches it (methods raise), and io.of(name) makes a
 * new one. Never raises. */
void lserver_forget_nsp(lua_State *L, sio_nsp_t *nsp);
/* Runs an allowRequest function for a: the one at registry ref `ref` (an endpoint's own), or
 * io.options' (LUA_NOREF); without one a is accepted at once. The function gets (req, callback)
 * in a handler coroutine and may call callback(err, ok) later; if it raises before answering, a
 * is refused. */
void lserver_allow_request(lhost_t *h, int ref, eio_allow_t *a, const http_req_t *req);

/* ltimer.c: setTimeout, setInterval, clearTimeout, clearInterval (global and in siolua). */
void ltimer_open(lua_State *L);
/* Stops every timer of this VM (shutdown, reload). */
void ltimer_close_all(lhost_t *h);

/* ---- lengine.c: raw Engine.IO (io.engine and siolua.engine endpoints) ---- */
/* Registers siolua.engine and sets io.engine (after lserver_open). [-0, +0, e] */
void lengine_open(lua_State *L);
/* The server listens (after eio_server_init): io.engine observes srv->eio, endpoints mount. */
void lengine_start(lhost_t *h);
/* The Engine.IO endpoint whose path prefixes req's URL, or NULL. */
eio_server_t *lengine_route(lhost_t *h, const http_req_t *req);
/* Pushes io.engine's conn of the Socket.IO session s (socket.conn: one object with the one its
 * "connection" listeners got), made on first use without running "connection". [-0, +1, m] */
void lengine_push_conn(lua_State *L, eio_session_t *s);
/* Server shutdown: closes every endpoint's sessions ("forced close", events run). */
void lengine_close(lhost_t *h);
/* Before the VM closes (lhost_free): its handles are released without running Lua; on a
 * successful hot reload the current VM (srv->lua) takes over endpoints and sessions. */
void lengine_free(lhost_t *h);
/* ---- end of lengine.c ---- */

/* lsocket.c */
/* The reference's reserved event names (NULL-terminated): neither a client nor the app may emit
 * them. lsocket_reserved() tells whether ev is one. */
extern const char *const lsocket_reserved_names[];
int lsocket_reserved(const char *ev);
#define LSOCKET_F_OUTGOING 1 /* sio_socket.upper_flags: the socket has onAnyOutgoing listeners */
void lsocket_open(lua_State *L);
/* After the prelude ran: takes its socket methods and properties. [-0, +0, e] */
void lsocket_bind_prelude(lua_State *L);
/* Creates the handle of s (stored in s->handle_ref) and pushes it. [-0, +1, e] */
void lsocket_push_new(lua_State *L, sio_socket_t *s);
/* Pushes the existing handle of s. [-0, +1, -] */
void lsocket_push(lua_State *L, sio_socket_t *s);
/* Pushes the private table (acks, auth, data...) of the handle at ud, creating it on first use.
 * [-0, +1, m] */
void lsocket_private(lua_State *L, int ud);
/* Calls s's handlers for an incoming packet; returns -1 for an invalid payload. */
int lsocket_on_packet(lua_State *L, sio_socket_t *s, const sio_packet_t *p, rbuf_t *const *att, size_t natt);
/* Fires "disconnect" (reason) then turns the handle into a closed one and drops the ref. */
void lsocket_on_disconnect(lua_State *L, sio_socket_t *s, const char *reason);
/* Turns the handle into a closed one and drops the ref (no events). */
void lsocket_release(lua_State *L, sio_socket_t *s);
/* Encodes [event, args...] from stack[first..top] (ack function excluded by caller) into a
 * packet for nsp with ack id (-1 = none). Returns the packet; attachments in att/natt. [-0,+0,e] */
rbuf_t *lsocket_encode(lua_State *L, int first, const char *nsp, sio_type_t type, int64_t id, rbuf_t **att,
                       int *natt);

#endif
