/* options: see options.h. The table `rows` below is the schema; everything else in this file reads
 * it. Structured options (cors, cookie, transports, tls, adapter, allowRequest, log-level) have
 * parse functions of their own in their row; plain ones are numbers, booleans, strings or paths. */
#include "options.h"

#include <getopt.h>
#include <lauxlib.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <uv.h>

#include "log.h"
#include "lvalue.h"

typedef enum {
    OT_NUM,    /* an unsigned integer field (4 or 8 bytes) within [min, max] */
    OT_BOOL,   /* an int field: 0 or 1; a flag (--no-x) sets `flag_value` */
    OT_STR,    /* a malloc'd string field */
    OT_PATH,   /* the same, normalised to "/x/" (options_path) */
    OT_CUSTOM, /* the row's own parse functions */
} opt_type_t;

enum {
    OF_ENGINE = 1, /* siolua.engine{} takes it (the field is in sl_config_t.eio) */
    OF_RELOAD = 2, /* a hot-reloaded app's io.options{} applies it (code, not configuration) */
};

#define NO_FIELD ((size_t)-1)
#define NO_MAX UINT64_MAX
#define DAY_MS 86400000u
#define GIB (1u << 30)

typedef struct opt_row {
    const char *flag;   /* command-line flag without "--" (NULL: io.options only) */
    const char *arg;    /* its argument in --help ("MS"); NULL: the flag takes none */
    const char *key;    /* io.options key (NULL: command line only) */
    const char *of;     /* a flag without a key of its own sets this key's option (cors, tls) */
    opt_type_t type;
    size_t off, size;   /* the field in sl_config_t (NO_FIELD: none) */
    uint64_t def;       /* default of a number or boolean */
    const char *sdef;   /* default of a string */
    uint64_t min, max;  /* bounds of a number */
    int flag_value;     /* OT_BOOL: what the flag sets */
    unsigned flags;     /* OF_* */
    void (*init)(void *field);                      /* a computed default */
    int (*cli)(sl_config_t *cfg, void *field, const char *arg); /* OT_CUSTOM flag: 0 or -1 (bad) */
    void (*lua)(lua_State *L, int idx, void *field, int keep, const char *who); /* OT_CUSTOM key */
    void (*free)(void *field);
    const char *help;   /* --help, lines separated by \n */
} opt_row_t;

#define F(m) offsetof(sl_config_t, m), sizeof(((sl_config_t *)0)->m)
#define NOF NO_FIELD, 0

/* ---------------------------------------------------------------- structured options */

static char *dup_lua_string(lua_State *L, int idx)
{
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    return xstrndup(s, len);
}

static void cors_free(void *field)
{
    eio_config_t tmp;
    memset(&tmp, 0, sizeof(tmp));
    tmp.cors = *(eio_cors_t *)field;
    eio_config_free(&tmp); /* (its cookie is empty) */
    memset(field, 0, sizeof(eio_cors_t));
}

static void set_origins(lua_State *L, eio_cors_t *c, int idx)
{
    idx = lua_absindex(L, idx);
    for (size_t i = 0; i < c->norigins; i++)
        free(c->origins[i]);
    free(c->origins);
    c->origins = NULL;
    c->norigins = 0;
    c->origin_any = 0;
    if (lua_type(L, idx) == LUA_TSTRING) {
        if (strcmp(lua_tostring(L, idx), "*") == 0) {
            c->origin_any = 1;
            return;
        }
        c->origins = xmalloc(sizeof(char *));
        c->origins[c->norigins++] = dup_lua_string(L, idx);
    } else if (lua_istable(L, idx)) {
        size_t n = lua_rawlen(L, idx);
        c->origins = xcalloc(n ? n : 1, sizeof(char *));
        for (size_t i = 1; i <= n; i++) {
            lua_rawgeti(L, idx, (lua_Integer)i);
            if (lua_type(L, -1) == LUA_TSTRING)
                c->origins[c->norigins++] = dup_lua_string(L, -1);
            lua_pop(L, 1);
        }
    } else if (lua_toboolean(L, idx)) {
        c->origin_any = 1;
    }
}

static char *join_list(lua_State *L, int idx)
{
    luaL_Buffer b;
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) == LUA_TSTRING)
        return dup_lua_string(L, idx);
    luaL_checktype(L, idx, LUA_TTABLE);
    luaL_buffinit(L, &b);
    for (lua_Integer i = 1; i <= (lua_Integer)lua_rawlen(L, idx); i++) {
        if (i > 1)
            luaL_addchar(&b, ',');
        lua_rawgeti(L, idx, i);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    char *r = dup_lua_string(L, -1);
    lua_pop(L, 1);
    return r;
}

/* cors = { origin = "..." | {...} | "*" | true, methods, allowedHeaders, credentials }, or just an
 * origin. */
static void cors_lua(lua_State *L, int idx, void *field, int keep, const char *who)
{
    eio_cors_t *c = field;
    (void)who;
    if (keep)
        return;
    idx = lua_absindex(L, idx);
    if (!lua_istable(L, idx)) {
        set_origins(L, c, idx);
        return;
    }
    lua_getfield(L, idx, "origin");
    set_origins(L, c, -1);
    lua_pop(L, 1);
    if (lua_getfield(L, idx, "methods") != LUA_TNIL) {
        free(c->methods);
        c->methods = join_list(L, -1);
    }
    lua_pop(L, 1);
    if (lua_getfield(L, idx, "allowedHeaders") != LUA_TNIL) {
        free(c->allowed_headers);
        c->allowed_headers = join_list(L, -1);
    }
    lua_pop(L, 1);
    lua_getfield(L, idx, "credentials");
    c->credentials = lua_toboolean(L, -1);
    lua_pop(L, 1);
}

/* --cors-origin (repeatable; * for any), --cors-methods, --cors-credentials */
static int cors_origin_cli(sl_config_t *cfg, void *field, const char *arg)
{
    eio_cors_t *c = field;
    (void)cfg;
    if (strcmp(arg, "*") == 0) {
        c->origin_any = 1;
    } else {
        c->origins = xrealloc(c->origins, (c->norigins + 1) * sizeof(char *));
        c->origins[c->norigins++] = xstrndup(arg, strlen(arg));
    }
    return 0;
}

static int cors_methods_cli(sl_config_t *cfg, void *field, const char *arg)
{
    eio_cors_t *c = field;
    (void)cfg;
    free(c->methods);
    c->methods = xstrndup(arg, strlen(arg));
    return 0;
}

static int cors_credentials_cli(sl_config_t *cfg, void *field, const char *arg)
{
    (void)cfg;
    (void)arg;
    ((eio_cors_t *)field)->credentials = 1;
    return 0;
}

static void cookie_init(void *field)
{
    ((eio_cookie_t *)field)->max_age = -1;
}

static void cookie_free(void *field)
{
    eio_config_t tmp;
    memset(&tmp, 0, sizeof(tmp));
    tmp.cookie = *(eio_cookie_t *)field;
    eio_config_free(&tmp); /* (its cors is empty); leaves max_age at -1 */
    *(eio_cookie_t *)field = tmp.cookie;
}

/* cookie = true | false | { name, path, domain, httpOnly, secure, sameSite, maxAge }, with the
 * reference's defaults: name "io", path "/", httpOnly unless path is false, sameSite "lax". */
static void cookie_lua(lua_State *L, int idx, void *field, int keep, const char *who)
{
    eio_cookie_t *c = field;
    if (keep)
        return;
    idx = lua_absindex(L, idx);
    cookie_free(c);
    if (!lua_toboolean(L, idx))
        return;
    c->name = xstrndup("io", 2);
    c->path = xstrndup("/", 1);
    c->same_site = xstrndup("Lax", 3);
    c->http_only = 1;
    if (!lua_istable(L, idx))
        return;
    if (lua_getfield(L, idx, "name") == LUA_TSTRING) {
        free(c->name);
        c->name = dup_lua_string(L, -1);
    }
    lua_pop(L, 1);
    int t = lua_getfield(L, idx, "path");
    if (t == LUA_TSTRING) {
        free(c->path);
        c->path = dup_lua_string(L, -1);
    } else if (t == LUA_TBOOLEAN && !lua_toboolean(L, -1)) {
        free(c->path);
        c->path = NULL;
        c->http_only = 0;
    }
    lua_pop(L, 1);
    if (lua_getfield(L, idx, "domain") == LUA_TSTRING)
        c->domain = dup_lua_string(L, -1);
    lua_pop(L, 1);
    if (lua_getfield(L, idx, "httpOnly") != LUA_TNIL)
        c->http_only = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (lua_getfield(L, idx, "secure") != LUA_TNIL)
        c->secure = lua_toboolean(L, -1);
    lua_pop(L, 1);
    t = lua_getfield(L, idx, "sameSite");
    if (t == LUA_TSTRING || t == LUA_TBOOLEAN) {
        const char *v = t == LUA_TSTRING ? lua_tostring(L, -1) : (lua_toboolean(L, -1) ? "strict" : NULL);
        free(c->same_site);
        c->same_site = NULL;
        if (v != NULL) {
            /* as the cookie package writes them: Strict, Lax, None */
            const char *canon = strcasecmp(v, "strict") == 0 ? "Strict"
                                : strcasecmp(v, "lax") == 0  ? "Lax"
                                : strcasecmp(v, "none") == 0 ? "None"
                                                             : NULL;
            if (canon == NULL)
                luaL_error(L, "%s: cookie.sameSite must be \"strict\", \"lax\" or \"none\"", who);
            c->same_site = xstrndup(canon, strlen(canon));
        }
    }
    lua_pop(L, 1);
    if (lua_getfield(L, idx, "maxAge") != LUA_TNIL)
        c->max_age = (long)luaL_checkinteger(L, -1) / 1000; /* the reference's maxAge is in ms */
    lua_pop(L, 1);
    for (const char *p = c->name; *p; p++)
        if (*p <= ' ' || *p == '=' || *p == ';' || *p == ',' || (unsigned char)*p >= 127)
            luaL_error(L, "%s: invalid cookie name", who);
}

/* transports: "polling,websocket" on the command line, {"polling", "websocket"} in Lua */
static int transport_bit(const char *name, size_t n)
{
    if (n == 7 && memcmp(name, "polling", 7) == 0)
        return EIO_T_POLLING;
    if (n == 9 && memcmp(name, "websocket", 9) == 0)
        return EIO_T_WEBSOCKET;
    return 0;
}

static int transports_cli(sl_config_t *cfg, void *field, const char *arg)
{
    int t = 0;
    (void)cfg;
    for (const char *p = arg;; p++) {
        size_t n = strcspn(p, ",");
        int bit = transport_bit(p, n);
        if (bit == 0 && n > 0)
            return -1;
        t |= bit;
        p += n;
        if (*p == '\0')
            break;
    }
    if (t == 0)
        return -1;
    *(int *)field = t;
    return 0;
}

static void transports_lua(lua_State *L, int idx, void *field, int keep, const char *who)
{
    int t = 0;
    idx = lua_absindex(L, idx);
    luaL_checktype(L, idx, LUA_TTABLE);
    for (lua_Integer i = 1; i <= (lua_Integer)lua_rawlen(L, idx); i++) {
        size_t n;
        lua_rawgeti(L, idx, i);
        const char *name = luaL_checklstring(L, -1, &n);
        int bit = transport_bit(name, n);
        if (bit == 0)
            luaL_error(L, "%s: unknown transport \"%s\"", who, name);
        t |= bit;
        lua_pop(L, 1);
    }
    if (t == 0)
        luaL_error(L, "%s: transports must name at least one transport", who);
    if (!keep)
        *(int *)field = t;
}

/* tls = { cert = "cert.pem", key = "key.pem" }: the files of https.createServer({ cert, key })
 * (paths, not their contents: SIGHUP reads them again). */
static void tls_free(void *field)
{
    options_tls_t *t = field;
    free(t->cert);
    free(t->key);
    t->cert = t->key = NULL;
}

static void tls_set(options_tls_t *t, const char *cert, const char *key)
{
    if (cert != NULL) {
        free(t->cert);
        t->cert = xstrndup(cert, strlen(cert));
    }
    if (key != NULL) {
        free(t->key);
        t->key = xstrndup(key, strlen(key));
    }
}

static int tls_cert_cli(sl_config_t *cfg, void *field, const char *arg)
{
    (void)cfg;
    if (arg[0] == '\0')
        return -1;
    tls_set(field, arg, NULL);
    return 0;
}

static int tls_key_cli(sl_config_t *cfg, void *field, const char *arg)
{
    (void)cfg;
    if (arg[0] == '\0')
        return -1;
    tls_set(field, NULL, arg);
    return 0;
}

static void tls_lua(lua_State *L, int idx, void *field, int keep, const char *who)
{
    const char *f[2] = {NULL, NULL};
    static const char *const names[2] = {"cert", "key"};
    idx = lua_absindex(L, idx);
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
        if (strcmp(k, "cert") != 0 && strcmp(k, "key") != 0)
            luaL_error(L, "%s: unknown tls option \"%s\" (cert and key are the PEM files)", who, k);
        lua_pop(L, 1);
    }
    for (int i = 0; i < 2; i++) {
        if (lua_getfield(L, idx, names[i]) != LUA_TSTRING || lua_rawlen(L, -1) == 0)
            luaL_error(L, "%s: tls.%s must be the path of a PEM file", who, names[i]);
        f[i] = lua_tostring(L, -1); /* stays on the stack until used */
    }
    if (!keep)
        tls_set(field, f[0], f[1]);
    lua_pop(L, 2);
}

/* adapter = "redis://..." | { redis = URL, key, requestsTimeout, publishOnSpecificResponseChannel }:
 * the Redis adapter. keep (--redis given) keeps the URL only. */
static int redis_cli(sl_config_t *cfg, void *field, const char *arg)
{
    adapter_redis_config_t *r = field;
    (void)cfg;
    if (strncmp(arg, "redis://", 8) != 0)
        return -1;
    free(r->url);
    r->url = xstrndup(arg, strlen(arg));
    return 0;
}

static void adapter_free(void *field)
{
    adapter_redis_config_t *r = field;
    free(r->url);
    free(r->key);
    r->url = r->key = NULL;
}

static void redis_lua(lua_State *L, int idx, void *field, int keep, const char *who)
{
    adapter_redis_config_t *cfg = field;
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) == LUA_TSTRING) {
        if (!keep) {
            free(cfg->url);
            cfg->url = xstrndup(lua_tostring(L, idx), lua_rawlen(L, idx));
        }
        return;
    }
    if (!lua_istable(L, idx))
        luaL_error(L, "%s: adapter must be a table {redis = \"redis://host:port\", ...} or a URL", who);
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
        size_t n;
        if (strcmp(k, "redis") == 0 || strcmp(k, "url") == 0) {
            const char *u = luaL_checklstring(L, -1, &n);
            if (!keep) {
                free(cfg->url);
                cfg->url = xstrndup(u, n);
            }
        } else if (strcmp(k, "key") == 0) {
            const char *u = luaL_checklstring(L, -1, &n);
            if (n == 0 || n > 200)
                luaL_error(L, "%s: adapter.key must be 1 to 200 bytes", who);
            free(cfg->key);
            cfg->key = xstrndup(u, n);
        } else if (strcmp(k, "requestsTimeout") == 0) {
            lua_Integer v = luaL_checkinteger(L, -1);
            if (v <= 0)
                luaL_error(L, "%s: adapter.requestsTimeout must be positive", who);
            cfg->requests_timeout = (uint64_t)v;
        } else if (strcmp(k, "publishOnSpecificResponseChannel") == 0) {
            cfg->specific_response = lua_toboolean(L, -1);
        } else {
            luaL_error(L, "%s: unknown adapter option \"%s\"", who, k);
        }
        lua_pop(L, 1);
    }
}

/* ---------------------------------------------------------------- compression options */

/* Refuses the keys of table t that are not in `known`. [-0, +0, e] */
static void opt_known_keys(lua_State *L, const char *who, int t, const char *opt, const char *const *known)
{
    lua_pushnil(L);
    while (lua_next(L, t) != 0) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
        int i = 0;
        while (k != NULL && known[i] != NULL && strcmp(known[i], k) != 0)
            i++;
        if (k == NULL || known[i] == NULL)
            luaL_error(L, "%s: %s has no option \"%s\"", who, opt, k ? k : luaL_typename(L, -2));
        lua_pop(L, 1);
    }
}

/* t[key], if present: an integer from lo to hi into *out. [-0, +0, e] */
static void opt_int_field(lua_State *L, const char *who, int t, const char *opt, const char *key, lua_Integer lo,
                          lua_Integer hi, lua_Integer *out)
{
    if (lua_getfield(L, t, key) != LUA_TNIL) {
        int isint = 0;
        lua_Integer v = lua_tointegerx(L, -1, &isint);
        if (lua_type(L, -1) != LUA_TNUMBER || !isint || v < lo || v > hi)
            luaL_error(L, "%s: %s.%s must be an integer from %I to %I", who, opt, key, lo, hi);
        *out = v;
    }
    lua_pop(L, 1);
}

/* zlib's options (Node's names) in table t. `window`: windowBits is taken (httpCompression), else
 * accepted and left alone (ws sets it from the negotiation). chunkSize is accepted and has no
 * effect: siolua sizes its buffers itself. [-0, +0, e] */
static void opt_zlib(lua_State *L, const char *who, int t, const char *opt, zip_params_t *z, int window)
{
    lua_Integer level = z->level, mem = z->mem_level, strategy = z->strategy, bits = z->window_bits, chunk = 0;
    opt_int_field(L, who, t, opt, "level", -1, 9, &level);
    opt_int_field(L, who, t, opt, "memLevel", 1, 9, &mem);
    opt_int_field(L, who, t, opt, "strategy", 0, 4, &strategy);
    opt_int_field(L, who, t, opt, "windowBits", 8, 15, &bits);
    opt_int_field(L, who, t, opt, "chunkSize", 64, INT32_MAX, &chunk);
    z->level = (int)level, z->mem_level = (int)mem, z->strategy = (int)strategy;
    if (window)
        z->window_bits = (int)bits;
}

/* t[key], if present: a boolean into *out (0 or 1). [-0, +0, e] */
static void opt_bool_field(lua_State *L, const char *who, int t, const char *opt, const char *key, int8_t *out)
{
    int type = lua_getfield(L, t, key);
    if (type != LUA_TNIL && type != LUA_TBOOLEAN)
        luaL_error(L, "%s: %s.%s must be a boolean", who, opt, key);
    if (type == LUA_TBOOLEAN)
        *out = (int8_t)lua_toboolean(L, -1);
    lua_pop(L, 1);
}

/* t[key], if present: a table, pushed, or the call raises; nil pushes nothing. 1 if pushed. */
static int opt_table_field(lua_State *L, const char *who, int t, const char *opt, const char *key)
{
    int type = lua_getfield(L, t, key);
    if (type == LUA_TNIL) {
        lua_pop(L, 1);
        return 0;
    }
    if (type != LUA_TTABLE)
        luaL_error(L, "%s: %s.%s must be a table", who, opt, key);
    return 1;
}

/* The start of an option that is a boolean or a table (a table turns it on): a boolean sets
 * *enabled; 1 when the value at t is a table to read further. `cli`: the command line decided
 * *enabled, which the script then leaves alone. [-0, +0, e] */
static int opt_on_off(lua_State *L, const char *who, int t, const char *opt, int *enabled, int cli)
{
    if (!lua_isboolean(L, t) && !lua_istable(L, t))
        luaL_error(L, "%s: %s must be a boolean or a table", who, opt);
    if (!cli)
        *enabled = lua_istable(L, t) || lua_toboolean(L, t);
    return lua_istable(L, t);
}

/* A window size option: true (or nil: unchanged) 0, false -1, or an integer from 8 to 15. */
static void opt_window_bits(lua_State *L, const char *who, int t, const char *key, int8_t *out)
{
    int type = lua_getfield(L, t, key), isint = 0;
    lua_Integer v = lua_tointegerx(L, -1, &isint);
    if (type == LUA_TBOOLEAN)
        *out = lua_toboolean(L, -1) ? 0 : -1;
    else if (type == LUA_TNUMBER && isint && v >= 8 && v <= 15)
        *out = (int8_t)v;
    else if (type != LUA_TNIL)
        luaL_error(L, "%s: perMessageDeflate.%s must be a boolean or an integer from 8 to 15", who, key);
    lua_pop(L, 1);
}

/* perMessageDeflate = true | false | { threshold, serverNoContextTakeover, clientNoContextTakeover,
 * serverMaxWindowBits, clientMaxWindowBits, zlibDeflateOptions, zlibInflateOptions,
 * concurrencyLimit } (ws's names; a table turns it on, as in the reference). `cli`: the command
 * line decided on or off. [-0, +0, e] */
static void pmd_lua(lua_State *L, int idx, void *field, int cli, const char *who)
{
    static const char *const known[] = {"threshold",           "serverNoContextTakeover", "clientNoContextTakeover",
                                        "serverMaxWindowBits", "clientMaxWindowBits",     "zlibDeflateOptions",
                                        "zlibInflateOptions",  "concurrencyLimit",        NULL};
    static const char *const deflate_known[] = {"level", "memLevel", "strategy", "windowBits", "chunkSize", NULL};
    static const char *const inflate_known[] = {"chunkSize", "windowBits", NULL};
    pmd_config_t *c = field;
    int t = lua_absindex(L, idx);
    lua_Integer threshold = (lua_Integer)c->threshold, limit = 10;
    zip_params_t ignored = ZIP_DEFAULTS;
    if (!opt_on_off(L, who, t, "perMessageDeflate", &c->enabled, cli))
        return;
    opt_known_keys(L, who, t, "perMessageDeflate", known);
    opt_int_field(L, who, t, "perMessageDeflate", "threshold", 0, INT32_MAX, &threshold);
    c->threshold = (size_t)threshold;
    opt_bool_field(L, who, t, "perMessageDeflate", "serverNoContextTakeover", &c->server_nct);
    opt_bool_field(L, who, t, "perMessageDeflate", "clientNoContextTakeover", &c->client_nct);
    opt_window_bits(L, who, t, "serverMaxWindowBits", &c->server_bits);
    opt_window_bits(L, who, t, "clientMaxWindowBits", &c->client_bits);
    if (opt_table_field(L, who, t, "perMessageDeflate", "zlibDeflateOptions")) {
        opt_known_keys(L, who, lua_gettop(L), "perMessageDeflate.zlibDeflateOptions", deflate_known);
        opt_zlib(L, who, lua_gettop(L), "perMessageDeflate.zlibDeflateOptions", &c->zlib, 0);
        lua_pop(L, 1);
    }
    if (opt_table_field(L, who, t, "perMessageDeflate", "zlibInflateOptions")) { /* nothing there changes inflating */
        opt_known_keys(L, who, lua_gettop(L), "perMessageDeflate.zlibInflateOptions", inflate_known);
        opt_zlib(L, who, lua_gettop(L), "perMessageDeflate.zlibInflateOptions", &ignored, 0);
        lua_pop(L, 1);
    }
    /* ws's zlib thread-pool limit: siolua compresses on its loop, one message at a time */
    opt_int_field(L, who, t, "perMessageDeflate", "concurrencyLimit", 1, INT32_MAX, &limit);
}

/* httpCompression = true | false | { threshold, level, memLevel, strategy, windowBits, chunkSize }.
 * As in the reference, a table replaces the default { threshold = 1024 } whole: without a
 * threshold, every answer is compressed. `cli`: --no-http-compression was given. [-0, +0, e] */
static void http_compression_lua(lua_State *L, int idx, void *field, int cli, const char *who)
{
    static const char *const known[] = {"threshold", "level", "memLevel", "strategy", "windowBits", "chunkSize", NULL};
    eio_http_compression_t *c = field;
    int t = lua_absindex(L, idx);
    lua_Integer threshold = 0;
    if (!opt_on_off(L, who, t, "httpCompression", &c->enabled, cli))
        return;
    opt_known_keys(L, who, t, "httpCompression", known);
    opt_int_field(L, who, t, "httpCompression", "threshold", 0, INT32_MAX, &threshold);
    c->threshold = (size_t)threshold;
    opt_zlib(L, who, t, "httpCompression", &c->zlib, 1);
}

static void pmd_init(void *field) { *(pmd_config_t *)field = (pmd_config_t)PMD_CONFIG_DEFAULTS; }

/* --per-message-deflate: on (the parameters stay io.options'). */
static int pmd_cli(sl_config_t *cfg, void *field, const char *arg)
{
    (void)cfg;
    (void)arg;
    ((pmd_config_t *)field)->enabled = 1;
    return 0;
}

static void http_compression_init(void *field)
{
    *(eio_http_compression_t *)field = (eio_http_compression_t)EIO_HTTP_COMPRESSION_DEFAULTS;
}

/* --no-http-compression: off. */
static int http_compression_cli(sl_config_t *cfg, void *field, const char *arg)
{
    (void)cfg;
    (void)arg;
    ((eio_http_compression_t *)field)->enabled = 0;
    return 0;
}

/* parser = "default" | "json" | "msgpack" (sio_parser_from_name). */
static int parser_cli(sl_config_t *cfg, void *field, const char *arg)
{
    (void)cfg;
    return sio_parser_from_name(arg, field);
}

static void parser_lua(lua_State *L, int idx, void *field, int keep, const char *who)
{
    int parser;
    if (lua_type(L, idx) != LUA_TSTRING || sio_parser_from_name(lua_tostring(L, idx), &parser) != 0)
        luaL_error(L, "%s: parser must be \"default\" or \"msgpack\" (socket.io-msgpack-parser's format), not %s", who,
                   lua_type(L, idx) == LUA_TSTRING ? lua_tostring(L, idx) : luaL_typename(L, idx));
    if (!keep)
        *(int *)field = parser;
}

/* --workers N | auto, workers = N | "auto": worker processes (auto: one per core, as libuv counts
 * them). 1 is a single process, no supervisor. */
#define MAX_WORKERS 4096 /* the sid names its worker in two base64url characters */

static int workers_parse(const char *arg)
{
    char *end;
    long n;
    if (strcmp(arg, "auto") == 0) {
        n = (long)uv_available_parallelism();
        return n < 1 ? 1 : n > MAX_WORKERS ? MAX_WORKERS : (int)n;
    }
    n = strtol(arg, &end, 10);
    return *arg != '\0' && *end == '\0' && n >= 1 && n <= MAX_WORKERS ? (int)n : -1;
}

static int workers_cli(sl_config_t *cfg, void *field, const char *arg)
{
    (void)cfg;
    int n = workers_parse(arg);
    if (n < 0)
        return -1; /* "invalid value for --workers" */
    *(int *)field = n;
    return 0;
}

static void workers_lua(lua_State *L, int idx, void *field, int keep, const char *who)
{
    int n = -1;
    if (lua_type(L, idx) == LUA_TSTRING)
        n = workers_parse(lua_tostring(L, idx));
    else if (lua_isinteger(L, idx) && lua_tointeger(L, idx) >= 1 && lua_tointeger(L, idx) <= MAX_WORKERS)
        n = (int)lua_tointeger(L, idx);
    if (n < 0)
        luaL_error(L, "%s: workers must be a number from 1 to %d, or \"auto\"", who, MAX_WORKERS);
    if (!keep)
        *(int *)field = n;
}

/* allowEIO3 = true | false (nothing else). */
static int allow_eio3_cli(sl_config_t *cfg, void *field, const char *arg)
{
    (void)cfg;
    (void)arg;
    *(int *)field = 1;
    return 0;
}

static void allow_eio3_lua(lua_State *L, int idx, void *field, int keep, const char *who)
{
    if (!lua_isboolean(L, idx))
        luaL_error(L, "%s: allowEIO3 must be true or false, not a %s", who, luaL_typename(L, idx));
    if (!keep)
        *(int *)field = lua_toboolean(L, idx);
}

/* allowRequest = function(req, callback) ... end: kept in the registry (code, so a hot reload
 * takes the new app's). */
static const char ALLOW_KEY = 'a';

static void allow_lua(lua_State *L, int idx, void *field, int keep, const char *who)
{
    (void)field;
    (void)keep;
    (void)who;
    luaL_checktype(L, idx, LUA_TFUNCTION);
    lua_pushvalue(L, idx);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &ALLOW_KEY);
}

void options_push_allow_request(lua_State *L)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &ALLOW_KEY);
}

static int log_level_cli(sl_config_t *cfg, void *field, const char *arg)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    (void)cfg;
    (void)field;
    for (int i = 0; i < 4; i++)
        if (strcmp(arg, names[i]) == 0) {
            log_level = LOG_ERROR + i;
            return 0;
        }
    return -1;
}

static int log_format_cli(sl_config_t *cfg, void *field, const char *arg)
{
    (void)cfg;
    (void)field;
    if (strcmp(arg, "text") != 0 && strcmp(arg, "json") != 0)
        return -1;
    log_format = strcmp(arg, "json") == 0 ? LOG_JSON : LOG_TEXT;
    return 0;
}

/* metrics = true | false | "/path" | { path = "/metrics", listen = "HOST:PORT" } (ops.h): on at
 * /metrics, at a path of its own, on a listener of its own. --metrics, --metrics-path and
 * --metrics-listen set the same option. */
static void metrics_free(void *field)
{
    options_ops_t *o = field;
    free(o->metrics_path);
    free(o->metrics_listen);
    o->metrics_path = o->metrics_listen = NULL;
}

static int metrics_path_ok(const char *p)
{
    return p[0] == '/' && strpbrk(p, "?# ") == NULL;
}

static void metrics_set(options_ops_t *o, const char *path, const char *listen)
{
    if (path != NULL) {
        free(o->metrics_path);
        o->metrics_path = xstrndup(path, strlen(path));
    }
    if (listen != NULL) {
        free(o->metrics_listen);
        o->metrics_listen = xstrndup(listen, strlen(listen));
    }
}

static int metrics_cli(sl_config_t *cfg, void *field, const char *arg)
{
    options_ops_t *o = field;
    (void)cfg;
    (void)arg;
    if (o->metrics_path == NULL)
        metrics_set(o, "/metrics", NULL);
    return 0;
}

static int metrics_path_cli(sl_config_t *cfg, void *field, const char *arg)
{
    (void)cfg;
    if (!metrics_path_ok(arg))
        return -1;
    metrics_set(field, arg, NULL);
    return 0;
}

static int metrics_listen_cli(sl_config_t *cfg, void *field, const char *arg)
{
    options_ops_t *o = field;
    (void)cfg;
    if (strchr(arg, ':') == NULL)
        return -1;
    metrics_set(o, o->metrics_path == NULL ? "/metrics" : NULL, arg); /* a metrics listener serves metrics */
    return 0;
}

static void metrics_lua(lua_State *L, int idx, void *field, int keep, const char *who)
{
    options_ops_t *o = field;
    const char *path = NULL, *listen = NULL;
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) == LUA_TBOOLEAN) {
        if (!keep && !lua_toboolean(L, idx))
            metrics_free(o);
        path = lua_toboolean(L, idx) ? "/metrics" : NULL;
    } else if (lua_type(L, idx) == LUA_TSTRING) {
        path = lua_tostring(L, idx);
    } else {
        luaL_argexpected(L, lua_type(L, idx) == LUA_TTABLE, idx, "true, a path or {path =, listen =}");
        lua_pushnil(L);
        while (lua_next(L, idx) != 0) {
            const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
            if (strcmp(k, "path") != 0 && strcmp(k, "listen") != 0)
                luaL_error(L, "%s: unknown metrics option \"%s\" (path, listen)", who, k);
            lua_pop(L, 1);
        }
        lua_getfield(L, idx, "path");
        path = lua_isnil(L, -1) ? "/metrics" : lua_tostring(L, -1);
        lua_getfield(L, idx, "listen");
        listen = lua_tostring(L, -1);
        if (!lua_isnil(L, -1) && (listen == NULL || strchr(listen, ':') == NULL))
            luaL_error(L, "%s: metrics.listen must be \"HOST:PORT\"", who);
    }
    if (path != NULL && !metrics_path_ok(path))
        luaL_error(L, "%s: the metrics path must start with / (and have no ?, # or space)", who);
    if (!keep)
        metrics_set(o, path, listen);
    lua_settop(L, idx);
}

/* A flag's unsigned decimal number: 0, or -1 (empty, negative, not a number). */
static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;
    if (s == NULL || *s == '\0' || *s == '-')
        return -1;
    v = strtoull(s, &end, 10);
    if (*end != '\0')
        return -1;
    *out = v;
    return 0;
}

/* connectionStateRecovery = true | { maxDisconnectionDuration = 120000, skipMiddlewares = true,
 * maxBytes = 67108864, stateFile = PATH } (the reference's names and defaults, and siolua's two);
 * false turns it off. --state-file and --recovery-max-bytes turn it on and win over the table's
 * stateFile and maxBytes. */
static void recovery_init(void *field)
{
    options_recovery_t *r = field;
    r->max_duration = 120000;
    r->skip_middlewares = 1;
    r->max_bytes = (size_t)64 << 20;
}

static void recovery_free(void *field)
{
    options_recovery_t *r = field;
    free(r->state_file);
    r->state_file = NULL;
}

static int state_file_cli(sl_config_t *cfg, void *field, const char *arg)
{
    options_recovery_t *r = field;
    (void)cfg;
    if (arg[0] == '\0')
        return -1;
    free(r->state_file);
    r->state_file = xstrndup(arg, strlen(arg));
    r->enabled = r->cli_file = 1;
    return 0;
}

static int recovery_bytes_cli(sl_config_t *cfg, void *field, const char *arg)
{
    options_recovery_t *r = field;
    uint64_t v;
    (void)cfg;
    if (arg[0] < '0' || arg[0] > '9' || parse_u64(arg, &v) != 0 || v > ((uint64_t)1 << 40))
        return -1;
    r->max_bytes = (size_t)v;
    r->enabled = r->cli_bytes = 1;
    return 0;
}

static void recovery_lua(lua_State *L, int idx, void *field, int keep, const char *who)
{
    static const char *const known[] = {"maxDisconnectionDuration", "skipMiddlewares", "maxBytes", "stateFile", NULL};
    options_recovery_t *r = field;
    int t = lua_absindex(L, idx);
    lua_Integer dur = (lua_Integer)r->max_duration, bytes = (lua_Integer)r->max_bytes;
    int8_t skip = (int8_t)r->skip_middlewares;
    (void)keep; /* the flags set their own fields only (cli_file, cli_bytes) */
    if (!opt_on_off(L, who, t, "connectionStateRecovery", &r->enabled, 0))
        return;
    opt_known_keys(L, who, t, "connectionStateRecovery", known);
    opt_int_field(L, who, t, "connectionStateRecovery", "maxDisconnectionDuration", 0, (lua_Integer)DAY_MS * 365,
                  &dur);
    opt_int_field(L, who, t, "connectionStateRecovery", "maxBytes", 0, (lua_Integer)1 << 40, &bytes);
    opt_bool_field(L, who, t, "connectionStateRecovery", "skipMiddlewares", &skip);
    if (lua_getfield(L, t, "stateFile") != LUA_TNIL) {
        if (lua_type(L, -1) != LUA_TSTRING || lua_rawlen(L, -1) == 0)
            luaL_error(L, "%s: connectionStateRecovery.stateFile must be a path", who);
        if (!r->cli_file) {
            free(r->state_file);
            r->state_file = dup_lua_string(L, -1);
        }
    }
    lua_pop(L, 1);
    r->max_duration = (uint64_t)dur;
    r->skip_middlewares = skip;
    if (!r->cli_bytes)
        r->max_bytes = (size_t)bytes;
    if (r->cli_file || r->cli_bytes)
        r->enabled = 1; /* the command line turned it on */
}

/* As many connections as file descriptors allow, less a reserve for files, Redis, the listener:
 * past that, accept() would fail with EMFILE anyway. */
/* The Admin UI's flags (options_admin_t): --admin-ui USER:BCRYPT_HASH (the hash is checked by
 * lua/admin.lua, as io.instrument's), --admin-ui-no-auth, --admin-ui-mode. */
static int admin_auth_cli(sl_config_t *cfg, void *field, const char *arg)
{
    options_admin_t *a = field;
    const char *colon = strchr(arg, ':');
    (void)cfg;
    if (colon == NULL || colon == arg || strncmp(colon + 1, "$2", 2) != 0)
        return -1;
    free(a->auth);
    a->auth = xstrndup(arg, strlen(arg));
    return 0;
}

static int admin_mode_cli(sl_config_t *cfg, void *field, const char *arg)
{
    (void)cfg;
    if (strcmp(arg, "development") != 0 && strcmp(arg, "production") != 0)
        return -1;
    *(int *)field = strcmp(arg, "production") == 0 ? 2 : 1;
    return 0;
}

static void admin_free(void *field)
{
    options_admin_t *a = field;
    free(a->auth);
    free(a->ui_path_app);
    a->auth = a->ui_path_app = NULL;
}

static void max_conns_init(void *field)
{
    struct rlimit rl;
    size_t n = 10000;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur > 128)
        n = (size_t)rl.rlim_cur - 64;
    *(size_t *)field = n;
}

/* A quarter of the machine's memory, or of the cgroup's limit when that is lower: enough for any
 * honest backlog, and a flood of clients that never read cannot take it all. */
static void output_memory_init(void *field)
{
    uint64_t mem = uv_get_total_memory(), lim = uv_get_constrained_memory();
    if (lim != 0 && lim < mem)
        mem = lim;
    *(size_t *)field = (size_t)(mem / 4);
}

/* ---------------------------------------------------------------- the schema */

static const opt_row_t rows[] = {
    {.flag = "host", .arg = "HOST", .type = OT_STR, F(host), .sdef = "127.0.0.1",
     .help = "address to listen on (default 127.0.0.1; 0.0.0.0 for all)"},
    {.flag = "port", .arg = "N", .type = OT_NUM, F(port), .def = 3000, .max = 65535,
     .help = "port (default 3000; 0 picks a free one)"},
    {.flag = "path", .arg = "PATH", .key = "path", .type = OT_PATH, F(path), .sdef = "/socket.io/",
     .help = "Socket.IO path (default /socket.io/)"},
    {.flag = "static", .arg = "DIR", .type = OT_STR, F(static_dir),
     .help = "serve DIR at / (default: public/ next to APP.lua, if present)"},
    {.flag = "ping-interval", .arg = "MS", .key = "pingInterval", .type = OT_NUM, F(eio.ping_interval),
     .def = 25000, .max = NO_MAX, .flags = OF_ENGINE, .help = "heartbeat interval (default 25000)"},
    {.flag = "ping-timeout", .arg = "MS", .key = "pingTimeout", .type = OT_NUM, F(eio.ping_timeout), .def = 20000,
     .max = NO_MAX, .flags = OF_ENGINE, .help = "heartbeat timeout (default 20000)"},
    {.flag = "upgrade-timeout", .arg = "MS", .key = "upgradeTimeout", .type = OT_NUM, F(eio.upgrade_timeout),
     .def = 10000, .max = NO_MAX, .flags = OF_ENGINE,
     .help = "time to finish a transport upgrade (default 10000)"},
    {.flag = "connect-timeout", .arg = "MS", .key = "connectTimeout", .type = OT_NUM, F(sio.connect_timeout),
     .def = 45000, .max = NO_MAX, .help = "time for a client to join a namespace (default 45000)"},
    {.flag = "max-http-buffer-size", .arg = "N", .key = "maxHttpBufferSize", .type = OT_NUM, F(eio.max_payload),
     .def = 1000000, .min = 1, .max = GIB, .flags = OF_ENGINE,
     .help = "largest message or polling body in bytes (default 1000000)"},
    {.flag = "transports", .arg = "LIST", .key = "transports", .type = OT_CUSTOM, F(eio.transports),
     .def = EIO_T_POLLING | EIO_T_WEBSOCKET, .flags = OF_ENGINE, .cli = transports_cli, .lua = transports_lua,
     .help = "polling,websocket (default both)"},
    {.flag = "no-upgrades", .key = "allowUpgrades", .type = OT_BOOL, F(eio.allow_upgrades), .def = 1,
     .flag_value = 0, .flags = OF_ENGINE, .help = "do not upgrade polling sessions to WebSocket"},
    {.flag = "cors-origin", .arg = "ORIGIN", .key = "cors", .type = OT_CUSTOM, F(eio.cors), .flags = OF_ENGINE,
     .cli = cors_origin_cli, .lua = cors_lua, .free = cors_free,
     .help = "allowed origin, repeatable; * for any (default: no CORS)"},
    {.flag = "cors-methods", .arg = "LIST", .of = "cors", .type = OT_CUSTOM, F(eio.cors), .cli = cors_methods_cli,
     .help = "methods for preflight answers (default GET,HEAD,PUT,PATCH,POST,DELETE)"},
    {.flag = "cors-credentials", .of = "cors", .type = OT_CUSTOM, F(eio.cors), .cli = cors_credentials_cli,
     .help = "send Access-Control-Allow-Credentials: true"},
    {.flag = "no-serve-client", .key = "serveClient", .type = OT_BOOL, F(serve_client), .def = 1, .flag_value = 0,
     .help = "do not serve /socket.io/socket.io.js"},
    {.flag = "per-message-deflate", .key = "perMessageDeflate", .type = OT_CUSTOM, F(eio.per_message_deflate),
     .flags = OF_ENGINE, .init = pmd_init, .cli = pmd_cli, .lua = pmd_lua, /* a flag decides on/off only */
     .help = "compress WebSocket messages of 1024 bytes or more (permessage-deflate)\n"
             "with clients that offer it (default off; parameters: io.options)"},
    {.flag = "no-http-compression", .key = "httpCompression", .type = OT_CUSTOM, F(eio.http_compression),
     .flags = OF_ENGINE, .init = http_compression_init, .cli = http_compression_cli, .lua = http_compression_lua,
     .help = "do not gzip/deflate polling answers of 1024 bytes or more (default on)"},
    {.flag = "parser", .arg = "msgpack", .key = "parser", .type = OT_CUSTOM, F(sio.parser), .cli = parser_cli,
     .lua = parser_lua,
     .help = "encode Socket.IO packets with msgpack, as socket.io-msgpack-parser\n(default: the JSON parser)"},
    {.flag = "allow-eio3", .key = "allowEIO3", .type = OT_CUSTOM, F(eio.allow_eio3), .flags = OF_ENGINE,
     .cli = allow_eio3_cli, .lua = allow_eio3_lua,
     .help = "accept Socket.IO v2 clients (Engine.IO protocol v3; default: refused)"},
    {.flag = "workers", .arg = "N", .key = "workers", .type = OT_CUSTOM, F(workers), .def = 1, .cli = workers_cli,
     .lua = workers_lua,
     .help = "worker processes sharing the port, auto: one per core (default 1;\n"
             "see README \"Every core: --workers\")"},
    {.flag = "no-watch", .type = OT_BOOL, F(watch), .def = 1, .flag_value = 0,
     .help = "do not reload when app.lua or its modules change (SIGHUP still does)"},
    {.flag = "lua-memory-limit", .arg = "BYTES", .type = OT_NUM, F(lua_memory_limit), .def = (uint64_t)512 << 20,
     .max = NO_MAX, .help = "memory the Lua VM may use (default 536870912; 0: no limit)"},
    {.flag = "handler-timeout", .arg = "MS", .type = OT_NUM, F(handler_timeout), .def = 2000, .max = DAY_MS,
     .help = "longest a handler may run before it is aborted (default 2000; 0: none)"},
    {.flag = "handler-slice", .arg = "MS", .type = OT_NUM, F(handler_slice), .def = 100, .max = DAY_MS,
     .help = "Lua time per loop turn before a long handler is preempted, to go on\n"
             "once other clients were served (default 100; 0: never)"},
    {.flag = "output-memory-limit", .arg = "BYTES", .type = OT_NUM, F(output_memory_limit), .max = NO_MAX,
     .init = output_memory_init,
     .help = "output queued for all clients together; over it the clients holding\n"
             "the most are disconnected (default: a quarter of the memory; 0: none)"},
    {.flag = "redis", .arg = "URL", .key = "adapter", .type = OT_CUSTOM, F(redis), .cli = redis_cli, .lua = redis_lua,
     .free = adapter_free,
     .help = "Redis adapter: share broadcasts and rooms with other nodes\n"
             "(redis://[:password@]host[:port]; see README \"Scaling out\")"},
    {.flag = "tls-cert", .arg = "FILE", .key = "tls", .type = OT_CUSTOM, F(tls), .cli = tls_cert_cli,
     .lua = tls_lua, .free = tls_free,
     .help = "serve HTTPS and WSS with this PEM certificate chain (needs --tls-key);\nSIGHUP reads it again"},
    {.flag = "tls-key", .arg = "FILE", .of = "tls", .type = OT_CUSTOM, F(tls), .cli = tls_key_cli,
     .help = "the certificate's PEM private key (not encrypted)"},
    /* transport limits (http_limits_t): their defaults are http_limits_fill's; a timeout of 0
     * is refused (0 would mean the default) */
    {.flag = "header-timeout", .arg = "MS", .type = OT_NUM, F(http.header_timeout), .min = 1, .max = DAY_MS,
     .help = "time to send a request head, from the connect or its first byte (default 10000)"},
    {.flag = "body-timeout", .arg = "MS", .type = OT_NUM, F(http.body_timeout), .min = 1, .max = DAY_MS,
     .help = "time to send a request body after its head (default 30000)"},
    {.flag = "keepalive-timeout", .arg = "MS", .type = OT_NUM, F(http.keepalive_timeout), .min = 1, .max = DAY_MS,
     .help = "idle time allowed between keep-alive requests (default 5000)"},
    {.flag = "send-timeout", .arg = "MS", .type = OT_NUM, F(http.send_timeout), .min = 1, .max = DAY_MS,
     .help = "time for an answer to be written out to a non-reading client (default 10000)"},
    {.flag = "max-pipelined", .arg = "N", .type = OT_NUM, F(http.max_pipelined), .min = 1, .max = GIB,
     .help = "requests sent ahead of their answers before the connection closes (default 16)"},
    {.flag = "max-connections", .arg = "N", .type = OT_NUM, F(http.max_conns), .max = GIB, .init = max_conns_init,
     .help = "open connections; more get 503 (default: the open-files limit\n"
             "less 64, e.g. 19936 for 20000; 0: no limit)"},
    {.flag = "max-connections-per-ip", .arg = "N", .type = OT_NUM, F(http.max_conns_per_ip), .max = GIB,
     .help = "open connections from one IP; more get 503 (default 0: no limit)"},
    {.flag = "ws-max-fragments", .arg = "N", .type = OT_NUM, F(http.ws_max_fragments), .min = 1, .max = GIB,
     .help = "WebSocket frames in one message; more: close 1009 (default 1024)"},
    {.flag = "ws-pause-bytes", .arg = "N", .type = OT_NUM, F(http.ws_pause_bytes), .min = 1, .max = GIB,
     .help = "stop reading a WebSocket while this much output waits (default 65536)"},
    {.flag = "ws-close-timeout", .arg = "MS", .type = OT_NUM, F(http.ws_close_timeout), .min = 1, .max = DAY_MS,
     .help = "time for a WebSocket close to be written (default 5000)"},
    {.flag = "log-level", .arg = "LEVEL", .type = OT_CUSTOM, NOF, .cli = log_level_cli,
     .help = "error, warn, info (default) or debug (README: what each prints)"},
    {.flag = "log-format", .arg = "FORMAT", .type = OT_CUSTOM, NOF, .cli = log_format_cli,
     .help = "text (default) or json: one JSON object per line"},
    /* operations (ops.h) */
    {.flag = "metrics", .key = "metrics", .type = OT_CUSTOM, F(ops), .cli = metrics_cli, .lua = metrics_lua,
     .free = metrics_free, .help = "serve Prometheus metrics at /metrics (default off)"},
    {.flag = "metrics-path", .arg = "PATH", .of = "metrics", .type = OT_CUSTOM, F(ops), .cli = metrics_path_cli,
     .help = "serve them at PATH instead (implies --metrics)"},
    {.flag = "metrics-listen", .arg = "HOST:PORT", .of = "metrics", .type = OT_CUSTOM, F(ops), .cli = metrics_listen_cli,
     .help = "serve metrics and probes on a listener of their own (implies --metrics;\n"
             "metrics are then not served on the main port)"},
    {.flag = "no-probes", .key = "probes", .type = OT_BOOL, F(ops.probes), .def = 1, .flag_value = 0,
     .help = "do not answer /healthz and /readyz"},
    {.flag = "drain-delay", .arg = "MS", .key = "drainDelay", .type = OT_NUM, F(ops.drain_delay), .max = DAY_MS,
     .help = "after SIGTERM, /readyz answers 503 for MS while clients are served as\n"
             "before, then the shutdown (default 0: at once)"},
    {.flag = "ready-ignore-redis", .key = "readyIgnoreRedis", .type = OT_BOOL, F(ops.ready_ignore_redis),
     .flag_value = 1, .help = "/readyz stays 200 while the Redis adapter is down"},
    /* the Admin UI (ladmin.h, lua/admin.lua) */
    {.flag = "admin-ui", .arg = "USER:BCRYPT_HASH", .type = OT_CUSTOM, F(admin), .cli = admin_auth_cli,
     .free = admin_free, .help = "the Admin UI's protocol on the /admin namespace, for USER with the\n"
                                 "password of that bcrypt hash (README: Operating siolua)"},
    {.flag = "admin-ui-no-auth", .type = OT_BOOL, F(admin.no_auth), .flag_value = 1,
     .help = "the same without authentication (anyone who reaches the port)"},
    {.flag = "admin-ui-path", .arg = "PATH", .type = OT_PATH, F(admin.ui_path),
     .help = "serve the Admin UI's page at PATH (e.g. /admin/)"},
    {.flag = "admin-ui-readonly", .type = OT_BOOL, F(admin.readonly), .flag_value = 1,
     .help = "the UI shows but cannot emit, join, leave or disconnect"},
    {.flag = "admin-ui-mode", .arg = "MODE", .type = OT_CUSTOM, F(admin.mode), .cli = admin_mode_cli,
     .help = "development (default: every socket, room and event) or production\n"
             "(counts only)"},
    {.flag = "admin-ui-server-id", .arg = "ID", .type = OT_STR, F(admin.server_id),
     .help = "this server's name in the UI (default: the host name)"},
    {.flag = "admin-ui-namespace", .arg = "NSP", .type = OT_STR, F(admin.nsp),
     .help = "the admin namespace (default /admin)"},
    /* connection state recovery (rstore.h) */
    {.flag = "state-file", .arg = "PATH", .of = "connectionStateRecovery", .type = OT_CUSTOM, F(recovery),
     .cli = state_file_cli,
     .help = "connection state recovery survives a restart: its state is written to PATH\n"
             "on shutdown and read back at start (turns recovery on)"},
    {.flag = "recovery-max-bytes", .arg = "BYTES", .of = "connectionStateRecovery", .type = OT_CUSTOM,
     F(recovery), .cli = recovery_bytes_cli,
     .help = "memory for recovery's missed packets and sessions, oldest evicted first\n"
             "(default 67108864; turns recovery on)"},
    {.flag = "shutdown-window", .arg = "MS", .key = "shutdownWindow", .type = OT_NUM, F(shutdown_window),
     .max = DAY_MS,
     .help = "on shutdown, disconnect clients in batches spread over MS, so that they do\n"
             "not all reconnect at once (default 0: all at once)"},
    /* io.options only */
    {.key = "connectionStateRecovery", .type = OT_CUSTOM, F(recovery), .init = recovery_init, .lua = recovery_lua,
     .free = recovery_free},
    {.key = "allowRequest", .type = OT_CUSTOM, NOF, .flags = OF_RELOAD, .lua = allow_lua},
    {.key = "cleanupEmptyChildNamespaces", .type = OT_BOOL, F(sio.cleanup_empty_children)},
    {.key = "cookie", .type = OT_CUSTOM, F(eio.cookie), .flags = OF_ENGINE, .init = cookie_init, .lua = cookie_lua,
     .free = cookie_free},
};

#define NROWS (sizeof(rows) / sizeof(rows[0]))
_Static_assert(sizeof(rows) / sizeof(rows[0]) <= 64, "options: sl_config_t.cli_set has one bit per row");

static void *field_of(void *base, const opt_row_t *r)
{
    return r->off == NO_FIELD ? NULL : (char *)base + r->off;
}

static void set_num(void *field, size_t size, uint64_t v)
{
    if (size == sizeof(uint64_t)) {
        memcpy(field, &v, sizeof(v));
    } else {
        int i = (int)v;
        memcpy(field, &i, sizeof(i));
    }
}

static uint64_t get_num(const void *field, size_t size)
{
    if (size == sizeof(uint64_t)) {
        uint64_t v;
        memcpy(&v, field, sizeof(v));
        return v;
    }
    int i;
    memcpy(&i, field, sizeof(i));
    return (uint64_t)i;
}

/* The row of io.options key k (the one with the key, not the flags that share it), or -1. */
static int row_of_key(const char *k)
{
    for (size_t i = 0; i < NROWS; i++)
        if (rows[i].key != NULL && strcmp(rows[i].key, k) == 0)
            return (int)i;
    return -1;
}

/* ---------------------------------------------------------------- defaults and frees */

void options_defaults(sl_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < NROWS; i++) {
        const opt_row_t *r = &rows[i];
        void *f = field_of(cfg, r);
        if (f == NULL || r->of != NULL)
            continue;
        if (r->init != NULL)
            r->init(f);
        else if (r->type == OT_STR || r->type == OT_PATH)
            *(char **)f = r->sdef ? xstrndup(r->sdef, strlen(r->sdef)) : NULL;
        else if (r->def != 0)
            set_num(f, r->size, r->def);
    }
    /* limits that are not options (README "Limits and security") */
    cfg->eio.max_packets_per_post = 1000;
    cfg->eio.max_buffered = 16u << 20;
    cfg->sio.limits.max_attachments = 10;
    cfg->sio.limits.max_nsp = 256;
    cfg->sio.max_nsps_per_client = 100;
    cfg->http.max_body = cfg->eio.max_payload;
    http_limits_fill(&cfg->http); /* the transport's defaults (http.h) */
    cfg->max_write_queue = 16u << 20;
    cfg->max_json_depth = 64;
    cfg->worker = -1;
}

void options_free(sl_config_t *cfg)
{
    for (size_t i = 0; i < NROWS; i++) {
        const opt_row_t *r = &rows[i];
        void *f = field_of(cfg, r);
        if (f == NULL || r->of != NULL)
            continue;
        if (r->free != NULL)
            r->free(f);
        else if (r->type == OT_STR || r->type == OT_PATH) {
            free(*(char **)f);
            *(char **)f = NULL;
        }
    }
    free(cfg->app);
    cfg->app = NULL;
}

/* The slashes a path option lacks: the reference's normalisation, written once. */
static const char *lead_slash(const char *p) { return p[0] == '/' ? "" : "/"; }
static const char *trail_slash(const char *p)
{
    size_t n = strlen(p);
    return n > 0 && p[n - 1] == '/' ? "" : "/";
}

char *options_path(const char *p)
{
    size_t n = strlen(p) + 3;
    char *out = xmalloc(n);
    snprintf(out, n, "%s%s%s", lead_slash(p), p, trail_slash(p));
    return out;
}

const char *options_push_path(lua_State *L, const char *p)
{
    return lua_pushfstring(L, "%s%s%s", lead_slash(p), p, trail_slash(p));
}

/* ---------------------------------------------------------------- the command line */

static void print_help_line(FILE *out, const char *left, const char *help)
{
    const char *nl;
    fprintf(out, "  %-27s ", left);
    while ((nl = strchr(help, '\n')) != NULL) {
        fprintf(out, "%.*s\n%30s", (int)(nl - help), help, "");
        help = nl + 1;
    }
    fprintf(out, "%s\n", help);
}

void options_usage(FILE *out)
{
    fputs("Usage: siolua APP.lua [options]\n"
          "\n"
          "Runs a Socket.IO v4 server whose handlers are written in Lua (see README.md).\n"
          "\n"
          "Options (flags win over io.options{} in the script):\n",
          out);
    for (size_t i = 0; i < NROWS; i++) {
        char left[64];
        if (rows[i].flag == NULL)
            continue;
        snprintf(left, sizeof(left), "--%s%s%s", rows[i].flag, rows[i].arg ? " " : "", rows[i].arg ? rows[i].arg : "");
        print_help_line(out, left, rows[i].help);
    }
    print_help_line(out, "-h, --help", "this help");
    print_help_line(out, "-v, --version", "print the version");
}

/* Applies flag `r` with its argument to cfg. 0, or -1 for a bad value. */
static int apply_flag(sl_config_t *cfg, const opt_row_t *r, const char *arg)
{
    void *f = field_of(cfg, r);
    uint64_t v;
    switch (r->type) {
    case OT_NUM:
        if (parse_u64(arg, &v) != 0 || v < r->min || v > r->max)
            return -1;
        set_num(f, r->size, v);
        return 0;
    case OT_BOOL:
        set_num(f, r->size, (uint64_t)r->flag_value);
        return 0;
    case OT_STR:
    case OT_PATH:
        free(*(char **)f);
        *(char **)f = r->type == OT_PATH ? options_path(arg) : xstrndup(arg, strlen(arg));
        return 0;
    case OT_CUSTOM:
        return r->cli(cfg, f, arg);
    }
    return -1;
}

/* --options-json: the schema, for tests/integration/options_schema.test.mjs. */
static void print_schema(void)
{
    static const char *const types[] = {"number", "boolean", "string", "path", "custom"};
    sl_config_t def;
    lua_State *L = luaL_newstate();
    options_defaults(&def);
    lua_createtable(L, (int)NROWS, 0);
    for (size_t i = 0; i < NROWS; i++) {
        const opt_row_t *r = &rows[i];
        const void *f = field_of(&def, r);
        lua_createtable(L, 0, 10);
#define STR(name, v) (lua_pushstring(L, (v)), lua_setfield(L, -2, name))
        STR("flag", r->flag);
        STR("arg", r->arg);
        STR("key", r->key);
        STR("of", r->of);
        STR("type", types[r->type]);
        STR("help", r->help);
#undef STR
        if (f != NULL && r->of == NULL && (r->type == OT_NUM || r->type == OT_BOOL)) {
            lua_pushinteger(L, (lua_Integer)get_num(f, r->size));
            lua_setfield(L, -2, "default");
        } else if (f != NULL && r->of == NULL && (r->type == OT_STR || r->type == OT_PATH) && *(char **)f) {
            lua_pushstring(L, *(char *const *)f);
            lua_setfield(L, -2, "default");
        }
        if (r->type == OT_NUM) {
            lua_pushinteger(L, (lua_Integer)r->min);
            lua_setfield(L, -2, "min");
            if (r->max <= (uint64_t)INT64_MAX) {
                lua_pushinteger(L, (lua_Integer)r->max);
                lua_setfield(L, -2, "max");
            }
        }
        lua_pushboolean(L, r->init != NULL); /* the default depends on the machine */
        lua_setfield(L, -2, "computed");
        lua_pushboolean(L, (r->flags & OF_ENGINE) != 0);
        lua_setfield(L, -2, "engine");
        lua_pushboolean(L, (r->flags & OF_RELOAD) != 0);
        lua_setfield(L, -2, "reload");
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    options_free(&def);
    lvalue_encode_value(L, -1, 8, 0); /* (unprotected: only memory could fail, and that aborts) */
    printf("%s\n", lua_tostring(L, -1));
    lua_close(L);
}

int options_parse_argv(sl_config_t *cfg, int argc, char **argv, const char *version)
{
    struct option opts[NROWS + 4];
    size_t n = 0;
    int c;
    enum { OPT_SCHEMA = 1 };
    for (size_t i = 0; i < NROWS; i++)
        if (rows[i].flag != NULL)
            opts[n++] = (struct option){rows[i].flag, rows[i].arg ? required_argument : no_argument, 0, 256 + (int)i};
    opts[n++] = (struct option){"help", no_argument, 0, 'h'};
    opts[n++] = (struct option){"version", no_argument, 0, 'v'};
    opts[n++] = (struct option){"options-json", no_argument, 0, OPT_SCHEMA};
    opts[n] = (struct option){0, 0, 0, 0};
    while ((c = getopt_long(argc, argv, "hv", opts, NULL)) != -1) {
        const opt_row_t *r;
        if (c == 'h') {
            options_usage(stdout);
            return 1;
        }
        if (c == 'v') {
            printf("siolua %s\n", version);
            return 1;
        }
        if (c == OPT_SCHEMA) {
            print_schema();
            return 1;
        }
        if (c < 256 || c >= 256 + (int)NROWS) {
            options_usage(stderr);
            return -1;
        }
        r = &rows[c - 256];
        if (apply_flag(cfg, r, optarg) != 0) {
            fprintf(stderr, "siolua: invalid value for --%s: %s\n", r->flag, optarg);
            return -1;
        }
        /* the option is the command line's now: io.options{} checks it but does not apply it */
        cfg->cli_set |= (uint64_t)1 << (r->of != NULL ? row_of_key(r->of) : c - 256);
    }
    if (optind != argc - 1) {
        fprintf(stderr, optind >= argc ? "siolua: missing APP.lua\n" : "siolua: one APP.lua expected\n");
        options_usage(stderr);
        return -1;
    }
    cfg->app = xstrndup(argv[optind], strlen(argv[optind]));
    return 0;
}

/* ---------------------------------------------------------------- Lua values */

/* Reads the value at the top of the stack for row r into field (validated always, stored unless
 * keep). [-0, +0, e] */
static void read_lua(lua_State *L, const opt_row_t *r, void *field, int keep, const char *who)
{
    int top = lua_gettop(L);
    switch (r->type) {
    case OT_NUM: {
        lua_Number d = lua_tonumber(L, top);
        lua_Integer v;
        if (!lua_isinteger(L, top) && !(lua_isnumber(L, top) && (lua_Number)(lua_Integer)d == d))
            luaL_error(L, "%s: %s must be an integer", who, r->key);
        v = lua_isinteger(L, top) ? lua_tointeger(L, top) : (lua_Integer)d;
        if (v < 0)
            luaL_error(L, "%s: %s must not be negative", who, r->key);
        if ((uint64_t)v < r->min || (uint64_t)v > r->max)
            luaL_error(L, "%s: %s must be %llu to %llu", who, r->key, (unsigned long long)r->min,
                       (unsigned long long)r->max);
        if (!keep)
            set_num(field, r->size, (uint64_t)v);
        break;
    }
    case OT_BOOL:
        if (!keep)
            set_num(field, r->size, (uint64_t)lua_toboolean(L, top));
        break;
    case OT_STR:
    case OT_PATH: {
        const char *s = luaL_checkstring(L, top);
        if (!keep) {
            free(*(char **)field);
            *(char **)field = r->type == OT_PATH ? options_path(s) : xstrndup(s, strlen(s));
        }
        break;
    }
    case OT_CUSTOM:
        r->lua(L, top, field, keep, who);
        break;
    }
}

void options_lua(lua_State *L, int idx, sl_config_t *cfg, int reloaded, int *ignored)
{
    idx = lua_absindex(L, idx);
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
        int i = row_of_key(k);
        if (reloaded && (i < 0 || !(rows[i].flags & OF_RELOAD)))
            (*ignored)++; /* the server runs with the options it started with */
        else if (i < 0)
            luaL_error(L, "io.options: unknown option \"%s\"", k);
        else
            read_lua(L, &rows[i], field_of(cfg, &rows[i]), (cfg->cli_set >> i) & 1, "io.options");
        lua_pop(L, 1);
    }
}

uint64_t options_engine(lua_State *L, const char *k, eio_config_t *eio)
{
    int i = row_of_key(k);
    if (i < 0 || !(rows[i].flags & OF_ENGINE))
        return 0;
    read_lua(L, &rows[i], (char *)eio + (rows[i].off - offsetof(sl_config_t, eio)), 0, "siolua.engine");
    return (uint64_t)1 << i;
}

void options_engine_apply(eio_config_t *to, const eio_config_t *from, uint64_t set)
{
    for (size_t i = 0; i < NROWS; i++) {
        size_t off = rows[i].off - offsetof(sl_config_t, eio);
        if ((set >> i) & 1)
            memcpy((char *)to + off, (const char *)from + off, rows[i].size);
    }
}
