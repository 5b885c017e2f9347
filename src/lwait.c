/* lwait: see lwait.h.
 *
 * A waiting handler is a coroutine suspended inside a C function (lua_yieldk). Its wait holds a
 * registry ref of the coroutine and a timer. The completion resumes it through the same entry the
 * prelude's emitWithAck uses (core.resume, lvm_core_resume, registered when the VM is made, before any app code
 * runs), with (true, results...) or (false, message); the C function's continuation returns the
 * results or raises the message in the handler, where pcall can catch it. */
#include "lwait.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lenv.h"
#include "lvm.h"
#include "log.h"
#include "lvalue.h"

static const char ENV_KEY = 'e';    /* registry: the lwait_env_t userdata */
static const char RESUME_KEY = 'r'; /* registry: core.resume (lvm_core_resume) */

#define ERROR_MT "siolua.error"

struct lwait {
    uv_timer_t timer; /* the timeout; timer.data = this; freed in its close callback */
    lwait_env_t *env; /* NULL once ended */
    int co_ref;       /* registry ref of the waiting coroutine */
    uint64_t timeout_ms;
    const char *what; /* static: "siolua.redis" */
    lwait_cancel_cb cancel;
    void *op;
    lwait_t *prev, *next; /* env->waits */
};

/* ---------------------------------------------------------------- environment */

lwait_env_t *lwait_env(lua_State *L)
{
    lwait_env_t *env;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &ENV_KEY);
    env = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return env;
}

static int error_tostring(lua_State *L)
{
    lua_getfield(L, 1, "message");
    return 1;
}

void lwait_open(lua_State *L)
{
    lenv_t *e = lenv_get(L);
    lwait_env_t *env = lua_newuserdatauv(L, sizeof(*env), 0);
    memset(env, 0, sizeof(*env));
    /* the one place the bindings' view of the server is read (lenv.h) */
    env->h = lvm_get(L);
    env->loop = e->loop;
    env->max_json_depth = e->cfg->max_json_depth;
    lua_rawsetp(L, LUA_REGISTRYINDEX, &ENV_KEY);
    lua_pushcfunction(L, lvm_core_resume); /* core.resume, as the prelude's emitWithAck resumes */
    lua_rawsetp(L, LUA_REGISTRYINDEX, &RESUME_KEY);
    if (luaL_newmetatable(L, ERROR_MT)) {
        lua_pushcfunction(L, error_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
}

/* ---------------------------------------------------------------- waits */

/* 1 if the bottom frame of L is a main chunk: the app's top level (or a module it requires there). */
static int at_top_level(lua_State *L)
{
    lua_Debug ar;
    int lo = 0, hi = 1;
    while (lua_getstack(L, hi, &ar)) /* the deepest level, by doubling then halving */
        lo = hi, hi *= 2;
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (lua_getstack(L, mid, &ar))
            lo = mid;
        else
            hi = mid;
    }
    if (!lua_getstack(L, lo, &ar) || !lua_getinfo(L, "S", &ar))
        return 0;
    return strcmp(ar.what, "main") == 0;
}

void lwait_check(lua_State *L, const char *what)
{
    lwait_env_t *env = lwait_env(L);
    if (env == NULL || env->closed)
        luaL_error(L, "%s: the app is being unloaded", what);
    if (lvm_state(env->h) != L || !lua_isyieldable(L))
        luaL_error(L,
                   "%s must be called from a handler (an event listener, middleware, timer or ack callback), "
                   "not inside a coroutine of the app's own or a metamethod",
                   what);
    if (at_top_level(L))
        luaL_error(L,
                   "%s cannot wait at the top level of the app (the server starts once it has run): call it "
                   "from a handler, e.g. setTimeout(function() ... end, 0)",
                   what);
}

static void on_wait_closed(uv_handle_t *t)
{
    free(t->data);
}

/* Takes w off its list and frees it (once its timer is closed). */
static void unlink_wait(lwait_t *w)
{
    lwait_env_t *env = w->env;
    if (env == NULL)
        return;
    if (w->prev != NULL)
        w->prev->next = w->next;
    else
        env->waits = w->next;
    if (w->next != NULL)
        w->next->prev = w->prev;
    w->env = NULL;
    uv_close((uv_handle_t *)&w->timer, on_wait_closed);
}

static void on_timeout(uv_timer_t *t);

lwait_t *lwait_begin(lua_State *L, uint64_t timeout_ms, const char *what, lwait_cancel_cb cancel)
{
    lwait_env_t *env = lwait_env(L);
    lwait_t *w;
    int ref;
    lua_pushthread(L);
    ref = luaL_ref(L, LUA_REGISTRYINDEX); /* may raise: before anything is allocated */
    w = xcalloc(1, sizeof(*w));
    w->env = env;
    w->co_ref = ref;
    w->timeout_ms = timeout_ms;
    w->what = what;
    w->cancel = cancel;
    w->next = env->waits;
    if (env->waits != NULL)
        env->waits->prev = w;
    env->waits = w;
    uv_timer_init(env->loop, &w->timer);
    w->timer.data = w;
    uv_timer_start(&w->timer, on_timeout, timeout_ms, 0);
    return w;
}

void lwait_bind(lwait_t *w, void *op)
{
    w->op = op;
}

void lwait_abort(lwait_t *w)
{
    lua_State *L = w->env->h->L;
    luaL_unref(L, LUA_REGISTRYINDEX, w->co_ref);
    unlink_wait(w);
}

/* The continuation of a waiting C function: stack[ctx + 1] is the ok flag, the results follow. */
static int after_wait(lua_State *L, int status, lua_KContext ctx)
{
    int base = (int)ctx;
    (void)status;
    if (lua_gettop(L) <= base) /* resumed by something else than lwait (cannot happen) */
        return luaL_error(L, "a waiting handler was resumed without a result");
    if (!lua_toboolean(L, base + 1)) {
        lua_settop(L, base + 2);
        return lua_error(L);
    }
    return lua_gettop(L) - base - 1;
}

int lwait_yield(lua_State *L, lwait_t *w)
{
    (void)w;
    return lua_yieldk(L, 0, (lua_KContext)lua_gettop(L), after_wait);
}

/* A handler whose operation ended: resumed from the check handle (never from inside the binding
 * that completed it, whose structures a resumed handler may close: pg:close(), io.close()). */
typedef struct ready {
    struct ready *next;
    int co_ref;  /* the coroutine */
    int res_ref; /* {ok, results...; n = N}, or LUA_NOREF: no memory was left to make it */
} ready_t;

typedef struct {
    lwait_push_cb push;
    void *arg;
    const char *err;
    int ref; /* out */
} collect_args_t;

/* [-0, +0, e] Makes the results table {ok, values...; n = N} and refs it. */
static int collect_k(lua_State *L)
{
    collect_args_t *a = lua_touserdata(L, 1);
    int n;
    lua_settop(L, 0);
    lua_createtable(L, 4, 1); /* 1 */
    if (a->err != NULL) {
        lua_pushboolean(L, 0);
        lua_pushstring(L, a->err);
        n = 2;
    } else {
        lua_pushboolean(L, 1);
        n = a->push(L, a->arg);
        if (n < 0) { /* the error value is at the top */
            lua_pushboolean(L, 0);
            lua_replace(L, 2);
            lua_settop(L, 3);
            n = 2;
        } else {
            lua_settop(L, 2 + n);
            n++;
        }
    }
    for (int i = n; i >= 1; i--)
        lua_rawseti(L, 1, i);
    lua_pushinteger(L, n);
    lua_setfield(L, 1, "n");
    a->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

/* [-0, +0, e] core.resume(co, results...). */
static int resume_k(lua_State *L)
{
    ready_t *r = lua_touserdata(L, 1);
    int n;
    lua_settop(L, 0);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &RESUME_KEY);
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->co_ref);
    if (lua_rawgeti(L, LUA_REGISTRYINDEX, r->res_ref) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_pushboolean(L, 0);
        lua_pushliteral(L, "siolua: not enough memory for the result");
    } else {
        lua_getfield(L, 3, "n");
        n = (int)lua_tointeger(L, -1);
        lua_pop(L, 1);
        luaL_checkstack(L, n + 2, "results");
        for (int i = 1; i <= n; i++)
            lua_rawgeti(L, 3, i);
        lua_remove(L, 3);
    }
    lua_call(L, lua_gettop(L) - 1, 0);
    return 0;
}

static void on_check(uv_check_t *c)
{
    lwait_env_t *env = c->data;
    lua_State *L = env->h->L;
    while (env->ready != NULL && !env->closed) { /* those queued meanwhile too */
        ready_t *r = env->ready;
        env->ready = r->next;
        if (env->ready == NULL)
            env->ready_tail = NULL;
        lvm_protect(env->h, resume_k, r, "resuming a handler");
        if (!env->closed) { /* a handler may have closed the app (io.close()) */
            luaL_unref(L, LUA_REGISTRYINDEX, r->co_ref);
            luaL_unref(L, LUA_REGISTRYINDEX, r->res_ref);
        }
        free(r);
    }
    if (env->check != NULL && env->ready == NULL)
        uv_check_stop(env->check);
}

/* Ends w; its handler is resumed with push's results (or err) at the end of this loop phase. */
static void finish(lwait_t *w, lwait_push_cb push, void *arg, const char *err)
{
    lwait_env_t *env = w->env;
    collect_args_t a = {push, arg, err, LUA_NOREF};
    ready_t *r;
    if (env == NULL)
        return;
    r = xcalloc(1, sizeof(*r));
    r->co_ref = w->co_ref;
    unlink_wait(w);
    if (lvm_protect(env->h, collect_k, &a, "the result of a call") != 0)
        a.ref = LUA_NOREF; /* resume_k then raises "not enough memory" in the handler */
    r->res_ref = a.ref;
    if (env->ready_tail != NULL)
        env->ready_tail->next = r;
    else
        env->ready = r;
    env->ready_tail = r;
    if (env->check == NULL) {
        env->check = xcalloc(1, sizeof(*env->check));
        uv_check_init(env->loop, env->check);
        env->check->data = env;
    }
    uv_check_start(env->check, on_check);
}

void lwait_resume(lwait_t *w, lwait_push_cb push, void *arg)
{
    finish(w, push, arg, NULL);
}

void lwait_fail(lwait_t *w, const char *msg)
{
    finish(w, NULL, NULL, msg);
}

static void on_timeout(uv_timer_t *t)
{
    lwait_t *w = t->data;
    char msg[128];
    if (w->env == NULL)
        return;
    w->cancel(w->op);
    snprintf(msg, sizeof(msg), "%s: timed out after %llu ms", w->what, (unsigned long long)w->timeout_ms);
    lwait_fail(w, msg);
}

/* ---------------------------------------------------------------- resources */

void lwait_res_add(lwait_env_t *env, lwait_res_t *r)
{
    r->env = env;
    r->prev = NULL;
    r->next = env->res;
    if (env->res != NULL)
        env->res->prev = r;
    env->res = r;
}

void lwait_res_remove(lwait_res_t *r)
{
    lwait_env_t *env = r->env;
    if (env == NULL)
        return;
    if (r->prev != NULL)
        r->prev->next = r->next;
    else
        env->res = r->next;
    if (r->next != NULL)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
    r->env = NULL;
}

static int count(const lwait_env_t *env, void (*close)(lwait_res_t *))
{
    int n = 0;
    for (const lwait_res_t *r = env->res; r != NULL; r = r->next)
        n += r->close == close;
    return n;
}

void lwait_res_limit(lua_State *L, void (*close)(lwait_res_t *), int max, const char *what)
{
    lwait_env_t *env = lwait_env(L);
    if (count(env, close) < max)
        return;
    lua_gc(L, LUA_GCCOLLECT); /* the handles the app dropped close in their __gc */
    if (count(env, close) >= max)
        luaL_error(L, "%s: too many open at once (max %d): close() those you no longer need", what, max);
}

static void check_closed(uv_handle_t *h)
{
    free(h);
}

void lwait_close_all(lvm_t *h)
{
    lwait_env_t *env = lwait_env(h->L);
    if (env == NULL || env->closed)
        return;
    env->closed = 1;
    while (env->waits != NULL) {
        lwait_t *w = env->waits;
        w->cancel(w->op);
        unlink_wait(w); /* the coroutine's ref goes with the VM */
    }
    while (env->res != NULL) {
        lwait_res_t *r = env->res;
        lwait_res_remove(r);
        r->close(r);
    }
    while (env->ready != NULL) { /* never resumed: their refs go with the VM */
        ready_t *r = env->ready;
        env->ready = r->next;
        free(r);
    }
    env->ready_tail = NULL;
    if (env->check != NULL) {
        uv_close((uv_handle_t *)env->check, check_closed);
        env->check = NULL;
    }
}

/* ---------------------------------------------------------------- helpers */

void lwait_class(lua_State *L, const char *mt, const luaL_Reg *methods, lua_CFunction close,
                 lua_CFunction tostring, const char *name, lua_CFunction ctor)
{
    luaL_newmetatable(L, mt);
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
    lua_getglobal(L, "siolua");
    lua_pushcfunction(L, ctor);
    lua_setfield(L, -2, name);
    lua_pop(L, 1);
}

void *lwait_checkbox(lua_State *L, int idx, const char *mt, const char *what)
{
    lwait_box_t *b = luaL_checkudata(L, idx, mt);
    if (b->p == NULL)
        luaL_error(L, "%s is closed", what);
    return b->p;
}

int lwait_box_close(lua_State *L, const char *mt, void (*close)(void *p))
{
    lwait_box_t *b = luaL_checkudata(L, 1, mt);
    if (b->p != NULL)
        close(b->p);
    return 0;
}

void lwait_sql_params(lua_State *L, int first, const char *what)
{
    int depth = lwait_env(L)->max_json_depth;
    for (int i = first; i <= lua_gettop(L); i++) {
        int t = lua_type(L, i);
        if (t == LUA_TTABLE) {
            lvalue_encode_value(L, i, depth, 0);
            lua_replace(L, i);
        } else if (t != LUA_TNIL && t != LUA_TBOOLEAN && t != LUA_TNUMBER && t != LUA_TSTRING &&
                   !(t == LUA_TLIGHTUSERDATA && lua_touserdata(L, i) == NULL) &&
                   luaL_testudata(L, i, LVALUE_BINARY_MT) == NULL) {
            luaL_error(L,
                       "%s: parameter %d is a %s (nil, siolua.null, booleans, numbers, strings, siolua.binary "
                       "and JSON-able tables)",
                       what, i - first + 1, luaL_typename(L, i));
        }
    }
}

uint64_t lwait_opt_ms(lua_State *L, int idx, const char *key, uint64_t dflt)
{
    lua_Integer v;
    int isnum;
    if (lua_isnoneornil(L, idx))
        return dflt;
    luaL_checktype(L, idx, LUA_TTABLE);
    if (lua_getfield(L, idx, key) == LUA_TNIL) {
        lua_pop(L, 1);
        return dflt;
    }
    v = lua_tointegerx(L, -1, &isnum);
    lua_pop(L, 1);
    if (!isnum || v < 1 || v > 86400000)
        luaL_error(L, "option %s must be a number of milliseconds from 1 to 86400000", key);
    return (uint64_t)v;
}

void lwait_push_error(lua_State *L, const char *msg, size_t len)
{
    lua_createtable(L, 0, 1);
    lua_pushlstring(L, msg, len);
    lua_setfield(L, -2, "message");
    luaL_setmetatable(L, ERROR_MT);
}
