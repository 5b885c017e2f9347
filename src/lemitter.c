/* lemitter: see lemitter.h. A method is a C closure with upvalues (object, kind). */
#include "lemitter.h"

#include <lauxlib.h>
#include <string.h>

#include "lvm.h"

static const char KINDS_KEY = 'K'; /* registry: {metatable -> kind (light userdata)} */

void lemitter_register(lua_State *L, const lemitter_kind_t *kind)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &KINDS_KEY);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &KINDS_KEY);
    }
    lua_insert(L, -2);
    lua_pushlightuserdata(L, (void *)kind);
    lua_rawset(L, -3);
    lua_pop(L, 1);
}

/* The kind of the object at idx, or NULL. [-0, +0, -] */
static const lemitter_kind_t *kind_of(lua_State *L, int idx)
{
    const lemitter_kind_t *kind = NULL;
    if (!lua_getmetatable(L, idx))
        return NULL;
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &KINDS_KEY) == LUA_TTABLE) {
        lua_pushvalue(L, -2);
        lua_rawget(L, -2);
        kind = lua_touserdata(L, -1);
        lua_pop(L, 1);
    }
    lua_pop(L, 2);
    return kind;
}

/* ---------------------------------------------------------------- firing */

void lemitter_fire(lua_State *L, int obj, const lemitter_kind_t *kind, int evidx, const char *ev, int nargs,
                   const char *label)
{
    int args = lua_gettop(L) - nargs + 1, list, copy, t;
    lua_Integer n, k = 0;
    obj = lua_absindex(L, obj);
    if (label == NULL)
        label = kind->label != NULL ? kind->label(L, obj) : "";
    kind->table(L, obj, 0);
    if (lua_isnil(L, -1)) {
        lua_settop(L, args - 1);
        return;
    }
    if (evidx != 0) {
        lua_pushvalue(L, evidx);
        t = lua_rawget(L, -2);
    } else {
        t = lua_getfield(L, -1, ev);
    }
    if (t == LUA_TFUNCTION) {
        /* one listener: call it, no copy */
        for (int a = 0; a < nargs; a++)
            lua_pushvalue(L, args + a);
        lvm_callf(L, nargs, kind->fmt, ev, label);
        lua_settop(L, args - 1);
        return;
    }
    if (t != LUA_TTABLE) {
        lua_settop(L, args - 1);
        return;
    }
    list = lua_gettop(L);
    n = (lua_Integer)lua_rawlen(L, list);
    luaL_checkstack(L, nargs + 4, "listeners");
    lua_createtable(L, (int)n, 0);
    copy = lua_gettop(L);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, list, i);
        lua_pushvalue(L, -1);
        lua_rawseti(L, copy, i);
        if (lua_istable(L, -1))
            lua_pop(L, 1);             /* once: dropped from the list */
        else
            lua_rawseti(L, list, ++k); /* kept, compacted in place (k <= i) */
    }
    for (lua_Integer i = k + 1; i <= n; i++) {
        lua_pushnil(L);
        lua_rawseti(L, list, i);
    }
    if (k != n && kind->changed != NULL)
        kind->changed(L, obj);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, copy, i);
        if (lua_istable(L, -1)) {
            lua_getfield(L, -1, "fn");
            lua_remove(L, -2);
        }
        for (int a = 0; a < nargs; a++)
            lua_pushvalue(L, args + a);
        lvm_callf(L, nargs, kind->fmt, ev, label);
    }
    lua_settop(L, args - 1);
}

int lemitter_has(lua_State *L, int tbl, const char *ev)
{
    int t = lua_getfield(L, tbl, ev), has = t == LUA_TFUNCTION || (t == LUA_TTABLE && lua_rawlen(L, -1) > 0);
    lua_pop(L, 1);
    return has;
}

unsigned lemitter_flags(lua_State *L, int tbl, const char *const *names)
{
    unsigned f = 0;
    for (int i = 0; names[i]; i++)
        if (lemitter_has(L, tbl, names[i]))
            f |= 1u << i;
    return f;
}

int lemitter_core_fire(lua_State *L)
{
    const lemitter_kind_t *kind = kind_of(L, 1);
    const char *ev = luaL_checkstring(L, 2);
    if (kind == NULL)
        return luaL_argerror(L, 1, "an object that emits events expected");
    lemitter_fire(L, 1, kind, 2, ev, lua_gettop(L) - 2, NULL);
    return 0;
}

/* ---------------------------------------------------------------- methods */

#define OBJ lua_upvalueindex(1)

static const lemitter_kind_t *bound_kind(lua_State *L)
{
    return lua_touserdata(L, lua_upvalueindex(2));
}

/* The event argument at 1 as it is stored (the kind's alias), or NULL when absent and optional. */
static const char *event_arg(lua_State *L, const lemitter_kind_t *kind, int optional)
{
    const char *ev;
    if (optional && lua_isnoneornil(L, 1))
        return NULL;
    ev = luaL_checkstring(L, 1);
    return kind->alias != NULL ? kind->alias(ev) : ev;
}

static int changed(lua_State *L, const lemitter_kind_t *kind)
{
    if (kind->changed != NULL)
        kind->changed(L, OBJ);
    lua_pushvalue(L, OBJ);
    return 1;
}

/* on / once / prependListener / prependOnceListener (ev, fn) */
static int add(lua_State *L, int once, int prepend)
{
    const lemitter_kind_t *kind = bound_kind(L);
    const char *ev;
    int t;
    lvm_selfcall(L, OBJ);
    ev = event_arg(L, kind, 0);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    kind->table(L, OBJ, 1);
    t = lua_getfield(L, -1, ev);
    if (t == LUA_TNIL && !once) {
        lua_pushvalue(L, 2);
        lua_setfield(L, -3, ev); /* the first plain listener: stored as is */
        return changed(L, kind);
    }
    if (t != LUA_TTABLE) {
        /* nil (a one-shot first listener) or one function: make a list */
        lua_createtable(L, 2, 0);
        if (t == LUA_TFUNCTION) {
            lua_pushvalue(L, -2);
            lua_rawseti(L, -2, 1);
        }
        lua_remove(L, -2);
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, ev);
    }
    if (prepend) {
        for (lua_Integer i = (lua_Integer)lua_rawlen(L, -1); i >= 1; i--) {
            lua_rawgeti(L, -1, i);
            lua_rawseti(L, -2, i + 1);
        }
    }
    if (once) {
        lua_createtable(L, 0, 2);
        lua_pushvalue(L, 2);
        lua_setfield(L, -2, "fn");
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "once");
    } else {
        lua_pushvalue(L, 2);
    }
    lua_rawseti(L, -2, prepend ? 1 : (lua_Integer)lua_rawlen(L, -2) + 1);
    return changed(L, kind);
}

static int m_on(lua_State *L) { return add(L, 0, 0); }
static int m_once(lua_State *L) { return add(L, 1, 0); }
static int m_prepend(lua_State *L) { return add(L, 0, 1); }
static int m_prepend_once(lua_State *L) { return add(L, 1, 1); }

/* Pushes the function of the list entry at the top (a one-shot wrapper's fn). [-1, +1, -] */
static void entry_fn(lua_State *L)
{
    if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "fn");
        lua_remove(L, -2);
    }
}

/* off / removeListener (ev[, fn]): fn's last-added instance, or every listener of ev; with no ev,
 * every listener. removeAllListeners([ev]) */
static int m_off(lua_State *L)
{
    const lemitter_kind_t *kind = bound_kind(L);
    const char *ev;
    lvm_selfcall(L, OBJ);
    ev = event_arg(L, kind, 1);
    lua_settop(L, 2); /* 2: fn or nil */
    kind->table(L, OBJ, 0);
    if (lua_isnil(L, -1)) {
        lua_pushvalue(L, OBJ);
        return 1;
    }
    if (ev == NULL) {
        lua_pushnil(L);
        while (lua_next(L, -2) != 0) {
            lua_pop(L, 1);
            lua_pushvalue(L, -1);
            lua_pushnil(L);
            lua_rawset(L, -4); /* an existing field: allowed while traversing */
        }
    } else if (lua_isnil(L, 2)) {
        lua_pushnil(L);
        lua_setfield(L, -2, ev);
    } else if (lua_getfield(L, -1, ev) == LUA_TFUNCTION) {
        if (lua_rawequal(L, -1, 2)) {
            lua_pushnil(L);
            lua_setfield(L, -3, ev);
        }
    } else if (lua_istable(L, -1)) {
        lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
        for (lua_Integer i = n; i >= 1; i--) {
            lua_rawgeti(L, -1, i);
            entry_fn(L);
            int same = lua_rawequal(L, -1, 2);
            lua_pop(L, 1);
            if (same) {
                for (lua_Integer j = i; j < n; j++) {
                    lua_rawgeti(L, -1, j + 1);
                    lua_rawseti(L, -2, j);
                }
                lua_pushnil(L);
                lua_rawseti(L, -2, n);
                break;
            }
        }
    }
    return changed(L, kind);
}

static int m_remove_all(lua_State *L)
{
    lvm_selfcall(L, OBJ);
    lua_settop(L, 1); /* no fn: every listener of ev, or of every event */
    return m_off(L);
}

/* Pushes the listeners of ev of the bound object (nil when none). [-0, +1, m] */
static int listeners_of(lua_State *L)
{
    const lemitter_kind_t *kind = bound_kind(L);
    const char *ev;
    lvm_selfcall(L, OBJ);
    ev = event_arg(L, kind, 0);
    kind->table(L, OBJ, 0);
    if (lua_isnil(L, -1))
        return LUA_TNIL;
    return lua_getfield(L, -1, ev);
}

static int m_listeners(lua_State *L)
{
    int t = listeners_of(L);
    lua_Integer n = t == LUA_TTABLE ? (lua_Integer)lua_rawlen(L, -1) : 0;
    lua_createtable(L, (int)n, 0);
    if (t == LUA_TFUNCTION) {
        lua_pushvalue(L, -2);
        lua_rawseti(L, -2, 1);
    }
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, -2, i);
        entry_fn(L);
        lua_rawseti(L, -2, i);
    }
    return 1;
}

static int m_listener_count(lua_State *L)
{
    int t = listeners_of(L);
    lua_pushinteger(L, t == LUA_TFUNCTION ? 1 : t == LUA_TTABLE ? (lua_Integer)lua_rawlen(L, -1) : 0);
    return 1;
}

static int m_event_names(lua_State *L)
{
    const lemitter_kind_t *kind = bound_kind(L);
    lua_Integer n = 0;
    lvm_selfcall(L, OBJ);
    lua_newtable(L);
    kind->table(L, OBJ, 0);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return 1;
    }
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) {
        int has = lua_isfunction(L, -1) || (lua_istable(L, -1) && lua_rawlen(L, -1) > 0);
        lua_pop(L, 1);
        if (has) {
            lua_pushvalue(L, -1);
            lua_rawseti(L, -4, ++n);
        }
    }
    lua_pop(L, 1);
    return 1;
}

static const luaL_Reg methods[] = {
    {"on", m_on},
    {"addListener", m_on},
    {"once", m_once},
    {"prependListener", m_prepend},
    {"prependOnceListener", m_prepend_once},
    {"off", m_off},
    {"removeListener", m_off},
    {"removeAllListeners", m_remove_all},
    {"listeners", m_listeners},
    {"listenerCount", m_listener_count},
    {"eventNames", m_event_names},
    {NULL, NULL},
};

const char *lemitter_method_name(int i)
{
    return i >= 0 && i < (int)(sizeof(methods) / sizeof(methods[0])) ? methods[i].name : NULL;
}

void lemitter_push_method(lua_State *L, int obj, const lemitter_kind_t *kind, int i)
{
    lua_pushvalue(L, obj);
    lua_pushlightuserdata(L, (void *)kind);
    lua_pushcclosure(L, methods[i].func, 2);
}

int lemitter_method(lua_State *L, int obj, const lemitter_kind_t *kind, const char *k)
{
    obj = lua_absindex(L, obj);
    for (int i = 0; methods[i].name != NULL; i++)
        if (strcmp(k, methods[i].name) == 0) {
            lemitter_push_method(L, obj, kind, i);
            return 1;
        }
    return 0;
}
