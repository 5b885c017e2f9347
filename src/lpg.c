/* lpg: see lpg.h.
 *
 * A pool (lpg_t) owns its connections (pgconn_t) and a FIFO of calls waiting for one (pgq_t). A
 * connection is CONNECTING (PQconnectPoll driven by its poll handle; the socket may change between
 * two polls, the handle follows it), IDLE, or BUSY with one call. A call's rows arrive in
 * single-row mode and are kept as libpq results until the last one; then they become Lua rows and
 * the handler resumes. A connection in doubt (timed out, over the result cap, lost) is closed,
 * never reused. */
#include "lpg.h"

#include <lauxlib.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "buf.h"
#include "lvalue.h"
#include "lwait.h"

#define MT                 "siolua.pg"
#define WHAT               "siolua.pg"
#define DEFAULT_TIMEOUT    10000
#define DEFAULT_MAX        4
#define DEFAULT_MAX_RESULT ((lua_Integer)16 << 20)
#define MAX_POOLS          64 /* open pools per VM */

/* type OIDs (pg_type.h) */
enum {
    OID_BOOL = 16,
    OID_BYTEA = 17,
    OID_INT8 = 20,
    OID_INT2 = 21,
    OID_INT4 = 23,
    OID_OID = 26,
    OID_JSON = 114,
    OID_FLOAT4 = 700,
    OID_FLOAT8 = 701,
    OID_JSONB = 3802,
};

enum { C_CONNECTING, C_IDLE, C_BUSY };
enum { Q_EXEC, Q_QUERY };

typedef struct lpg lpg_t;
typedef struct pgq pgq_t;

typedef struct pgconn {
    lpg_t *pool;
    PGconn *conn;
    uv_poll_t *poll; /* on PQsocket (its own allocation: it closes later) */
    int fd;
    int state; /* C_* */
    pgq_t *q;  /* the call it runs (BUSY) */
    struct pgconn *next;
} pgconn_t;

struct pgq {
    lpg_t *pool;
    lwait_t *wait; /* NULL: nobody waits any more */
    int kind;      /* Q_* */
    char *sql;
    int nparams;
    char **values;          /* NULL entries: SQL NULL */
    int *lengths, *formats; /* format 1 (binary) for siolua.binary */
    pgconn_t *conn;         /* running on it; NULL while queued */
    PGresult **rows;        /* single-row results */
    size_t nrows, cap;
    size_t bytes; /* of values in rows */
    char *err;
    long long changes;
    pgq_t *next; /* the pool's queue */
};

struct lpg {
    lwait_res_t res; /* on the VM's list while open */
    lwait_env_t *env;
    lwait_box_t *box; /* the Lua handle (NULL once collected or closed) */
    char *conninfo;
    int max;          /* connections */
    uint64_t timeout; /* ms per call */
    size_t max_result;
    pgconn_t *conns;
    int nconns;
    pgq_t *head, *tail; /* calls waiting for a connection */
    uv_timer_t *kick;   /* dispatches new calls on the next turn (made on the first call) */
    int closed;
};

/* ---------------------------------------------------------------- calls */

static void q_free(pgq_t *q)
{
    for (int i = 0; i < q->nparams; i++)
        free(q->values[i]);
    free(q->values);
    free(q->lengths);
    free(q->formats);
    for (size_t i = 0; i < q->nrows; i++)
        PQclear(q->rows[i]);
    free(q->rows);
    free(q->sql);
    free(q->err);
    free(q);
}

static void q_error(pgq_t *q, const char *msg)
{
    size_t n = strlen(msg);
    if (q->err != NULL)
        return; /* the first error says what went wrong */
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        n--;
    q->err = xmalloc(n + sizeof(WHAT) + 2);
    snprintf(q->err, n + sizeof(WHAT) + 2, WHAT ": %.*s", (int)n, msg);
}

/* Pushes one value as lpg.h maps it. [-0, +1, e] */
static void push_value(lua_State *L, const PGresult *r, int col, int depth)
{
    const char *v = PQgetvalue(r, 0, col);
    size_t n = (size_t)PQgetlength(r, 0, col);
    if (PQgetisnull(r, 0, col)) {
        lua_pushlightuserdata(L, NULL);
        return;
    }
    switch (PQftype(r, col)) {
    case OID_BOOL:
        lua_pushboolean(L, v[0] == 't');
        return;
    case OID_INT2:
    case OID_INT4:
    case OID_INT8:
    case OID_OID:
        lua_pushinteger(L, (lua_Integer)strtoll(v, NULL, 10));
        return;
    case OID_FLOAT4:
    case OID_FLOAT8:
        lua_pushnumber(L, strtod(v, NULL)); /* NaN, Infinity, -Infinity too */
        return;
    case OID_BYTEA:
        if (n >= 2 && v[0] == '\\' && v[1] == 'x') { /* hex output, the default since 9.0 */
            size_t out = (n - 2) / 2;
            luaL_Buffer b;
            char *p = luaL_buffinitsize(L, &b, out);
            for (size_t i = 0; i < out; i++) {
                unsigned hi = (unsigned char)v[2 + 2 * i], lo = (unsigned char)v[3 + 2 * i];
                hi = hi <= '9' ? hi - '0' : (hi | 32) - 'a' + 10;
                lo = lo <= '9' ? lo - '0' : (lo | 32) - 'a' + 10;
                p[i] = (char)(hi << 4 | lo);
            }
            luaL_pushresultsize(&b, out);
            lvalue_push_binary(L, lua_tostring(L, -1), out);
            lua_remove(L, -2);
            return;
        }
        lvalue_push_binary(L, v, n);
        return;
    case OID_JSON:
    case OID_JSONB:
        lvalue_push_json(L, v, n, NULL, 0, depth);
        return;
    default:
        lua_pushlstring(L, v, n);
    }
}

static int push_result(lua_State *L, void *arg)
{
    pgq_t *q = arg;
    int depth = q->pool->env != NULL ? q->pool->env->max_json_depth : 64;
    if (q->err != NULL) {
        lua_pushstring(L, q->err);
        return -1;
    }
    if (q->kind == Q_EXEC) {
        lua_createtable(L, 0, 1);
        lua_pushinteger(L, (lua_Integer)q->changes);
        lua_setfield(L, -2, "changes");
        return 1;
    }
    luaL_checkstack(L, 6, "rows");
    lua_createtable(L, q->nrows < 100000 ? (int)q->nrows : 100000, 0);
    for (size_t i = 0; i < q->nrows; i++) {
        const PGresult *r = q->rows[i];
        int ncols = PQnfields(r);
        lvalue_obj_t ob;
        lvalue_obj_begin(L, &ob, ncols);
        for (int c = 0; c < ncols; c++) {
            lua_pushstring(L, PQfname(r, c));
            push_value(L, r, c, depth);
            lvalue_obj_set(L, &ob);
        }
        lvalue_obj_end(L, &ob);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lvalue_mark_array(L, -1);
    return 1;
}

/* The call is over (q->err says how): its handler resumes, q is freed. */
static void q_done(pgq_t *q)
{
    if (q->wait != NULL) {
        lwait_t *w = q->wait;
        q->wait = NULL;
        lwait_resume(w, push_result, q);
    }
    q_free(q);
}

/* ---------------------------------------------------------------- connections */

static void on_poll(uv_poll_t *p, int status, int events);
static void dispatch(lpg_t *pool);

static void poll_closed(uv_handle_t *h) /* and the kick timer */
{
    free(h);
}

/* Watches c's socket for events (following it when libpq changed it). */
static void watch(pgconn_t *c, int events)
{
    int fd = PQsocket(c->conn);
    if (c->poll != NULL && fd != c->fd) {
        uv_close((uv_handle_t *)c->poll, poll_closed);
        c->poll = NULL;
    }
    if (c->poll == NULL) {
        c->poll = xcalloc(1, sizeof(*c->poll));
        c->fd = fd;
        if (fd < 0 || uv_poll_init_socket(c->pool->env->loop, c->poll, fd) != 0) {
            free(c->poll);
            c->poll = NULL;
            return;
        }
        c->poll->data = c;
    }
    uv_poll_start(c->poll, events, on_poll);
}

/* Closes c and takes it out of its pool; its call (if any) fails with why. */
static void conn_close(pgconn_t *c, const char *why)
{
    lpg_t *pool = c->pool;
    pgconn_t **pp = &pool->conns;
    while (*pp != NULL && *pp != c)
        pp = &(*pp)->next;
    if (*pp == c) {
        *pp = c->next;
        pool->nconns--;
    }
    if (c->poll != NULL) {
        uv_close((uv_handle_t *)c->poll, poll_closed);
        c->poll = NULL;
    }
    PQfinish(c->conn);
    if (c->q != NULL) {
        pgq_t *q = c->q;
        c->q = NULL;
        q->conn = NULL;
        q_error(q, why);
        free(c);
        q_done(q);
        return;
    }
    free(c);
}

/* Fails every queued call (no connection can be made, or the pool closes). */
static void fail_queue(lpg_t *pool, const char *why)
{
    while (pool->head != NULL) {
        pgq_t *q = pool->head;
        pool->head = q->next;
        if (pool->head == NULL)
            pool->tail = NULL;
        q_error(q, why);
        q_done(q);
    }
}

static void connect_step(pgconn_t *c)
{
    lpg_t *pool = c->pool;
    switch (PQconnectPoll(c->conn)) {
    case PGRES_POLLING_READING:
        watch(c, UV_READABLE);
        return;
    case PGRES_POLLING_WRITING:
        watch(c, UV_WRITABLE);
        return;
    case PGRES_POLLING_OK:
        PQsetnonblocking(c->conn, 1);
        c->state = C_IDLE;
        watch(c, UV_READABLE); /* an idle connection the server closes is noticed */
        dispatch(pool);
        return;
    default: {
        char why[300];
        snprintf(why, sizeof(why), "cannot connect: %s", PQerrorMessage(c->conn));
        conn_close(c, why);
        if (pool->nconns == 0)
            fail_queue(pool, why); /* nothing else will serve them */
        return;
    }
    }
}

static void open_conn(lpg_t *pool)
{
    pgconn_t *c = xcalloc(1, sizeof(*c));
    c->pool = pool;
    c->fd = -1;
    c->state = C_CONNECTING;
    c->conn = PQconnectStart(pool->conninfo);
    c->next = pool->conns;
    pool->conns = c;
    pool->nconns++;
    if (c->conn == NULL || PQstatus(c->conn) == CONNECTION_BAD) {
        char why[300];
        snprintf(why, sizeof(why), "cannot connect: %s", c->conn ? PQerrorMessage(c->conn) : "out of memory");
        conn_close(c, why);
        if (pool->nconns == 0)
            fail_queue(pool, why);
        return;
    }
    watch(c, UV_WRITABLE); /* libpq: start as if PQconnectPoll had asked for writing */
}

/* A result of c's call: rows kept, errors and counts noted. Returns -1 when the result cap was
 * passed (the connection must go). */
static int take(pgconn_t *c, PGresult *r)
{
    pgq_t *q = c->q;
    switch (PQresultStatus(r)) {
    case PGRES_SINGLE_TUPLE:
        if (q->kind == Q_QUERY && q->err == NULL) {
            for (int i = 0; i < PQnfields(r); i++)
                q->bytes += (size_t)PQgetlength(r, 0, i);
            if (q->bytes > c->pool->max_result) {
                char msg[160];
                snprintf(msg, sizeof(msg), "the result is larger than %zu bytes (maxResultBytes)", c->pool->max_result);
                q_error(q, msg);
                PQclear(r);
                return -1;
            }
            if (q->nrows == q->cap) {
                q->cap = q->cap ? q->cap * 2 : 16;
                q->rows = xrealloc(q->rows, q->cap * sizeof(*q->rows));
            }
            q->rows[q->nrows++] = r;
            return 0;
        }
        break;
    case PGRES_TUPLES_OK:
    case PGRES_COMMAND_OK:
        q->changes = strtoll(PQcmdTuples(r), NULL, 10);
        break;
    case PGRES_EMPTY_QUERY:
        break;
    default:
        q_error(q, PQresultErrorMessage(r));
    }
    PQclear(r);
    return 0;
}

/* Reads what came for c's call; when the call is over, finishes it and serves the queue. */
static void read_results(pgconn_t *c)
{
    lpg_t *pool = c->pool;
    if (!PQconsumeInput(c->conn)) {
        char why[300];
        snprintf(why, sizeof(why), "connection lost: %s", PQerrorMessage(c->conn));
        conn_close(c, why);
        dispatch(pool);
        return;
    }
    while (!PQisBusy(c->conn)) {
        PGresult *r = PQgetResult(c->conn);
        pgq_t *q;
        if (r == NULL) { /* the call is over */
            q = c->q;
            c->q = NULL;
            c->state = C_IDLE;
            watch(c, UV_READABLE);
            if (q != NULL) {
                q->conn = NULL;
                q_done(q);
            }
            dispatch(pool);
            return;
        }
        if (c->q == NULL) { /* its call was cancelled: drain */
            PQclear(r);
            continue;
        }
        if (take(c, r) != 0) {
            conn_close(c, "");
            dispatch(pool);
            return;
        }
    }
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    pgconn_t *c = p->data;
    if (status < 0) /* a socket error: let libpq read and write, it will see it */
        events = UV_READABLE | UV_WRITABLE;
    if (c->state == C_CONNECTING) {
        connect_step(c);
        return;
    }
    if (c->state == C_IDLE) { /* the server closed it (shutdown, idle timeout) or sent a notice */
        if (!PQconsumeInput(c->conn) || PQstatus(c->conn) == CONNECTION_BAD)
            conn_close(c, "");
        return;
    }
    if (events & UV_WRITABLE) {
        int rc = PQflush(c->conn);
        if (rc < 0) {
            lpg_t *pool = c->pool;
            conn_close(c, "connection lost while sending");
            dispatch(pool);
            return;
        }
        if (rc == 0)
            watch(c, UV_READABLE);
    }
    if (events & UV_READABLE)
        read_results(c);
}

/* Sends q on the idle connection c. */
static void start(pgconn_t *c, pgq_t *q)
{
    int ok, rc;
    c->q = q;
    q->conn = c;
    c->state = C_BUSY;
    if (q->kind == Q_EXEC && q->nparams == 0)
        ok = PQsendQuery(c->conn, q->sql);
    else
        ok = PQsendQueryParams(c->conn, q->sql, q->nparams, NULL, (const char *const *)q->values, q->lengths,
                               q->formats, 0);
    if (!ok) {
        char why[300];
        lpg_t *pool = c->pool;
        snprintf(why, sizeof(why), "%s", PQerrorMessage(c->conn));
        conn_close(c, why);
        dispatch(pool);
        return;
    }
    PQsetSingleRowMode(c->conn);
    rc = PQflush(c->conn);
    watch(c, rc == 1 ? UV_READABLE | UV_WRITABLE : UV_READABLE);
}

/* Gives queued calls to idle connections, and opens connections for the rest (up to max). */
static void dispatch(lpg_t *pool)
{
    int connecting = 0;
    if (pool->closed || pool->env->closed)
        return;
    for (pgconn_t *c = pool->conns; c != NULL && pool->head != NULL; c = c->next) {
        if (c->state == C_CONNECTING)
            connecting++;
        if (c->state != C_IDLE)
            continue;
        pgq_t *q = pool->head;
        pool->head = q->next;
        if (pool->head == NULL)
            pool->tail = NULL;
        q->next = NULL;
        start(c, q);
        return dispatch(pool); /* start may have closed c: walk again */
    }
    {
        int queued = 0;
        for (pgq_t *q = pool->head; q != NULL; q = q->next)
            queued++;
        while (queued > connecting && pool->nconns < pool->max) {
            open_conn(pool);
            connecting++;
            if (pool->head == NULL)
                break; /* the connect failed at once and failed the queue */
        }
    }
}

/* Timeout or VM gone: a queued call leaves the queue; a running one takes its connection. */
static void q_cancel(void *arg)
{
    pgq_t *q = arg;
    lpg_t *pool = q->pool;
    q->wait = NULL;
    if (q->conn == NULL) {
        pgq_t **pp = &pool->head, *prev = NULL;
        while (*pp != NULL && *pp != q) {
            prev = *pp;
            pp = &(*pp)->next;
        }
        if (*pp == q) {
            *pp = q->next;
            if (pool->tail == q)
                pool->tail = prev;
        }
        q_free(q);
        return;
    }
    conn_close(q->conn, "timed out"); /* frees q (nobody waits) */
    dispatch(pool);
}

static void on_kick(uv_timer_t *t)
{
    dispatch(t->data);
}

/* ---------------------------------------------------------------- handle */

static void pool_close(lpg_t *pool, int vm_gone)
{
    if (pool->closed)
        return;
    pool->closed = 1;
    lwait_res_remove(&pool->res);
    if (pool->box != NULL)
        pool->box->p = NULL;
    pool->box = NULL;
    (void)vm_gone; /* with the VM, the waits were cancelled first: nothing resumes */
    if (pool->kick != NULL)
        uv_close((uv_handle_t *)pool->kick, poll_closed);
    fail_queue(pool, "the pool was closed");
    while (pool->conns != NULL)
        conn_close(pool->conns, "the pool was closed");
    free(pool->conninfo);
    free(pool);
}

static void res_close(lwait_res_t *r)
{
    pool_close((lpg_t *)r, 1);
}

/* Parameters (checked by lwait_sql_params) as libpq's text: numbers with every digit (tostring
 * keeps 14), PostgreSQL's spellings of NaN and infinities, booleans as true/false. [-0, +0, m] */
static void to_text(lua_State *L, int first)
{
    for (int i = first; i <= lua_gettop(L); i++) {
        int t = lua_type(L, i);
        if (t == LUA_TNUMBER && !lua_isinteger(L, i)) {
            char num[48];
            double d = lua_tonumber(L, i);
            if (d != d)
                snprintf(num, sizeof(num), "NaN");
            else if (d > 1e308 || d < -1e308)
                snprintf(num, sizeof(num), "%sInfinity", d < 0 ? "-" : "");
            else
                snprintf(num, sizeof(num), "%.17g", d);
            lua_pushstring(L, num);
            lua_replace(L, i);
        } else if (t == LUA_TNUMBER) {
            lua_pushfstring(L, "%I", (LUAI_UACINT)lua_tointeger(L, i));
            lua_replace(L, i);
        } else if (t == LUA_TBOOLEAN) {
            lua_pushstring(L, lua_toboolean(L, i) ? "true" : "false");
            lua_replace(L, i);
        }
    }
}

static lpg_t *check(lua_State *L)
{
    return lwait_checkbox(L, 1, MT, "the PostgreSQL pool");
}

/* pg:exec(sql, ...) / pg:query(sql, ...) */
static int run(lua_State *L, int kind)
{
    lpg_t *pool = check(L);
    size_t len;
    const char *sql = luaL_checklstring(L, 2, &len);
    int n = lua_gettop(L) - 2;
    pgq_t *q;
    lwait_t *w;
    if (memchr(sql, '\0', len) != NULL)
        return luaL_error(L, WHAT ": the SQL has a NUL byte");
    lwait_sql_params(L, 3, WHAT);
    to_text(L, 3);
    lwait_check(L, WHAT);
    w = lwait_begin(L, pool->timeout, WHAT, q_cancel); /* may raise: before anything is allocated */
    q = xcalloc(1, sizeof(*q));
    q->pool = pool;
    q->kind = kind;
    q->sql = xstrndup(sql, len);
    q->nparams = n;
    q->values = xcalloc((size_t)(n > 0 ? n : 1), sizeof(char *));
    q->lengths = xcalloc((size_t)(n > 0 ? n : 1), sizeof(int));
    q->formats = xcalloc((size_t)(n > 0 ? n : 1), sizeof(int));
    for (int i = 0; i < n; i++) {
        size_t vn;
        const char *v = lvalue_tobinary(L, 3 + i, &vn);
        if (v != NULL)
            q->formats[i] = 1;
        else if (lua_type(L, 3 + i) == LUA_TSTRING)
            v = lua_tolstring(L, 3 + i, &vn);
        if (v == NULL)
            continue; /* NULL */
        q->values[i] = xmalloc(vn + 1);
        memcpy(q->values[i], v, vn);
        q->values[i][vn] = '\0';
        q->lengths[i] = (int)vn;
    }
    lwait_bind(w, q);
    q->wait = w;
    if (pool->tail != NULL)
        pool->tail->next = q;
    else
        pool->head = q;
    pool->tail = q;
    /* dispatched on the next turn, never from here: a connect that fails at once would end the
     * call before its handler waits */
    if (pool->kick == NULL) {
        pool->kick = xcalloc(1, sizeof(*pool->kick));
        uv_timer_init(pool->env->loop, pool->kick);
        pool->kick->data = pool;
    }
    if (!uv_is_active((uv_handle_t *)pool->kick))
        uv_timer_start(pool->kick, on_kick, 0, 0);
    lua_settop(L, 1); /* the handle stays referenced while the handler waits */
    return lwait_yield(L, w);
}

static int l_exec(lua_State *L)
{
    return run(L, Q_EXEC);
}
static int l_query(lua_State *L)
{
    return run(L, Q_QUERY);
}

static void app_close(void *p)
{
    pool_close(p, 0);
}

/* pg:close(), and __gc */
static int l_close(lua_State *L)
{
    return lwait_box_close(L, MT, app_close);
}

static int l_tostring(lua_State *L)
{
    lwait_box_t *b = luaL_checkudata(L, 1, MT);
    lpg_t *pool = b->p;
    if (pool == NULL)
        lua_pushliteral(L, "siolua.pg (closed)");
    else
        lua_pushfstring(L, "siolua.pg (%d of %d connections)", pool->nconns, pool->max);
    return 1;
}

/* siolua.pg(conninfo [, {max =, timeout =, maxResultBytes =}]) */
static int l_new(lua_State *L)
{
    size_t len;
    const char *conninfo = luaL_checklstring(L, 1, &len);
    uint64_t timeout = lwait_opt_ms(L, 2, "timeout", DEFAULT_TIMEOUT);
    lua_Integer max = DEFAULT_MAX, max_result = DEFAULT_MAX_RESULT;
    lwait_env_t *env = lwait_env(L);
    char *err = NULL;
    PQconninfoOption *parsed;
    lwait_box_t *b;
    lpg_t *pool;
    if (!lua_isnoneornil(L, 2)) {
        if (lua_getfield(L, 2, "max") != LUA_TNIL) {
            max = luaL_checkinteger(L, -1);
            luaL_argcheck(L, max >= 1 && max <= 100, 2, "max must be 1 to 100 connections");
        }
        if (lua_getfield(L, 2, "maxResultBytes") != LUA_TNIL) {
            max_result = luaL_checkinteger(L, -1);
            luaL_argcheck(L, max_result > 0, 2, "maxResultBytes must be positive");
        }
        lua_pop(L, 2);
    }
    if (env->closed)
        return luaL_error(L, WHAT ": the app is being unloaded");
    if (memchr(conninfo, '\0', len) != NULL)
        return luaL_error(L, WHAT ": bad connection string");
    parsed = PQconninfoParse(conninfo, &err); /* a bad string is an error now, not at the first call */
    if (parsed == NULL) {
        lua_pushfstring(L, WHAT ": bad connection string: %s", err ? err : "out of memory");
        PQfreemem(err);
        return lua_error(L);
    }
    PQconninfoFree(parsed);
    lwait_res_limit(L, res_close, MAX_POOLS, "siolua.pg pools");
    b = lua_newuserdatauv(L, sizeof(*b), 0);
    b->p = NULL;
    luaL_setmetatable(L, MT);
    /* nothing raises from here on */
    pool = xcalloc(1, sizeof(*pool));
    pool->env = env;
    pool->conninfo = xstrndup(conninfo, len);
    pool->max = (int)max;
    pool->timeout = timeout;
    pool->max_result = (size_t)max_result;
    pool->res.close = res_close;
    pool->box = b;
    b->p = pool;
    lwait_res_add(env, &pool->res);
    return 1;
}

static const luaL_Reg methods[] = {{"exec", l_exec}, {"query", l_query}, {"close", l_close}, {NULL, NULL}};

void lpg_open(lua_State *L)
{
    lwait_class(L, MT, methods, l_close, l_tostring, "pg", l_new);
}
