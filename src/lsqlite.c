/* lsqlite: see lsqlite.h.
 *
 * Threads: the loop thread makes jobs (SQL and parameters copied into C values) and queues them;
 * the database's thread runs them one after the other and queues the results (C values again),
 * then wakes the loop with a uv_async_t, whose callback turns results into Lua values and resumes
 * the handlers. Lua is only ever touched on the loop thread. The two queues share one mutex.
 * Closing (db:close(), the VM going away) sets `stop`, which the progress and busy handlers see
 * within a few thousand VM steps, and joins the thread: the loop is held for that long at most. */
#include "lsqlite.h"

#include <lauxlib.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "buf.h"
#include "lvalue.h"
#include "lwait.h"

#define MT                 "siolua.sqlite"
#define WHAT               "siolua.sqlite"
#define DEFAULT_TIMEOUT    10000
#define DEFAULT_MAX_RESULT ((lua_Integer)16 << 20)
#define MAX_DBS            64   /* open databases per VM */
#define PROGRESS_STEPS     1000 /* VM steps between two looks at the deadline */

/* A C value (parameters in, results out). */
typedef struct {
    int type; /* SQLITE_INTEGER, SQLITE_FLOAT, SQLITE_TEXT, SQLITE_BLOB, SQLITE_NULL */
    union {
        sqlite3_int64 i;
        double d;
        struct {
            char *p;
            size_t n;
        } s;
    } u;
} sval_t;

enum { J_EXEC, J_QUERY };

typedef struct job {
    struct job *next;
    struct lsqlite *db;
    lwait_t *wait; /* loop side: NULL when nobody waits any more */
    int kind;      /* J_* */
    char *sql;
    sval_t *params;
    int nparams;
    uint64_t timeout_ms;
    /* results (written by the database's thread) */
    char *err; /* NULL: success */
    int ncols;
    char **cols;  /* column names */
    sval_t *vals; /* nrows x ncols */
    size_t nrows, cap;
    size_t bytes; /* of text and blobs in vals */
    sqlite3_int64 changes, last_id;
} job_t;

typedef struct lsqlite {
    lwait_res_t res;  /* on the VM's list while open */
    lwait_box_t *box; /* the Lua handle (NULL once collected or closed) */
    char *path;
    uint64_t timeout;        /* ms per call */
    size_t max_result;       /* bytes of text and blobs in one result */
    const char *synchronous; /* PRAGMA synchronous: "NORMAL" (default), "FULL", "EXTRA" or "OFF" (static) */
    uv_thread_t thread;
    uv_mutex_t mu;           /* guards the two queues */
    uv_cond_t cv;            /* the thread waits on it for work */
    job_t *todo, *todo_tail; /* for the thread */
    job_t *done, *done_tail; /* for the loop */
    uv_async_t *async;       /* the thread wakes the loop (its own allocation: it closes later) */
    atomic_int stop;         /* the thread ends: statements are interrupted, locks not waited for */
    uint64_t deadline;       /* thread: uv_hrtime() at which the running statement is interrupted */
    int vm_gone;             /* closed with its VM: results are dropped */
    int closed;
} lsqlite_t;

/* ---------------------------------------------------------------- values */

static void sval_free(sval_t *v)
{
    if (v->type == SQLITE_TEXT || v->type == SQLITE_BLOB)
        free(v->u.s.p);
}

static void job_free(job_t *j)
{
    for (int i = 0; i < j->nparams; i++)
        sval_free(&j->params[i]);
    free(j->params);
    for (size_t i = 0; i < j->nrows * (size_t)j->ncols; i++)
        sval_free(&j->vals[i]);
    free(j->vals);
    for (int i = 0; i < j->ncols; i++)
        free(j->cols[i]);
    free(j->cols);
    free(j->sql);
    free(j->err);
    free(j);
}

/* ---------------------------------------------------------------- the database's thread */

static int on_progress(void *arg)
{
    lsqlite_t *db = arg;
    return atomic_load(&db->stop) || uv_hrtime() > db->deadline;
}

static int on_busy(void *arg, int count)
{
    lsqlite_t *db = arg;
    (void)count;
    if (atomic_load(&db->stop) || uv_hrtime() > db->deadline)
        return 0;
    sqlite3_sleep(5);
    return 1;
}

static void fail(job_t *j, const char *fmt, const char *a)
{
    char msg[512];
    snprintf(msg, sizeof(msg), fmt, a);
    free(j->err);
    j->err = xstrndup(msg, strlen(msg));
}

/* The error of the last call on s, named as the handler should read it. */
static void fail_db(lsqlite_t *db, sqlite3 *s, job_t *j)
{
    int rc = sqlite3_errcode(s);
    char msg[160];
    if (rc == SQLITE_INTERRUPT || (rc == SQLITE_BUSY && !atomic_load(&db->stop) && uv_hrtime() > db->deadline)) {
        if (atomic_load(&db->stop)) {
            fail(j, "%s: the database was closed during the statement", WHAT);
            return;
        }
        snprintf(msg, sizeof(msg), "%s: timed out after %llu ms", WHAT, (unsigned long long)j->timeout_ms);
        fail(j, "%s", msg);
        return;
    }
    fail(j, WHAT ": %s", sqlite3_errmsg(s));
}

static int bind_all(sqlite3_stmt *st, job_t *j)
{
    int rc = SQLITE_OK;
    for (int i = 0; i < j->nparams && rc == SQLITE_OK; i++) {
        const sval_t *v = &j->params[i];
        switch (v->type) {
        case SQLITE_INTEGER:
            rc = sqlite3_bind_int64(st, i + 1, v->u.i);
            break;
        case SQLITE_FLOAT:
            rc = sqlite3_bind_double(st, i + 1, v->u.d);
            break;
        case SQLITE_TEXT:
            rc = sqlite3_bind_text64(st, i + 1, v->u.s.p, v->u.s.n, SQLITE_STATIC, SQLITE_UTF8);
            break;
        case SQLITE_BLOB:
            rc = sqlite3_bind_blob64(st, i + 1, v->u.s.p, v->u.s.n, SQLITE_STATIC);
            break;
        default:
            rc = sqlite3_bind_null(st, i + 1);
        }
    }
    return rc;
}

/* Copies the current row of st into j; returns -1 when the result grew past the cap. */
static int take_row(lsqlite_t *db, sqlite3_stmt *st, job_t *j)
{
    int n = sqlite3_column_count(st);
    if (j->cols == NULL) {
        j->ncols = n;
        j->cols = xcalloc((size_t)(n > 0 ? n : 1), sizeof(char *));
        for (int c = 0; c < n; c++) {
            const char *name = sqlite3_column_name(st, c);
            j->cols[c] = xstrndup(name ? name : "?", name ? strlen(name) : 1);
        }
    }
    if ((j->nrows + 1) * (size_t)n > j->cap) {
        j->cap = j->cap ? j->cap * 2 : (size_t)n * 16;
        if (j->cap < (j->nrows + 1) * (size_t)n)
            j->cap = (j->nrows + 1) * (size_t)n;
        j->vals = xrealloc(j->vals, j->cap * sizeof(sval_t));
    }
    for (int c = 0; c < n; c++) {
        sval_t *v = &j->vals[j->nrows * (size_t)n + (size_t)c];
        v->type = sqlite3_column_type(st, c);
        if (v->type == SQLITE_INTEGER) {
            v->u.i = sqlite3_column_int64(st, c);
        } else if (v->type == SQLITE_FLOAT) {
            v->u.d = sqlite3_column_double(st, c);
        } else if (v->type == SQLITE_TEXT || v->type == SQLITE_BLOB) {
            const void *p =
                v->type == SQLITE_TEXT ? (const void *)sqlite3_column_text(st, c) : sqlite3_column_blob(st, c);
            size_t len = (size_t)sqlite3_column_bytes(st, c);
            j->bytes += len;
            v->u.s.n = len;
            v->u.s.p = xmalloc(len + 1);
            if (len > 0)
                memcpy(v->u.s.p, p, len);
            v->u.s.p[len] = '\0';
        } else {
            v->type = SQLITE_NULL;
        }
    }
    j->nrows++;
    return j->bytes > db->max_result ? -1 : 0;
}

/* Runs st to its end (its rows kept for a query), notes the changes, finalizes it. Returns 0, or -1
 * with j's error set. */
static int step_all(lsqlite_t *db, sqlite3 *s, sqlite3_stmt *st, job_t *j)
{
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (j->kind == J_QUERY && take_row(db, st, j) != 0) {
            char msg[160];
            snprintf(msg, sizeof(msg), "%s: the result is larger than %zu bytes (maxResultBytes)", WHAT,
                     db->max_result);
            fail(j, "%s", msg);
            sqlite3_finalize(st);
            return -1;
        }
    }
    if (rc != SQLITE_DONE) {
        fail_db(db, s, j);
        sqlite3_finalize(st);
        return -1;
    }
    j->changes = sqlite3_changes64(s);
    j->last_id = sqlite3_last_insert_rowid(s);
    sqlite3_finalize(st);
    return 0;
}

/* One statement (the first of j->sql) with j's parameters; rows kept for a query. */
static void run_one(lsqlite_t *db, sqlite3 *s, job_t *j)
{
    sqlite3_stmt *st = NULL, *extra = NULL;
    const char *tail = NULL;
    if (sqlite3_prepare_v2(s, j->sql, -1, &st, &tail) != SQLITE_OK) {
        fail_db(db, s, j);
        return;
    }
    if (st == NULL) {
        fail(j, "%s: no statement in the SQL", WHAT);
        return;
    }
    if (tail != NULL && *tail != '\0' && sqlite3_prepare_v2(s, tail, -1, &extra, NULL) == SQLITE_OK && extra != NULL) {
        sqlite3_finalize(extra);
        sqlite3_finalize(st);
        fail(j,
             "%s: one statement at a time with parameters or in a query (db:exec(sql) without parameters runs "
             "a script)",
             WHAT);
        return;
    }
    if (sqlite3_bind_parameter_count(st) != j->nparams) {
        char msg[160];
        snprintf(msg, sizeof(msg), "%s: the statement takes %d parameter(s), %d given", WHAT,
                 sqlite3_bind_parameter_count(st), j->nparams);
        fail(j, "%s", msg);
        sqlite3_finalize(st);
        return;
    }
    if (bind_all(st, j) != SQLITE_OK) {
        fail_db(db, s, j);
        sqlite3_finalize(st);
        return;
    }
    step_all(db, s, st, j);
}

/* A script: every statement of j->sql, rows ignored. */
static void run_script(lsqlite_t *db, sqlite3 *s, job_t *j)
{
    const char *sql = j->sql;
    while (sql != NULL && *sql != '\0') {
        sqlite3_stmt *st = NULL;
        const char *tail = NULL;
        if (sqlite3_prepare_v2(s, sql, -1, &st, &tail) != SQLITE_OK) {
            fail_db(db, s, j);
            return;
        }
        if (st == NULL) /* only spaces or comments were left */
            break;
        if (step_all(db, s, st, j) != 0)
            return;
        sql = tail;
    }
}

static void thread_main(void *arg)
{
    lsqlite_t *db = arg;
    sqlite3 *s = NULL;
    char open_err[300] = "";
    int rc = sqlite3_open_v2(db->path, &s, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        snprintf(open_err, sizeof(open_err), "%s: cannot open %s: %s", WHAT, db->path,
                 s ? sqlite3_errmsg(s) : sqlite3_errstr(rc));
        sqlite3_close(s);
        s = NULL;
    } else {
        sqlite3_progress_handler(s, PROGRESS_STEPS, on_progress, db);
        sqlite3_busy_handler(s, on_busy, db);
        db->deadline = uv_hrtime() + db->timeout * 1000000ull;
        /* WAL, and synchronous NORMAL unless asked otherwise: SQLite's recommended pairing - never
         * corrupt, durable across a crash of siolua, and no fsync per commit (a power loss may
         * take the last commits) */
        char sync[48];
        snprintf(sync, sizeof(sync), "PRAGMA synchronous=%s", db->synchronous);
        if (sqlite3_exec(s, "PRAGMA journal_mode=WAL", NULL, NULL, NULL) != SQLITE_OK ||
            sqlite3_exec(s, sync, NULL, NULL, NULL) != SQLITE_OK)
            snprintf(open_err, sizeof(open_err), "%s: cannot use %s: %s", WHAT, db->path, sqlite3_errmsg(s));
    }
    for (;;) {
        job_t *j;
        uv_mutex_lock(&db->mu);
        while (db->todo == NULL && !atomic_load(&db->stop))
            uv_cond_wait(&db->cv, &db->mu);
        j = db->todo;
        if (atomic_load(&db->stop) || j == NULL) {
            uv_mutex_unlock(&db->mu);
            break;
        }
        db->todo = j->next;
        if (db->todo == NULL)
            db->todo_tail = NULL;
        uv_mutex_unlock(&db->mu);
        j->next = NULL;
        db->deadline = uv_hrtime() + j->timeout_ms * 1000000ull;
        if (open_err[0] != '\0')
            fail(j, "%s", open_err);
        else if (j->kind == J_EXEC && j->nparams == 0)
            run_script(db, s, j);
        else
            run_one(db, s, j);
        uv_mutex_lock(&db->mu);
        if (db->done_tail != NULL)
            db->done_tail->next = j;
        else
            db->done = j;
        db->done_tail = j;
        uv_mutex_unlock(&db->mu);
        uv_async_send(db->async);
    }
    sqlite3_close_v2(s);
}

/* ---------------------------------------------------------------- results -> Lua (loop thread) */

static void push_sval(lua_State *L, const sval_t *v)
{
    switch (v->type) {
    case SQLITE_INTEGER:
        lua_pushinteger(L, (lua_Integer)v->u.i);
        break;
    case SQLITE_FLOAT:
        lua_pushnumber(L, v->u.d);
        break;
    case SQLITE_TEXT:
        lua_pushlstring(L, v->u.s.p, v->u.s.n);
        break;
    case SQLITE_BLOB:
        lvalue_push_binary(L, v->u.s.p, v->u.s.n);
        break;
    default:
        lua_pushlightuserdata(L, NULL); /* siolua.null */
    }
}

static int push_result(lua_State *L, void *arg)
{
    job_t *j = arg;
    if (j->err != NULL) {
        lua_pushstring(L, j->err);
        return -1;
    }
    if (j->kind == J_EXEC) {
        lua_createtable(L, 0, 2);
        lua_pushinteger(L, (lua_Integer)j->changes);
        lua_setfield(L, -2, "changes");
        lua_pushinteger(L, (lua_Integer)j->last_id);
        lua_setfield(L, -2, "lastInsertRowid");
        return 1;
    }
    luaL_checkstack(L, 6, "rows");
    lua_createtable(L, j->nrows < 100000 ? (int)j->nrows : 100000, 0);
    for (size_t r = 0; r < j->nrows; r++) {
        lvalue_obj_t ob;
        lvalue_obj_begin(L, &ob, j->ncols);
        for (int c = 0; c < j->ncols; c++) {
            lua_pushstring(L, j->cols[c]);
            push_sval(L, &j->vals[r * (size_t)j->ncols + (size_t)c]);
            lvalue_obj_set(L, &ob);
        }
        lvalue_obj_end(L, &ob);
        lua_rawseti(L, -2, (lua_Integer)r + 1);
    }
    lvalue_mark_array(L, -1);
    return 1;
}

static void async_closed(uv_handle_t *h)
{
    lsqlite_t *db = h->data;
    free(h);
    uv_mutex_destroy(&db->mu);
    uv_cond_destroy(&db->cv);
    free(db->path);
    free(db);
}

/* Hands the finished jobs to their handlers (in order); once closed, frees the database. */
static void on_done(uv_async_t *a)
{
    lsqlite_t *db = a->data;
    job_t *j;
    uv_mutex_lock(&db->mu);
    j = db->done;
    db->done = db->done_tail = NULL;
    uv_mutex_unlock(&db->mu);
    while (j != NULL) {
        job_t *next = j->next;
        if (j->wait != NULL && !db->vm_gone) {
            lwait_t *w = j->wait;
            j->wait = NULL;
            lwait_resume(w, push_result, j);
        }
        job_free(j);
        j = next;
    }
    if (db->closed && !uv_is_closing((uv_handle_t *)a))
        uv_close((uv_handle_t *)a, async_closed);
}

static void job_cancel(void *arg)
{
    ((job_t *)arg)->wait = NULL;
}

/* ---------------------------------------------------------------- handle */

/* Stops the thread (interrupting its statement), then fails what never ran. The results the thread
 * finished are delivered (or dropped, vm_gone) by on_done, which then frees db. */
static void db_close(lsqlite_t *db, int vm_gone)
{
    job_t *j;
    if (db->closed)
        return;
    db->closed = 1;
    db->vm_gone = vm_gone;
    lwait_res_remove(&db->res);
    if (db->box != NULL)
        db->box->p = NULL;
    db->box = NULL;
    uv_mutex_lock(&db->mu);
    atomic_store(&db->stop, 1);
    uv_cond_signal(&db->cv);
    uv_mutex_unlock(&db->mu);
    uv_thread_join(&db->thread);
    for (j = db->todo; j != NULL; j = j->next)
        fail(j, "%s: the database was closed before the statement ran", WHAT);
    if (db->todo != NULL) {
        if (db->done_tail != NULL)
            db->done_tail->next = db->todo;
        else
            db->done = db->todo;
        db->done_tail = db->todo_tail;
        db->todo = db->todo_tail = NULL;
    }
    uv_async_send(db->async); /* on_done delivers, then closes the handle */
}

static void res_close(lwait_res_t *r)
{
    db_close((lsqlite_t *)r, 1);
}

static lsqlite_t *check(lua_State *L)
{
    return lwait_checkbox(L, 1, MT, "the database");
}

static void copy_param(lua_State *L, int idx, sval_t *v)
{
    size_t n;
    const char *p;
    switch (lua_type(L, idx)) {
    case LUA_TBOOLEAN:
        v->type = SQLITE_INTEGER;
        v->u.i = lua_toboolean(L, idx);
        return;
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) {
            v->type = SQLITE_INTEGER;
            v->u.i = (sqlite3_int64)lua_tointeger(L, idx);
        } else {
            v->type = SQLITE_FLOAT;
            v->u.d = lua_tonumber(L, idx);
        }
        return;
    case LUA_TSTRING:
        p = lua_tolstring(L, idx, &n);
        v->type = SQLITE_TEXT;
        break;
    case LUA_TUSERDATA:
        p = lvalue_tobinary(L, idx, &n);
        v->type = SQLITE_BLOB;
        break;
    default:
        v->type = SQLITE_NULL;
        return;
    }
    v->u.s.p = xmalloc(n + 1);
    memcpy(v->u.s.p, p, n);
    v->u.s.p[n] = '\0';
    v->u.s.n = n;
}

/* db:exec(sql, ...) / db:query(sql, ...) */
static int run(lua_State *L, int kind)
{
    lsqlite_t *db = check(L);
    size_t len;
    const char *sql = luaL_checklstring(L, 2, &len);
    int nparams = lua_gettop(L) - 2;
    job_t *j;
    lwait_t *w;
    lwait_sql_params(L, 3, WHAT);
    lwait_check(L, WHAT);
    w = lwait_begin(L, db->timeout, WHAT, job_cancel); /* may raise: before anything is allocated */
    j = xcalloc(1, sizeof(*j));
    j->db = db;
    j->kind = kind;
    j->sql = xstrndup(sql, len);
    j->timeout_ms = db->timeout;
    j->nparams = nparams;
    j->params = xcalloc((size_t)(nparams > 0 ? nparams : 1), sizeof(sval_t));
    for (int i = 0; i < nparams; i++)
        copy_param(L, 3 + i, &j->params[i]);
    lwait_bind(w, j);
    j->wait = w;
    uv_mutex_lock(&db->mu);
    if (db->todo_tail != NULL)
        db->todo_tail->next = j;
    else
        db->todo = j;
    db->todo_tail = j;
    uv_cond_signal(&db->cv);
    uv_mutex_unlock(&db->mu);
    lua_settop(L, 1); /* the handle stays referenced while the handler waits */
    return lwait_yield(L, w);
}

static int l_exec(lua_State *L)
{
    return run(L, J_EXEC);
}
static int l_query(lua_State *L)
{
    return run(L, J_QUERY);
}

static void app_close(void *p)
{
    db_close(p, 0);
}

/* db:close(), and __gc */
static int l_close(lua_State *L)
{
    return lwait_box_close(L, MT, app_close);
}

static int l_tostring(lua_State *L)
{
    lwait_box_t *b = luaL_checkudata(L, 1, MT);
    if (b->p == NULL)
        lua_pushliteral(L, "siolua.sqlite (closed)");
    else
        lua_pushfstring(L, "siolua.sqlite (%s)", ((lsqlite_t *)b->p)->path);
    return 1;
}

/* siolua.sqlite(path [, {timeout =, maxResultBytes =, synchronous =}]) */
static int l_new(lua_State *L)
{
    size_t len;
    const char *path = luaL_checklstring(L, 1, &len);
    uint64_t timeout = lwait_opt_ms(L, 2, "timeout", DEFAULT_TIMEOUT);
    lua_Integer max_result = DEFAULT_MAX_RESULT;
    static const char *const syncs[] = {"NORMAL", "FULL", "EXTRA", "OFF", NULL};
    int sync = 0;
    lwait_env_t *env = lwait_env(L);
    lwait_box_t *b;
    lsqlite_t *db;
    if (!lua_isnoneornil(L, 2)) {
        lua_getfield(L, 2, "maxResultBytes");
        if (!lua_isnil(L, -1)) {
            max_result = luaL_checkinteger(L, -1);
            luaL_argcheck(L, max_result > 0, 2, "maxResultBytes must be positive");
        }
        lua_pop(L, 1);
        lua_getfield(L, 2, "synchronous");
        if (!lua_isnil(L, -1))
            sync = luaL_checkoption(L, -1, NULL, syncs);
        lua_pop(L, 1);
    }
    if (env->closed)
        return luaL_error(L, WHAT ": the app is being unloaded");
    if (len == 0 || memchr(path, '\0', len) != NULL)
        return luaL_error(L, WHAT ": bad path");
    lwait_res_limit(L, res_close, MAX_DBS, "siolua.sqlite databases");
    b = lua_newuserdatauv(L, sizeof(*b), 0);
    b->p = NULL;
    luaL_setmetatable(L, MT);
    /* nothing raises from here on */
    db = xcalloc(1, sizeof(*db));
    db->path = xstrndup(path, len);
    db->timeout = timeout;
    db->max_result = (size_t)max_result;
    db->synchronous = syncs[sync];
    db->res.close = res_close;
    atomic_init(&db->stop, 0);
    uv_mutex_init(&db->mu);
    uv_cond_init(&db->cv);
    db->async = xcalloc(1, sizeof(*db->async));
    uv_async_init(env->loop, db->async, on_done);
    db->async->data = db;
    if (uv_thread_create(&db->thread, thread_main, db) != 0) {
        db->closed = 1;
        uv_close((uv_handle_t *)db->async, async_closed);
        return luaL_error(L, WHAT ": cannot start a thread for %s", path);
    }
    db->box = b;
    b->p = db;
    lwait_res_add(env, &db->res);
    return 1;
}

static const luaL_Reg methods[] = {{"exec", l_exec}, {"query", l_query}, {"close", l_close}, {NULL, NULL}};

void lsqlite_open(lua_State *L)
{
    lwait_class(L, MT, methods, l_close, l_tostring, "sqlite", l_new);
}
