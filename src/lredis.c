/* lredis: see lredis.h.
 *
 * Why r:pipeline() / r:multi() with p:call(...) and p:exec(): it is node-redis's shape
 * (client.multi().set(..).get(..).execAsPipeline() / .exec(), failures reported by one
 * MultiErrorReply with replies and errorIndexes), which reads the same in Lua and keeps one wait
 * per batch. ioredis's [[err, result], ...] pairs would put a nil-holed table in every answer.
 *
 * Lifetime: the C client (lredis_t) is counted: one reference while it is open, one per operation
 * in flight, so that replies arriving after r:close() (which lets hiredis finish what was sent)
 * or after the VM went away find it. Its Lua handle is a box (lwait_box_t) whose __gc closes an
 * open client, except while it has subscriptions: then a registry ref keeps it, as a listening
 * socket keeps its callbacks alive in Node. */
#include "lredis.h"

#include <hiredis/hiredis.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "lvm.h"
#include "log.h"
#include "lvalue.h"
#include "lwait.h"
#include "rconn.h"

#define MT              "siolua.redis"
#define PIPE_MT         "siolua.redis.pipeline"
#define WHAT            "siolua.redis"
#define DEFAULT_TIMEOUT 5000 /* ms per call (and to connect) */
#define MAX_CLIENTS     256  /* open clients per VM */
#define MAX_DEPTH       16   /* reply nesting converted (RESP2 replies are at most a few levels) */
#define RETRY_MIN_MS    100
#define RETRY_MAX_MS    5000

typedef struct {
    char *name;
    size_t len;
    int pattern;
} sub_t;

typedef struct lredis {
    lwait_res_t res;  /* on the VM's list while open */
    lwait_env_t *env; /* NULL once closed */
    lwait_box_t *box; /* the Lua handle (NULL once collected or closed) */
    rconn_url_t url;
    rconn_t cmd, sub;  /* commands; subscriptions (IDLE until the first subscribe) */
    uv_timer_t *retry; /* reconnects what is down (made on the first failure) */
    uint64_t timeout;  /* ms per call */
    uint64_t delay;    /* next retry delay */
    char why[160];     /* why the command connection is down */
    sub_t *subs;       /* every subscription, sent again on each connection */
    size_t nsubs;
    int refs;        /* 1 while open + 1 per operation in flight */
    int self_ref;    /* registry ref of the handle while it has subscriptions */
    int down_logged; /* the current outage was logged */
    int closed;
} lredis_t;

/* An operation: one command, or a pipeline of n. */
typedef struct {
    lredis_t *c;
    lwait_t *wait;        /* NULL: nobody waits any more (timeout, VM gone): replies are dropped */
    int n, got;           /* replies expected, received */
    int multi;            /* MULTI ... EXEC: the result is EXEC's reply */
    redisReply *last;     /* single command: the reply, during the callback */
    redisReply **replies; /* pipeline: copies, kept until the last one came */
    char lost[200];       /* the connection's error when a reply is NULL */
} rop_t;

/* ---------------------------------------------------------------- client lifetime */

static void unref(lredis_t *c)
{
    if (--c->refs > 0)
        return;
    for (size_t i = 0; i < c->nsubs; i++)
        free(c->subs[i].name);
    free(c->subs);
    rconn_url_free(&c->url);
    free(c);
}

static void timer_closed(uv_handle_t *h)
{
    free(h);
}

/* Closes c: no new calls, what was sent still gets its replies (graceful), subscriptions end.
 * vm_gone: the VM is being closed (its registry is not touched). */
static void client_close(lredis_t *c, int vm_gone)
{
    if (c->closed)
        return;
    c->closed = 1;
    lwait_res_remove(&c->res);
    if (c->box != NULL)
        c->box->p = NULL;
    c->box = NULL;
    if (!vm_gone && c->self_ref != LUA_NOREF)
        luaL_unref(c->env->h->L, LUA_REGISTRYINDEX, c->self_ref);
    c->self_ref = LUA_NOREF;
    rconn_drop(&c->sub, 0);
    rconn_close(&c->sub);
    rconn_close(&c->cmd);
    if (c->retry != NULL) {
        uv_close((uv_handle_t *)c->retry, timer_closed);
        c->retry = NULL;
    }
    c->env = NULL;
    unref(c);
}

static void res_close(lwait_res_t *r)
{
    client_close((lredis_t *)r, 1);
}

/* ---------------------------------------------------------------- connections */

static void send_sub(lredis_t *c, const sub_t *s, const char *cmd);

static void connect_one(rconn_t *rc);

static void on_retry(uv_timer_t *t)
{
    lredis_t *c = t->data;
    if (c->closed)
        return;
    if (c->cmd.state == RCONN_IDLE)
        connect_one(&c->cmd);
    if (c->nsubs > 0 && c->sub.state == RCONN_IDLE)
        connect_one(&c->sub);
}

static void schedule_retry(lredis_t *c)
{
    if (c->closed)
        return;
    if (c->retry == NULL) {
        c->retry = xcalloc(1, sizeof(*c->retry));
        uv_timer_init(c->env->loop, c->retry);
        c->retry->data = c;
    }
    if (uv_is_active((uv_handle_t *)c->retry))
        return;
    uv_timer_start(c->retry, on_retry, c->delay, 0);
    c->delay = c->delay * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : c->delay * 2;
}

static void on_up(rconn_t *rc)
{
    lredis_t *c = rc->data;
    if (rc == &c->cmd) {
        c->delay = RETRY_MIN_MS;
        if (c->down_logged)
            log_info("siolua.redis: connected again to %s:%d", c->url.host, c->url.port);
        c->down_logged = 0;
        c->why[0] = '\0';
        return;
    }
    for (size_t i = 0; i < c->nsubs; i++)
        send_sub(c, &c->subs[i], c->subs[i].pattern ? "PSUBSCRIBE" : "SUBSCRIBE");
}

static void on_down(rconn_t *rc, const char *why, int was_up)
{
    lredis_t *c = rc->data;
    if (rc == &c->cmd) {
        snprintf(c->why, sizeof(c->why), "%s", why ? why : "closed");
        if (!c->down_logged)
            log_warn("siolua.redis: %s %s:%d (%s): calls fail until it is back; reconnecting",
                     was_up ? "connection lost to" : "cannot connect to", c->url.host, c->url.port, c->why);
        c->down_logged = 1;
    }
    if (was_up)
        c->delay = RETRY_MIN_MS;
    schedule_retry(c);
}

static const rconn_handler_t handler = {on_up, on_down};

static void connect_one(rconn_t *rc)
{
    const char *why = NULL;
    if (rconn_connect(rc, &why) != 0)
        on_down(rc, why, 0);
}

/* ---------------------------------------------------------------- replies -> Lua */

static void push_reply(lua_State *L, const redisReply *rep, int depth)
{
    luaL_checkstack(L, 4, "redis reply");
    switch (rep->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
        lua_pushlstring(L, rep->str, rep->len);
        break;
    case REDIS_REPLY_INTEGER:
        lua_pushinteger(L, (lua_Integer)rep->integer);
        break;
    case REDIS_REPLY_ERROR:
        lwait_push_error(L, rep->str, rep->len);
        break;
    case REDIS_REPLY_ARRAY:
        lua_createtable(L, rep->elements < 4096 ? (int)rep->elements : 4096, 0);
        for (size_t i = 0; depth < MAX_DEPTH && i < rep->elements; i++) {
            push_reply(L, rep->element[i], depth + 1);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        lvalue_mark_array(L, -1);
        break;
    default: /* nil inside an array: null keeps the sequence whole */
        lua_pushlightuserdata(L, NULL);
    }
}

void lredis_push_reply(lua_State *L, const redisReply *rep)
{
    push_reply(L, rep, 0);
}

/* A deep copy (malloc'd) of a reply hiredis frees after its callback. */
static redisReply *copy_reply(const redisReply *r)
{
    redisReply *c = xcalloc(1, sizeof(*c));
    c->type = r->type;
    c->integer = r->integer;
    if (r->str != NULL) {
        c->str = xmalloc(r->len + 1);
        memcpy(c->str, r->str, r->len);
        c->str[r->len] = '\0';
        c->len = r->len;
    }
    if (r->type == REDIS_REPLY_ARRAY && r->elements > 0) {
        c->element = xcalloc(r->elements, sizeof(*c->element));
        c->elements = r->elements;
        for (size_t i = 0; i < r->elements; i++)
            c->element[i] = copy_reply(r->element[i]);
    }
    return c;
}

static void free_copy(redisReply *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->elements; i++)
        free_copy(r->element[i]);
    free(r->element);
    free(r->str);
    free(r);
}

/* Replies of a batch (first..first+n) as a sequence; raises the node-redis-like error (a table with
 * message, replies, errorIndexes) when some failed. Returns 1, or -1 with the error pushed. */
static int push_batch(lua_State *L, redisReply *const *v, size_t n)
{
    int nerr = 0;
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        push_reply(L, v[i], 0);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
        nerr += v[i]->type == REDIS_REPLY_ERROR;
    }
    lvalue_mark_array(L, -1);
    if (nerr == 0)
        return 1;
    {
        char msg[96];
        int k = 0;
        int len = snprintf(msg, sizeof(msg), "%d command%s failed, see .replies and .errorIndexes", nerr,
                           nerr > 1 ? "s" : "");
        lwait_push_error(L, msg, (size_t)len);
        lua_insert(L, -2);
        lua_setfield(L, -2, "replies");
        lua_createtable(L, nerr, 0);
        for (size_t i = 0; i < n; i++)
            if (v[i]->type == REDIS_REPLY_ERROR) {
                lua_pushinteger(L, (lua_Integer)i + 1);
                lua_rawseti(L, -2, ++k);
            }
        lua_setfield(L, -2, "errorIndexes");
    }
    return -1;
}

static int push_result(lua_State *L, void *arg)
{
    rop_t *op = arg;
    if (op->lost[0] != '\0') {
        lua_pushstring(L, op->lost);
        return -1;
    }
    if (op->n == 1) {
        const redisReply *r = op->last;
        if (r->type == REDIS_REPLY_ERROR) {
            lua_pushlstring(L, r->str, r->len);
            return -1;
        }
        if (r->type == REDIS_REPLY_NIL)
            lua_pushnil(L); /* a missing key: nil, not null */
        else
            push_reply(L, r, 0);
        return 1;
    }
    if (!op->multi)
        return push_batch(L, op->replies, (size_t)op->n);
    {
        const redisReply *exec = op->replies[op->n - 1];
        if (exec->type == REDIS_REPLY_ERROR) { /* EXECABORT: a command was refused when queued */
            lua_pushlstring(L, exec->str, exec->len);
            return -1;
        }
        if (exec->type != REDIS_REPLY_ARRAY) {
            lua_pushstring(L, WHAT ": transaction aborted: a WATCHed key changed");
            return -1;
        }
        return push_batch(L, exec->element, exec->elements);
    }
}

static void op_free(rop_t *op)
{
    if (op->replies != NULL)
        for (int i = 0; i < op->n; i++)
            free_copy(op->replies[i]);
    free(op->replies);
    unref(op->c);
    free(op);
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    rop_t *op = privdata;
    redisReply *rep = reply;
    if (rep == NULL && op->lost[0] == '\0')
        snprintf(op->lost, sizeof(op->lost), WHAT ": connection to %s:%d lost (%s)", op->c->url.host, op->c->url.port,
                 ac->errstr[0] ? ac->errstr : "closed");
    if (op->n > 1 && rep != NULL)
        op->replies[op->got] = copy_reply(rep);
    op->last = rep;
    if (++op->got < op->n)
        return;
    if (op->wait != NULL) {
        lwait_t *w = op->wait;
        op->wait = NULL;
        lwait_resume(w, push_result, op);
    }
    op_free(op);
}

static void op_cancel(void *arg)
{
    ((rop_t *)arg)->wait = NULL;
}

/* ---------------------------------------------------------------- calls */

static lredis_t *check(lua_State *L, int idx)
{
    return lwait_checkbox(L, idx, MT, "the Redis client");
}

/* 1 if cmd would leave the connection in a mode where replies no longer match commands. */
static int subscribing(const char *cmd, size_t len)
{
    static const char *const names[] = {"SUBSCRIBE",    "PSUBSCRIBE",   "SSUBSCRIBE", "UNSUBSCRIBE",
                                        "PUNSUBSCRIBE", "SUNSUBSCRIBE", "MONITOR",    NULL};
    for (int i = 0; names[i] != NULL; i++)
        if (strlen(names[i]) == len && strncasecmp(cmd, names[i], len) == 0)
            return 1;
    return 0;
}

/* Command arguments stack[first..top] as hiredis argv (strings stay on the stack). [-0, +1, v] */
static int args(lua_State *L, int first, const char ***argv, size_t **lens)
{
    int n = lua_gettop(L) - first + 1;
    void *mem;
    if (n < 1)
        luaL_error(L, WHAT ": a command name is needed");
    mem = lua_newuserdatauv(L, (size_t)n * (sizeof(char *) + sizeof(size_t)), 0);
    *argv = mem;
    *lens = (size_t *)((char *)mem + (size_t)n * sizeof(char *));
    for (int i = 0; i < n; i++) {
        int idx = first + i;
        const char *p;
        if (lua_type(L, idx) == LUA_TNUMBER && !lua_isinteger(L, idx)) { /* every digit of a float */
            char num[40];
            snprintf(num, sizeof(num), "%.17g", lua_tonumber(L, idx));
            lua_pushstring(L, num);
            lua_replace(L, idx);
        }
        if (lua_type(L, idx) == LUA_TSTRING || lua_type(L, idx) == LUA_TNUMBER)
            p = lua_tolstring(L, idx, &(*lens)[i]);
        else if ((p = lvalue_tobinary(L, idx, &(*lens)[i])) == NULL)
            luaL_error(L, WHAT ": argument %d is a %s (strings, numbers and siolua.binary only)", i + 1,
                       luaL_typename(L, idx));
        (*argv)[i] = p;
    }
    if (subscribing((*argv)[0], (*lens)[0]))
        luaL_error(L, WHAT ": %s puts a connection in subscriber mode: use r:subscribe() / r:psubscribe()", (*argv)[0]);
    return n;
}

/* The connection to send on, or raises why it is down. */
static redisAsyncContext *conn_or_raise(lua_State *L, lredis_t *c)
{
    if (c->cmd.state == RCONN_IDLE)
        luaL_error(L, WHAT ": not connected to %s:%d (%s)", c->url.host, c->url.port,
                   c->why[0] ? c->why : "connecting");
    return c->cmd.ac;
}

/* Sends one operation of n commands (argvs[i], lens[i], argcs[i]) and waits for it. */
static int send_and_wait(lua_State *L, lredis_t *c, int n, int multi, const char *const *const *argvs,
                         const size_t *const *lens, const int *argcs)
{
    redisAsyncContext *ac;
    rop_t *op;
    lwait_t *w;
    lwait_check(L, WHAT);
    ac = conn_or_raise(L, c);
    w = lwait_begin(L, c->timeout, WHAT, op_cancel); /* may raise: before anything is allocated */
    op = xcalloc(1, sizeof(*op));
    op->c = c;
    op->n = n;
    op->multi = multi;
    if (n > 1)
        op->replies = xcalloc((size_t)n, sizeof(*op->replies));
    lwait_bind(w, op);
    for (int i = 0; i < n; i++) {
        /* hiredis formats into its output buffer: it fails only when out of memory, and then
         * before it took the callback */
        if (redisAsyncCommandArgv(ac, on_reply, op, argcs[i], (const char **)argvs[i], lens[i]) != REDIS_OK) {
            op->n = i; /* the replies of those already queued free it */
            lwait_abort(w);
            c->refs++;
            if (i == 0)
                op_free(op);
            return luaL_error(L, WHAT ": cannot send the command (out of memory)");
        }
    }
    c->refs++;
    op->wait = w;
    return lwait_yield(L, w);
}

/* r:call(cmd, args...) */
static int l_call(lua_State *L)
{
    lredis_t *c = check(L, 1);
    const char **argv;
    size_t *lens;
    int argc = args(L, 2, &argv, &lens);
    const char *const *av[1] = {argv};
    const size_t *lv[1] = {lens};
    return send_and_wait(L, c, 1, 0, av, lv, &argc);
}

/* ---------------------------------------------------------------- pipelines */

/* r:pipeline() / r:multi(): a table {client, multi, n, [i] = {args...}} with call and exec. */
static int new_pipeline(lua_State *L, int multi)
{
    check(L, 1);
    lua_createtable(L, 8, 3);
    lua_pushvalue(L, 1);
    lua_setfield(L, -2, "client");
    lua_pushboolean(L, multi);
    lua_setfield(L, -2, "multi");
    luaL_setmetatable(L, PIPE_MT);
    return 1;
}

static int l_pipeline(lua_State *L)
{
    return new_pipeline(L, 0);
}
static int l_multi(lua_State *L)
{
    return new_pipeline(L, 1);
}

static void check_pipe(lua_State *L)
{
    int ok = lua_getmetatable(L, 1);
    if (ok) {
        luaL_getmetatable(L, PIPE_MT);
        ok = lua_rawequal(L, -1, -2);
        lua_pop(L, 2);
    }
    if (!ok)
        luaL_typeerror(L, 1, "siolua.redis pipeline (call it as p:call / p:exec)");
}

/* p:call(cmd, args...): queued until exec; returns p (chainable). */
static int p_call(lua_State *L)
{
    int n = lua_gettop(L) - 1;
    check_pipe(L);
    if (n < 1)
        return luaL_error(L, WHAT ": a command name is needed");
    lua_createtable(L, n, 0);
    for (int i = 1; i <= n; i++) {
        lua_pushvalue(L, i + 1);
        lua_rawseti(L, -2, i);
    }
    lua_rawseti(L, 1, (lua_Integer)lua_rawlen(L, 1) + 1);
    lua_settop(L, 1);
    return 1;
}

/* p:exec(): sends every queued command at once (within MULTI/EXEC for r:multi()) and waits. */
static int p_exec(lua_State *L)
{
    int ncmd, multi, n, k = 0;
    lredis_t *c;
    const char ***argvs;
    const size_t **lens;
    int *argcs;
    static const char *const multi_argv[1] = {"MULTI"}, *const exec_argv[1] = {"EXEC"};
    static const size_t multi_len[1] = {5}, exec_len[1] = {4};
    check_pipe(L);
    lua_settop(L, 1);
    ncmd = (int)lua_rawlen(L, 1);
    if (ncmd == 0)
        return luaL_error(L, WHAT ": exec() of an empty pipeline");
    lua_getfield(L, 1, "multi");
    multi = lua_toboolean(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, 1, "client"); /* 2: kept while the handler waits */
    c = check(L, 2);
    n = ncmd + (multi ? 2 : 0);
    {
        void *mem = lua_newuserdatauv(L, (size_t)n * (sizeof(char **) + sizeof(size_t *) + sizeof(int)), 0);
        argvs = mem;
        lens = (const size_t **)((char *)mem + (size_t)n * sizeof(char **));
        argcs = (int *)((char *)mem + (size_t)n * (sizeof(char **) + sizeof(size_t *)));
    }
    if (multi) {
        argvs[k] = (const char **)multi_argv;
        lens[k] = multi_len;
        argcs[k++] = 1;
    }
    for (int i = 1; i <= ncmd; i++) {
        int top = lua_gettop(L), m;
        lua_rawgeti(L, 1, i); /* the command's table: its strings stay on the stack below */
        m = (int)lua_rawlen(L, -1);
        luaL_checkstack(L, m + 2, "pipeline");
        for (int j = 1; j <= m; j++)
            lua_rawgeti(L, top + 1, j);
        argcs[k] = args(L, top + 2, (const char ***)&argvs[k], (size_t **)&lens[k]);
        /* keep the argument copies and their argv: move the userdata below the arguments */
        k++;
    }
    if (multi) {
        argvs[k] = (const char **)exec_argv;
        lens[k] = exec_len;
        argcs[k++] = 1;
    }
    return send_and_wait(L, c, n, multi, (const char *const *const *)argvs, lens, argcs);
}

/* ---------------------------------------------------------------- pub/sub */

static void on_sub_message(redisAsyncContext *ac, void *reply, void *privdata);

static void send_sub(lredis_t *c, const sub_t *s, const char *cmd)
{
    const char *argv[2] = {cmd, s->name};
    size_t lens[2] = {strlen(cmd), s->len};
    if (c->sub.state == RCONN_IDLE)
        return;
    redisAsyncCommandArgv(c->sub.ac, on_sub_message, c, 2, argv, lens);
}

typedef struct {
    lredis_t *c;
    const redisReply *channel, *payload, *pattern;
} msg_args_t;

/* [-0, +0, e] Calls the subscription's function as a handler: fn(message, channel[, pattern]). */
static int message_k(lua_State *L)
{
    msg_args_t *a = lua_touserdata(L, 1);
    const redisReply *key = a->pattern != NULL ? a->pattern : a->channel;
    lua_settop(L, 0);
    lua_rawgeti(L, LUA_REGISTRYINDEX, a->c->self_ref);
    if (lua_getiuservalue(L, 1, 1) != LUA_TTABLE)
        return 0;
    lua_rawgeti(L, 2, a->pattern != NULL ? 2 : 1);
    lua_pushlstring(L, key->str, key->len);
    if (lua_rawget(L, 3) != LUA_TFUNCTION)
        return 0;
    lua_pushlstring(L, a->payload->str, a->payload->len);
    lua_pushlstring(L, a->channel->str, a->channel->len);
    if (a->pattern != NULL)
        lua_pushlstring(L, a->pattern->str, a->pattern->len);
    lvm_call(L, a->pattern != NULL ? 3 : 2, "redis subscription callback");
    return 0;
}

static void on_sub_message(redisAsyncContext *ac, void *reply, void *privdata)
{
    redisReply *r = reply;
    lredis_t *c = privdata;
    msg_args_t a = {c, NULL, NULL, NULL};
    int pm;
    if (ac->data == NULL || r == NULL || c->closed || r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
        r->element[0]->type != REDIS_REPLY_STRING)
        return; /* a dropped connection, a (un)subscribe confirmation */
    pm = strcmp(r->element[0]->str, "pmessage") == 0;
    if (!pm && strcmp(r->element[0]->str, "message") != 0)
        return;
    if (pm && r->elements < 4)
        return;
    a.pattern = pm ? r->element[1] : NULL;
    a.channel = r->element[pm ? 2 : 1];
    a.payload = r->element[pm ? 3 : 2];
    if (a.channel->type != REDIS_REPLY_STRING || a.payload->type != REDIS_REPLY_STRING || c->self_ref == LUA_NOREF)
        return;
    lvm_protect(c->env->h, message_k, &a, "redis subscription");
}

static int find_sub(const lredis_t *c, const char *name, size_t len, int pattern)
{
    for (size_t i = 0; i < c->nsubs; i++)
        if (c->subs[i].pattern == pattern && c->subs[i].len == len && memcmp(c->subs[i].name, name, len) == 0)
            return (int)i;
    return -1;
}

/* r:subscribe(channel, fn) / r:psubscribe(pattern, fn): returns at once. */
static int subscribe(lua_State *L, int pattern)
{
    lredis_t *c = check(L, 1);
    size_t len;
    const char *name = luaL_checklstring(L, 2, &len);
    luaL_checktype(L, 3, LUA_TFUNCTION);
    lua_getiuservalue(L, 1, 1); /* {channels, patterns} */
    lua_rawgeti(L, -1, pattern ? 2 : 1);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, 3);
    lua_rawset(L, -3);
    if (find_sub(c, name, len, pattern) >= 0)
        return 0; /* a new function for it */
    if (c->self_ref == LUA_NOREF) {
        lua_pushvalue(L, 1);
        c->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    c->subs = xrealloc(c->subs, (c->nsubs + 1) * sizeof(*c->subs));
    c->subs[c->nsubs] = (sub_t){xstrndup(name, len), len, pattern};
    c->nsubs++;
    if (c->sub.state == RCONN_IDLE)
        connect_one(&c->sub); /* its up callback sends every subscription */
    else
        send_sub(c, &c->subs[c->nsubs - 1], pattern ? "PSUBSCRIBE" : "SUBSCRIBE");
    return 0;
}

static int l_subscribe(lua_State *L)
{
    return subscribe(L, 0);
}
static int l_psubscribe(lua_State *L)
{
    return subscribe(L, 1);
}

static int unsubscribe(lua_State *L, int pattern)
{
    lredis_t *c = check(L, 1);
    size_t len;
    const char *name = luaL_checklstring(L, 2, &len);
    int i = find_sub(c, name, len, pattern);
    if (i < 0)
        return 0;
    send_sub(c, &c->subs[i], pattern ? "PUNSUBSCRIBE" : "UNSUBSCRIBE");
    free(c->subs[i].name);
    c->subs[i] = c->subs[--c->nsubs];
    lua_getiuservalue(L, 1, 1);
    lua_rawgeti(L, -1, pattern ? 2 : 1);
    lua_pushvalue(L, 2);
    lua_pushnil(L);
    lua_rawset(L, -3);
    if (c->nsubs == 0) { /* nothing keeps the handle any more */
        luaL_unref(L, LUA_REGISTRYINDEX, c->self_ref);
        c->self_ref = LUA_NOREF;
    }
    return 0;
}

static int l_unsubscribe(lua_State *L)
{
    return unsubscribe(L, 0);
}
static int l_punsubscribe(lua_State *L)
{
    return unsubscribe(L, 1);
}

/* ---------------------------------------------------------------- handle */

static void app_close(void *p)
{
    client_close(p, 0);
}

/* r:close(), and __gc */
static int l_close(lua_State *L)
{
    return lwait_box_close(L, MT, app_close);
}

static const luaL_Reg methods[] = {{"call", l_call},
                                   {"pipeline", l_pipeline},
                                   {"multi", l_multi},
                                   {"subscribe", l_subscribe},
                                   {"psubscribe", l_psubscribe},
                                   {"unsubscribe", l_unsubscribe},
                                   {"punsubscribe", l_punsubscribe},
                                   {"close", l_close},
                                   {NULL, NULL}};

static int l_index(lua_State *L)
{
    lwait_box_t *b = luaL_checkudata(L, 1, MT);
    const char *k = luaL_checkstring(L, 2);
    if (strcmp(k, "connected") == 0) {
        lua_pushboolean(L, b->p != NULL && ((lredis_t *)b->p)->cmd.state == RCONN_UP);
        return 1;
    }
    lua_getmetatable(L, 1);
    lua_getfield(L, -1, "methods");
    lua_getfield(L, -1, k);
    return 1;
}

static int l_tostring(lua_State *L)
{
    lwait_box_t *b = luaL_checkudata(L, 1, MT);
    lredis_t *c = b->p;
    if (c == NULL)
        lua_pushliteral(L, "siolua.redis (closed)");
    else
        lua_pushfstring(L, "siolua.redis (%s:%d/%d)", c->url.host, c->url.port, c->url.db);
    return 1;
}

/* siolua.redis(url [, {timeout = ms}]) */
static int l_new(lua_State *L)
{
    const char *url = luaL_checkstring(L, 1), *err = NULL;
    uint64_t timeout = lwait_opt_ms(L, 2, "timeout", DEFAULT_TIMEOUT);
    rconn_url_t u;
    lwait_env_t *env = lwait_env(L);
    lwait_box_t *b;
    lredis_t *c;
    if (env->closed)
        return luaL_error(L, WHAT ": the app is being unloaded");
    lwait_res_limit(L, res_close, MAX_CLIENTS, "siolua.redis clients");
    b = lua_newuserdatauv(L, sizeof(*b), 1);
    b->p = NULL;
    luaL_setmetatable(L, MT);
    lua_createtable(L, 2, 0); /* uservalue: {channels = {name = fn}, patterns = {pattern = fn}} */
    lua_newtable(L);
    lua_rawseti(L, -2, 1);
    lua_newtable(L);
    lua_rawseti(L, -2, 2);
    lua_setiuservalue(L, -2, 1);
    if (rconn_url_parse(url, &u, &err) != 0)
        return luaL_error(L, WHAT ": bad URL %s: %s", url, err);
    /* nothing raises from here on */
    c = xcalloc(1, sizeof(*c));
    c->url = u;
    c->env = env;
    c->box = b;
    c->timeout = timeout;
    c->delay = RETRY_MIN_MS;
    c->refs = 1;
    c->self_ref = LUA_NOREF;
    c->res.close = res_close;
    rconn_init(&c->cmd, env->loop, &c->url, &handler, c, WHAT, timeout);
    rconn_init(&c->sub, env->loop, &c->url, &handler, c, WHAT, timeout);
    lwait_res_add(env, &c->res);
    b->p = c;
    connect_one(&c->cmd);
    return 1;
}

void lredis_open(lua_State *L)
{
    luaL_newmetatable(L, MT);
    lua_pushcfunction(L, l_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_tostring);
    lua_setfield(L, -2, "__tostring");
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "methods");
    lua_pop(L, 1);
    luaL_newmetatable(L, PIPE_MT);
    lua_createtable(L, 0, 2);
    lua_pushcfunction(L, p_call);
    lua_setfield(L, -2, "call");
    lua_pushcfunction(L, p_exec);
    lua_setfield(L, -2, "exec");
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    lua_getglobal(L, "siolua");
    lua_pushcfunction(L, l_new);
    lua_setfield(L, -2, "redis");
    lua_pop(L, 1);
}
