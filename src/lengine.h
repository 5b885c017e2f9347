/* lengine: raw Engine.IO for Lua, like Node's standalone `engine.io` package: io.engine (the
 * Socket.IO endpoint's Engine.IO server, observed), siolua.engine{} endpoints mounted beside
 * Socket.IO on the same port, their conns, and allowRequest. An endpoint's transport state is C
 * memory that outlives a VM: a hot reload hands it over to the new VM's endpoint of the same path
 * (lengine_handover), whose "connection" listeners run again for the open sessions. */
#ifndef SL_LENGINE_H
#define SL_LENGINE_H

#include <lua.h>

#include "eio.h"
#include "lenv.h"

/* Registers the metatables, siolua.engine in the table at the top (siolua) and io.engine (after
 * lnsp_open). [-0, +0, e] */
void lengine_open(lua_State *L);
/* vm serves the listening server: io.engine observes lenv's eio, its endpoints mount. */
void lengine_start(lvm_t *vm);
/* A hot reload: nw takes over old's endpoints (the same paths) and io.engine; old's handles are
 * released without running Lua; "connection" runs in nw for each open session. */
void lengine_handover(lvm_t *old, lvm_t *nw);
/* Server shutdown: closes every endpoint's sessions ("forced close", events run). */
void lengine_close(lvm_t *vm);
/* Before vm closes: its handles are released and its endpoints closed without running Lua. */
void lengine_free(lvm_t *vm);
/* The Engine.IO endpoint of the current VM whose path prefixes req's URL, or NULL. */
eio_server_t *lengine_route(lenv_t *env, const http_req_t *req);
/* Pushes io.engine's conn of the Socket.IO session s (socket.conn: one object with the one its
 * "connection" listeners got), made on first use without running "connection". [-0, +1, m] */
void lengine_push_conn(lua_State *L, eio_session_t *s);
/* allowRequest for the Socket.IO endpoint's eio (ud = the lenv_t): io.options' function decides,
 * now or later, in the current VM. */
void lengine_allow_request(eio_allow_t *a, const http_req_t *req, void *ud);

#endif
