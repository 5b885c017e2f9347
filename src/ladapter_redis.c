/* ladapter_redis: see ladapter_redis.h. */
#include "ladapter_redis.h"

#include <hiredis/hiredis.h>
#include <lauxlib.h>
#include <string.h>

#include "adapter_redis.h"
#include "log.h"
#include "lredis.h"
#include "wbus.h"

/* ---------------------------------------------------------------- news, into the current VM */

typedef struct {
    const char *channel, *payload, *pattern;
    size_t clen, plen, patlen;
    int64_t id;
    const redisReply *reply;
    const char *err;
} call_t;

static int message_k(lua_State *L)
{
    call_t *a = lua_touserdata(L, 1);
    lvm_push_hook(L, "redis_message");
    if (!lua_isfunction(L, -1))
        return 0;
    lua_pushlstring(L, a->channel, a->clen);
    lua_pushlstring(L, a->payload, a->plen);
    if (a->pattern != NULL)
        lua_pushlstring(L, a->pattern, a->patlen);
    else
        lua_pushnil(L);
    lua_call(L, 3, 0);
    return 0;
}

static int reply_k(lua_State *L)
{
    call_t *a = lua_touserdata(L, 1);
    lvm_push_hook(L, "redis_reply");
    if (!lua_isfunction(L, -1))
        return 0;
    lua_pushinteger(L, (lua_Integer)a->id);
    if (a->reply != NULL)
        lredis_push_reply(L, a->reply); /* siolua.redis's mapping (PUBSUB NUMSUB: flat, never nil) */
    else
        lua_pushnil(L);
    if (a->err != NULL)
        lua_pushstring(L, a->err);
    else
        lua_pushnil(L);
    lua_call(L, 3, 0);
    return 0;
}

static int start_k(lua_State *L)
{
    lvm_push_hook(L, "adapter_start");
    lua_pushliteral(L, "redis");
    lua_call(L, 1, 0);
    return 0;
}

static void on_message(const char *channel, size_t clen, const char *payload, size_t plen, const char *pattern,
                       size_t patlen, void *ud)
{
    lenv_t *env = ud;
    call_t a = {.channel = channel, .clen = clen, .payload = payload, .plen = plen, .pattern = pattern,
                .patlen = patlen};
    if (env->vms.cur != NULL)
        lvm_protect(env->vms.cur, message_k, &a, "redis adapter message");
}

static void on_reply(int64_t id, const redisReply *reply, const char *err, void *ud)
{
    lenv_t *env = ud;
    call_t a = {.id = id, .reply = reply, .err = err};
    if (env->vms.cur != NULL)
        lvm_protect(env->vms.cur, reply_k, &a, "redis adapter reply");
}

static const adapter_redis_handler_t handler = {on_message, on_reply};

int ladapter_redis_start(lenv_t *env)
{
    env->redis = adapter_redis_start(env->loop, &env->cfg->redis, &handler, env);
    if (env->redis == NULL)
        return -1;
    /* the Lua side subscribes its namespaces' channels (kept until the connection is up) */
    lvm_protect(env->vms.cur, start_k, NULL, "redis adapter start");
    return 0;
}

void ladapter_redis_start_bus(lenv_t *env)
{
    adapter_redis_random_id(env->bus_uid, 6);
    lvm_protect(env->vms.cur, start_k, NULL, "workers adapter start");
}

void ladapter_redis_bus_message(lenv_t *env, const char *p, size_t len)
{
    const char *pattern;
    size_t clen, patlen;
    if (len < 2 || env->bus == NULL || env->redis != NULL)
        return;
    clen = wbus_get16(p);
    if (clen > len - 2 || !wbus_match(env->bus, p + 2, clen, &pattern, &patlen))
        return;
    on_message(p + 2, clen, p + 2 + clen, len - 2 - clen, pattern, patlen, env);
}

/* ---------------------------------------------------------------- primitives */

/* The environment of L's VM: NULL in a bare state (the unit tests'). */
static lenv_t *env_of(lua_State *L)
{
    lvm_t *vm = lvm_get(L);
    return vm != NULL ? vm->ud : NULL;
}

static adapter_redis_t *get(lua_State *L)
{
    lenv_t *env = env_of(L);
    return env != NULL ? env->redis : NULL;
}

/* The workers' channel when the adapter runs over it (no Redis), else NULL. */
static wbus_t *bus(lua_State *L)
{
    lenv_t *env = env_of(L);
    return env != NULL && env->redis == NULL ? env->bus : NULL;
}

int ladapter_redis_enabled(lua_State *L)
{
    lua_pushboolean(L, get(L) != NULL || bus(L) != NULL);
    return 1;
}

int ladapter_redis_connected(lua_State *L)
{
    adapter_redis_t *r = get(L);
    wbus_t *b = bus(L);
    lua_pushboolean(L, (r != NULL && adapter_redis_connected(r)) || (b != NULL && b->open));
    return 1;
}

int ladapter_redis_local_count(lua_State *L)
{
    if (bus(L) == NULL)
        return 0;
    lua_pushinteger(L, env_of(L)->workers_live > 0 ? env_of(L)->workers_live : 1);
    return 1;
}

int ladapter_redis_config(lua_State *L)
{
    lenv_t *env = env_of(L);
    const adapter_redis_config_t *cfg = env != NULL ? &env->cfg->redis : NULL;
    lua_createtable(L, 0, 3);
    lua_pushstring(L, cfg != NULL && cfg->key != NULL ? cfg->key : "socket.io");
    lua_setfield(L, -2, "key");
    lua_pushinteger(L, cfg != NULL && cfg->requests_timeout > 0 ? (lua_Integer)cfg->requests_timeout : 5000);
    lua_setfield(L, -2, "requestsTimeout");
    lua_pushboolean(L, cfg != NULL && cfg->specific_response);
    lua_setfield(L, -2, "publishOnSpecificResponseChannel");
    return 1;
}

int ladapter_redis_uid(lua_State *L)
{
    adapter_redis_t *r = get(L);
    if (r == NULL && bus(L) == NULL)
        return 0;
    lua_pushstring(L, r != NULL ? adapter_redis_uid(r) : env_of(L)->bus_uid);
    return 1;
}

int ladapter_redis_id(lua_State *L)
{
    char id[7];
    adapter_redis_random_id(id, 6);
    lua_pushstring(L, id);
    return 1;
}

int ladapter_redis_publish(lua_State *L)
{
    adapter_redis_t *r = get(L);
    size_t clen, plen;
    const char *ch = luaL_checklstring(L, 1, &clen);
    const char *pl = luaL_checklstring(L, 2, &plen);
    wbus_t *b = bus(L);
    if (b != NULL && clen <= 0xffff) {
        lenv_t *env = env_of(L);
        char head[2];
        buf_t msg = BUF_INIT; /* (one copy here, one into the frame: small next to the fan-out) */
        wbus_put16(head, (unsigned)clen);
        buf_append(&msg, head, 2);
        buf_append(&msg, ch, clen);
        lua_pushboolean(L, wbus_send(b, WBUS_PUBLISH, (unsigned)env->worker, WBUS_ALL, msg.base, msg.len, pl, plen,
                                     NULL, NULL, NULL) == 0);
        buf_free(&msg);
        return 1;
    }
    lua_pushboolean(L, r != NULL && adapter_redis_publish(r, ch, clen, pl, plen));
    return 1;
}

static int do_subscribe(lua_State *L, int pattern)
{
    adapter_redis_t *r = get(L);
    size_t n;
    const char *name = luaL_checklstring(L, 1, &n);
    if (bus(L) != NULL) {
        wbus_subscribe(bus(L), name, n, pattern);
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_pushboolean(L, r != NULL && adapter_redis_subscribe(r, name, n, pattern) == 0);
    return 1;
}

int ladapter_redis_subscribe(lua_State *L) { return do_subscribe(L, 0); }
int ladapter_redis_psubscribe(lua_State *L) { return do_subscribe(L, 1); }

/* core.redis_command({argv...}): id, or nil + err. At most 16 arguments. */
int ladapter_redis_command(lua_State *L)
{
    adapter_redis_t *r = get(L);
    const char *argv[16];
    size_t lens[16];
    const char *err = "not connected to Redis";
    int64_t id = -1;
    int argc;
    luaL_checktype(L, 1, LUA_TTABLE);
    argc = (int)lua_rawlen(L, 1);
    luaL_argcheck(L, argc > 0 && argc <= 16, 1, "1 to 16 arguments");
    for (int i = 0; i < argc; i++) {
        lua_rawgeti(L, 1, i + 1);
        argv[i] = luaL_checklstring(L, -1, &lens[i]); /* the table keeps the strings alive */
        lua_pop(L, 1);
    }
    if (r != NULL)
        id = adapter_redis_command(r, argc, argv, lens, &err);
    if (id < 0) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    lua_pushinteger(L, (lua_Integer)id);
    return 1;
}
