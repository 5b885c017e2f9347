/* lfetch: see lfetch.h. libcurl's multi_socket API on libuv, as libcurl's own multi-uv example
 * does it: curl tells which sockets to watch (socket callback: a uv_poll per socket) and when to
 * call it back (timer callback: one uv_timer); every event goes back through
 * curl_multi_socket_action, after which finished transfers are collected (curl_multi_info_read)
 * and their handlers resumed - never from inside a curl callback. */
#include "lfetch.h"

#include <curl/curl.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#include "buf.h"
#include "lwait.h"

#define WHAT             "siolua.fetch"
#define DEFAULT_TIMEOUT  30000
#define DEFAULT_MAX_SIZE ((lua_Integer)16 << 20)
#define MAX_HEADER_BYTES (256u << 10)
#define MAX_REDIRECTS    20 /* fetch's */

static const char MULTI_KEY = 'f'; /* registry: light userdata, the VM's fmulti_t (absent until used) */

typedef struct fetch fetch_t;

/* The VM's multi handle. */
typedef struct {
    lwait_res_t res; /* on the VM's list */
    CURLM *multi;
    uv_loop_t *loop;
    uv_timer_t *timer; /* curl's timeout (its own allocation: it closes later) */
    fetch_t *reqs;     /* transfers in flight */
} fmulti_t;

/* A socket curl asked to watch. */
typedef struct {
    uv_poll_t poll;
    curl_socket_t fd;
    fmulti_t *m;
} fsock_t;

struct fetch {
    fmulti_t *m;
    CURL *easy;
    lwait_t *wait;           /* NULL: nobody waits any more */
    struct curl_slist *hdrs; /* request headers */
    char *reqbody;
    buf_t body;         /* response body */
    buf_t head;         /* the last response's header lines, "name: value\n" */
    size_t max;         /* body cap */
    uint64_t timeout;   /* ms */
    int too_large;      /* 1: body over max; 2: headers over MAX_HEADER_BYTES */
    int redirect_error; /* redirect = "error" */
    CURLcode rc;
    char err[CURL_ERROR_SIZE];
    fetch_t *prev, *next; /* m->reqs */
};

/* ---------------------------------------------------------------- transfers */

static void fetch_free(fetch_t *f)
{
    fmulti_t *m = f->m;
    if (f->prev != NULL)
        f->prev->next = f->next;
    else
        m->reqs = f->next;
    if (f->next != NULL)
        f->next->prev = f->prev;
    curl_multi_remove_handle(m->multi, f->easy); /* may call the socket callback: never from curl's */
    curl_easy_cleanup(f->easy);
    curl_slist_free_all(f->hdrs);
    free(f->reqbody);
    buf_free(&f->body);
    buf_free(&f->head);
    free(f);
}

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    fetch_t *f = arg;
    size_t len = size * n;
    if (f->body.len + len > f->max) {
        f->too_large = 1;
        return 0; /* aborts the transfer (CURLE_WRITE_ERROR) */
    }
    buf_append(&f->body, p, len);
    return len;
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    fetch_t *f = arg;
    size_t len = size * n;
    if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        f->head.len = 0; /* a new response (after a redirect or a 1xx): its headers only */
        return len;
    }
    if (f->head.len + len > MAX_HEADER_BYTES) {
        f->too_large = 2;
        return 0;
    }
    buf_append(&f->head, p, len);
    return len;
}

/* Pushes the header lines as a table (names lower-case, repeats joined with ", "). [-0, +1, m] */
static void push_headers(lua_State *L, const buf_t *b)
{
    const char *p = b->base, *end = b->base + b->len;
    lua_newtable(L);
    while (p != NULL && p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p)), *e = eol ? eol : end;
        const char *colon = memchr(p, ':', (size_t)(e - p));
        if (colon != NULL && colon > p) {
            const char *v = colon + 1, *ve = e;
            luaL_Buffer name;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            luaL_buffinit(L, &name);
            for (const char *c = p; c < colon; c++)
                luaL_addchar(&name, (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c));
            luaL_pushresult(&name);
            lua_pushvalue(L, -1);
            if (lua_rawget(L, -3) == LUA_TSTRING) {
                lua_pushliteral(L, ", ");
                lua_pushlstring(L, v, (size_t)(ve - v));
                lua_concat(L, 3);
            } else {
                lua_pop(L, 1);
                lua_pushlstring(L, v, (size_t)(ve - v));
            }
            lua_rawset(L, -3);
        }
        p = eol ? eol + 1 : end;
    }
}

static int push_result(lua_State *L, void *arg)
{
    fetch_t *f = arg;
    long status = 0, redirects = 0;
    char *url = NULL;
    if (f->too_large == 1 || f->rc == CURLE_FILESIZE_EXCEEDED) {
        lua_pushfstring(L, WHAT ": the response body is larger than %I bytes (maxSize)", (lua_Integer)f->max);
        return -1;
    }
    if (f->too_large == 2) {
        lua_pushfstring(L, WHAT ": the response headers are larger than %d bytes", (int)MAX_HEADER_BYTES);
        return -1;
    }
    if (f->rc == CURLE_OPERATION_TIMEDOUT) {
        lua_pushfstring(L, WHAT ": timed out after %I ms", (lua_Integer)f->timeout);
        return -1;
    }
    if (f->rc != CURLE_OK) {
        curl_easy_getinfo(f->easy, CURLINFO_EFFECTIVE_URL, &url);
        lua_pushfstring(L, WHAT ": %s (%s)", f->err[0] ? f->err : curl_easy_strerror(f->rc), url ? url : "?");
        return -1;
    }
    curl_easy_getinfo(f->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(f->easy, CURLINFO_REDIRECT_COUNT, &redirects);
    curl_easy_getinfo(f->easy, CURLINFO_EFFECTIVE_URL, &url);
    if (f->redirect_error && status >= 300 && status < 400) {
        lua_pushfstring(L, WHAT ": redirected (%d) while redirect = \"error\"", (int)status);
        return -1;
    }
    lua_createtable(L, 0, 6);
    lua_pushinteger(L, status);
    lua_setfield(L, -2, "status");
    lua_pushboolean(L, status >= 200 && status < 300);
    lua_setfield(L, -2, "ok");
    push_headers(L, &f->head);
    lua_setfield(L, -2, "headers");
    lua_pushlstring(L, f->body.base ? f->body.base : "", f->body.len);
    lua_setfield(L, -2, "body");
    lua_pushstring(L, url ? url : "");
    lua_setfield(L, -2, "url");
    lua_pushboolean(L, redirects > 0);
    lua_setfield(L, -2, "redirected");
    return 1;
}

/* Collects finished transfers and resumes their handlers. */
static void check_done(fmulti_t *m)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(m->multi, &left)) != NULL) {
        fetch_t *f = NULL;
        if (msg->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&f);
        f->rc = msg->data.result;
        if (f->wait != NULL) {
            lwait_t *w = f->wait;
            f->wait = NULL;
            lwait_resume(w, push_result, f);
        }
        fetch_free(f);
    }
}

/* ---------------------------------------------------------------- curl on the loop */

static void on_poll(uv_poll_t *p, int status, int events)
{
    fsock_t *s = p->data;
    fmulti_t *m = s->m;
    int running, flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    curl_multi_socket_action(m->multi, s->fd, flags, &running);
    check_done(m);
}

static void sock_closed(uv_handle_t *h)
{
    free(h->data);
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    fmulti_t *m = userp;
    fsock_t *s = socketp;
    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (s != NULL) {
            uv_poll_stop(&s->poll);
            uv_close((uv_handle_t *)&s->poll, sock_closed);
            curl_multi_assign(m->multi, fd, NULL);
        }
        return 0;
    }
    if (s == NULL) {
        s = xcalloc(1, sizeof(*s));
        if (uv_poll_init_socket(m->loop, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        s->fd = fd;
        s->m = m;
        s->poll.data = s;
        curl_multi_assign(m->multi, fd, s);
    }
    uv_poll_start(&s->poll,
                  (what == CURL_POLL_IN    ? UV_READABLE
                   : what == CURL_POLL_OUT ? UV_WRITABLE
                                           : UV_READABLE | UV_WRITABLE),
                  on_poll);
    return 0;
}

static void on_timer(uv_timer_t *t)
{
    fmulti_t *m = t->data;
    int running;
    curl_multi_socket_action(m->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(m);
}

static int on_curl_timer(CURLM *multi, long ms, void *userp)
{
    fmulti_t *m = userp;
    (void)multi;
    if (ms < 0)
        uv_timer_stop(m->timer);
    else
        uv_timer_start(m->timer, on_timer, (uint64_t)ms, 0); /* 0: on the next loop turn, not from here */
    return 0;
}

static void timer_closed(uv_handle_t *h)
{
    free(h);
}

/* The VM goes: transfers stop (their waits were cancelled first), the multi handle goes. */
static void multi_close(lwait_res_t *r)
{
    fmulti_t *m = (fmulti_t *)r;
    while (m->reqs != NULL)
        fetch_free(m->reqs);
    curl_multi_cleanup(m->multi); /* its sockets' REMOVE came with the transfers' removal */
    uv_close((uv_handle_t *)m->timer, timer_closed);
    curl_global_cleanup();
    free(m);
}

/* The VM's multi handle, made on first use. */
static fmulti_t *get_multi(lua_State *L)
{
    fmulti_t *m;
    lwait_env_t *env;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &MULTI_KEY);
    m = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (m != NULL)
        return m;
    env = lwait_env(L);
    lua_pushlightuserdata(L, NULL); /* reserve the registry slot before anything is made */
    lua_rawsetp(L, LUA_REGISTRYINDEX, &MULTI_KEY);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        luaL_error(L, WHAT ": libcurl cannot be initialised");
    m = xcalloc(1, sizeof(*m));
    m->multi = curl_multi_init();
    m->loop = env->loop;
    m->timer = xcalloc(1, sizeof(*m->timer));
    uv_timer_init(env->loop, m->timer);
    m->timer->data = m;
    curl_multi_setopt(m->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(m->multi, CURLMOPT_SOCKETDATA, m);
    curl_multi_setopt(m->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(m->multi, CURLMOPT_TIMERDATA, m);
    m->res.close = multi_close;
    lwait_res_add(env, &m->res);
    lua_pushlightuserdata(L, m);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &MULTI_KEY);
    return m;
}

static void fetch_cancel(void *arg)
{
    fetch_t *f = arg;
    f->wait = NULL;
    fetch_free(f); /* from a timer or the VM's close, never inside curl */
}

/* ---------------------------------------------------------------- siolua.fetch */

/* 1 if s (n bytes) holds a CR, LF or NUL: a header it would split. */
static int splits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0')
            return 1;
    return 0;
}

/* The request's options, read (and checked: may raise) before anything is allocated. */
typedef struct {
    const char *url, *method, *body, *ca, *redirect;
    size_t body_len;
    uint64_t timeout;
    size_t max;
} fopts_t;

static void read_opts(lua_State *L, fopts_t *o)
{
    size_t ulen;
    o->url = luaL_checklstring(L, 1, &ulen);
    if (splits(o->url, ulen))
        luaL_argerror(L, 1, "a URL has no control characters");
    o->timeout = lwait_opt_ms(L, 2, "timeout", DEFAULT_TIMEOUT);
    o->method = "GET";
    o->body = o->ca = NULL;
    o->redirect = "follow";
    o->body_len = 0;
    o->max = (size_t)DEFAULT_MAX_SIZE;
    if (lua_isnoneornil(L, 2))
        return;
    luaL_checktype(L, 2, LUA_TTABLE);
    if (lua_getfield(L, 2, "method") != LUA_TNIL)
        o->method = luaL_checkstring(L, -1); /* the options table keeps it alive */
    if (lua_getfield(L, 2, "body") != LUA_TNIL)
        o->body = luaL_checklstring(L, -1, &o->body_len);
    if (lua_getfield(L, 2, "ca") != LUA_TNIL)
        o->ca = luaL_checkstring(L, -1);
    if (lua_getfield(L, 2, "redirect") != LUA_TNIL)
        o->redirect = luaL_checkstring(L, -1);
    if (lua_getfield(L, 2, "maxSize") != LUA_TNIL) {
        lua_Integer v = luaL_checkinteger(L, -1);
        luaL_argcheck(L, v > 0, 2, "maxSize must be positive");
        o->max = (size_t)v;
    }
    lua_pop(L, 5);
    for (const char *c = o->method; *c; c++)
        if (!((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') || *c == '-'))
            luaL_error(L, WHAT ": bad method \"%s\"", o->method);
    if (o->body != NULL && (strcasecmp(o->method, "GET") == 0 || strcasecmp(o->method, "HEAD") == 0))
        luaL_error(L, WHAT ": a %s request cannot have a body", o->method);
    if (strcmp(o->redirect, "follow") != 0 && strcmp(o->redirect, "manual") != 0 && strcmp(o->redirect, "error") != 0)
        luaL_error(L, WHAT ": redirect must be \"follow\", \"manual\" or \"error\"");
    if (lua_getfield(L, 2, "headers") != LUA_TNIL) {
        luaL_checktype(L, -1, LUA_TTABLE);
        lua_pushnil(L);
        while (lua_next(L, -2) != 0) {
            size_t kn, vn;
            const char *k, *v;
            if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
                luaL_error(L, WHAT ": headers must map names to strings");
            k = lua_tolstring(L, -2, &kn);
            v = lua_tolstring(L, -1, &vn);
            if (kn == 0 || splits(k, kn) || memchr(k, ':', kn) != NULL || splits(v, vn))
                luaL_error(L, WHAT ": bad header \"%s\"", k);
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
}

/* The request headers (strings, checked by read_opts: nothing here allocates in Lua or raises). */
static struct curl_slist *make_headers(lua_State *L, int has_opts)
{
    struct curl_slist *list = NULL;
    if (!has_opts || lua_getfield(L, 2, "headers") != LUA_TTABLE) {
        if (has_opts)
            lua_pop(L, 1);
        return NULL;
    }
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) {
        buf_t line = BUF_INIT;
        size_t kn, vn;
        const char *k = lua_tolstring(L, -2, &kn), *v = lua_tolstring(L, -1, &vn);
        buf_append(&line, k, kn);
        buf_append(&line, vn > 0 ? ": " : ";", vn > 0 ? 2 : 1); /* "Name;" sends an empty header */
        buf_append(&line, v, vn);
        buf_appendc(&line, '\0');
        list = curl_slist_append(list, line.base);
        buf_free(&line);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return list;
}

static int l_fetch(lua_State *L)
{
    fopts_t o;
    fmulti_t *m;
    fetch_t *f;
    lwait_t *w;
    read_opts(L, &o);
    lwait_check(L, WHAT);
    if (lwait_env(L)->closed)
        return luaL_error(L, WHAT ": the app is being unloaded");
    m = get_multi(L);
    w = lwait_begin(L, o.timeout, WHAT, fetch_cancel); /* and curl's own: the same error either way */
    f = xcalloc(1, sizeof(*f));
    f->m = m;
    f->easy = curl_easy_init();
    f->max = o.max;
    f->timeout = o.timeout;
    f->redirect_error = strcmp(o.redirect, "error") == 0;
    f->hdrs = make_headers(L, !lua_isnoneornil(L, 2));
    curl_easy_setopt(f->easy, CURLOPT_URL, o.url);
    curl_easy_setopt(f->easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(f->easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(f->easy, CURLOPT_FOLLOWLOCATION, strcmp(o.redirect, "follow") == 0 ? 1L : 0L);
    curl_easy_setopt(f->easy, CURLOPT_MAXREDIRS, (long)MAX_REDIRECTS);
    curl_easy_setopt(f->easy, CURLOPT_TIMEOUT_MS, (long)o.timeout);
    curl_easy_setopt(f->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(f->easy, CURLOPT_ACCEPT_ENCODING, ""); /* every encoding libcurl decodes */
    curl_easy_setopt(f->easy, CURLOPT_USERAGENT, "siolua");
    curl_easy_setopt(f->easy, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)o.max);
    curl_easy_setopt(f->easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(f->easy, CURLOPT_WRITEDATA, f);
    curl_easy_setopt(f->easy, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(f->easy, CURLOPT_HEADERDATA, f);
    curl_easy_setopt(f->easy, CURLOPT_ERRORBUFFER, f->err);
    curl_easy_setopt(f->easy, CURLOPT_PRIVATE, (char *)f);
    if (o.ca != NULL)
        curl_easy_setopt(f->easy, CURLOPT_CAINFO, o.ca);
    if (f->hdrs != NULL)
        curl_easy_setopt(f->easy, CURLOPT_HTTPHEADER, f->hdrs);
    if (strcasecmp(o.method, "HEAD") == 0)
        curl_easy_setopt(f->easy, CURLOPT_NOBODY, 1L);
    else if (strcasecmp(o.method, "GET") != 0)
        curl_easy_setopt(f->easy, CURLOPT_CUSTOMREQUEST, o.method);
    if (o.body != NULL) {
        f->reqbody = xmalloc(o.body_len + 1);
        memcpy(f->reqbody, o.body, o.body_len);
        curl_easy_setopt(f->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o.body_len);
        curl_easy_setopt(f->easy, CURLOPT_POSTFIELDS, f->reqbody);
    }
    f->next = m->reqs;
    if (m->reqs != NULL)
        m->reqs->prev = f;
    m->reqs = f;
    if (curl_multi_add_handle(m->multi, f->easy) != CURLM_OK) {
        lwait_abort(w);
        fetch_free(f);
        return luaL_error(L, WHAT ": cannot start the request");
    }
    lwait_bind(w, f);
    f->wait = w;
    return lwait_yield(L, w);
}

void lfetch_open(lua_State *L)
{
    lua_getglobal(L, "siolua");
    lua_pushcfunction(L, l_fetch);
    lua_setfield(L, -2, "fetch");
    lua_pop(L, 1);
}
