/* lhost: see lhost.h. Every entry from C into Lua goes through a protected call here: sio's
 * callbacks push a C "trampoline" function plus a pointer to their arguments and lhost_call()
 * it, so nothing that raises ever runs outside lua_pcall. */
#include "lhost.h"

#include <lauxlib.h>
#include <lualib.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "embed.h"
#include "log.h"
#include "lfetch.h"
#include "lhttp.h"
#include "lpg.h"
#include "lredis.h"
#include "lsqlite.h"
#include "lvalue.h"
#include "lwait.h"

static const char LHOST_KEY = 'h';     /* registry key (its address) of the lhost_t pointer */
static const char POOL_KEY = 'p';      /* registry: finished coroutines, reused for the next handler */
static const char HOOKS_KEY = 'k';     /* registry: siolua._hooks, the prelude's entry points */
static const char PREEMPTED_KEY = 'q'; /* registry: {coroutine = task} of the preempted handlers */

#define HOOK_COUNT 10000         /* instructions between two looks at the clock */
#define TRIM_SLACK ((size_t)32 << 20) /* memory freed since the peak before malloc_trim is worth it */

int luaopen_cjson(lua_State *L); /* from Debian's lua-cjson (liblua5.4-cjson), no header */

/* ---------------------------------------------------------------- protected calls */

lhost_t *lhost_get(lua_State *L)
{
    lhost_t *h;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &LHOST_KEY);
    h = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return h;
}

lua_State *lhost_state(lhost_t *h)
{
    return h->cur != NULL ? h->cur : h->L;
}

/* The instruction-count hook of every handler coroutine (see lhost.h). It yields only the
 * coroutine run() resumed (not one of the app's own, whose resumer would take the yield for its
 * own), and only where Lua can yield. */
static void budget_hook(lua_State *L, lua_Debug *ar)
{
    lhost_t *h = lhost_get(L);
    uint64_t now;
    (void)ar;
    if (h->deadline == 0 && h->slice_end == 0)
        return;
    now = uv_hrtime();
    if (h->deadline != 0 && now > h->deadline) {
        if (L == h->cur && lua_isyieldable(L)) { /* run() ends it: no pcall can hold it */
            h->yielded = L;
            h->yield_abort = 1;
            lua_yield(L, 0);
            return;
        }
        luaL_error(L, "handler aborted: it ran longer than %d ms (--handler-timeout)", (int)(h->budget_ns / 1000000));
    }
    if (h->slice_end != 0 && now >= h->slice_end && h->nopreempt == 0 && L == h->cur && lua_isyieldable(L)) {
        h->yielded = L;
        h->yield_abort = 0;
        lua_yield(L, 0);
    }
}

/* A coroutine to run a handler in: from the pool of finished ones, or new. [-0, +1, m] */
static lua_State *thread_get(lua_State *L)
{
    lua_Integer n;
    lhost_t *h = lhost_get(L);
    lua_State *co;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &POOL_KEY);
    n = (lua_Integer)lua_rawlen(L, -1);
    if (n > 0) {
        lua_rawgeti(L, -1, n);
        lua_pushnil(L);
        lua_rawseti(L, -3, n);
        lua_remove(L, -2);
        co = lua_tothread(L, -1);
    } else {
        lua_pop(L, 1);
        co = lua_newthread(L);
    }
    /* (again for a pooled one: its count starts over, so a short handler never meets the hook
     * because of what ran in the coroutine before it) */
    if (h->budget_ns != 0 || h->slice_ns != 0)
        lua_sethook(co, budget_hook, LUA_MASKCOUNT, HOOK_COUNT);
    return co;
}

/* Returns the finished coroutine at the top of L to the pool (bounded). [-1, +0, -] */
static void thread_put(lua_State *L)
{
    lua_Integer n;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &POOL_KEY);
    n = (lua_Integer)lua_rawlen(L, -1);
    if (n < 64) {
        lua_pushvalue(L, -2);
        lua_rawseti(L, -2, n + 1);
    }
    lua_pop(L, 2);
}

static void charge(lhost_t *h, uint64_t deadline);

/* What run() made of a resume. */
enum { RUN_DONE, RUN_WAITING, RUN_PREEMPTED, RUN_FAILED };

/* Resumes co (its stack holds the function and nargs arguments, or nargs values when it was
 * suspended) for at most what is left of its budget (*spent: its own time so far, which grows by
 * this run). co is at the top of L: popped, except for RUN_PREEMPTED, where the caller queues it.
 * A finished coroutine goes back to the pool; a waiting one lives on through whatever will resume
 * it (the ack callback that holds it); an error or an abort is logged with co's traceback (and an
 * abort is charged to the socket that started the call). */
static int run(lua_State *L, lua_State *co, int nargs, uint64_t *spent, const char *fmt, const char *a, const char *b)
{
    lhost_t *h = lhost_get(L);
    lua_State *prev = h->cur;
    uint64_t outer = h->deadline, mine = 0, start = uv_hrtime(), end;
    int nres, rc, aborted = 0;
    if (h->slice_ns != 0 && h->slice_end == 0)
        h->slice_end = start + h->slice_ns; /* the first Lua of this loop turn */
    if (h->budget_ns != 0) {
        mine = start + (h->budget_ns > *spent ? h->budget_ns - *spent : 0);
        if (outer != 0 && outer < mine)
            mine = outer; /* nested in another handler: its deadline holds */
        h->deadline = mine;
    }
    h->cur = co;
    rc = lua_resume(co, L, nargs, &nres);
    h->cur = prev;
    h->deadline = outer;
    end = uv_hrtime();
    *spent += end - start;
    if (h->slice_end != 0 && end >= h->slice_end && h->origin != NULL)
        h->overran = h->origin; /* its next events wait for a later turn */
    if (rc == LUA_YIELD && h->yielded == co) {
        h->yielded = NULL;
        if (!h->yield_abort)
            return RUN_PREEMPTED;
        aborted = 1;
    } else if (rc == LUA_OK) {
        lua_pop(co, nres);
        thread_put(L);
        return RUN_DONE;
    } else if (rc == LUA_YIELD) {
        lua_pop(co, nres);
        lua_pop(L, 1);
        return RUN_WAITING;
    }
    {
        const char *msg = aborted ? NULL : lua_tostring(co, -1);
        char what[160];
        if (aborted)
            msg = lua_pushfstring(L, "handler aborted: it ran longer than %d ms (--handler-timeout)",
                                  (int)(h->budget_ns / 1000000));
        luaL_traceback(L, co, msg ? msg : "(error object is not a string)", 0);
        snprintf(what, sizeof(what), fmt, a, b); /* only now: the common case never formats */
        log_error("error in %s: %s", what, lua_tostring(L, -1));
        lua_pop(L, aborted ? 2 : 1);
        if (aborted)
            lua_resetthread(co); /* dead: an ack that comes later finds nothing to resume */
        lua_pop(L, 1);           /* the thread (not reused) */
    }
    if (mine != 0 && end >= mine)
        charge(h, mine); /* its time ran out: an abort, however it surfaced */
    return RUN_FAILED;
}

/* ---------------------------------------------------------------- the run queue */

/* A preempted handler. Tasks are grouped by the socket whose packet started them; the groups take
 * turns (round-robin), the tasks of one group run in order: a client that sends many spinning
 * events gets one share of the time, and its first handlers reach their budget first. */
typedef struct lhost_task {
    struct lhost_task *next;
    int ref;        /* registry ref of the coroutine */
    int fresh;      /* never ran: its stack holds the handler and its arguments */
    int resume_ref; /* registry ref of {n = N, ...}: a resume that came while it was preempted */
    uint64_t spent; /* its own running time so far (ns) */
    char what[128]; /* how the log names it */
} lhost_task_t;

struct lhost_group {
    struct lhost_group *next;
    sio_socket_t *origin; /* referenced; NULL: started by no socket (a timer, a reload) */
    lhost_task_t *head, *tail;
    uint8_t cancelled;    /* its socket was disconnected for its aborts: nothing of it runs again */
};

static void on_run(uv_idle_t *idle);

static void idle_start(lhost_t *h)
{
    uv_idle_t *idle = &h->srv->lua_run;
    if (idle->loop != NULL && !uv_is_active((uv_handle_t *)idle) && !uv_is_closing((uv_handle_t *)idle))
        uv_idle_start(idle, on_run);
}

/* registry[PREEMPTED][co] = t (NULL: removed). [-0, +0, m] */
static void mark_preempted(lua_State *L, lua_State *co, lhost_task_t *t)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &PREEMPTED_KEY);
    lua_pushthread(co);
    lua_xmove(co, L, 1);
    if (t != NULL)
        lua_pushlightuserdata(L, t);
    else
        lua_pushnil(L);
    lua_rawset(L, -3);
    lua_pop(L, 1);
}

static lhost_task_t *preempted_task(lua_State *L, lua_State *co)
{
    lhost_task_t *t;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &PREEMPTED_KEY);
    lua_pushthread(co);
    lua_xmove(co, L, 1);
    lua_rawget(L, -2);
    t = lua_touserdata(L, -1);
    lua_pop(L, 2);
    return t;
}

/* The live group of origin (a socket), or NULL. A cancelled one does not count: what its
 * socket's disconnection runs now (its disconnect handlers) must run. */
static lhost_group_t *find_group(lhost_t *h, sio_socket_t *origin)
{
    for (lhost_group_t *g = h->runq; origin != NULL && g != NULL; g = g->next)
        if (g->origin == origin && !g->cancelled)
            return g;
    return NULL;
}

/* The group of origin, made (at the back of the queue) if it has none. */
static lhost_group_t *group_of(lhost_t *h, sio_socket_t *origin)
{
    lhost_group_t *g = find_group(h, origin);
    if (g != NULL)
        return g;
    g = xcalloc(1, sizeof(*g));
    g->origin = origin;
    if (origin != NULL)
        sio_socket_ref(origin);
    if (h->runq_tail != NULL)
        h->runq_tail->next = g;
    else
        h->runq = g;
    h->runq_tail = g;
    return g;
}

/* Queues the preempted (or, fresh, not yet started) coroutine at the top of L (popped) at the back
 * of its socket's group. [-1, +0, m] */
static void enqueue(lhost_t *h, lua_State *L, int fresh, uint64_t spent, const char *fmt, const char *a,
                    const char *b)
{
    lhost_task_t *t = xcalloc(1, sizeof(*t));
    lhost_group_t *g;
    lua_State *co = lua_tothread(L, -1);
    snprintf(t->what, sizeof(t->what), fmt, a, b);
    t->fresh = fresh;
    t->spent = spent;
    t->resume_ref = LUA_NOREF;
    mark_preempted(L, co, t);
    t->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    g = group_of(h, h->origin);
    if (g->tail != NULL)
        g->tail->next = t;
    else
        g->head = t;
    g->tail = t;
    idle_start(h);
}

/* Frees t; its coroutine is ended (an ack that comes later finds nothing to resume). */
static void task_drop(lhost_t *h, lhost_task_t *t)
{
    lua_State *L = h->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->ref);
    mark_preempted(L, lua_tothread(L, -1), NULL);
    lua_resetthread(lua_tothread(L, -1));
    lua_pop(L, 1);
    luaL_unref(L, LUA_REGISTRYINDEX, t->ref);
    luaL_unref(L, LUA_REGISTRYINDEX, t->resume_ref);
    free(t);
}

/* Unlinks g from the queue and frees it (its tasks must be gone). */
static void group_free(lhost_t *h, lhost_group_t *g)
{
    lhost_group_t **pp = &h->runq, *prev = NULL;
    while (*pp != NULL && *pp != g) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (*pp == g) {
        *pp = g->next;
        if (h->runq_tail == g)
            h->runq_tail = prev;
    }
    if (g->origin != NULL)
        sio_socket_unref(g->origin);
    free(g);
}

/* Drops the preempted handlers of s (s is being disconnected for its aborts). */
static void cancel(lhost_t *h, sio_socket_t *s)
{
    lhost_group_t *g = find_group(h, s);
    if (g == NULL)
        return;
    while (g->head != NULL) {
        lhost_task_t *t = g->head;
        g->head = t->next;
        task_drop(h, t);
    }
    g->tail = NULL;
    g->cancelled = 1;
    if (g != h->running) /* else the run queue frees it when the call returns */
        group_free(h, g);
}

/* An abort is charged to the socket whose packet started the call (once per call, however many
 * nested handlers its deadline ended); LHOST_ABORTS_MAX of them within the window disconnect it. */
static void charge(lhost_t *h, uint64_t deadline)
{
    sio_socket_t *s = h->origin;
    uint32_t now = (uint32_t)(uv_now(h->srv->loop) / 1000);
    if (h->charged == deadline || s == NULL || s->state != SIO_S_CONNECTED)
        return;
    h->charged = deadline;
    if (s->aborts == 0 || now - s->aborts_since > LHOST_ABORTS_WINDOW) {
        s->aborts = 0;
        s->aborts_since = now;
    }
    if (++s->aborts < LHOST_ABORTS_MAX)
        return;
    log_warn("siolua: socket %s: %d handler calls aborted within %d s (--handler-timeout): disconnecting it", s->id,
             (int)s->aborts, LHOST_ABORTS_WINDOW);
    sio_socket_ref(s);
    cancel(h, s);
    sio_socket_disconnect(s, 1);
    sio_socket_unref(s);
}

/* Resumes the task t of the group g at the head of the queue (t already unlinked): back at the
 * front of g if preempted again, freed otherwise. A resume that came while it was preempted is
 * delivered as soon as it waits. [-0, +0, m] */
static void resume_task(lhost_t *h, lua_State *L, lhost_group_t *g, lhost_task_t *t)
{
    lua_State *co;
    int nargs;
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->ref);
    co = lua_tothread(L, -1);
    nargs = t->fresh ? lua_gettop(co) - 1 : 0; /* a fresh one starts: handler and arguments */
    t->fresh = 0;
    mark_preempted(L, co, NULL);
    for (;;) {
        int st = run(L, co, nargs, &t->spent, "%s%s", t->what, "");
        if (st == RUN_PREEMPTED) {
            lua_pop(L, 1); /* t->ref keeps it */
            if (g->cancelled) {
                task_drop(h, t);
                return;
            }
            mark_preempted(L, co, t);
            t->next = g->head;
            g->head = t;
            if (g->tail == NULL)
                g->tail = t;
            return;
        }
        if (st != RUN_WAITING || t->resume_ref == LUA_NOREF)
            break;
        /* it waits now for what already came: resume it at once with it, as a new call */
        lua_rawgeti(L, LUA_REGISTRYINDEX, t->ref);
        lua_rawgeti(L, LUA_REGISTRYINDEX, t->resume_ref);
        luaL_unref(L, LUA_REGISTRYINDEX, t->resume_ref);
        t->resume_ref = LUA_NOREF;
        lua_getfield(L, -1, "n");
        nargs = (int)lua_tointeger(L, -1);
        lua_pop(L, 1);
        luaL_checkstack(L, nargs + 1, "resume");
        for (int i = 1; i <= nargs; i++)
            lua_rawgeti(L, -i, i);
        lua_remove(L, -nargs - 1);
        lua_xmove(L, co, nargs);
        t->spent = 0;
    }
    luaL_unref(L, LUA_REGISTRYINDEX, t->ref);
    luaL_unref(L, LUA_REGISTRYINDEX, t->resume_ref);
    free(t);
}

static int slice_spent(const lhost_t *h)
{
    return h->slice_end != 0 && uv_hrtime() >= h->slice_end;
}

/* Resumes queued handlers, one group after the other, until the turn's slice is spent. */
static int run_queue_k(lua_State *L)
{
    lhost_t *h = lua_touserdata(L, 1);
    lua_settop(L, 0);
    while (h->runq != NULL && !slice_spent(h)) {
        lhost_group_t *g = h->runq;
        lhost_task_t *t = g->head;
        if (t != NULL) {
            sio_socket_t *origin = h->origin;
            g->head = t->next;
            if (g->head == NULL)
                g->tail = NULL;
            t->next = NULL;
            h->running = g;
            h->origin = g->origin;
            resume_task(h, L, g, t);
            h->origin = origin;
            h->running = NULL;
        }
        /* g is still the head (others are only ever appended or unlinked): its turn is over */
        if (g->head == NULL) {
            group_free(h, g);
        } else if (g->next != NULL) { /* to the back */
            h->runq = g->next;
            g->next = NULL;
            h->runq_tail->next = g;
            h->runq_tail = g;
        }
    }
    return 0;
}

static void on_run(uv_idle_t *idle)
{
    sl_server_t *srv = idle->data;
    lhost_t *h = srv->lua;
    if (h != NULL && h->runq != NULL) {
        net_flush(&srv->net); /* what the timers just queued (pings) goes out before a long slice */
        lhost_protect(h, run_queue_k, h, "the run queue");
    }
    if (h == NULL || h->runq == NULL)
        uv_idle_stop(idle);
}

/* The end of a loop turn: the next one has a new slice. After a memory bomb (an allocation refused
 * at the cap), a full collection; when much was freed since the peak, the freed pages go back to
 * the OS (malloc_trim), so that RSS does not stay at the high-water mark. */
static void on_turn(uv_check_t *check)
{
    sl_server_t *srv = check->data;
    lhost_t *h = srv->lua;
    if (h == NULL)
        return;
    h->slice_end = 0;
    h->overran = NULL;
    if (h->mem_hit) {
        h->mem_hit = 0;
        lua_gc(h->L, LUA_GCCOLLECT);
        h->mem_peak = (size_t)-1; /* trimmed below, whatever the collection freed */
    }
    if (h->mem_peak > h->mem_used + TRIM_SLACK) {
        malloc_trim(0);
        h->mem_peak = h->mem_used;
    }
}

void lhost_loop_start(sl_server_t *srv)
{
    uv_idle_init(srv->loop, &srv->lua_run); /* started by enqueue() */
    srv->lua_run.data = srv;
    uv_check_init(srv->loop, &srv->lua_turn);
    srv->lua_turn.data = srv;
    uv_check_start(&srv->lua_turn, on_turn);
    uv_unref((uv_handle_t *)&srv->lua_turn);
}

void lhost_loop_close(sl_server_t *srv)
{
    if (srv->lua_run.loop == NULL || uv_is_closing((uv_handle_t *)&srv->lua_run))
        return;
    uv_close((uv_handle_t *)&srv->lua_run, NULL);
    uv_close((uv_handle_t *)&srv->lua_turn, NULL);
    if (srv->lua != NULL)
        srv->lua->nopreempt++; /* shutting down: what runs now runs to its end (within its budget) */
}

/* ---------------------------------------------------------------- entering handlers */

/* A handler of s's event waits in the queue (lhost.h) when s has handlers queued or one of them
 * ran past this turn's slice. Only for a call made straight from the event's dispatch (not nested
 * in another handler, which the caller expects to run now). */
static int must_wait(lhost_t *h)
{
    sio_socket_t *s = h->in_event;
    if (s == NULL || h->cur != NULL || h->nopreempt != 0 || h->slice_ns == 0)
        return 0;
    return s == h->overran || find_group(h, s) != NULL;
}

int lhost_callf(lua_State *L, int nargs, const char *fmt, const char *a, const char *b)
{
    int fn = lua_gettop(L) - nargs, st;
    uint64_t spent = 0;
    lhost_t *h = lhost_get(L);
    lua_State *co;
    luaL_checkstack(L, 4, "lhost_call");
    co = thread_get(L);
    lua_insert(L, fn); /* the thread below the function */
    lua_xmove(L, co, nargs + 1);
    if (must_wait(h)) {
        enqueue(h, L, 1, 0, fmt, a, b);
        return 0;
    }
    st = run(L, co, nargs, &spent, fmt, a, b);
    if (st == RUN_PREEMPTED)
        enqueue(h, L, 0, spent, fmt, a, b);
    return st == RUN_FAILED ? -1 : 0;
}

int lhost_call(lua_State *L, int nargs, const char *what)
{
    return lhost_callf(L, nargs, "%s%s", what, "");
}

/* core.resume(co, ...): continues a handler suspended in emitWithAck. One that was preempted
 * before it could wait (between its test and its yield) gets the values when it waits. */
static int l_resume(lua_State *L)
{
    lua_State *co = lua_tothread(L, 1);
    int n = lua_gettop(L) - 1;
    uint64_t spent = 0;
    lhost_task_t *t;
    if (co == NULL || lua_status(co) != LUA_YIELD)
        return 0;
    if ((t = preempted_task(L, co)) != NULL) {
        if (t->resume_ref == LUA_NOREF) {
            lua_createtable(L, n, 1);
            for (int i = 1; i <= n; i++) {
                lua_pushvalue(L, i + 1);
                lua_rawseti(L, -2, i);
            }
            lua_pushinteger(L, n);
            lua_setfield(L, -2, "n");
            t->resume_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        }
        return 0;
    }
    lua_xmove(L, co, n);
    if (run(L, co, n, &spent, "%s%s", "a resumed handler", "") == RUN_PREEMPTED)
        enqueue(lhost_get(L), L, 0, spent, "%s%s", "a resumed handler", "");
    return 0;
}

/* core.call(fn, what, ...): runs fn like a handler (own coroutine, errors logged, not raised). */
static int l_call(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    if (lua_type(L, 2) != LUA_TSTRING) {
        lua_pushliteral(L, "a");
        lua_replace(L, 2);
    }
    lua_pushvalue(L, 2);
    lua_remove(L, 2);
    lua_insert(L, 1); /* [name, fn, args...]: the name stays alive below the call */
    lhost_callf(L, lua_gettop(L) - 2, "%s handler%s", lua_tostring(L, 1), "");
    return 0;
}

/* Message handler of lhost_protect: the error plus a traceback (lua.c's msghandler). */
static int traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
            return 1;
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

int lhost_protectf(lhost_t *h, lua_CFunction fn, void *arg, const char *fmt, const char *a)
{
    lua_State *L = lhost_state(h);
    int base, rc;
    if (!lua_checkstack(L, 4)) {
        log_error("error in %s: Lua stack exhausted", fmt);
        return -1;
    }
    base = lua_gettop(L);
    lua_pushcfunction(L, traceback);
    lua_pushcfunction(L, fn);
    lua_pushlightuserdata(L, arg);
    rc = lua_pcall(L, 1, 0, base + 1);
    if (rc != LUA_OK) {
        char what[160];
        snprintf(what, sizeof(what), fmt, a);
        log_error("error in %s: %s", what, lua_tostring(L, -1) ? lua_tostring(L, -1) : "(no message)");
    }
    lua_settop(L, base);
    return rc == LUA_OK ? 0 : -1;
}

int lhost_protect(lhost_t *h, lua_CFunction fn, void *arg, const char *what)
{
    return lhost_protectf(h, fn, arg, "%s", what);
}

void lhost_selfcall(lua_State *L, int self_idx)
{
    if (lua_gettop(L) >= 1 && lua_rawequal(L, 1, self_idx))
        lua_remove(L, 1);
}

int lhost_prelude_member(lua_State *L, int obj, const void *props_key, const void *methods_key, const char *k)
{
    obj = lua_absindex(L, obj);
    lua_rawgetp(L, LUA_REGISTRYINDEX, props_key);
    if (lua_getfield(L, -1, k) == LUA_TFUNCTION) {
        lua_remove(L, -2);
        lua_pushvalue(L, obj);
        lua_call(L, 1, 1);
        return 1;
    }
    lua_pop(L, 2);
    lua_rawgetp(L, LUA_REGISTRYINDEX, methods_key);
    if (lua_getfield(L, -1, k) == LUA_TFUNCTION) {
        lua_remove(L, -2);
        lhost_push_hook(L, "bind"); /* the prelude's bind(self, fn): works as x.m() and x:m() */
        lua_pushvalue(L, obj);
        lua_pushvalue(L, -3);
        lua_call(L, 2, 1);
        lua_remove(L, -2);
        return 1;
    }
    lua_pop(L, 2);
    return 0;
}

void lhost_bind_prelude_members(lua_State *L, const void *props_key, const char *props_field, const void *methods_key,
                                const char *methods_field)
{
    lua_getglobal(L, "siolua");
    lua_getfield(L, -1, props_field);
    lua_rawsetp(L, LUA_REGISTRYINDEX, props_key);
    lua_getfield(L, -1, methods_field);
    lua_rawsetp(L, LUA_REGISTRYINDEX, methods_key);
    lua_pop(L, 1);
}

void lhost_push_hook(lua_State *L, const char *name)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &HOOKS_KEY);
    lua_getfield(L, -1, name);
    lua_remove(L, -2);
}

/* ---------------------------------------------------------------- print and the VM */

/* print(...): one log line, values tostring()'d and separated by tabs, like Lua's print. */
static int l_print(lua_State *L)
{
    int n = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
        size_t len;
        const char *s = luaL_tolstring(L, i, &len);
        if (i > 1)
            luaL_addchar(&b, '\t');
        luaL_addvalue(&b);
        (void)s;
        (void)len;
    }
    luaL_pushresult(&b);
    log_info("%s", lua_tostring(L, -1));
    return 0;
}

/* core.json_encode(v [, raw]) / core.json_decode(s): siolua's value mapping (lvalue.h). raw keeps
 * strings' bytes as they are (a hot reload hands them to the next VM unchanged); without it the
 * text is valid UTF-8, as on the wire. */
static int l_json_encode(lua_State *L)
{
    int flags = lua_toboolean(L, 2) ? LVALUE_RAW : 0;
    lua_settop(L, 1);
    lvalue_encode_value(L, 1, lhost_get(L)->srv->cfg.max_json_depth, flags);
    return 1;
}

static int l_json_decode(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    lvalue_push_json(L, s, len, NULL, 0, lhost_get(L)->srv->cfg.max_json_depth);
    return 1;
}

/* ---------------------------------------------------------------- source only */

/* load(chunk [, name [, mode [, env]]]) of the base library, but text only: bytecode can break
 * the VM's safety (Lua does not verify it), so no app code may load it. */
static int l_load_text(lua_State *L)
{
    lua_settop(L, 4);
    if (!lua_isnil(L, 3) && strchr(luaL_checkstring(L, 3), 't') == NULL)
        return luaL_error(L, "siolua loads source code only (mode \"t\")");
    lua_pushliteral(L, "t");
    lua_replace(L, 3);
    lua_pushvalue(L, lua_upvalueindex(1)); /* the original load */
    lua_insert(L, 1);
    lua_call(L, 4, LUA_MULTRET);
    return lua_gettop(L);
}

static int l_loadfile_text(lua_State *L)
{
    const char *name = luaL_optstring(L, 1, NULL);
    int env = !lua_isnone(L, 3) ? 3 : 0;
    if (luaL_loadfilex(L, name, "t") != LUA_OK) {
        luaL_pushfail(L);
        lua_insert(L, -2);
        return 2;
    }
    if (env != 0) {
        lua_pushvalue(L, env);
        if (!lua_setupvalue(L, -2, 1))
            lua_pop(L, 1);
    }
    return 1;
}

static int l_dofile_text(lua_State *L)
{
    const char *name = luaL_optstring(L, 1, NULL);
    lua_settop(L, 1);
    if (luaL_loadfilex(L, name, "t") != LUA_OK)
        return lua_error(L);
    lua_call(L, 0, LUA_MULTRET);
    return lua_gettop(L) - 1;
}

/* package.searchers[2], text only: finds name on package.path and loads it as source. */
static int l_searcher_text(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    const char *path;
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "searchpath");
    lua_pushvalue(L, 1);
    lua_getfield(L, -3, "path");
    lua_call(L, 2, 2);
    if (lua_isnil(L, -2))
        return 1; /* the error message */
    lua_pop(L, 1);
    path = lua_tostring(L, -1);
    if (luaL_loadfilex(L, path, "t") != LUA_OK)
        return luaL_error(L, "error loading module '%s' from file '%s':\n\t%s", name, path, lua_tostring(L, -1));
    lua_pushstring(L, path);
    return 2;
}

static void source_only(lua_State *L)
{
    lua_getglobal(L, "load");
    lua_pushcclosure(L, l_load_text, 1);
    lua_setglobal(L, "load");
    lua_pushcfunction(L, l_loadfile_text);
    lua_setglobal(L, "loadfile");
    lua_pushcfunction(L, l_dofile_text);
    lua_setglobal(L, "dofile");
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "searchers");
    lua_pushcfunction(L, l_searcher_text);
    lua_rawseti(L, -2, 2);
    lua_pushnil(L); /* C modules (searchers 3 and 4) are not for apps either */
    lua_rawseti(L, -2, 4);
    lua_pushnil(L);
    lua_rawseti(L, -2, 3);
    lua_pop(L, 2);
}

/* core.value_mark(mt): true if mt is one of lvalue's marks (an array, a decoded object's key
 * order), which the copies made for a hot reload keep. */
static int l_value_mark(lua_State *L)
{
    lua_pushboolean(L, lvalue_is_mark(L, 1));
    return 1;
}

static const luaL_Reg core_funcs[] = {{"resume", l_resume},
                                      {"call", l_call},
                                      {"json_encode", l_json_encode},
                                      {"json_decode", l_json_decode},
                                      {"value_mark", l_value_mark},
                                      {NULL, NULL}};

/* [-0, +0, e] Runs in protected mode from lhost_new. */
static int open_all(lua_State *L)
{
    lhost_t *h = lua_touserdata(L, 1);
    luaL_openlibs(L);
    source_only(L);
    lua_pushcfunction(L, l_print);
    lua_setglobal(L, "print");

    /* the siolua module (also package.loaded.siolua), with siolua._core for the prelude */
    luaL_requiref(L, "cjson", luaopen_cjson, 0);
    lua_pop(L, 1);
    lua_newtable(L);
    lvalue_open(L);
    luaL_newlib(L, core_funcs);
    lua_setfield(L, -2, "_core");
    lua_pushvalue(L, -1);
    lua_setglobal(L, "siolua");
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "siolua");
    lua_pop(L, 2);

    ltimer_open(L);
    lsocket_open(L);
    lserver_open(L);
    lengine_open(L); /* io.engine, siolua.engine */
    adapter_redis_open(L); /* core.redis_*, core.msgpack_* for lua/cluster.lua */
    /* handlers that talk to the world: the waits they share, then each client */
    lwait_open(L);
    lredis_open(L);  /* siolua.redis */
    lsqlite_open(L); /* siolua.sqlite */
    lfetch_open(L);  /* siolua.fetch */
    lpg_open(L);     /* siolua.pg */
    lhttp_open(L);   /* siolua.route */

    for (const embed_file_t *f = embed_prelude; f->name != NULL; f++) {
        if (luaL_loadbufferx(L, f->data, f->len, f->name, "t") != LUA_OK)
            return lua_error(L);
        lua_call(L, 0, 0);
    }
    /* the prelude's entry points, kept where the app cannot replace them */
    lua_getglobal(L, "siolua");
    lua_getfield(L, -1, "_hooks");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &HOOKS_KEY);
    lsocket_bind_prelude(L);
    lserver_bind_prelude(L);
    lua_pop(L, 1);
    (void)h;
    return 0;
}

/* The VM's allocator: counts what Lua holds and refuses to go past the limit (Lua then runs an
 * emergency collection and, if that is not enough, raises "not enough memory" in the handler). */
static void *lalloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    lhost_t *h = ud;
    if (ptr == NULL)
        osize = 0;
    if (nsize == 0) {
        free(ptr);
        h->mem_used -= osize;
        return NULL;
    }
    if (h->mem_limit != 0 && nsize > osize && h->mem_used + (nsize - osize) > h->mem_limit) {
        h->mem_hit = 1;
        return NULL;
    }
    void *p = realloc(ptr, nsize);
    if (p != NULL) {
        h->mem_used = h->mem_used - osize + nsize;
        if (h->mem_used > h->mem_peak)
            h->mem_peak = h->mem_used;
    }
    return p;
}

static int panic(lua_State *L)
{
    log_error("siolua: unprotected Lua error: %s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
    abort();
}

lhost_t *lhost_new(sl_server_t *srv)
{
    lhost_t *h = xcalloc(1, sizeof(*h));
    h->srv = srv;
    h->mem_limit = srv->cfg.lua_memory_limit;
    h->budget_ns = srv->cfg.handler_timeout * 1000000ull;
    h->slice_ns = srv->cfg.handler_slice * 1000000ull;
    h->L = lua_newstate(lalloc, h);
    if (h->L != NULL) {
        lua_atpanic(h->L, panic);
        /* generational mode: the short-lived garbage of each packet is collected young, which
         * keeps the heap close to the live data (a few hundred bytes per idle socket) */
        lua_gc(h->L, LUA_GCGEN, 0, 0);
    }
    if (h->L == NULL) {
        free(h);
        return NULL;
    }
    lua_pushlightuserdata(h->L, h);
    lua_rawsetp(h->L, LUA_REGISTRYINDEX, &LHOST_KEY);
    lua_newtable(h->L);
    lua_rawsetp(h->L, LUA_REGISTRYINDEX, &POOL_KEY);
    lua_newtable(h->L);
    lua_rawsetp(h->L, LUA_REGISTRYINDEX, &PREEMPTED_KEY);
    if (lhost_protect(h, open_all, h, "siolua's Lua set-up") != 0) {
        lua_close(h->L);
        free(h);
        return NULL;
    }
    return h;
}

void lhost_free(lhost_t *h)
{
    if (h == NULL)
        return;
    /* preempted handlers are abandoned, as those waiting in emitWithAck */
    while (h->runq != NULL) {
        lhost_group_t *g = h->runq;
        while (g->head != NULL) {
            lhost_task_t *t = g->head;
            g->head = t->next;
            free(t); /* its refs go with the VM */
        }
        h->runq = g->next;
        if (g->origin != NULL)
            sio_socket_unref(g->origin);
        free(g);
    }
    lengine_free(h); /* raw Engine.IO handles, before the VM goes */
    lua_close(h->L);
    free(h);
}

int lhost_run_app(lhost_t *h, const char *path)
{
    lua_State *L = h->L;
    const char *slash = strrchr(path, '/');
    /* require() finds the app's own modules next to it */
    lua_getglobal(L, "package");
    if (slash != NULL) {
        const char *dir = lua_pushlstring(L, path, (size_t)(slash - path));
        lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;", dir, dir);
        lua_remove(L, -2);
    } else {
        lua_pushstring(L, "./?.lua;./?/init.lua;");
    }
    lua_getfield(L, -2, "path");
    lua_concat(L, 2);
    lua_setfield(L, -2, "path");
    lua_pop(L, 1);

    /* source only ("t"): bytecode is never loaded */
    if (luaL_loadfilex(L, path, "t") != LUA_OK) {
        log_error("cannot load %s", lua_tostring(L, -1));
        lua_pop(L, 1);
        return -1;
    }
    /* the top level runs to its end (its options are read right after), within the budget */
    h->nopreempt++;
    int rc = lhost_call(L, 0, path);
    h->nopreempt--;
    return rc;
}

/* ---------------------------------------------------------------- request views */

void lhost_push_query(lua_State *L, const char *p, size_t len)
{
    const char *end = p + len;
    lua_newtable(L);
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p)), *e = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(e - p));
        for (int part = 0; part < 2; part++) {
            const char *a = part == 0 ? p : (eq ? eq + 1 : e), *z = part == 0 ? (eq ? eq : e) : e;
            luaL_Buffer b;
            luaL_buffinit(L, &b);
            for (; a < z; a++) {
                static const char hex[] = "0123456789abcdef0123456789ABCDEF";
                const char *h1, *h2;
                if (*a == '+') {
                    luaL_addchar(&b, ' ');
                } else if (*a == '%' && z - a >= 3 && a[1] && a[2] && (h1 = memchr(hex, a[1], 32)) != NULL &&
                           (h2 = memchr(hex, a[2], 32)) != NULL) {
                    luaL_addchar(&b, (char)(((h1 - hex) & 15) << 4 | ((h2 - hex) & 15)));
                    a += 2;
                } else {
                    luaL_addchar(&b, *a);
                }
            }
            luaL_pushresult(&b);
        }
        if (lua_rawlen(L, -2) > 0)
            lua_rawset(L, -3);
        else
            lua_pop(L, 2);
        p = e + 1;
    }
}

/* Pushes a header name lower-cased, as Node does. [-0, +1, m] */
static void push_lower(lua_State *L, slice_t name)
{
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, name.len);
    for (size_t j = 0; j < name.len; j++) {
        char c = name.ptr[j];
        p[j] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    luaL_pushresultsize(&b, name.len);
}

void lhost_push_headers(lua_State *L, size_t n, const slice_t *names, const slice_t *values)
{
    lua_createtable(L, 0, (int)n);
    for (size_t i = 0; i < n; i++) {
        push_lower(L, names[i]);
        lua_pushlstring(L, values[i].ptr, values[i].len);
        lua_rawset(L, -3);
    }
}

void lhost_push_packed_headers(lua_State *L, size_t n, const char *packed)
{
    lua_createtable(L, 0, (int)n);
    for (size_t i = 0; i < n; i++) {
        slice_t name, value;
        eio_header_next(&packed, &name, &value);
        push_lower(L, name);
        lua_pushlstring(L, value.ptr, value.len);
        lua_rawset(L, -3);
    }
}

static const char *method_name(int m)
{
    return m == HTTP_M_GET ? "GET" : m == HTTP_M_POST ? "POST" : m == HTTP_M_OPTIONS ? "OPTIONS" : m == HTTP_M_HEAD ? "HEAD" : "OTHER";
}

/* The request table: names/values for a live request, or packed (an Engine.IO handshake's copy)
 * when names is NULL. */
static void push_request(lua_State *L, const char *method, slice_t url, slice_t query, size_t nh,
                         const slice_t *names, const slice_t *values, const char *packed, const char *address)
{
    lua_createtable(L, 0, 5);
    lua_pushstring(L, method);
    lua_setfield(L, -2, "method");
    lua_pushlstring(L, url.ptr, url.len);
    lua_setfield(L, -2, "url");
    if (names != NULL)
        lhost_push_headers(L, nh, names, values);
    else
        lhost_push_packed_headers(L, nh, packed);
    lua_setfield(L, -2, "headers");
    lua_pushstring(L, address);
    lua_setfield(L, -2, "address");
    lhost_push_query(L, query.ptr, query.len);
    lua_setfield(L, -2, "_query");
}

void lhost_push_request(lua_State *L, const http_req_t *req)
{
    push_request(L, method_name(req->method), req->url, req->query, req->nheaders, req->names, req->values, NULL,
                 http_peer(req));
}

void lhost_push_handshake_request(lua_State *L, const eio_handshake_t *hs)
{
    push_request(L, "GET", hs->url, hs->query, hs->nheaders, NULL, NULL, hs->headers, hs->address);
}

/* ---------------------------------------------------------------- boxes */

#define BOX_MT "siolua.box"

typedef struct {
    void *obj;                  /* NULL once taken */
    void (*release)(void *obj);
} box_t;

static int box_gc(lua_State *L)
{
    box_t *b = lua_touserdata(L, 1);
    if (b->obj != NULL)
        b->release(b->obj);
    b->obj = NULL;
    return 0;
}

void lhost_box_push(lua_State *L, void *obj, void (*release)(void *obj))
{
    box_t *b = lua_newuserdatauv(L, sizeof(*b), 0);
    b->obj = NULL;
    b->release = release;
    if (luaL_newmetatable(L, BOX_MT)) {
        lua_pushcfunction(L, box_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    b->obj = obj; /* nothing raised: the box owns it from here on */
}

void *lhost_box_get(lua_State *L, int idx)
{
    box_t *b = luaL_checkudata(L, idx, BOX_MT);
    return b->obj;
}

void *lhost_box_take(lua_State *L, int idx)
{
    box_t *b = luaL_checkudata(L, idx, BOX_MT);
    void *obj = b->obj;
    b->obj = NULL;
    return obj;
}

/* ---------------------------------------------------------------- sio handler */

typedef struct {
    sio_socket_t *s;
    const sio_packet_t *p;
    rbuf_t *const *att;
    size_t natt;
    slice_t auth;
    slice_t name;
    sio_nsp_t *nsp;
    sio_resolve_t *resolve;
    const char *reason;
    int rc;
} call_args_t;

/* Pushes a CONNECT's auth (not empty): a v2 client's namespace query, or the payload in the
 * parser's format (raises if it is invalid). [-0, +1, e] */
static void push_auth(lua_State *L, slice_t auth, int protocol)
{
    const sl_config_t *cfg = &lhost_get(L)->srv->cfg;
    if (protocol == 3) {
        lhost_push_query(L, auth.ptr, auth.len);
    } else if (cfg->sio.parser == SIO_PARSER_MSGPACK) {
        if (lvalue_push_msgpack(L, auth.ptr, auth.len) != 0)
            lua_error(L); /* its message */
    } else {
        lvalue_push_json(L, auth.ptr, auth.len, NULL, 0, cfg->max_json_depth);
    }
}

/* CONNECT: make the handle with handshake.auth, then the prelude's hooks.connect runs the
 * middlewares, accepts and fires "connection". */
static int connect_k(lua_State *L)
{
    call_args_t *a = lua_touserdata(L, 1);
    sio_socket_t *s = a->s;
    lua_settop(L, 0);
    lsocket_push_new(L, s); /* 1: the handle */
    if (a->auth.len > 0) { /* kept for socket.handshake.auth */
        lsocket_private(L, 1);
        push_auth(L, a->auth, sio_socket_protocol(s));
        lua_setfield(L, -2, "auth");
        lua_pop(L, 1);
    }
    lhost_push_hook(L, "connect");
    lserver_push_nsp(L, s->nsp);
    lua_pushvalue(L, 1);
    lua_call(L, 2, 0);
    return 0;
}

static void h_connect(sio_socket_t *s, slice_t auth, void *ud)
{
    lhost_t *h = ud;
    call_args_t a = {.s = s, .auth = auth};
    sio_socket_t *origin = h->origin;
    sio_socket_ref(s);
    h->origin = s; /* its middlewares and connection handlers are its own */
    if (lhost_protect(h, connect_k, &a, "connect") != 0 && s->state == SIO_S_CONNECTING) {
        sio_socket_refuse_message(s, "Invalid payload");
    }
    h->origin = origin;
    sio_socket_unref(s);
}

static void release_resolve(void *r) { sio_resolve_unref(r); }

/* CONNECT to a namespace that does not exist: the prelude's hooks.resolve(name, auth, token) asks
 * the dynamic namespaces, which answer through core.resolved(token, nsp) now or later. */
static int resolve_k(lua_State *L)
{
    call_args_t *a = lua_touserdata(L, 1);
    lua_settop(L, 0);
    lhost_push_hook(L, "resolve");
    lua_pushlstring(L, a->name.ptr, a->name.len);
    if (a->auth.len > 0)
        push_auth(L, a->auth, sio_resolve_protocol(a->resolve));
    else
        lua_newtable(L);
    lhost_box_push(L, a->resolve, release_resolve);
    sio_resolve_ref(a->resolve); /* the box's */
    lua_call(L, 3, 0);
    return 0;
}

static void h_resolve(sio_resolve_t *r, slice_t name, slice_t auth, void *ud)
{
    lhost_t *h = ud;
    call_args_t a = {.name = name, .auth = auth, .resolve = r};
    if (lhost_protect(h, resolve_k, &a, "dynamic namespace") != 0)
        sio_resolve_done(r, NULL); /* refused, unless it was answered before the error */
}

static int packet_k(lua_State *L)
{
    call_args_t *a = lua_touserdata(L, 1);
    lua_settop(L, 0);
    a->rc = lsocket_on_packet(L, a->s, a->p, a->att, a->natt);
    return 0;
}

static int h_packet(sio_socket_t *s, const sio_packet_t *p, rbuf_t *const *att, size_t natt, void *ud)
{
    lhost_t *h = ud;
    call_args_t a = {.s = s, .p = p, .att = att, .natt = natt, .rc = -1};
    sio_socket_t *origin = h->origin, *in_event = h->in_event;
    int rc;
    h->origin = s; /* (sio holds s) the handlers of its packets are its own: their aborts count against it */
    h->in_event = s;
    rc = lhost_protectf(h, packet_k, &a, "packet from socket %s", s->id);
    h->origin = origin;
    h->in_event = in_event;
    return rc != 0 ? -1 : a.rc;
}

static int disconnect_k(lua_State *L)
{
    call_args_t *a = lua_touserdata(L, 1);
    lua_settop(L, 0);
    lsocket_on_disconnect(L, a->s, a->reason);
    return 0;
}

static void h_disconnect(sio_socket_t *s, const char *reason, void *ud)
{
    lhost_t *h = ud;
    call_args_t a = {.s = s, .reason = reason};
    if (lhost_protect(h, disconnect_k, &a, "disconnect") != 0)
        lsocket_release(lhost_state(h), s); /* the handle must not outlive the socket */
}

static void h_release(sio_socket_t *s, void *ud)
{
    lhost_t *h = ud;
    lsocket_release(lhost_state(h), s);
}

static int nsp_free_k(lua_State *L)
{
    call_args_t *a = lua_touserdata(L, 1);
    lua_settop(L, 0);
    lhost_push_hook(L, "nsp_free");
    lserver_push_nsp(L, a->nsp);
    lua_call(L, 1, 0);
    lserver_forget_nsp(L, a->nsp);
    return 0;
}

static void h_nsp_free(sio_nsp_t *nsp, void *ud)
{
    lhost_t *h = ud;
    call_args_t a = {.nsp = nsp};
    if (lhost_protect(h, nsp_free_k, &a, "namespace cleanup") != 0)
        lserver_forget_nsp(lhost_state(h), nsp); /* never leave a pointer to freed memory in Lua */
}

const sio_handler_t lhost_sio_handler = {h_connect, h_packet, h_disconnect, h_release, h_resolve, h_nsp_free};
