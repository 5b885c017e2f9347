/* ladmin: the C side of the Admin UI (lua/admin.lua, the reference's @socket.io/admin-ui server on
 * the public API): bcrypt password checks through libxcrypt on libuv's thread pool (a check costs
 * ~50 ms of CPU at cost 10: never on the loop), the counters its aggregated events sample once a
 * second (metrics.h: nothing is counted per message for the Admin UI), the rooms watch (socket
 * joins and leaves reported to hooks.room), the process facts of server_stats, and the command
 * line's options (options_admin_t). The UI's files are the server's (server.c). */
#ifndef SL_LADMIN_H
#define SL_LADMIN_H

#include <lua.h>

#include "lenv.h"

/* The prelude's primitives (lapp's core list):
 * core.admin_bcrypt_valid(hash) -> boolean: hash is a bcrypt hash ($2a$, $2b$ or $2y$, cost 4-31,
 *   60 characters) that libxcrypt accepts.
 * core.admin_bcrypt_check(password, hash) -> boolean: suspends the handler (lwait.h; timeout 10 s)
 *   while a thread computes bcrypt(password, salt of hash) and compares it with hash in constant
 *   time. A password over 1024 bytes is false at once. Raises outside a handler.
 * core.admin_counters() -> packetsIn, packetsOut, bytesIn, bytesOut: the server's counters so far.
 * core.admin_process() -> hostname, pid, uptime (seconds since the process started, a float).
 * core.admin_now() -> milliseconds since the epoch (the wall clock: the UI's dates).
 * core.admin_session_id() -> 16 hex digits from OpenSSL's RAND_bytes (the reference's session ids).
 * core.admin_watch_rooms(on): this VM's hooks.room(socket, room, joined) is called after each
 *   join and leave that changed a socket's rooms (lsocket.c), until the VM goes.
 * core.admin_cli() -> the command line's options: { auth = "USER:HASH" | false,
 *   readonly, mode, serverId, namespaceName, uiPath, given = {key = true} }.
 * core.admin_ui(path | nil): the UI's files are served at path (unless --admin-ui-path was given).
 *   Returns whether the files were built in. */
int ladmin_core_bcrypt_valid(lua_State *L);
int ladmin_core_bcrypt_check(lua_State *L);
int ladmin_core_counters(lua_State *L);
int ladmin_core_process(lua_State *L);
int ladmin_core_now(lua_State *L);
int ladmin_core_session_id(lua_State *L);
int ladmin_core_watch_rooms(lua_State *L);
int ladmin_core_cli(lua_State *L);
int ladmin_core_ui(lua_State *L);

/* Whether hooks.room must be called in L's VM (lsocket.c, on a join or leave). [-0, +0, -] */
static inline int ladmin_watching_rooms(lua_State *L)
{
    lenv_t *env = lenv_get(L);
    return env->rooms_vm != NULL && env->rooms_vm == lvm_get(L);
}
/* Calls hooks.room(socket at ud, room at stack[room], joined). [-0, +0, e] */
void ladmin_room(lua_State *L, int ud, int room, int joined);

#endif
