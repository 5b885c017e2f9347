/* lemitter: the one event-emitter implementation, for every object that emits (sockets, io and the
 * namespaces, io.engine and the siolua.engine endpoints, their conns), as the reference's
 * EventEmitter is one class. An object's listeners live in a table {event -> listeners} whose values
 * are one function (one listener, the common case: no list to allocate or copy per event) or a
 * sequence of functions and one-shot wrappers {fn = f, once = true}. Where that table is, how its
 * errors are logged and what changes when it changes is the object's kind (lemitter_kind_t); the
 * methods are the same for every kind:
 *   on / addListener(ev, fn), once(ev, fn), prependListener(ev, fn), prependOnceListener(ev, fn),
 *   off / removeListener(ev[, fn]) (without fn: every listener of ev), removeAllListeners([ev]),
 *   listeners(ev), listenerCount(ev), eventNames()
 * each callable as obj.m(...) or obj:m(...), returning the object where Node returns the emitter. */
#ifndef SL_LEMITTER_H
#define SL_LEMITTER_H

#include <lua.h>

typedef struct lemitter_kind {
    /* Pushes the listeners table of the object at obj, made on first use when create is set;
     * nil when it has none. [-0, +1, m] */
    void (*table)(lua_State *L, int obj, int create);
    /* Optional: which events have listeners changed (engines skip what nobody listens to). */
    void (*changed)(lua_State *L, int obj);
    /* Optional: the name an event is stored under ("connect" is "connection" for namespaces). */
    const char *(*alias)(const char *ev);
    /* How an error of a listener is logged: fmt's two %s are the event and label(obj) ("" without). */
    const char *fmt;
    const char *(*label)(lua_State *L, int obj);
} lemitter_kind_t;

/* Makes kind the kind of the objects whose metatable is the one at the top (popped): core.fire
 * finds it there. [-1, +0, m] */
void lemitter_register(lua_State *L, const lemitter_kind_t *kind);
/* If k is an emitter method, pushes it bound to the object at obj and returns 1; else 0. [-0, +(0|1), m] */
int lemitter_method(lua_State *L, int obj, const lemitter_kind_t *kind, const char *k);
/* For objects that look names up in a table of their own: the name of method i (NULL past the
 * last), and method i bound to the object at obj. [-0, +1, m] */
const char *lemitter_method_name(int i);
void lemitter_push_method(lua_State *L, int obj, const lemitter_kind_t *kind, int i);

/* Calls the listeners of ev of the object at obj with the nargs values on top (popped), each as a
 * handler (lvm_call: its own coroutine, errors logged). One-shot listeners are removed before any
 * runs, and the list is snapshotted: listeners may add and remove listeners. evidx, when not 0, is
 * where the name is on the stack as a Lua string (looked up without hashing ev again); `label` is
 * the log's second %s (NULL: kind->label's). [-nargs, +0, m] */
void lemitter_fire(lua_State *L, int obj, const lemitter_kind_t *kind, int evidx, const char *ev, int nargs,
                   const char *label);
/* 1 if the listeners table at tbl has a listener for ev; lemitter_flags: bit i set for each
 * names[i] (NULL-terminated) that has one. [-0, +0, -] */
int lemitter_has(lua_State *L, int tbl, const char *ev);
unsigned lemitter_flags(lua_State *L, int tbl, const char *const *names);

/* core.fire(obj, ev, ...): the listeners of ev of a socket or a namespace (lapp's core list). */
int lemitter_core_fire(lua_State *L);

#endif
