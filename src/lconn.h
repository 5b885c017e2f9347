/* lconn: the Lua handle of an Engine.IO session, a "conn" (userdata "siolua.engine.conn"), as the
 * engine.io package's Socket: id, transport.name, readyState, upgraded, request, remoteAddress,
 * data, send/write and close (an endpoint's conns; io.engine's observe Socket.IO's sessions and
 * refuse send), and the events message, data, packet, packetCreate, flush, drain, heartbeat,
 * upgrading, upgrade, close (lemitter.h's methods).
 * Ownership: C owns sessions. A conn holds its session pointer while the session lives, is kept
 * alive by a registry ref, and is found from the session through the session's data slot (an
 * endpoint's) or observer slot (io.engine's). When the session closes, "close" fires, the pointer
 * becomes NULL and the ref is dropped: a closed conn's send returns false, close does nothing.
 * Events cost nothing for conns without listeners: C knows which events have some. */
#ifndef SL_LCONN_H
#define SL_LCONN_H

#include <lua.h>

#include "eio.h"
#include "lvm.h"

typedef struct lconn lconn_t;

/* Registers the metatable. [-0, +0, e] */
void lconn_open(lua_State *L);
/* Makes the conn of session s in L's VM and pushes it: raw for an endpoint's session (its data
 * slot), else io.engine's (its observer slot); reloaded: made by a hot reload for a session that
 * was open already. [-0, +1, m] */
lconn_t *lconn_new(lua_State *L, eio_session_t *s, int raw, int reloaded);
/* The conn of s (raw as for lconn_new), or NULL. */
lconn_t *lconn_of(const eio_session_t *s, int raw);
/* Pushes c. [-0, +1, -] */
void lconn_push(lua_State *L, const lconn_t *c);
/* The VM c was made in. */
lvm_t *lconn_vm(const lconn_t *c);
/* Turns c into a closed handle and drops its ref, without running Lua. Never raises. */
void lconn_release(lconn_t *c);

/* The session's news, each through lvm_protect in c's VM (nothing runs for events without
 * listeners): a message ("data" then "message"), a packet from the client, the upgrade, what
 * eio_session_watch asked for (EIO_W_*), and the close ("close", then c is released). */
void lconn_message(lconn_t *c, int binary, const char *data, size_t len);
void lconn_packet(lconn_t *c, const eio_packet_t *p);
void lconn_upgrade(lconn_t *c);
void lconn_notify(lconn_t *c, unsigned what, rbuf_t *const *pkts, size_t n);
void lconn_close(lconn_t *c, const char *reason);

#endif
