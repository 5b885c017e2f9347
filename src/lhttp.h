/* lhttp: siolua.route, HTTP endpoints answered by the app (the smallest server side of HTTP: what
 * Node's http.createServer + a path check does beside Socket.IO on one port).
 *   siolua.route("/auth/check", function(req)
 *     -- req.method ("GET", "POST", "HEAD", "OPTIONS" or "OTHER"), req.path, req.url, req.query
 *     -- (decoded), req.headers (names lower-case), req.body (string), req.address
 *     return 200, '{"ok":true}', { ["content-type"] = "application/json" }
 *   end)
 * The handler runs like any other (its own coroutine: it may wait on siolua.fetch, a database...);
 * what it returns is the answer: a status (100-599), a body (string, default empty) and headers
 * (default Content-Type: text/plain; charset=utf-8). A handler that raises, or returns no status,
 * answers 500 (logged). Paths match exactly (no query, no decoding), after the client bundle and
 * the Engine.IO paths and before the static folder; siolua.route(path, nil) removes one. A request
 * whose code is replaced by a hot reload before it answered gets 503; a body over
 * maxHttpBufferSize gets 413 without running the handler. */
#ifndef SL_LHTTP_H
#define SL_LHTTP_H

#include <lua.h>

#include "http.h"

struct lvm;

/* Adds siolua.route. [-0, +0, e] */
void lhttp_open(lua_State *L);
/* Answers req if the VM h has a route for its path (now or when the handler returns): 1; else 0
 * (req untouched). */
int lhttp_handle(struct lvm *h, http_req_t *req);

#endif
