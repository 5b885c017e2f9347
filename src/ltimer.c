/* ltimer: see ltimer.h. */
#include "ltimer.h"

#include <lauxlib.h>
#include <stdlib.h>

#include "buf.h"
#include "lenv.h"

#define TIMER_MT "siolua.timer"

typedef struct ltimer {
    uv_timer_t t;              /* t.data = this */
    lvm_t *h;
    int self_ref;              /* registry ref of the userdata while armed, else LUA_NOREF */
    struct ltimer *prev, *next;/* the VM's armed timers */
} ltimer_t;

typedef struct {
    ltimer_t *timer; /* NULL once stopped (the C part is freed in the close callback) */
} ltimer_box_t;

/* The list head of the VM's armed timers: a userdata in the registry. */
static const char LIST_KEY = 'l';

static ltimer_t **list_head(lua_State *L)
{
    ltimer_t **head;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &LIST_KEY);
    head = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return head;
}

static void on_closed(uv_handle_t *h)
{
    free(h->data);
}

/* Disarms t: off the list, userdata unreferenced (its uservalue keeps fn and args until GC). */
static void stop(lua_State *L, ltimer_t *t)
{
    ltimer_t **head = list_head(L);
    if (t->prev)
        t->prev->next = t->next;
    else if (*head == t)
        *head = t->next;
    if (t->next)
        t->next->prev = t->prev;
    t->prev = t->next = NULL;
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->self_ref);
    ltimer_box_t *box = lua_touserdata(L, -1);
    if (box != NULL)
        box->timer = NULL;
    lua_pop(L, 1);
    luaL_unref(L, LUA_REGISTRYINDEX, t->self_ref);
    t->self_ref = LUA_NOREF;
    uv_close((uv_handle_t *)&t->t, on_closed);
}

static int fire_k(lua_State *L)
{
    ltimer_t *t = lua_touserdata(L, 1);
    int repeat = uv_timer_get_repeat(&t->t) > 0;
    int n;
    lua_settop(L, 0);
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->self_ref); /* 1: the timer */
    lua_getiuservalue(L, 1, 1);                      /* 2: {fn, args...; n = #} */
    if (!repeat)
        stop(L, t); /* a timeout is done before its callback runs (it may set a new one) */
    lua_getfield(L, 2, "n");
    n = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    luaL_checkstack(L, n + 2, "timer arguments");
    for (int i = 1; i <= n; i++)
        lua_rawgeti(L, 2, i);
    lvm_call(L, n - 1, repeat ? "interval callback" : "timeout callback");
    return 0;
}

static void on_timer(uv_timer_t *ut)
{
    ltimer_t *t = ut->data;
    lvm_protect(t->h, fire_k, t, "timer");
}

/* setTimeout(fn, ms, ...) / setInterval(fn, ms, ...) */
static int start(lua_State *L, int repeat)
{
    lvm_t *h = lvm_get(L);
    lua_Integer ms;
    int nargs = lua_gettop(L);
    ltimer_box_t *box;
    ltimer_t *t, **head;
    luaL_checktype(L, 1, LUA_TFUNCTION);
    ms = luaL_optinteger(L, 2, 0);
    if (ms < 0)
        ms = 0;
    if (repeat && ms == 0)
        ms = 1; /* as Node: an interval of 0 runs every millisecond, not in a busy loop */
    box = lua_newuserdatauv(L, sizeof(*box), 1);
    box->timer = NULL;
    luaL_setmetatable(L, TIMER_MT);
    /* uservalue: {fn, extra args...; n} */
    lua_createtable(L, nargs, 1);
    lua_pushvalue(L, 1);
    lua_rawseti(L, -2, 1);
    for (int i = 3; i <= nargs; i++) {
        lua_pushvalue(L, i);
        lua_rawseti(L, -2, i - 1);
    }
    lua_pushinteger(L, nargs >= 2 ? nargs - 1 : 1);
    lua_setfield(L, -2, "n");
    lua_setiuservalue(L, -2, 1);
    /* from here on nothing raises: the C part is allocated last */
    t = xcalloc(1, sizeof(*t));
    t->h = h;
    uv_timer_init(lenv_get(L)->loop, &t->t);
    t->t.data = t;
    lua_pushvalue(L, -1);
    t->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    box->timer = t;
    head = list_head(L);
    t->next = *head;
    if (*head)
        (*head)->prev = t;
    *head = t;
    uv_timer_start(&t->t, on_timer, (uint64_t)ms, repeat ? (uint64_t)ms : 0);
    return 1;
}

static int l_set_timeout(lua_State *L) { return start(L, 0); }
static int l_set_interval(lua_State *L) { return start(L, 1); }

static int l_clear(lua_State *L)
{
    ltimer_box_t *box = luaL_testudata(L, 1, TIMER_MT);
    if (box != NULL && box->timer != NULL)
        stop(L, box->timer);
    return 0;
}

static int t_tostring(lua_State *L)
{
    ltimer_box_t *box = luaL_checkudata(L, 1, TIMER_MT);
    lua_pushstring(L, box->timer ? "siolua.timer(armed)" : "siolua.timer(stopped)");
    return 1;
}

void ltimer_close_all(lvm_t *h)
{
    lua_State *L = h->L;
    ltimer_t **head = list_head(L);
    while (head != NULL && *head != NULL)
        stop(L, *head);
}

static const luaL_Reg funcs[] = {{"setTimeout", l_set_timeout},   {"setInterval", l_set_interval},
                                 {"clearTimeout", l_clear},        {"clearInterval", l_clear},
                                 {NULL, NULL}};

void ltimer_open(lua_State *L)
{
    ltimer_t **head = lua_newuserdatauv(L, sizeof(*head), 0);
    *head = NULL;
    lua_rawsetp(L, LUA_REGISTRYINDEX, &LIST_KEY);
    luaL_newmetatable(L, TIMER_MT);
    lua_pushcfunction(L, t_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
    luaL_setfuncs(L, funcs, 0);
    lua_pushglobaltable(L);
    luaL_setfuncs(L, funcs, 0);
    lua_pop(L, 1);
}
