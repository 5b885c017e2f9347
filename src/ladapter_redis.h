/* ladapter_redis: the Redis adapter's binding - the primitives lua/adapter_redis.lua (the protocol) uses
 * over the connections of adapter_redis.h, and the connections' news handed to the CURRENT VM (a hot
 * reload replaces it; the connections and their subscriptions stay) through lvm_protect:
 * hooks.redis_message(channel, payload, pattern|nil) and hooks.redis_reply(id, reply|nil, err|nil).
 * The primitives (lapp's core list), without a Redis adapter answering as a lone node:
 *   core.redis_enabled()              true once the server runs with a Redis adapter
 *   core.redis_connected()            true while both connections are up
 *   core.redis_config()               {key =, requestsTimeout =, publishOnSpecificResponseChannel =}
 *   core.redis_uid()                  this node's uid (6 characters, fixed for the process)
 *   core.redis_id()                   a new random id (6 characters) for requests
 *   core.redis_publish(channel, s)    true if queued, false if dropped (not connected, over limit)
 *   core.redis_subscribe(channel)     core.redis_psubscribe(pattern): idempotent, kept across
 *                                     reconnections and hot reloads
 *   core.redis_command({argv...})     id, or nil + error; the reply comes to hooks.redis_reply */
#ifndef SL_LADAPTER_REDIS_H
#define SL_LADAPTER_REDIS_H

#include <lua.h>

#include "lenv.h"

/* Connects env's Redis adapter (env->cfg->redis.url) in the background: env->redis is set and
 * the current VM's namespaces get Redis adapters (hooks.adapter_start("redis")). 0, or -1 (a bad
 * URL, logged). */
int ladapter_redis_start(lenv_t *env);

int ladapter_redis_enabled(lua_State *L);
int ladapter_redis_connected(lua_State *L);
int ladapter_redis_config(lua_State *L);
int ladapter_redis_uid(lua_State *L);
int ladapter_redis_id(lua_State *L);
int ladapter_redis_publish(lua_State *L);
int ladapter_redis_subscribe(lua_State *L);
int ladapter_redis_psubscribe(lua_State *L);
int ladapter_redis_command(lua_State *L);

#endif
