/* libFuzzer harness for the msgpack parser (socket.io-msgpack-parser's packets): sio_decode_msgpack
 * on the input; a packet it accepts has its data mapped to Lua values (lvalue_msgpack.c, under
 * lua_pcall, as lsocket does with an event's arguments) and encoded back into a packet
 * (sio_encode_msgpack), which must decode with the same type, namespace and id; one more round
 * must give the same bytes (a fixed point). Any violation aborts. */
#include <lauxlib.h>
#include <lualib.h>
#include <msgpack.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lvalue.h"
#include "sio_packet.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Whether two decoded namespaces are the same once encoded: the encoder writes an empty one as "/"
 * (sio_packet.h), so a packet naming "" comes back naming "/". */
static int same_nsp(slice_t a, slice_t b)
{
    if (a.len == 0)
        a = SLICE_LIT("/");
    if (b.len == 0)
        b = SLICE_LIT("/");
    return a.len == b.len && memcmp(a.ptr, b.ptr, a.len) == 0;
}

/* Pushes the data of p as Lua values and encodes them back: the msgpack bytes at the top. */
static int encode_back(lua_State *L)
{
    const sio_packet_t *p = lua_touserdata(L, 1);
    int top = lua_gettop(L), n, array = p->obj->type == MSGPACK_OBJECT_ARRAY;
    if (array) {
        n = lvalue_push_msgpack_args(L, p->obj);
    } else {
        n = 1;
        if (!lvalue_push_msgpack_object(L, p->obj))
            lua_pushnil(L);
    }
    lvalue_encode_msgpack(L, top + 1, n, array, 64);
    return 1;
}

/* The packet p re-encoded (data through Lua), as a new rbuf; NULL if Lua raised. */
static rbuf_t *reencode(lua_State *L, const sio_packet_t *p)
{
    sio_packet_t q = *p;
    rbuf_t *b;
    lua_settop(L, 0);
    if (p->obj != NULL) {
        lua_pushcfunction(L, encode_back);
        lua_pushlightuserdata(L, (void *)p);
        if (lua_pcall(L, 1, 1, 0) != LUA_OK)
            return NULL;
        q.data.ptr = lua_tolstring(L, -1, &q.data.len);
    }
    q.obj = NULL;
    b = sio_encode_msgpack(&q);
    lua_settop(L, 0);
    return b;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static lua_State *L;
    msgpack_unpacked u1, u2, u3;
    sio_packet_t p1, p2, p3;
    rbuf_t *b1, *b2;
    if (L == NULL) {
        L = luaL_newstate();
        luaL_openlibs(L);
        lua_newtable(L);
        lvalue_open(L);
        lua_setglobal(L, "siolua");
    }
    msgpack_unpacked_init(&u1);
    msgpack_unpacked_init(&u2);
    msgpack_unpacked_init(&u3);
    if (sio_decode_msgpack((const char *)data, size, NULL, &u1, &p1) == SIO_PKT_OK) {
        if ((b1 = reencode(L, &p1)) == NULL)
            abort(); /* whatever decodes maps to Lua and back */
        if (sio_decode_msgpack(rbuf_payload(b1), b1->len, NULL, &u2, &p2) != SIO_PKT_OK)
            abort();
        if (p2.type != p1.type || p2.id != p1.id || !same_nsp(p1.nsp, p2.nsp) ||
            (p2.obj == NULL) != (p1.obj == NULL))
            abort();
        if ((b2 = reencode(L, &p2)) == NULL)
            abort();
        if (b2->len != b1->len || memcmp(rbuf_payload(b2), rbuf_payload(b1), b1->len) != 0)
            abort(); /* a fixed point after one round */
        if (sio_decode_msgpack(rbuf_payload(b2), b2->len, NULL, &u3, &p3) != SIO_PKT_OK)
            abort();
        rbuf_unref(b1);
        rbuf_unref(b2);
    }
    msgpack_unpacked_destroy(&u1);
    msgpack_unpacked_destroy(&u2);
    msgpack_unpacked_destroy(&u3);
    lua_gc(L, LUA_GCSTEP, 0);
    return 0;
}
