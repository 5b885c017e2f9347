/* ladmin: see ladmin.h. */
#include "ladmin.h"

#include <crypt.h>
#include <lauxlib.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "embed.h"
#include "lvm.h"
#include "lwait.h"

#define WHAT              "admin ui: bcrypt"
#define CHECK_TIMEOUT_MS  10000 /* a check takes ~50 ms at cost 10, ~4 s at cost 16 */
#define MAX_PASSWORD      1024  /* bytes: bcrypt reads 72 of them; longer ones are refused at once */
#define BCRYPT_LEN        60

/* ---------------------------------------------------------------- bcrypt */

/* $2a$, $2b$ or $2y$, a two-digit cost in 04..31, then 53 characters of bcrypt's base64. */
static int bcrypt_shape(const char *h, size_t len)
{
    static const char b64[] = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    if (len != BCRYPT_LEN || h[0] != '$' || h[1] != '2' || strchr("aby", h[2]) == NULL || h[2] == '\0' ||
        h[3] != '$' || h[6] != '$')
        return 0;
    if (h[4] < '0' || h[4] > '3' || h[5] < '0' || h[5] > '9')
        return 0;
    int cost = (h[4] - '0') * 10 + (h[5] - '0');
    if (cost < 4 || cost > 31)
        return 0;
    for (size_t i = 7; i < len; i++)
        if (strchr(b64, h[i]) == NULL || h[i] == '\0')
            return 0;
    return 1;
}

int ladmin_core_bcrypt_valid(lua_State *L)
{
    size_t len;
    const char *h = luaL_checklstring(L, 1, &len);
    lua_pushboolean(L, bcrypt_shape(h, len));
    return 1;
}

typedef struct {
    uv_work_t work;
    lwait_t *wait;  /* NULL once the wait ended without the result (timeout, VM closed) */
    char *password; /* copies, wiped and freed after the check */
    size_t plen;
    char hash[BCRYPT_LEN + 1];
    int ok;
} check_t;

/* On a thread of the pool: crypt_rn with a crypt_data of its own (thread-safe), the result
 * compared with the stored hash in constant time; the scratch area is wiped. */
static void check_work(uv_work_t *w)
{
    check_t *c = w->data;
    struct crypt_data *d = xcalloc(1, sizeof(*d));
    const char *out = crypt_rn(c->password, c->hash, d, (int)sizeof(*d));
    c->ok = out != NULL && strlen(out) == BCRYPT_LEN && CRYPTO_memcmp(out, c->hash, BCRYPT_LEN) == 0;
    OPENSSL_cleanse(d, sizeof(*d));
    free(d);
}

static int push_ok(lua_State *L, void *arg)
{
    lua_pushboolean(L, ((check_t *)arg)->ok);
    return 1;
}

static void check_done(uv_work_t *w, int status)
{
    check_t *c = w->data;
    if (c->wait != NULL) {
        if (status == 0)
            lwait_resume(c->wait, push_ok, c);
        else
            lwait_fail(c->wait, WHAT ": the check could not run");
    }
    OPENSSL_cleanse(c->password, c->plen);
    free(c->password);
    free(c);
}

static void check_cancel(void *op)
{
    ((check_t *)op)->wait = NULL; /* the thread finishes; check_done frees */
}

int ladmin_core_bcrypt_check(lua_State *L)
{
    size_t plen, hlen;
    const char *password = luaL_checklstring(L, 1, &plen);
    const char *hash = luaL_checklstring(L, 2, &hlen);
    lwait_check(L, WHAT);
    if (plen > MAX_PASSWORD || memchr(password, '\0', plen) != NULL || !bcrypt_shape(hash, hlen)) {
        lua_pushboolean(L, 0);
        return 1;
    }
    lwait_t *w = lwait_begin(L, CHECK_TIMEOUT_MS, WHAT, check_cancel); /* may raise: before allocating */
    check_t *c = xcalloc(1, sizeof(*c));
    c->work.data = c;
    c->password = xstrndup(password, plen);
    c->plen = plen;
    memcpy(c->hash, hash, BCRYPT_LEN + 1);
    c->wait = w;
    lwait_bind(w, c);
    if (uv_queue_work(lwait_env(L)->loop, &c->work, check_work, check_done) != 0) {
        lwait_abort(w);
        OPENSSL_cleanse(c->password, c->plen);
        free(c->password);
        free(c);
        return luaL_error(L, WHAT ": the check could not start");
    }
    return lwait_yield(L, w);
}

/* ---------------------------------------------------------------- counters and the process */

int ladmin_core_counters(lua_State *L)
{
    const metrics_t *m = lenv_get(L)->metrics;
    uint64_t in = 0;
    if (m == NULL) {
        for (int i = 0; i < 4; i++)
            lua_pushinteger(L, 0);
        return 4;
    }
    for (int i = 0; i < METRICS_NSIO_TYPES; i++)
        in += m->sio_in[i];
    lua_pushinteger(L, (lua_Integer)in);
    lua_pushinteger(L, (lua_Integer)m->sio_out);
    lua_pushinteger(L, (lua_Integer)m->bytes_in);
    lua_pushinteger(L, (lua_Integer)m->bytes_out);
    return 4;
}

int ladmin_core_process(lua_State *L)
{
    char host[256];
    double uptime = 0;
    if (gethostname(host, sizeof(host)) != 0)
        strcpy(host, "localhost");
    host[sizeof(host) - 1] = '\0';
    lua_pushstring(L, host);
    lua_pushinteger(L, (lua_Integer)getpid());
    if (uv_uptime(&uptime) == 0) { /* the machine's: the process's is its start time subtracted */
        FILE *f = fopen("/proc/self/stat", "r");
        unsigned long long start = 0;
        if (f != NULL) {
            /* field 22 (starttime, in clock ticks since boot), after the command in parentheses */
            char buf[1024];
            size_t n = fread(buf, 1, sizeof(buf) - 1, f);
            buf[n] = '\0';
            const char *p = strrchr(buf, ')');
            for (int field = 2; p != NULL && field < 22; field++)
                p = strchr(p + 1, ' ');
            if (p != NULL)
                start = strtoull(p + 1, NULL, 10);
            fclose(f);
        }
        uptime -= (double)start / (double)sysconf(_SC_CLK_TCK);
    }
    lua_pushnumber(L, uptime > 0 ? uptime : 0);
    return 3;
}

int ladmin_core_now(lua_State *L)
{
    uv_timeval64_t tv;
    if (uv_gettimeofday(&tv) != 0)
        tv.tv_sec = tv.tv_usec = 0;
    lua_pushinteger(L, (lua_Integer)tv.tv_sec * 1000 + tv.tv_usec / 1000);
    return 1;
}

int ladmin_core_session_id(lua_State *L)
{
    unsigned char b[8];
    char hex[17];
    if (RAND_bytes(b, sizeof(b)) != 1)
        return luaL_error(L, "admin ui: no random bytes for a session id");
    for (int i = 0; i < 8; i++)
        snprintf(hex + 2 * i, 3, "%02x", b[i]);
    lua_pushlstring(L, hex, 16);
    return 1;
}

/* ---------------------------------------------------------------- rooms */

int ladmin_core_watch_rooms(lua_State *L)
{
    lenv_t *env = lenv_get(L);
    if (lua_toboolean(L, 1))
        env->rooms_vm = lvm_get(L);
    else if (env->rooms_vm == lvm_get(L))
        env->rooms_vm = NULL;
    return 0;
}

void ladmin_room(lua_State *L, int ud, int room, int joined)
{
    ud = lua_absindex(L, ud);
    room = lua_absindex(L, room);
    lvm_push_hook(L, "room");
    if (!lua_isfunction(L, -1)) {
        lua_pop(L, 1);
        return;
    }
    lua_pushvalue(L, ud);
    lua_pushvalue(L, room);
    lua_pushboolean(L, joined);
    lua_call(L, 3, 0);
}

/* ---------------------------------------------------------------- options */

/* options[key] = the value at the top (popped), given[key] = true; options and given are below it.
 * [-1, +0, m] */
static void set_given(lua_State *L, const char *key)
{
    lua_setfield(L, -3, key);
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, key);
}

int ladmin_core_cli(lua_State *L)
{
    const options_admin_t *a = &lenv_get(L)->cfg->admin;
    if (a->auth != NULL && a->no_auth)
        return luaL_error(L, "--admin-ui and --admin-ui-no-auth: give one of them");
    lua_newtable(L); /* the options */
    lua_newtable(L); /* given */
    if (a->auth != NULL || a->no_auth) {
        if (a->auth != NULL)
            lua_pushstring(L, a->auth);
        else
            lua_pushboolean(L, 0);
        set_given(L, "auth");
    }
    if (a->readonly) {
        lua_pushboolean(L, 1);
        set_given(L, "readonly");
    }
    if (a->mode != 0) {
        lua_pushstring(L, a->mode == 2 ? "production" : "development");
        set_given(L, "mode");
    }
    const struct {
        const char *key, *value;
    } strs[] = {{"serverId", a->server_id}, {"namespaceName", a->nsp}, {"uiPath", a->ui_path}};
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
        if (strs[i].value != NULL) {
            lua_pushstring(L, strs[i].value);
            set_given(L, strs[i].key);
        }
    lua_setfield(L, -2, "given");
    return 1;
}

int ladmin_core_ui(lua_State *L)
{
    options_admin_t *a = &lenv_get(L)->cfg->admin;
    const char *path = luaL_optstring(L, 1, NULL);
    char *p = path != NULL ? options_path(path) : NULL; /* "/x/", as --admin-ui-path's */
    free(a->ui_path_app);
    a->ui_path_app = p;
    lua_pushboolean(L, embed_adminui[0].name != NULL);
    return 1;
}
