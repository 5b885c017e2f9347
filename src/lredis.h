/* lredis: siolua.redis, a Redis client for app handlers (node-redis's shape), on rconn.h.
 *   local r = siolua.redis("redis://[[user]:password@]host[:port][/db]" [, { timeout = 5000 }])
 *   r:call("SET", k, v) -> "OK"          r:call("GET", k) -> string or nil
 *     arguments: strings, numbers, siolua.binary; replies: nil, integer, string (bulk and status),
 *     array -> sequence (nil inside -> siolua.null, an error inside -> an error table); an error
 *     reply raises its message ("WRONGTYPE Operation against a key ...")
 *   local p = r:pipeline()  (or r:multi(): MULTI ... EXEC)   p:call(...) ... ; p:exec() -> replies;
 *     raises {message = "N commands failed", replies =, errorIndexes =} if any failed
 *   r:subscribe(channel, fn(message, channel))   r:psubscribe(pattern, fn(message, channel, pattern))
 *   r:unsubscribe(channel)   r:punsubscribe(pattern)   r:close()   r.connected
 * Each call suspends only the calling handler (lwait.h), one connection pipelines every handler's
 * commands; subscriptions use a second connection, made on the first subscribe. A lost connection
 * is made again (backoff 100 ms .. 5 s) and the subscriptions restored; while it is down, calls
 * fail at once. No connection exists before siolua.redis() is called. */
#ifndef SL_LREDIS_H
#define SL_LREDIS_H

#include <hiredis/hiredis.h>
#include <lua.h>

/* Adds siolua.redis (the siolua table at the top of the stack is not needed). [-0, +0, e] */
void lredis_open(lua_State *L);
/* Pushes a reply as the Lua value siolua.redis gives (above; nested arrays converted to 16
 * levels); the Redis adapter (adapter_redis.c) maps its command replies with it too.
 * [-0, +1, m] */
void lredis_push_reply(lua_State *L, const redisReply *rep);

#endif
