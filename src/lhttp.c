/* lhttp: see lhttp.h.
 *
 * A request being handled is a userdata (pending_t) on the handler's stack and on the VM's
 * resource list. It is answered exactly once: by the wrapper when the handler returns (or
 * raised), with 503 when the VM goes first (lwait_close_all), or with 500 by its __gc when the
 * handler's coroutine was dropped without finishing (aborted by the scheduler). If the client goes
 * first (http's on_abort), the handler finishes and its answer is dropped. */
#include "lhttp.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "lreq.h"
#include "lvm.h"
#include "log.h"
#include "lwait.h"

#define PENDING_MT           "siolua.http_request"
#define MAX_RESPONSE_HEADERS 64

static const char ROUTES_KEY = 'R'; /* registry: {path = handler} */

typedef struct {
    lwait_res_t res; /* on the VM's list until answered */
    http_req_t *req; /* NULL once answered or aborted by the client */
} pending_t;

/* Takes p off the VM's list; its request is answered by the caller (or is gone). */
static http_req_t *take(pending_t *p)
{
    http_req_t *req = p->req;
    p->req = NULL;
    lwait_res_remove(&p->res);
    if (req != NULL)
        req->on_abort = NULL;
    return req;
}

static void answer_text(pending_t *p, int status, const char *text)
{
    http_req_t *req = take(p);
    http_hdr_t h = {"Content-Type", "text/plain; charset=utf-8"};
    if (req != NULL)
        http_respond(req, status, &h, 1, text, strlen(text));
}

static void on_client_gone(http_req_t *req, void *data)
{
    pending_t *p = data;
    (void)req;
    take(p);
}

static void res_close(lwait_res_t *r)
{
    answer_text((pending_t *)r, 503, "Service Unavailable");
}

static int pending_gc(lua_State *L)
{
    pending_t *p = lua_touserdata(L, 1);
    if (p->req != NULL) {
        log_error("siolua.route: the handler of %.*s never finished: 500", (int)p->req->path.len, p->req->path.ptr);
        answer_text(p, 500, "Internal Server Error");
    }
    return 0;
}

/* ---------------------------------------------------------------- the wrapper */

static int traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    luaL_traceback(L, L, msg != NULL ? msg : "(error object is not a string)", 1);
    return 1;
}

/* After the handler: stack = [pending, traceback, results... | error]. Answers. */
static int finish(lua_State *L, int status, lua_KContext ctx)
{
    pending_t *p = lua_touserdata(L, 1);
    http_hdr_t hdrs[MAX_RESPONSE_HEADERS];
    size_t nh = 0, blen = 0;
    const char *body = "";
    lua_Integer code;
    int isnum, has_type = 0;
    (void)ctx;
    if (status != LUA_OK && status != LUA_YIELD) {
        if (p->req != NULL)
        {
            char what[160];
            snprintf(what, sizeof(what), "route %.*s", (int)(p->req->path.len > 128 ? 128 : p->req->path.len),
                     p->req->path.ptr);
            lvm_log_error(lvm_get(L), what, lua_tostring(L, -1) ? lua_tostring(L, -1) : "(no message)", NULL, NULL);
        }
        answer_text(p, 500, "Internal Server Error");
        return 0;
    }
    if (p->req == NULL) /* the client left */
        return 0;
    code = lua_tointegerx(L, 3, &isnum);
    if (!isnum || code < 100 || code > 599) {
        log_error("error in route %.*s: the handler must return a status (100-599), then a body and headers",
                  (int)p->req->path.len, p->req->path.ptr);
        answer_text(p, 500, "Internal Server Error");
        return 0;
    }
    if (lua_type(L, 4) == LUA_TSTRING)
        body = lua_tolstring(L, 4, &blen);
    if (lua_istable(L, 5)) {
        lua_pushnil(L);
        while (lua_next(L, 5) != 0 && nh < MAX_RESPONSE_HEADERS) {
            size_t kn, vn;
            const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &kn) : NULL;
            const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &vn) : NULL;
            if (k != NULL && v != NULL && kn > 0 && strlen(k) == kn && strlen(v) == vn && strpbrk(k, "\r\n:") == NULL &&
                strpbrk(v, "\r\n") == NULL) {
                hdrs[nh].name = k; /* the table keeps the strings until http_respond copied them */
                hdrs[nh++].value = v;
                has_type |= strcasecmp(k, "content-type") == 0;
            } else {
                log_warn("siolua.route: a header that is not a clean string pair was left out");
            }
            lua_pop(L, 1);
        }
    }
    if (!has_type && nh < MAX_RESPONSE_HEADERS) {
        hdrs[nh].name = "Content-Type";
        hdrs[nh++].value = "text/plain; charset=utf-8";
    }
    http_respond(take(p), (int)code, hdrs, nh, body, blen);
    return 0;
}

/* run(pending, handler, reqtable): the handler's coroutine starts here. */
static int run(lua_State *L)
{
    int st;
    lua_pushcfunction(L, traceback); /* 4 */
    lua_replace(L, 2);               /* [pending, traceback, reqtable] with the handler below: */
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 3); /* [pending, traceback, handler, reqtable] */
    st = lua_pcallk(L, 1, 3, 2, 0, finish);
    return finish(L, st, 0);
}

/* ---------------------------------------------------------------- routing */

typedef struct {
    http_req_t *req;
    int found;
} route_args_t;

static const char *method_name(int m)
{
    const char *name = http_method_name(m);
    return name != NULL ? name : "OTHER";
}

/* [-0, +0, e] Finds req's route and starts its handler. */
static int route_k(lua_State *L)
{
    route_args_t *a = lua_touserdata(L, 1);
    http_req_t *req = a->req;
    pending_t *p;
    lua_settop(L, 0);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &ROUTES_KEY);
    lua_pushlstring(L, req->path.ptr, req->path.len);
    if (lua_rawget(L, 1) != LUA_TFUNCTION)
        return 0;
    a->found = 1;
    if (req->too_large) {
        http_hdr_t h = {"Content-Type", "text/plain; charset=utf-8"};
        http_respond(req, 413, &h, 1, "Payload Too Large", 17);
        return 0;
    }
    lua_pushcclosure(L, run, 1); /* 2: run, with the handler as its upvalue */
    p = lua_newuserdatauv(L, sizeof(*p), 0);
    memset(p, 0, sizeof(*p));
    luaL_setmetatable(L, PENDING_MT);
    lua_pushnil(L); /* the traceback's slot */
    lua_createtable(L, 0, 8);
    lua_pushstring(L, method_name(req->method));
    lua_setfield(L, -2, "method");
    lua_pushlstring(L, req->path.ptr, req->path.len);
    lua_setfield(L, -2, "path");
    lua_pushlstring(L, req->url.ptr, req->url.len);
    lua_setfield(L, -2, "url");
    lreq_push_query(L, req->query.ptr, req->query.len);
    lua_setfield(L, -2, "query");
    lreq_push_headers(L, req->nheaders, req->names, req->values);
    lua_setfield(L, -2, "headers");
    lua_pushlstring(L, req->body.base ? req->body.base : "", req->body.len);
    lua_setfield(L, -2, "body");
    lua_pushstring(L, http_peer(req));
    lua_setfield(L, -2, "address");
    /* from here on the request belongs to p */
    p->req = req;
    p->res.close = res_close;
    lwait_res_add(lwait_env(L), &p->res);
    req->on_abort = on_client_gone;
    req->abort_data = p;
    lvm_call(L, 3, "route handler");
    return 0;
}

int lhttp_handle(struct lvm *h, http_req_t *req)
{
    route_args_t a = {req, 0};
    lwait_env_t *env;
    if (h == NULL || (env = lwait_env(h->L)) == NULL || env->closed)
        return 0;
    lua_rawgetp(h->L, LUA_REGISTRYINDEX, &ROUTES_KEY);
    lua_pushnil(h->L);
    int none = lua_next(h->L, -2) == 0; /* the common case: no route at all */
    lua_settop(h->L, lua_gettop(h->L) - (none ? 1 : 3));
    if (none)
        return 0;
    if (lvm_protect(h, route_k, &a, "routing a request") != 0 && a.found) {
        /* failed before the handler took it (memory): answer now, unless it was answered */
        return 1;
    }
    return a.found;
}

/* siolua.route(path, handler|nil) */
static int l_route(lua_State *L)
{
    size_t n;
    const char *path = luaL_checklstring(L, 1, &n);
    luaL_argcheck(L, n > 0 && path[0] == '/', 1, "a path starts with /");
    if (!lua_isnil(L, 2))
        luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_settop(L, 2);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &ROUTES_KEY);
    lua_insert(L, 1);
    lua_rawset(L, 1);
    return 0;
}

void lhttp_open(lua_State *L)
{
    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &ROUTES_KEY);
    luaL_newmetatable(L, PENDING_MT);
    lua_pushcfunction(L, pending_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    lua_getglobal(L, "siolua");
    lua_pushcfunction(L, l_route);
    lua_setfield(L, -2, "route");
    lua_pop(L, 1);
}
