/* lreq: HTTP requests as the app sees them (allowRequest's req, conn.request, socket.handshake's
 * parts, connection_error's err.req): Lua tables built from a live request or from an Engine.IO
 * session's copy of its first one. Header names are lower-cased, as Node does. */
#ifndef SL_LREQ_H
#define SL_LREQ_H

#include <lua.h>

#include "eio.h"
#include "http.h"

/* Pushes a query string's decoded key/value pairs as a table ('+' and %XX decoded). [-0, +1, m] */
void lreq_push_query(lua_State *L, const char *p, size_t len);
/* Pushes headers as a table {name = value}. [-0, +1, m] */
void lreq_push_headers(lua_State *L, size_t n, const slice_t *names, const slice_t *values);
/* Same for an Engine.IO handshake's packed headers (eio_handshake_t.headers). [-0, +1, m] */
void lreq_push_packed_headers(lua_State *L, size_t n, const char *packed);
/* Pushes {method, url, headers, address, _query}: from a live request, or from an Engine.IO
 * session's copy of its first one. [-0, +1, m] */
void lreq_push_request(lua_State *L, const http_req_t *req);
void lreq_push_handshake_request(lua_State *L, const eio_handshake_t *hs);

#endif
