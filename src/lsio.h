/* lsio: Socket.IO in the Lua VM - the handler sio calls (CONNECT, events, acks, disconnects,
 * dynamic namespaces, a namespace freed), each through lvm_protect into the current VM
 * (lenv_t.vms.cur), with the packet's socket as the handlers' origin; what an aborted handler
 * costs its socket (LSIO_ABORTS_MAX aborts within LSIO_ABORTS_WINDOW seconds disconnect it); and
 * the in-memory adapter's fan-out primitives (one encoding, many recipients). */
#ifndef SL_LSIO_H
#define SL_LSIO_H

#include <lua.h>

#include "lvm.h"
#include "rstore.h"
#include "sio.h"

#define LSIO_ABORTS_MAX    3  /* aborted handler calls of one socket that get it disconnected... */
#define LSIO_ABORTS_WINDOW 60 /* ...within this many seconds */

/* The handler to give sio_server_init, with ud = the lenv_t. */
extern const sio_handler_t lsio_handler;
/* Sockets as the scheduler's origins (lvm_config_t.origin). */
extern const lvm_origin_ops_t lsio_origin_ops;

/* The prelude's primitives (lapp's core list):
 *   core.broadcast(nsp, rooms|nil, except|nil, volatile, ack|nil, ev, ...): sends one encoded
 *     packet to the selected sockets (with ack, every recipient's acks get it under one id);
 *     returns how many sockets it was sent to
 *   core.select(nsp, rooms|nil, except|nil): the selected sockets' handles, a sequence
 *   core.resolving(token): true while the CONNECT of token (hooks.resolve's) waits for an answer
 *   core.resolved(token, nsp|nil): answers it (once): the client joins nsp, or "Invalid namespace" */
int lsio_core_broadcast(lua_State *L);
/* Connection state recovery's primitives (the in-memory adapter's persistSession and
 * restoreSession, over the server's rstore):
 *   core.persist(nsp, sid, pid, rooms, data_json): keeps the session of a socket that left
 *   core.restore_session(nsp, pid, offset): {sid, pid, rooms, data = JSON text, missed} taken from
 *     the store when the client's offset is still held, else nil
 *   core.recovery(): nil when recovery is off, else {skipMiddlewares = bool} */
int lsio_core_persist(lua_State *L);
int lsio_core_restore_session(lua_State *L);
int lsio_core_recovery(lua_State *L);
/* The session box of a restore_session answer at idx (its `missed`), or NULL. [-0, +0, -] */
rstore_session_t *lsio_restore_check(lua_State *L, int idx);
int lsio_core_select(lua_State *L);
int lsio_core_resolving(lua_State *L);
int lsio_core_resolved(lua_State *L);

#endif
