/* libFuzzer harness for the Redis adapter's msgpack <-> Lua mapping, through its public functions
 * (core.msgpack_decode / core.msgpack_encode: lvalue_core_msgpack_decode, lvalue_core_msgpack_encode), so that it does not
 * depend on how adapter_redis.c maps values inside. The input is a message from another node.
 * Under lua_pcall, with v1 = decode(input):
 *   - decode returns a value, or nil (+ a string); it never raises;
 *   - whatever decodes encodes (no raise), and that encoding decodes (v2);
 *   - one more round is a fixed point: decode(encode(v2)) equals v2;
 *   - a JSON-like v1 (every table a proper sequence or string-keyed, as a Node peer's objects and
 *     arrays are) comes back equal: v2 equals v1.
 * "Equal": same types, numbers equal (integer or float alike, NaN equal to NaN), binaries with the
 * same bytes, tables that the encoder writes as the same kind (array or map) with equal elements,
 * map keys compared as the strings they are written as. Any violation aborts with the reason. */
#include <lauxlib.h>
#include <lualib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "lvalue.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char CHECK_LUA[] =
    "local input = ...\n"
    "local enc, dec = siolua._core.msgpack_encode, siolua._core.msgpack_decode\n"
    "local isbinary = siolua.isbinary\n"
    "local function kind(t)\n" /* how the encoder writes table t */
    "  local b = enc(t):byte(1)\n"
    "  if (b >= 0x90 and b <= 0x9f) or b == 0xdc or b == 0xdd then return 'array' end\n"
    "  return 'map'\n"
    "end\n"
    "local function same(a, b)\n"
    "  local ta = type(a)\n"
    "  if ta ~= type(b) then return false end\n"
    "  if ta == 'number' then\n"
    "    if a ~= a then return b ~= b end\n"
    "    return a == b\n"
    "  end\n"
    "  if ta == 'userdata' and (isbinary(a) or isbinary(b)) then\n"
    "    return isbinary(a) and isbinary(b) and tostring(a) == tostring(b)\n"
    "  end\n"
    "  if ta ~= 'table' then return a == b end\n"
    "  local k = kind(a)\n"
    "  if k ~= kind(b) then return false end\n"
    "  if k == 'array' then\n"
    "    if rawlen(a) ~= rawlen(b) then return false end\n"
    "    for i = 1, rawlen(a) do if not same(rawget(a, i), rawget(b, i)) then return false end end\n"
    "    return true\n"
    "  end\n"
    "  local bk, na, nb = {}, 0, 0\n"
    "  for key, v in next, b do bk[tostring(key)] = v; nb = nb + 1 end\n"
    "  for key, v in next, a do\n"
    "    na = na + 1\n"
    "    local w = bk[tostring(key)]\n"
    "    if w == nil or not same(v, w) then return false end\n"
    "  end\n"
    "  return na == nb\n"
    "end\n"
    "local function jsonlike(v)\n"
    "  if type(v) ~= 'table' then return true end\n"
    "  local count, strings = 0, true\n"
    "  for key, x in next, v do\n"
    "    count = count + 1\n"
    "    if type(key) ~= 'string' then strings = false end\n"
    "    if not jsonlike(x) then return false end\n"
    "  end\n"
    "  if strings then return true end\n"
    "  if count ~= rawlen(v) then return false end\n"
    "  for i = 1, count do if rawget(v, i) == nil then return false end end\n"
    "  return true\n"
    "end\n"
    "local v1, err = dec(input)\n"
    "if v1 == nil then\n"
    "  if err ~= nil and type(err) ~= 'string' then return 'decode: the error is not a string' end\n"
    "  return nil\n"
    "end\n"
    "local ok, e1 = pcall(enc, v1)\n"
    "if not ok then return 'a decoded value does not encode: ' .. tostring(e1) end\n"
    "local v2, err2 = dec(e1)\n"
    "if v2 == nil then return 'our own encoding does not decode: ' .. tostring(err2) end\n"
    "local v3 = dec(enc(v2))\n"
    "if not same(v2, v3) then return 'decode(encode(v)) is not a fixed point' end\n"
    "if jsonlike(v1) and not same(v1, v2) then return 'a JSON-like value changed on the way' end\n"
    "return nil\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    lua_newtable(L); /* siolua, with what the mapping uses: null, binary, array marks */
    lvalue_open(L);
    lua_newtable(L); /* the primitives under test, as lapp's core list names them */
    lua_pushcfunction(L, lvalue_core_msgpack_encode);
    lua_setfield(L, -2, "msgpack_encode");
    lua_pushcfunction(L, lvalue_core_msgpack_decode);
    lua_setfield(L, -2, "msgpack_decode");
    lua_setfield(L, -2, "_core");
    lua_setglobal(L, "siolua");
    if (luaL_loadbuffer(L, CHECK_LUA, sizeof(CHECK_LUA) - 1, "=fuzz_msgpack") != LUA_OK) {
        fprintf(stderr, "fuzz_msgpack: %s\n", lua_tostring(L, -1));
        abort();
    }
    lua_pushlstring(L, (const char *)data, size);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        fprintf(stderr, "fuzz_msgpack: raised: %s\n", lua_tostring(L, -1));
        abort();
    }
    if (!lua_isnil(L, -1)) {
        fprintf(stderr, "fuzz_msgpack: %s\n", lua_tostring(L, -1));
        abort();
    }
    lua_close(L);
    return 0;
}
