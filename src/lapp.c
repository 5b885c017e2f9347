/* lapp: see lapp.h. */
#include "lapp.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "adapter_redis.h"
#include "embed.h"
#include "ladmin.h"
#include "ladapter_redis.h"
#include "lemitter.h"
#include "lengine.h"
#include "lfetch.h"
#include "lhttp.h"
#include "lnsp.h"
#include "log.h"
#include "lpg.h"
#include "lredis.h"
#include "lsio.h"
#include "lsocket.h"
#include "lsqlite.h"
#include "ltimer.h"
#include "lvalue.h"
#include "lwait.h"

/* ---------------------------------------------------------------- a new VM */

/* The primitives the prelude gets as `core`, the one list (each is documented in its header).
 * Every one gets the JSON depth limit as upvalue 1 (lvalue's use it). */
static const luaL_Reg core[] = {
    /* handlers (lvm.h) */
    {"call", lvm_core_call},
    {"resume", lvm_core_resume},
    /* values (lvalue.h): JSON for hot reload's copies and the Redis adapter's requests */
    {"json_encode", lvalue_core_json_encode},
    {"json_decode", lvalue_core_json_decode},
    {"value_mark", lvalue_core_value_mark},
    /* sockets (lsocket.h) */
    {"emit", lsocket_core_emit},
    {"cancel_ack", lsocket_core_cancel_ack},
    {"fire", lemitter_core_fire}, /* (lemitter.h) the listeners of a socket or a namespace */
    {"uv", lsocket_core_uv},
    {"nsp", lsocket_core_nsp},
    {"accept", lsocket_core_accept},
    {"refuse", lsocket_core_refuse},
    {"watch_outgoing", lsocket_core_watch_outgoing},
    /* namespaces and fan-out (lnsp.h, lsio.h) */
    {"mark_child", lnsp_core_mark_child},
    {"namespaces", lnsp_core_namespaces},
    {"resolving", lsio_core_resolving},
    {"resolved", lsio_core_resolved},
    {"broadcast", lsio_core_broadcast},
    {"select", lsio_core_select},
    {"persist", lsio_core_persist},
    {"restore_session", lsio_core_restore_session},
    {"recovery", lsio_core_recovery},
    {"recover", lsocket_core_recover},
    {"pid", lsocket_core_pid},
    /* the Redis adapter (ladapter_redis.h; msgpack: lvalue.h) */
    {"redis_enabled", ladapter_redis_enabled},
    {"redis_connected", ladapter_redis_connected},
    {"redis_config", ladapter_redis_config},
    {"redis_uid", ladapter_redis_uid},
    {"redis_id", ladapter_redis_id},
    {"redis_publish", ladapter_redis_publish},
    {"redis_subscribe", ladapter_redis_subscribe},
    {"redis_psubscribe", ladapter_redis_psubscribe},
    {"redis_command", ladapter_redis_command},
    {"redis_local_count", ladapter_redis_local_count},
    {"msgpack_encode", lvalue_core_msgpack_encode},
    {"msgpack_decode", lvalue_core_msgpack_decode},
    /* the Admin UI (ladmin.h) */
    {"admin_bcrypt_valid", ladmin_core_bcrypt_valid},
    {"admin_bcrypt_check", ladmin_core_bcrypt_check},
    {"admin_counters", ladmin_core_counters},
    {"admin_process", ladmin_core_process},
    {"admin_now", ladmin_core_now},
    {"admin_session_id", ladmin_core_session_id},
    {"admin_watch_rooms", ladmin_core_watch_rooms},
    {"admin_cli", ladmin_core_cli},
    {"admin_ui", ladmin_core_ui},
    {NULL, NULL},
};

/* The prelude files (lua/, embedded), in the order they run: each may use what the earlier ones
 * made. */
static const char *const prelude[] = {"prelude.lua", "adapter.lua", "adapter_redis.lua", "admin.lua", NULL};

/* [-0, +0, e] Opens the bindings and runs the prelude, in protected mode (lapp_vm_new). */
static int open_k(lua_State *L)
{
    lenv_t *env = lenv_get(L);
    int siolua, core_t, hooks, lib;
    /* siolua (also package.loaded.siolua), with the values' functions: null, binary, array... */
    lua_newtable(L);
    siolua = lua_gettop(L);
    lvalue_open(L);
    lua_pushvalue(L, siolua);
    lua_setglobal(L, "siolua");
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_pushvalue(L, siolua);
    lua_setfield(L, -2, "siolua");
    lua_pop(L, 1);

    /* the bindings, in this order: io is made by lnsp, io.engine and siolua.engine by lengine */
    ltimer_open(L);  /* setTimeout... (globals and siolua) */
    lsocket_open(L);
    lnsp_open(L);    /* io */
    lengine_open(L); /* io.engine, siolua.engine */
    /* handlers that talk to the world: the waits they share, then each client */
    lwait_open(L);
    lredis_open(L);  /* siolua.redis */
    lsqlite_open(L); /* siolua.sqlite */
    lfetch_open(L);  /* siolua.fetch */
    lpg_open(L);     /* siolua.pg */
    lhttp_open(L);   /* siolua.route */
    lua_settop(L, siolua);

    /* what the prelude files get (...), all out of the app's reach: the primitives, the hooks C
     * calls (in the registry), and a table for what the files share */
    lua_newtable(L);
    core_t = lua_gettop(L);
    lua_pushinteger(L, env->cfg->max_json_depth);
    luaL_setfuncs(L, core, 1);
    lua_newtable(L);
    hooks = lua_gettop(L);
    lua_pushvalue(L, hooks);
    lvm_set_hooks(L);
    lua_newtable(L);
    lib = lua_gettop(L);
    lua_newtable(L);
    for (int i = 0; lsocket_reserved_names[i]; i++) { /* for the prelude's check_event */
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, lsocket_reserved_names[i]);
    }
    lua_setfield(L, lib, "reserved");
    for (int i = 0; prelude[i] != NULL; i++) {
        const embed_file_t *f = embed_find(embed_prelude, prelude[i], strlen(prelude[i]));
        if (f == NULL)
            return luaL_error(L, "prelude file %s is not embedded", prelude[i]);
        if (luaL_loadbufferx(L, f->data, f->len, f->name, "t") != LUA_OK)
            return lua_error(L);
        lua_pushvalue(L, core_t);
        lua_pushvalue(L, hooks);
        lua_pushvalue(L, lib);
        lua_call(L, 3, 0);
    }
    lsocket_bind_prelude(L);
    lnsp_bind_prelude(L);
    if (env->redis != NULL || env->bus != NULL) { /* a hot reload of a server with a Redis adapter
                                                     (or the workers' channel): the new code's too */
        lvm_push_hook(L, "adapter_start");
        lua_pushliteral(L, "redis");
        lua_call(L, 1, 0);
    }
    return 0;
}

lvm_t *lapp_vm_new(lapp_t *a)
{
    const sl_config_t *cfg = a->env.cfg;
    lvm_config_t c = {
        .mem_limit = cfg->lua_memory_limit,
        .budget_ms = cfg->handler_timeout,
        .slice_ms = cfg->handler_slice,
        .loop = &a->env.vms,
        .origin = &lsio_origin_ops,
        .ud = &a->env,
        .metrics = a->env.metrics,
    };
    lvm_t *vm = lvm_new(&c);
    if (vm != NULL && lvm_protect(vm, open_k, NULL, "siolua's Lua set-up") != 0) {
        lapp_vm_free(vm);
        return NULL;
    }
    return vm;
}

void lapp_vm_free(lvm_t *vm)
{
    if (vm == NULL)
        return;
    if (((lenv_t *)vm->ud)->rooms_vm == vm)
        ((lenv_t *)vm->ud)->rooms_vm = NULL;
    ltimer_close_all(vm);
    lwait_close_all(vm); /* what the app opened: clients, databases */
    lengine_free(vm);    /* raw Engine.IO handles, before the VM goes */
    lvm_free(vm);
}

/* ---------------------------------------------------------------- siolua.stash */

typedef struct {
    char *json; /* out of export, into import (malloc'd) */
} stash_t;

static int export_stash_k(lua_State *L)
{
    stash_t *st = lua_touserdata(L, 1);
    size_t len;
    lvm_push_hook(L, "export_stash");
    lua_call(L, 0, 1);
    const char *s = lua_tolstring(L, -1, &len);
    st->json = s ? xstrndup(s, len) : NULL;
    return 0;
}

static int import_stash_k(lua_State *L)
{
    stash_t *st = lua_touserdata(L, 1);
    lvm_push_hook(L, "import_stash");
    lua_pushstring(L, st->json);
    lua_call(L, 1, 0);
    return 0;
}

int lapp_carry_stash(lvm_t *from, lvm_t *to)
{
    stash_t st = {NULL};
    int rc = -1;
    if (lvm_protect(from, export_stash_k, &st, "exporting siolua.stash") == 0 && st.json != NULL)
        rc = lvm_protect(to, import_stash_k, &st, "importing siolua.stash");
    free(st.json);
    return rc;
}

/* ---------------------------------------------------------------- serving */

void lapp_init(lapp_t *a, uv_loop_t *loop, sl_config_t *cfg, sio_server_t *sio, eio_server_t *eio,
               tq_clock_t *clock, void (*close)(void *ud), void *close_ud)
{
    memset(a, 0, sizeof(*a));
    a->env.loop = loop;
    a->env.cfg = cfg;
    a->env.sio = sio;
    a->env.eio = eio;
    a->env.clock = clock;
    a->env.close = close;
    a->env.close_ud = close_ud;
    lvm_loop_start(&a->env.vms, loop);
}

const sio_handler_t *lapp_sio_handler(void)
{
    return &lsio_handler;
}

void lapp_serve(lapp_t *a, lvm_t *vm)
{
    a->env.vms.cur = vm;
}

/* hooks.loaded(): the app's top level ran in this VM (lua/admin.lua starts the Admin UI then, with
 * the command line's options over io.instrument{}'s). */
static int loaded_k(lua_State *L)
{
    lvm_push_hook(L, "loaded");
    lua_call(L, 0, 0);
    return 0;
}

int lapp_listening(lapp_t *a)
{
    if (lvm_protect(a->env.vms.cur, loaded_k, NULL, "the app's set-up") != 0)
        return -1;
    a->env.listening = 1;
    a->env.eio->allow_request = lengine_allow_request;
    a->env.eio->allow_ud = &a->env;
    lengine_start(a->env.vms.cur); /* io.engine events, siolua.engine endpoints */
    /* the Redis adapter (ladapter_redis.h): connects in the background, survives reloads */
    if (a->env.cfg->redis.url != NULL && ladapter_redis_start(&a->env) != 0)
        return -1;
    /* --workers without Redis: the same protocol over the workers' channel */
    if (a->env.cfg->redis.url == NULL && a->env.bus != NULL)
        ladapter_redis_start_bus(&a->env);
    return 0;
}

eio_server_t *lapp_route(lapp_t *a, const http_req_t *req)
{
    return lengine_route(&a->env, req);
}

int lapp_http_route(lapp_t *a, http_req_t *req)
{
    return lhttp_handle(a->env.vms.cur, req);
}

void lapp_stop(lapp_t *a)
{
    a->env.closing = 1;
    lvm_loop_close(&a->env.vms); /* the disconnect handlers that follow run to their end */
}

void lapp_close(lapp_t *a)
{
    adapter_redis_close(a->env.redis);
    if (a->env.vms.cur == NULL)
        return;
    ltimer_close_all(a->env.vms.cur);
    lwait_close_all(a->env.vms.cur); /* what the app opened: clients, databases */
    lengine_close(a->env.vms.cur);   /* siolua.engine endpoints */
}

void lapp_free(lapp_t *a)
{
    adapter_redis_free(a->env.redis);
    a->env.redis = NULL;
    lapp_vm_free(a->env.vms.cur);
    a->env.vms.cur = NULL;
}

/* ---------------------------------------------------------------- the swap */

/* The sockets of a swap, in batches: one protected call per VM instead of several per socket. */
typedef struct {
    sio_socket_t **v;
    size_t n;
    char **json; /* per socket: what it keeps (malloc'd JSON), or NULL */
} batch_t;

static int export_all_k(lua_State *L)
{
    batch_t *b = lua_touserdata(L, 1);
    lvm_push_hook(L, "export_all");
    lua_createtable(L, (int)b->n, 0);
    for (size_t i = 0; i < b->n; i++) {
        if (b->v[i]->state == SIO_S_CLOSED)
            continue;
        lsocket_push(L, b->v[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_call(L, 1, 1);
    for (size_t i = 0; i < b->n; i++) {
        size_t len;
        lua_rawgeti(L, -1, (lua_Integer)i + 1);
        const char *s = lua_tolstring(L, -1, &len);
        if (s != NULL)
            b->json[i] = xstrndup(s, len);
        lua_pop(L, 1);
    }
    return 0;
}

static int release_all_k(lua_State *L)
{
    batch_t *b = lua_touserdata(L, 1);
    for (size_t i = 0; i < b->n; i++)
        lsocket_release(L, b->v[i]);
    return 0;
}

/* In the new VM: every socket gets its handle first (so none is left without one, whatever a
 * hook does), then what it kept. */
static int adopt_all_k(lua_State *L)
{
    batch_t *b = lua_touserdata(L, 1);
    for (size_t i = 0; i < b->n; i++) {
        if (b->v[i]->state == SIO_S_CLOSED)
            continue;
        lsocket_push_new(L, b->v[i]);
        lua_pop(L, 1);
    }
    for (size_t i = 0; i < b->n; i++) {
        if (b->v[i]->state == SIO_S_CLOSED)
            continue;
        lvm_push_hook(L, "adopt");
        lsocket_push(L, b->v[i]);
        if (b->json[i] != NULL)
            lua_pushstring(L, b->json[i]);
        else
            lua_pushnil(L);
        lua_pushboolean(L, b->v[i]->state == SIO_S_CONNECTED);
        if (lua_pcall(L, 3, 0, 0) != LUA_OK) {
            log_with(LOG_ERROR, LOG_FIELDS(LOG_S("sid", b->v[i]->id), LOG_S("error", lua_tostring(L, -1))),
                     "siolua: reload: socket %s: %s", b->v[i]->id, lua_tostring(L, -1));
            lua_pop(L, 1);
        }
    }
    return 0;
}

typedef struct {
    sio_socket_t *s;
    const char *hook;
    int generation;
} take_t;

/* The new code takes a socket: hooks.reconnect (admitted: "connection" again) or hooks.connect
 * (still being admitted: the middlewares, then "connection"), named by t->hook. */
static int take_socket_k(lua_State *L)
{
    take_t *t = lua_touserdata(L, 1);
    lvm_push_hook(L, t->hook);
    lnsp_push(L, t->s->nsp);
    lsocket_push(L, t->s);
    lua_call(L, 2, 0);
    return 0;
}

static int reload_hook_k(lua_State *L)
{
    take_t *t = lua_touserdata(L, 1);
    lvm_push_hook(L, "reload");
    lua_pushinteger(L, t->generation);
    lua_call(L, 1, 0);
    return 0;
}

size_t lapp_swap(lapp_t *a, lvm_t *nw, int generation)
{
    lvm_t *old = a->env.vms.cur;
    sio_socket_t **v;
    size_t n = sio_all_sockets(a->env.sio, &v);
    batch_t b = {v, n, xcalloc(n ? n : 1, sizeof(char *))};
    take_t rh = {.generation = generation};
    lvm_protect(nw, loaded_k, NULL, "the app's set-up"); /* (a failure is logged; the rest goes on) */
    /* every socket gets a handle in the new VM (the collectors wait meanwhile) */
    lua_gc(old->L, LUA_GCSTOP);
    lua_gc(nw->L, LUA_GCSTOP);
    lvm_protect(old, export_all_k, &b, "exporting the sockets");
    lvm_protect(old, release_all_k, &b, "releasing the sockets");
    lvm_protect(nw, adopt_all_k, &b, "re-binding the sockets");
    for (size_t i = 0; i < n; i++)
        free(b.json[i]);
    free(b.json);
    lua_gc(nw->L, LUA_GCRESTART);
    /* the switch: sio's handler, eio's allowRequest, the adapter and the scheduler read it */
    a->env.vms.cur = nw;
    ltimer_close_all(old);
    lengine_handover(old, nw); /* endpoints and io.engine: "connection" runs in nw */
    lapp_vm_free(old);
    /* the new code takes over: connection listeners run again (middlewares only for sockets that
     * were still being admitted) */
    for (size_t i = 0; i < n; i++) {
        take_t t = {.s = v[i], .hook = v[i]->state == SIO_S_CONNECTED ? "reconnect" : "connect"};
        if (v[i]->state != SIO_S_CLOSED)
            lvm_protect(nw, take_socket_k, &t, "connection (reload)");
    }
    sio_release(v, n);
    lvm_protect(nw, reload_hook_k, &rh, "reload listener");
    return n;
}
