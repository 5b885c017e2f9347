/* lnsp: the global `io` (the server and its main namespace "/") and namespace objects.
 * A namespace object is a table with metatable "siolua.namespace" whose private state (the C
 * namespace) lives in a registry table keyed by the object; its methods are the prelude's (hooks)
 * and, for io, of, options and close. For `io`, other keys fall back to Lua's own io library, so
 * io.open, io.write, io.lines still work. */
#ifndef SL_LNSP_H
#define SL_LNSP_H

#include <lua.h>

#include "sio.h"

/* Registers the metatable and the global `io` (the namespace "/" of lenv's sio). [-0, +0, e] */
void lnsp_open(lua_State *L);
/* After the prelude ran: takes its namespace methods and properties (hooks). [-0, +0, e] */
void lnsp_bind_prelude(lua_State *L);
/* Pushes the namespace object for nsp (created on first use). [-0, +1, e] */
void lnsp_push(lua_State *L, sio_nsp_t *nsp);
/* The C namespace of the namespace object at idx (raises if it is not one, or was removed). */
sio_nsp_t *lnsp_check(lua_State *L, int idx);
/* nsp is being freed: its object no longer reaches it (methods raise), and io.of(name) makes a
 * new one. Never raises. */
void lnsp_forget(lua_State *L, sio_nsp_t *nsp);

/* core.mark_child(nsp): a dynamic namespace's child, freed once empty (cleanupEmptyChildNamespaces). */
int lnsp_core_mark_child(lua_State *L);
/* core.namespaces(): {{nsp, socketsCount}, ...} of every namespace, "/" first. */
int lnsp_core_namespaces(lua_State *L);

#endif
