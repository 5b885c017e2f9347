/* adapter_redis: the Redis adapter's C half - two hiredis connections (publish/commands and
 * subscribe) on the libuv loop, reconnection with backoff, and msgpack <-> Lua values. The
 * protocol itself (channels, uid, requests, responses), wire-compatible with the Node
 * @socket.io/redis-adapter and @socket.io/redis-emitter, is in lua/adapter_redis.lua on top of the
 * prelude's primitives defined here (lapp's core list):
 *   core.redis_enabled()              true once the server runs with a Redis adapter
 *   core.redis_connected()            true while the publishing connection is up
 *   core.redis_config()               {key =, requestsTimeout =, publishOnSpecificResponseChannel =}
 *   core.redis_uid()                  this node's uid (6 characters, fixed for the process)
 *   core.redis_id()                   a new random id (6 characters) for requests
 *   core.redis_publish(channel, s)    true if queued, false if dropped (not connected, over limit)
 *   core.redis_subscribe(channel)     core.redis_psubscribe(pattern): idempotent, kept across
 *                                     reconnections and hot reloads
 *   core.redis_command({argv...})     id, or nil + error; the reply comes to hooks.redis_reply(id,
 *                                     reply|nil, err|nil)
 *   core.msgpack_encode(v)            bytes; core.msgpack_decode(bytes): value (see adapter_redis.c)
 * Messages go to the CURRENT VM (env->vms.cur, replaced by hot reloads) through lvm_protect:
 * hooks.redis_message(channel, payload, pattern|nil). The connections live in the lenv_t, so a
 * reload keeps them and their subscriptions. */
#ifndef SL_ADAPTER_REDIS_H
#define SL_ADAPTER_REDIS_H

#include <stdint.h>

struct lua_State;
struct lenv;

typedef struct {
    char *url;                 /* redis://[:password@]host[:port][/db]; NULL = in-memory adapter */
    char *key;                 /* channel prefix, the Node adapter's `key`; NULL = "socket.io" */
    uint64_t requests_timeout; /* ms to wait for the other nodes' answers (`requestsTimeout`); 0 = 5000 */
    int specific_response;     /* answer on key-response#nsp#uid# (`publishOnSpecificResponseChannel`) */
} adapter_redis_config_t;

typedef struct adapter_redis adapter_redis_t;

/* Starts the adapter of env (env->cfg->redis.url set, a VM serving): connects in the background
 * and calls hooks.adapter_start("redis") in the VM. Returns 0, or -1 (bad URL, logged). env->redis is set. */
int adapter_redis_start(struct lenv *env);
/* Shutdown (inside the loop): no more calls into Lua, disconnects (queued publishes are flushed),
 * stops the retry timer. NULL is a no-op. */
void adapter_redis_close(adapter_redis_t *r);
/* After the loop ended: frees what is left. NULL is a no-op. */
void adapter_redis_free(adapter_redis_t *r);

int adapter_redis_core_enabled(struct lua_State *L);
int adapter_redis_core_connected(struct lua_State *L);
int adapter_redis_core_config(struct lua_State *L);
int adapter_redis_core_uid(struct lua_State *L);
int adapter_redis_core_id(struct lua_State *L);
int adapter_redis_core_publish(struct lua_State *L);
int adapter_redis_core_subscribe(struct lua_State *L);
int adapter_redis_core_psubscribe(struct lua_State *L);
int adapter_redis_core_command(struct lua_State *L);
int adapter_redis_core_msgpack_encode(struct lua_State *L);
int adapter_redis_core_msgpack_decode(struct lua_State *L);

#endif
