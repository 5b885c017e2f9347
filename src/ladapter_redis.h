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
 *   core.redis_command({argv...})     id, or nil + error; the reply comes to hooks.redis_reply
 *   core.redis_local_count()          over the workers' channel: the workers running; else nothing
 * With --workers and no Redis, the same primitives run over the workers' channel (wbus.h): a
 * publish goes to every other worker, which hands it to its VM when it subscribed the channel;
 * there is no command (the server count is core.redis_local_count()). */
#ifndef SL_LADAPTER_REDIS_H
#define SL_LADAPTER_REDIS_H

#include <lua.h>

#include "lenv.h"

/* Connects env's Redis adapter (env->cfg->redis.url) in the background: env->redis is set and
 * the current VM's namespaces get Redis adapters (hooks.adapter_start("redis")). 0, or -1 (a bad
 * URL, logged). */
int ladapter_redis_start(lenv_t *env);

/* The same over the workers' channel (env->bus, set): the adapter starts at once. */
void ladapter_redis_start_bus(lenv_t *env);
/* A PUBLISH frame from another worker (channel length, channel, message), for the current VM if
 * this worker subscribed its channel. */
void ladapter_redis_bus_message(lenv_t *env, const char *p, size_t len);

int ladapter_redis_enabled(lua_State *L);
int ladapter_redis_local_count(lua_State *L);
int ladapter_redis_connected(lua_State *L);
int ladapter_redis_config(lua_State *L);
int ladapter_redis_uid(lua_State *L);
int ladapter_redis_id(lua_State *L);
int ladapter_redis_publish(lua_State *L);
int ladapter_redis_subscribe(lua_State *L);
int ladapter_redis_psubscribe(lua_State *L);
int ladapter_redis_command(lua_State *L);

#endif
