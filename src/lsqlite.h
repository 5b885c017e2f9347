/* lsqlite: siolua.sqlite, an embedded SQLite database for app handlers (better-sqlite3's
 * run/all results, node-sqlite's async calls).
 *   local db = siolua.sqlite("chat.db" [, { timeout = 10000, maxResultBytes = 16 MiB,
 *                                          synchronous = "NORMAL" }])
 *   db:exec(sql)              a script: every statement runs (no parameters)
 *   db:exec(sql, ...)         one statement, parameters bound to its ? -> {changes =, lastInsertRowid =}
 *   db:query(sql, ...)        one statement -> rows: a sequence of {column = value}, columns in order
 *   db:close()
 * Values: INTEGER <-> integer, REAL <-> float, TEXT <-> string, BLOB <-> siolua.binary,
 * NULL <-> siolua.null (nil parameters too); a boolean binds as 1/0, a table as its JSON text.
 * Each database has one connection, in WAL mode (synchronous NORMAL by default: no fsync per
 * commit, never corrupt; "FULL" makes each commit survive a power loss), used by one thread of
 * its own: statements run in the order they were called, off the loop, one at a time (one
 * writer). A statement past its timeout is interrupted (SQLite's progress handler) and the handler
 * gets the timeout error; a lock held by another connection is waited for within the same
 * timeout. No thread exists before siolua.sqlite() is called; the file is opened by that thread
 * (an error then comes with the first call). Paths are relative to the server's working
 * directory; ":memory:" works. */
#ifndef SL_LSQLITE_H
#define SL_LSQLITE_H

#include <lua.h>

/* Adds siolua.sqlite. [-0, +0, e] */
void lsqlite_open(lua_State *L);

#endif
