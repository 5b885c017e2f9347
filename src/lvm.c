/* lvm: see lvm.h. Every entry from C into Lua goes through a protected call here: the bindings'
 * callbacks push a C "trampoline" function plus a pointer to their arguments and lvm_protect()
 * it, so nothing that raises ever runs outside lua_pcall. */
#include "lvm.h"

#include <lauxlib.h>
#include <lualib.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "buf.h"
#include "log.h"

static const char VM_KEY = 'h';        /* registry key (its address) of the lvm_t pointer */
static const char POOL_KEY = 'p';      /* registry: finished coroutines, reused for the next handler */
static const char HOOKS_KEY = 'k';     /* registry: hooks, the prelude's entry points */
static const char PREEMPTED_KEY = 'q'; /* registry: {coroutine = task} of the preempted handlers */

#define HOOK_COUNT 10000         /* instructions between two looks at the clock */
#define TRIM_SLACK ((size_t)32 << 20) /* memory freed since the peak before malloc_trim is worth it */

int luaopen_cjson(lua_State *L); /* from Debian's lua-cjson (liblua5.4-cjson), no header */

/* ---------------------------------------------------------------- protected calls */

lvm_t *lvm_get(lua_State *L)
{
    lvm_t *h;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &VM_KEY);
    h = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return h;
}

/* The instruction-count hook of every handler coroutine (see lvm.h). It yields only the
 * coroutine run() resumed (not one of the app's own, whose resumer would take the yield for its
 * own), and only where Lua can yield. */
static void budget_hook(lua_State *L, lua_Debug *ar)
{
    lvm_t *h = lvm_get(L);
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
    lvm_t *h = lvm_get(L);
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

static void charge(lvm_t *h, uint64_t deadline);

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
    lvm_t *h = lvm_get(L);
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
    if (h->metrics != NULL)
        METRIC_OBSERVE(&h->metrics->handler_seconds, (double)(end - start) / 1e9);
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
        METRIC_ADD(h->metrics, handler_errors, 1);
        METRIC_ADD(h->metrics, handler_aborts, (uint64_t)aborted);
        if (aborted)
            msg = lua_pushfstring(L, "handler aborted: it ran longer than %d ms (--handler-timeout)",
                                  (int)(h->budget_ns / 1000000));
        luaL_traceback(L, co, msg ? msg : "(error object is not a string)", 0);
        snprintf(what, sizeof(what), fmt, a, b); /* only now: the common case never formats */
        /* the emitters' descriptions quote the event's name: their first argument */
        lvm_log_error(h, what, lua_tostring(L, -1), h->origin, strstr(fmt, "\"%s\"") != NULL ? a : NULL);
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
typedef struct lvm_task {
    struct lvm_task *next;
    int ref;        /* registry ref of the coroutine */
    int fresh;      /* never ran: its stack holds the handler and its arguments */
    int resume_ref; /* registry ref of {n = N, ...}: a resume that came while it was preempted */
    uint64_t spent; /* its own running time so far (ns) */
    char what[128]; /* how the log names it */
} lvm_task_t;

struct lvm_group {
    struct lvm_group *next;
    void *origin;         /* referenced; NULL: started by no socket (a timer, a reload) */
    lvm_task_t *head, *tail;
    uint8_t cancelled;    /* its socket was disconnected for its aborts: nothing of it runs again */
};

static void on_run(uv_idle_t *idle);

static void idle_start(lvm_t *h)
{
    uv_idle_t *idle = &h->loop->run;
    if (idle->loop != NULL && !uv_is_active((uv_handle_t *)idle) && !uv_is_closing((uv_handle_t *)idle))
        uv_idle_start(idle, on_run);
}

/* registry[PREEMPTED][co] = t (NULL: removed). [-0, +0, m] */
static void mark_preempted(lua_State *L, lua_State *co, lvm_task_t *t)
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

static lvm_task_t *preempted_task(lua_State *L, lua_State *co)
{
    lvm_task_t *t;
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
static lvm_group_t *find_group(lvm_t *h, void *origin)
{
    for (lvm_group_t *g = h->runq; origin != NULL && g != NULL; g = g->next)
        if (g->origin == origin && !g->cancelled)
            return g;
    return NULL;
}

/* The group of origin, made (at the back of the queue) if it has none. */
static lvm_group_t *group_of(lvm_t *h, void *origin)
{
    lvm_group_t *g = find_group(h, origin);
    if (g != NULL)
        return g;
    g = xcalloc(1, sizeof(*g));
    g->origin = origin;
    if (origin != NULL)
        h->ops->ref(origin);
    if (h->runq_tail != NULL)
        h->runq_tail->next = g;
    else
        h->runq = g;
    h->runq_tail = g;
    return g;
}

/* Queues the preempted (or, fresh, not yet started) coroutine at the top of L (popped) at the back
 * of its socket's group. [-1, +0, m] */
static void enqueue(lvm_t *h, lua_State *L, int fresh, uint64_t spent, const char *fmt, const char *a,
                    const char *b)
{
    lvm_task_t *t = xcalloc(1, sizeof(*t));
    lvm_group_t *g;
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
static void task_drop(lvm_t *h, lvm_task_t *t)
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
static void group_free(lvm_t *h, lvm_group_t *g)
{
    lvm_group_t **pp = &h->runq, *prev = NULL;
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
        h->ops->unref(g->origin);
    free(g);
}

void lvm_cancel(lvm_t *h, void *s)
{
    lvm_group_t *g = find_group(h, s);
    if (g == NULL)
        return;
    while (g->head != NULL) {
        lvm_task_t *t = g->head;
        g->head = t->next;
        task_drop(h, t);
    }
    g->tail = NULL;
    g->cancelled = 1;
    if (g != h->running) /* else the run queue frees it when the call returns */
        group_free(h, g);
}

/* An abort is charged to the origin whose packet started the call, once per call however many
 * nested handlers its deadline ended: its owner decides (lvm_origin_ops_t.aborted). */
static void charge(lvm_t *h, uint64_t deadline)
{
    if (h->charged == deadline || h->origin == NULL)
        return;
    h->charged = deadline;
    h->ops->aborted(h, h->origin);
}

/* Resumes the task t of the group g at the head of the queue (t already unlinked): back at the
 * front of g if preempted again, freed otherwise. A resume that came while it was preempted is
 * delivered as soon as it waits. [-0, +0, m] */
static void resume_task(lvm_t *h, lua_State *L, lvm_group_t *g, lvm_task_t *t)
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

static int slice_spent(const lvm_t *h)
{
    return h->slice_end != 0 && uv_hrtime() >= h->slice_end;
}

/* Resumes queued handlers, one group after the other, until the turn's slice is spent. */
static int run_queue_k(lua_State *L)
{
    lvm_t *h = lua_touserdata(L, 1);
    lua_settop(L, 0);
    while (h->runq != NULL && !slice_spent(h)) {
        lvm_group_t *g = h->runq;
        lvm_task_t *t = g->head;
        if (t != NULL) {
            void *origin = h->origin;
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
    lvm_loop_t *loop = idle->data;
    lvm_t *h = loop->cur;
    if (h != NULL && h->runq != NULL) {
        if (loop->flush != NULL)
            loop->flush(loop->flush_ud); /* what the timers just queued (pings) goes out before a long slice */
        lvm_protect(h, run_queue_k, h, "the run queue");
    }
    if (h == NULL || h->runq == NULL)
        uv_idle_stop(idle);
}

/* The end of a loop turn: the next one has a new slice. After a memory bomb (an allocation refused
 * at the cap), a full collection; when much was freed since the peak, the freed pages go back to
 * the OS (malloc_trim), so that RSS does not stay at the high-water mark. */
static void on_turn(uv_check_t *check)
{
    lvm_loop_t *loop = check->data;
    lvm_t *h = loop->cur;
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

void lvm_loop_start(lvm_loop_t *loop, uv_loop_t *uv)
{
    uv_idle_init(uv, &loop->run); /* started by enqueue() */
    loop->run.data = loop;
    uv_check_init(uv, &loop->turn);
    loop->turn.data = loop;
    uv_check_start(&loop->turn, on_turn);
    uv_unref((uv_handle_t *)&loop->turn);
}

void lvm_loop_close(lvm_loop_t *loop)
{
    if (loop->run.loop == NULL || uv_is_closing((uv_handle_t *)&loop->run))
        return;
    uv_close((uv_handle_t *)&loop->run, NULL);
    uv_close((uv_handle_t *)&loop->turn, NULL);
    if (loop->cur != NULL)
        loop->cur->nopreempt++; /* shutting down: what runs now runs to its end (within its budget) */
}

/* ---------------------------------------------------------------- entering handlers */

/* A handler of s's event waits in the queue (lvm.h) when s has handlers queued or one of them
 * ran past this turn's slice. Only for a call made straight from the event's dispatch (not nested
 * in another handler, which the caller expects to run now). */
static int must_wait(lvm_t *h)
{
    void *s = h->in_event;
    if (s == NULL || h->cur != NULL || h->nopreempt != 0 || h->slice_ns == 0)
        return 0;
    return s == h->overran || find_group(h, s) != NULL;
}

int lvm_callf(lua_State *L, int nargs, const char *fmt, const char *a, const char *b)
{
    int fn = lua_gettop(L) - nargs, st;
    uint64_t spent = 0;
    lvm_t *h = lvm_get(L);
    lua_State *co;
    luaL_checkstack(L, 4, "lvm_call");
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

int lvm_call(lua_State *L, int nargs, const char *what)
{
    return lvm_callf(L, nargs, "%s%s", what, "");
}

/* core.resume(co, ...): continues a handler suspended in emitWithAck. One that was preempted
 * before it could wait (between its test and its yield) gets the values when it waits. */
int lvm_core_resume(lua_State *L)
{
    lua_State *co = lua_tothread(L, 1);
    int n = lua_gettop(L) - 1;
    uint64_t spent = 0;
    lvm_task_t *t;
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
        enqueue(lvm_get(L), L, 0, spent, "%s%s", "a resumed handler", "");
    return 0;
}

/* core.call(fn, what, ...): runs fn like a handler (own coroutine, errors logged, not raised). */
int lvm_core_call(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    if (lua_type(L, 2) != LUA_TSTRING) {
        lua_pushliteral(L, "a");
        lua_replace(L, 2);
    }
    lua_pushvalue(L, 2);
    lua_remove(L, 2);
    lua_insert(L, 1); /* [name, fn, args...]: the name stays alive below the call */
    lvm_callf(L, lua_gettop(L) - 2, "%s handler%s", lua_tostring(L, 1), "");
    return 0;
}

void lvm_log_error(lvm_t *vm, const char *what, const char *err, void *origin, const char *event)
{
    const char *tb = strstr(err, "\nstack traceback:");
    const char *sid = NULL, *nsp = NULL;
    size_t n = tb != NULL ? (size_t)(tb - err) : strlen(err);
    if (origin != NULL && vm->ops != NULL && vm->ops->describe != NULL)
        sid = vm->ops->describe(origin, &nsp);
    log_with(LOG_ERROR,
             LOG_FIELDS(LOG_S("handler", what), LOG_S("sid", sid), LOG_S("nsp", nsp), LOG_S("event", event),
                        LOG_SN("error", err, n), LOG_TRAIL("traceback", tb ? tb + 1 : NULL)),
             "error in %s: %.*s", what, (int)n, err);
}

/* Message handler of lvm_protect: the error plus a traceback (lua.c's msghandler). */
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

int lvm_protectf(lvm_t *h, lua_CFunction fn, void *arg, const char *fmt, const char *a)
{
    lua_State *L = lvm_state(h);
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
        lvm_log_error(h, what, lua_tostring(L, -1) ? lua_tostring(L, -1) : "(no message)", NULL, NULL);
    }
    lua_settop(L, base);
    return rc == LUA_OK ? 0 : -1;
}

int lvm_protect(lvm_t *h, lua_CFunction fn, void *arg, const char *what)
{
    return lvm_protectf(h, fn, arg, "%s", what);
}

void lvm_selfcall(lua_State *L, int self_idx)
{
    if (lua_gettop(L) >= 1 && lua_rawequal(L, 1, self_idx))
        lua_remove(L, 1);
}

int lvm_method(lua_State *L, const luaL_Reg *list, int obj, const char *k)
{
    for (const luaL_Reg *m = list; m->name; m++)
        if (strcmp(k, m->name) == 0) {
            lua_pushvalue(L, obj);
            lua_pushcclosure(L, m->func, 1);
            return 1;
        }
    return 0;
}

int lvm_member(lua_State *L, int obj, const void *props_key, const void *methods_key, const char *k)
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
        lvm_push_hook(L, "bind"); /* the prelude's bind(self, fn): works as x.m() and x:m() */
        lua_pushvalue(L, obj);
        lua_pushvalue(L, -3);
        lua_call(L, 2, 1);
        lua_remove(L, -2);
        return 1;
    }
    lua_pop(L, 2);
    return 0;
}

void lvm_bind_members(lua_State *L, const void *props_key, const char *props, const void *methods_key,
                      const char *methods)
{
    lvm_push_hook(L, props);
    lua_rawsetp(L, LUA_REGISTRYINDEX, props_key);
    lvm_push_hook(L, methods);
    lua_rawsetp(L, LUA_REGISTRYINDEX, methods_key);
}

void lvm_set_hooks(lua_State *L)
{
    lua_rawsetp(L, LUA_REGISTRYINDEX, &HOOKS_KEY);
}

void lvm_push_hook(lua_State *L, const char *name)
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
    log_with(LOG_INFO, LOG_FIELDS(LOG_S("source", "print")), "%s", lua_tostring(L, -1));
    return 0;
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

/* The VM's allocator: counts what Lua holds and refuses to go past the limit (Lua then runs an
 * emergency collection and, if that is not enough, raises "not enough memory" in the handler). */
static void *lalloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    lvm_t *h = ud;
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

/* [-0, +0, e] The VM's own set-up, in protected mode from lvm_new. */
static int open_k(lua_State *L)
{
    lvm_t *h = lua_touserdata(L, 1);
    lua_pushlightuserdata(L, h);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &VM_KEY);
    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &POOL_KEY);
    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &PREEMPTED_KEY);
    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &HOOKS_KEY);
    luaL_openlibs(L);
    source_only(L);
    lua_pushcfunction(L, l_print);
    lua_setglobal(L, "print");
    /* lua-cjson, which apps may require (siolua's own JSON is lvalue's) */
    luaL_requiref(L, "cjson", luaopen_cjson, 0);
    lua_pop(L, 1);
    return 0;
}

lvm_t *lvm_new(const lvm_config_t *cfg)
{
    lvm_t *h = xcalloc(1, sizeof(*h));
    h->ud = cfg->ud;
    h->loop = cfg->loop;
    h->ops = cfg->origin;
    h->metrics = cfg->metrics;
    h->mem_limit = cfg->mem_limit;
    h->budget_ns = cfg->budget_ms * 1000000ull;
    h->slice_ns = cfg->slice_ms * 1000000ull;
    h->L = lua_newstate(lalloc, h);
    if (h->L == NULL) {
        log_error("siolua: cannot create a Lua VM");
        free(h);
        return NULL;
    }
    lua_atpanic(h->L, panic);
    /* generational mode: the short-lived garbage of each packet is collected young, which keeps
     * the heap close to the live data (a few hundred bytes per idle socket) */
    lua_gc(h->L, LUA_GCGEN, 0, 0);
    if (lvm_protect(h, open_k, h, "siolua's Lua set-up") != 0) {
        lua_close(h->L);
        free(h);
        return NULL;
    }
    return h;
}

void lvm_free(lvm_t *h)
{
    if (h == NULL)
        return;
    /* preempted handlers are abandoned, as those waiting in emitWithAck */
    while (h->runq != NULL) {
        lvm_group_t *g = h->runq;
        while (g->head != NULL) {
            lvm_task_t *t = g->head;
            g->head = t->next;
            free(t); /* its refs go with the VM */
        }
        h->runq = g->next;
        if (g->origin != NULL)
            h->ops->unref(g->origin);
        free(g);
    }
    lua_close(h->L);
    free(h);
}

typedef struct {
    const char *path;
    int rc;
} file_args_t;

/* [-0, +0, e] Sets package.path for the app and runs it, in protected mode (lvm_run_file). */
static int run_file_k(lua_State *L)
{
    file_args_t *a = lua_touserdata(L, 1);
    const char *slash = strrchr(a->path, '/');
    lvm_t *h = lvm_get(L);
    /* require() finds the app's own modules next to it */
    lua_getglobal(L, "package");
    if (slash != NULL) {
        const char *dir = lua_pushlstring(L, a->path, (size_t)(slash - a->path));
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
    if (luaL_loadfilex(L, a->path, "t") != LUA_OK) {
        log_error("cannot load %s", lua_tostring(L, -1));
        return 0;
    }
    /* the top level runs to its end (its options are read right after), within the budget */
    h->nopreempt++;
    a->rc = lvm_call(L, 0, a->path);
    h->nopreempt--;
    return 0;
}

int lvm_run_file(lvm_t *h, const char *path)
{
    file_args_t a = {path, -1};
    if (lvm_protect(h, run_file_k, &a, "loading the app") != 0)
        return -1;
    return a.rc;
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

void lvm_box_push(lua_State *L, void *obj, void (*release)(void *obj))
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

void *lvm_box_get(lua_State *L, int idx)
{
    box_t *b = luaL_checkudata(L, idx, BOX_MT);
    return b->obj;
}

void *lvm_box_take(lua_State *L, int idx)
{
    box_t *b = luaL_checkudata(L, idx, BOX_MT);
    void *obj = b->obj;
    b->obj = NULL;
    return obj;
}

