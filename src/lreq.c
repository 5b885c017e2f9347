/* lreq: see lreq.h. */
#include "lreq.h"

#include <lauxlib.h>
#include <string.h>

void lreq_push_query(lua_State *L, const char *p, size_t len)
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

void lreq_push_headers(lua_State *L, size_t n, const slice_t *names, const slice_t *values)
{
    lua_createtable(L, 0, (int)n);
    for (size_t i = 0; i < n; i++) {
        push_lower(L, names[i]);
        lua_pushlstring(L, values[i].ptr, values[i].len);
        lua_rawset(L, -3);
    }
}

void lreq_push_packed_headers(lua_State *L, size_t n, const char *packed)
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
    const char *name = http_method_name(m);
    return name != NULL ? name : "OTHER";
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
        lreq_push_headers(L, nh, names, values);
    else
        lreq_push_packed_headers(L, nh, packed);
    lua_setfield(L, -2, "headers");
    lua_pushstring(L, address);
    lua_setfield(L, -2, "address");
    lreq_push_query(L, query.ptr, query.len);
    lua_setfield(L, -2, "_query");
}

void lreq_push_request(lua_State *L, const http_req_t *req)
{
    push_request(L, method_name(req->method), req->url, req->query, req->nheaders, req->names, req->values, NULL,
                 http_peer(req));
}

void lreq_push_handshake_request(lua_State *L, const eio_handshake_t *hs)
{
    push_request(L, "GET", hs->url, hs->query, hs->nheaders, NULL, NULL, hs->headers, hs->address);
}
