/* lpg: siolua.pg, a PostgreSQL connection pool for app handlers (node-postgres's Pool), with the
 * shape of siolua.sqlite:
 *   local pg = siolua.pg("host=127.0.0.1 port=5432 dbname=chat user=app" or "postgresql://...",
 *                        [{ max = 4, timeout = 10000, maxResultBytes = 16 MiB }])
 *   pg:exec(sql)            a script (simple protocol: several statements) -> {changes =}
 *   pg:exec(sql, ...)       one statement, $1.. bound by libpq (PQsendQueryParams) -> {changes =}
 *   pg:query(sql, ...)      -> rows: a sequence of {column = value}, columns in order
 *   pg:close()
 * Values: bool <-> boolean, int2/int4/int8/oid -> integer, float4/float8 -> float, numeric ->
 * string (exact, as node-postgres), bytea <-> siolua.binary, json/jsonb -> decoded value, NULL <->
 * siolua.null (nil parameters too), anything else -> its text; a table parameter is sent as JSON.
 * Up to `max` connections are opened on demand (none before the first call); a call takes an idle
 * one or waits, in call order, for one. libpq's asynchronous API runs on the loop (a uv_poll on
 * PQsocket; rows read one at a time so that maxResultBytes is enforced as they come). A call
 * past its timeout (waiting for a connection included) fails, and the connection it ran on is
 * closed (libpq 15 has no non-blocking cancel; the server ends the query when it notices). Host
 * names are resolved by libpq in blocking mode: give an address (host=127.0.0.1, hostaddr=) or a
 * socket directory to keep the loop free. */
#ifndef SL_LPG_H
#define SL_LPG_H

#include <lua.h>

/* Adds siolua.pg. [-0, +0, e] */
void lpg_open(lua_State *L);

#endif
