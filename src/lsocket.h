/* lsocket: the Lua handle of a Socket.IO socket (userdata "siolua.socket").
 * Ownership: C owns every socket; Lua holds handles that C keeps alive with a registry ref
 * (s->handle_ref) while the socket lives and turns into "closed" handles when it dies: their
 * methods become no-ops (emit returns false) instead of touching freed memory.
 * The userdata holds the C pointer (NULL once the socket is gone) and a copy of the id; its two
 * user values, collected with the handle, are both created on first use: the listeners table
 * (socket.on) and the private table { acks = {id -> fn}, data = {}, props = {}, auth, handshake,
 * mw, any, anyout, conn } (the prelude's core.uv). socket.x(...) and socket:x(...) both work. */
#ifndef SL_LSOCKET_H
#define SL_LSOCKET_H

#include <lua.h>

#include "sio.h"

#define LSOCKET_F_OUTGOING 1  /* sio_socket.upper_flags: the socket has onAnyOutgoing listeners */
#define LSOCKET_F_RECOVERED 2 /* ...: connection state recovery restored it (socket.recovered) */

/* The reference's reserved event names (NULL-terminated): neither a client nor the app may emit
 * them. lsocket_reserved() tells whether ev is one. */
extern const char *const lsocket_reserved_names[];
int lsocket_reserved(const char *ev);

/* Registers the metatable. [-0, +0, e] */
void lsocket_open(lua_State *L);
/* After the prelude ran: takes its socket methods and properties (hooks). [-0, +0, e] */
void lsocket_bind_prelude(lua_State *L);
/* Creates the handle of s (stored in s->handle_ref) and pushes it. [-0, +1, e] */
void lsocket_push_new(lua_State *L, sio_socket_t *s);
/* Pushes the existing handle of s. [-0, +1, -] */
void lsocket_push(lua_State *L, sio_socket_t *s);
/* Pushes the private table of the handle at ud, creating it on first use. [-0, +1, m] */
void lsocket_private(lua_State *L, int ud);
/* Stores fn (at stack[fn]) as the ack id of the acks table at stack[acks], and when it was asked
 * for (now, uv_hrtime(); at key -id-1): the round trip /metrics measures when it comes. [-0, +0, m] */
void lsocket_ack_store(lua_State *L, int acks, int fn, int64_t id, uint64_t now);
/* Calls s's handlers for an incoming EVENT or ACK; returns -1 for an invalid payload. [-0, +0, e] */
int lsocket_on_packet(lua_State *L, sio_socket_t *s, const sio_packet_t *p, rbuf_t *const *att, size_t natt);
/* Fires "disconnecting" and "disconnect" (reason) around leaving the rooms, then turns the handle
 * into a closed one and drops the ref. [-0, +0, e] */
void lsocket_on_disconnect(lua_State *L, sio_socket_t *s, const char *reason);
/* Turns the handle into a closed one and drops the ref (no events). Never raises. */
void lsocket_release(lua_State *L, sio_socket_t *s);
/* Encodes [event, args...] from stack[first..top] (ack function excluded by caller) into a
 * packet for nsp with ack id (-1 = none). Returns the packet; attachments in att/natt (at most
 * LSOCKET_MAX_ATT). [-0, +0, e] */
#define LSOCKET_MAX_ATT 64
rbuf_t *lsocket_encode(lua_State *L, int first, const char *nsp, sio_type_t type, int64_t id, rbuf_t **att,
                       int *natt);

/* The prelude's primitives (lapp's core list): core.emit(socket, volatile, ev, ack|nil, ...),
 * core.cancel_ack(socket, id), core.uv(socket[, create]),
 * core.nsp(socket), core.accept(socket), core.refuse(socket, message, data),
 * core.watch_outgoing(socket, on). */
int lsocket_core_emit(lua_State *L);
int lsocket_core_cancel_ack(lua_State *L);
int lsocket_core_uv(lua_State *L);
int lsocket_core_nsp(lua_State *L);
int lsocket_core_accept(lua_State *L);
int lsocket_core_refuse(lua_State *L);
int lsocket_core_watch_outgoing(lua_State *L);
/* core.recover(socket, session), core.pid(socket): connection state recovery (lsocket.c). */
int lsocket_core_recover(lua_State *L);
int lsocket_core_pid(lua_State *L);

#endif
