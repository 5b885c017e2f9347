/* libFuzzer harness for lvalue: the input is a JSON payload (with two attachments available to
 * its placeholders), decoded under lua_pcall; when that works, it is encoded (wire and raw forms),
 * the wire form must be valid UTF-8 and the round trip must hold: decoding the text and encoding
 * it again gives the same text.
 *   clang -fsanitize=fuzzer,address -D_GNU_SOURCE -Isrc -I/usr/include/lua5.4 tests/fuzz/fuzz_lvalue.c \
 *     src/lvalue.c src/lvalue_json.c src/jsnum.c src/utf8.c src/buf.c -llua5.4 -lyajl -lm -o fuzz_lvalue */
#include <lauxlib.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lvalue.h"
#include "utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    const uint8_t *data;
    size_t size;
    rbuf_t **att;
} input_t;

/* Pushes encode_args(stack[idx]) (the text of [value]); its attachments are freed here. */
static void enc(lua_State *L, int idx)
{
    rbuf_t *out[4];
    lua_pushvalue(L, idx);
    int n = lvalue_encode_args(L, lua_gettop(L), 1, out, 4, 17);
    lua_remove(L, -2);
    for (int i = 0; i < n; i++)
        rbuf_unref(out[i]);
}

/* Decodes the text at the top as an argument list, checks it holds one value, encodes that
 * again: pushes the new text. */
static void again(lua_State *L, input_t *in)
{
    size_t n;
    const char *t = lua_tolstring(L, -1, &n);
    if (lvalue_push_json_args(L, t, n, in->att, 2, 17) != 1)
        abort();
    enc(L, lua_gettop(L));
    lua_remove(L, -2);
}

static int same(lua_State *L, int a, int b)
{
    size_t na, nb;
    const char *ta = lua_tolstring(L, a, &na), *tb = lua_tolstring(L, b, &nb);
    return na == nb && memcmp(ta, tb, na) == 0;
}

static int run(lua_State *L)
{
    input_t *in = lua_touserdata(L, 1);
    lvalue_push_json(L, (const char *)in->data, in->size, in->att, 2, 16);
    int v = lua_gettop(L);
    enc(L, v); /* text 1: the wire form */
    size_t n1;
    const char *t1 = lua_tolstring(L, -1, &n1);
    if (utf8_valid_prefix(t1, n1) != n1)
        abort();  /* the wire is valid UTF-8 */
    again(L, in); /* text 2 */
    again(L, in); /* text 3 */
    /* from valid UTF-8 (all the server decodes) the round trip is exact; otherwise the repair
     * may merge keys once (two byte strings, one U+FFFD text), then it is stable */
    if (!same(L, -1, -2) || (utf8_valid_prefix((const char *)in->data, in->size) == in->size && !same(L, -2, -3)))
        abort();
    lua_settop(L, v);
    lvalue_encode_value(L, v, 16, LVALUE_RAW); /* raises on binaries: fine */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rbuf_t *att[2] = {rbuf_from("\x00\x01\x02", 3), rbuf_from("", 0)};
    input_t in = {data, size, att};
    lua_State *L = luaL_newstate();
    lua_pushcfunction(L, run);
    lua_pushlightuserdata(L, &in);
    lua_pcall(L, 1, 0, 0); /* errors are expected: we look for crashes, leaks and aborts */
    lua_close(L);
    rbuf_unref(att[0]);
    rbuf_unref(att[1]);
    return 0;
}
