/* lnsp: see lnsp.h. */
#include "lnsp.h"

#include <lauxlib.h>
#include <string.h>

#include "lemitter.h"
#include "lenv.h"
#include "log.h"

#define NSP_MT "siolua.namespace"

static const char STATE_KEY = 's'; /* registry: object -> {ptr = nsp} */
static const char EVENTS_KEY = 'e'; /* registry: object -> its listeners (weak keys: parents too) */
static const char OBJS_KEY = 'o';  /* registry: nsp name -> object */
static const char LUAIO_KEY = 'i'; /* registry: Lua's io library */

/* Pushes the state table of the namespace object at idx. [-0, +1, -] */
static void push_state(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &STATE_KEY);
    lua_pushvalue(L, idx);
    lua_rawget(L, -2);
    lua_remove(L, -2);
}

sio_nsp_t *lnsp_check(lua_State *L, int idx)
{
    sio_nsp_t *nsp;
    push_state(L, idx);
    if (!lua_istable(L, -1))
        luaL_error(L, "not a namespace");
    lua_getfield(L, -1, "ptr");
    nsp = lua_touserdata(L, -1);
    lua_pop(L, 2);
    if (nsp == NULL)
        luaL_error(L, "this namespace was removed (cleanupEmptyChildNamespaces); use io.of(name) again");
    return nsp;
}

void lnsp_push(lua_State *L, sio_nsp_t *nsp)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &OBJS_KEY);
    if (lua_getfield(L, -1, nsp->name) == LUA_TTABLE) {
        lua_remove(L, -2);
        return;
    }
    lua_pop(L, 1);
    lua_createtable(L, 0, 1);
    lua_pushstring(L, nsp->name);
    lua_setfield(L, -2, "name");
    luaL_setmetatable(L, NSP_MT);
    /* state */
    lua_rawgetp(L, LUA_REGISTRYINDEX, &STATE_KEY);
    lua_pushvalue(L, -2);
    lua_createtable(L, 0, 1);
    lua_pushlightuserdata(L, nsp);
    lua_setfield(L, -2, "ptr");
    lua_rawset(L, -3);
    lua_pop(L, 1);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, nsp->name);
    lua_remove(L, -2);
}

void lnsp_forget(lua_State *L, sio_nsp_t *nsp)
{
    if (!lua_checkstack(L, 4))
        return;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &OBJS_KEY);
    if (lua_getfield(L, -1, nsp->name) == LUA_TTABLE) {
        push_state(L, -1);
        if (lua_istable(L, -1)) {
            lua_pushnil(L);
            lua_setfield(L, -2, "ptr"); /* existing key: no allocation */
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    lua_pushnil(L);
    lua_setfield(L, -2, nsp->name);
    lua_pop(L, 1);
}

/* core.resolving(token): true while the CONNECT of token (hooks.resolve's) waits for an answer. */
int lnsp_core_mark_child(lua_State *L)
{
    lnsp_check(L, 1)->removable = 1;
    return 0;
}

/* core.namespaces(): a sequence of {nsp, socketsCount}, one per namespace of the server (not the
 * parents of dynamic namespaces, which have no socket: the reference's io._nsps), "/" first. */
int lnsp_core_namespaces(lua_State *L)
{
    lua_Integer i = 0;
    lua_newtable(L);
    for (sio_nsp_t *nsp = lenv_get(L)->sio->nsps; nsp != NULL; nsp = nsp->next) {
        lua_createtable(L, 2, 0);
        lnsp_push(L, nsp);
        lua_rawseti(L, -2, 1);
        lua_pushinteger(L, (lua_Integer)nsp->nsockets);
        lua_rawseti(L, -2, 2);
        lua_rawseti(L, -2, ++i);
    }
    return 1;
}

/* ---------------------------------------------------------------- listeners (lemitter.h) */

static void nsp_table(lua_State *L, int obj, int create)
{
    obj = lua_absindex(L, obj);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &EVENTS_KEY);
    lua_pushvalue(L, obj);
    if (lua_rawget(L, -2) == LUA_TNIL && create) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, obj);
        lua_pushvalue(L, -2);
        lua_rawset(L, -4);
    }
    lua_remove(L, -2);
}

/* io.on("connect", fn) is io.on("connection", fn), as in the reference */
static const char *nsp_alias(const char *ev)
{
    return strcmp(ev, "connect") == 0 ? "connection" : ev;
}

static const lemitter_kind_t nsp_kind = {.table = nsp_table, .alias = nsp_alias, .fmt = "%s handler%s"};

/* ---------------------------------------------------------------- io */

static int n_of(lua_State *L)
{
    lenv_t *env = lenv_get(L);
    size_t len;
    const char *name;
    lvm_selfcall(L, lua_upvalueindex(1));
    if (lua_isfunction(L, 1) || (lua_type(L, 1) == LUA_TSTRING && lua_tostring(L, 1)[0] == '^')) {
        /* a dynamic namespace: a function, or a Lua pattern (a string starting with ^) */
        lvm_push_hook(L, "of_dynamic");
        lua_pushvalue(L, 1);
        lua_call(L, 1, 1);
        return 1;
    }
    name = luaL_checklstring(L, 1, &len);
    if (len == 0 || name[0] != '/')
        lua_pushfstring(L, "/%s", name), name = lua_tolstring(L, -1, &len);
    if (memchr(name, ',', len) != NULL || len > env->cfg->sio.limits.max_nsp)
        return luaL_error(L, "invalid namespace name \"%s\"", name);
    int created = sio_nsp_find(env->sio, name, len) == NULL;
    lnsp_push(L, sio_nsp_create(env->sio, name, len));
    if (created) { /* the prelude's: adapters, then io.on("new_namespace", fn) listeners */
        lvm_push_hook(L, "new_namespace");
        lua_pushvalue(L, -2);
        lua_call(L, 1, 0);
    }
    return 1;
}

/* io.close(): asks the server to shut down (lenv_t.close). */
static int n_close(lua_State *L)
{
    lenv_t *env = lenv_get(L);
    env->close(env->close_ud);
    return 0;
}

/* ---------------------------------------------------------------- options */

/* io.options{...}: the reference's option names (options.h). Command-line flags win. */
static int n_options(lua_State *L)
{
    lenv_t *env = lenv_get(L);
    int ignored = 0;
    lvm_selfcall(L, lua_upvalueindex(1));
    /* A reloaded app: the server is listening, its options are set; only allowRequest (code, not
     * configuration) is taken from the new app. */
    options_lua(L, 1, env->cfg, env->listening, &ignored);
    if (ignored > 0)
        log_info("siolua: io.options is read at start-up: %d option(s) of the reloaded app ignored "
                 "(allowRequest excepted); restart siolua to apply them", ignored);
    lua_pushvalue(L, lua_upvalueindex(1));
    return 1;
}

/* ---------------------------------------------------------------- metatable */

static const char PROPS_KEY = 'P';   /* registry: the prelude's namespace properties */
static const char METHODS_KEY = 'M'; /* registry: the prelude's namespace methods */

static const luaL_Reg io_methods[] = {{"of", n_of}, {"options", n_options}, {"close", n_close}, {NULL, NULL}};

static int nsp_index(lua_State *L)
{
    const char *k = lua_tostring(L, 2);
    int is_io;
    if (k == NULL)
        return 0;
    if (lvm_member(L, 1, &PROPS_KEY, &METHODS_KEY, k) || lemitter_method(L, 1, &nsp_kind, k))
        return 1;
    lua_getglobal(L, "io");
    is_io = lua_rawequal(L, 1, -1);
    lua_pop(L, 1);
    if (!is_io)
        return 0;
    for (const luaL_Reg *m = io_methods; m->name; m++)
        if (strcmp(k, m->name) == 0) {
            lua_pushvalue(L, 1);
            lua_pushcclosure(L, m->func, 1);
            return 1;
        }
    /* Lua's io library */
    lua_rawgetp(L, LUA_REGISTRYINDEX, &LUAIO_KEY);
    lua_getfield(L, -1, k);
    return 1;
}

void lnsp_bind_prelude(lua_State *L)
{
    lvm_bind_members(L, &PROPS_KEY, "nsp_props", &METHODS_KEY, "nsp_methods");
}

void lnsp_open(lua_State *L)
{
    lenv_t *env = lenv_get(L);
    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &STATE_KEY);
    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &OBJS_KEY);
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &EVENTS_KEY);
    lua_getglobal(L, "io");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &LUAIO_KEY);

    luaL_newmetatable(L, NSP_MT);
    lua_pushcfunction(L, nsp_index);
    lua_setfield(L, -2, "__index");
    lemitter_register(L, &nsp_kind); /* (pops the metatable) */
    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &PROPS_KEY);
    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &METHODS_KEY);

    lnsp_push(L, env->sio->nsps); /* "/" */
    lua_setglobal(L, "io");
}

