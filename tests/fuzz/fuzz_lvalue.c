/* libFuzzer harness for lvalue: the input is a JSON payload (with two attachments available to
 * its placeholders), decoded under lua_pcall and, when that works, encoded back as arguments.
 *   clang -fsanitize=fuzzer,address -Isrc -I/usr/include/lua5.4 tests/fuzz/fuzz_lvalue.c \
 *     src/lvalue.c src/buf.c -llua5.4 -llua5.4-cjson -lm -o fuzz_lvalue */
#include <lauxlib.h>
#include <stdint.h>

#include "lvalue.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    const uint8_t *data;
    size_t size;
    rbuf_t **att;
} input_t;

static int run(lua_State *L)
{
    input_t *in = lua_touserdata(L, 1);
    lvalue_push_json(L, (const char *)in->data, in->size, in->att, 2, 16);
    rbuf_t *out[4];
    int n = lvalue_encode_args(L, -1, 1, out, 4, 17);
    for (int i = 0; i < n; i++)
        rbuf_unref(out[i]);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rbuf_t *att[2] = {rbuf_from("\x00\x01\x02", 3), rbuf_from("", 0)};
    input_t in = {data, size, att};
    lua_State *L = luaL_newstate();
    lua_pushcfunction(L, run);
    lua_pushlightuserdata(L, &in);
    lua_pcall(L, 1, 0, 0); /* errors are expected: we look for crashes and leaks */
    lua_close(L);
    rbuf_unref(att[0]);
    rbuf_unref(att[1]);
    return 0;
}
