/* Unit tests for lvalue_msgpack.c, the msgpack <-> Lua mapping of the Redis adapter (and the msgpack parser) (core.msgpack_encode and
 * decode), byte for byte against what the Node adapter's notepack.io writes (the vectors were
 * captured from a Node cluster with redis-cli), malformed and truncated input; and ladapter_redis's
 * primitives without an adapter.
 * Each case is a Lua chunk; `hex(s)` / `unhex(h)` convert, `same(a, b)` compares deeply. */
#include <lauxlib.h>
#include <lualib.h>
#include <stdlib.h>

#include "ladapter_redis.h"
#include "lvalue.h"
#include "test.h"

static const char PRELUDE[] =
    "local core = siolua._core\n"
    "enc, dec = core.msgpack_encode, core.msgpack_decode\n"
    "function hex(s) return (s:gsub('.', function(c) return string.format('%02x', c:byte()) end)) end\n"
    "function unhex(h) return (h:gsub('%x%x', function(x) return string.char(tonumber(x, 16)) end)) end\n"
    "function same(a, b)\n"
    "  if siolua.isbinary(a) and siolua.isbinary(b) then return tostring(a) == tostring(b) end\n"
    "  if type(a) ~= 'table' or type(b) ~= 'table' then return a == b and math.type(a) == math.type(b) end\n"
    "  for k, v in pairs(a) do if not same(v, b[k]) then return false end end\n"
    "  for k in pairs(b) do if a[k] == nil then return false end end\n"
    "  return true\n"
    "end\n";

static const luaL_Reg adapter_core[] = {
    {"redis_enabled", ladapter_redis_enabled},   {"redis_connected", ladapter_redis_connected},
    {"redis_config", ladapter_redis_config},     {"redis_uid", ladapter_redis_uid},
    {"redis_id", ladapter_redis_id},             {"redis_publish", ladapter_redis_publish},
    {"redis_subscribe", ladapter_redis_subscribe}, {"redis_psubscribe", ladapter_redis_psubscribe},
    {"redis_command", ladapter_redis_command},   {"msgpack_encode", lvalue_core_msgpack_encode},
    {"msgpack_decode", lvalue_core_msgpack_decode}, {NULL, NULL},
};

static lua_State *new_state(void)
{
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    lua_newtable(L);
    lvalue_open(L);
    lua_newtable(L); /* the primitives under test, as lapp's core list names them */
    luaL_setfuncs(L, adapter_core, 0);
    lua_setfield(L, -2, "_core");
    lua_setglobal(L, "siolua");
    if (luaL_dostring(L, PRELUDE) != LUA_OK) {
        fprintf(stderr, "prelude: %s\n", lua_tostring(L, -1));
        abort();
    }
    return L;
}

/* Runs chunk; it must return true. */
static int run(const char *chunk)
{
    lua_State *L = new_state();
    int ok = 0;
    if (luaL_dostring(L, chunk) != LUA_OK)
        fprintf(stderr, "  error: %s\n", lua_tostring(L, -1));
    else if (!lua_toboolean(L, -1))
        fprintf(stderr, "  chunk returned %s: %s\n", luaL_typename(L, -1), chunk);
    else
        ok = 1;
    lua_close(L);
    return ok;
}

TEST(decodes_a_node_broadcast)
{
    /* io.emit("hello", 1, 2.5, "s", Buffer.from([1,2,3]), {k: [true, null]}) from a Node server */
    CHECK(run("local m = dec(unhex("
              "'93a64943307742'..'6f'..'83a474797065'..'02'..'a464617461'..'96a568656c6c6f01'"
              "..'cb4004000000000000'..'a173'..'c403010203'..'81a16b92c3c0'..'a36e7370a12f'"
              "..'83a5726f6f6d7390a6657863657074'..'90a5666c61677380'))\n"
              "return m[1] == 'IC0wBo' and m[2].type == 2 and m[2].nsp == '/'\n"
              "  and same(m[2].data, {'hello', 1, 2.5, 's', siolua.binary('\\1\\2\\3'), {k = {true, siolua.null}}})\n"
              "  and #m[3].rooms == 0 and getmetatable(m[3].rooms) ~= nil and next(m[3].flags) == nil"));
}

TEST(encodes_like_notepack)
{
    /* the same message, re-encoded: identical bytes except map order, so compare by decoding and
     * check the scalar encodings exactly */
    CHECK(run("return hex(enc(1)) == '01' and hex(enc(-1)) == 'ff' and hex(enc(200)) == 'ccc8'"
              " and hex(enc(2.5)) == 'cb4004000000000000' and hex(enc(3.0)) == '03'"
              " and hex(enc('s')) == 'a173' and hex(enc(true)) == 'c3' and hex(enc(siolua.null)) == 'c0'"
              " and hex(enc(siolua.binary('\\1\\2\\3'))) == 'c403010203'"
              " and hex(enc({1, 2})) == '920102' and hex(enc(siolua.array())) == '90' and hex(enc({})) == '80'"
              " and hex(enc({k = true})) == '81a16bc3' and hex(enc(string.rep('x', 40))):sub(1, 4) == 'd928'"));
}

TEST(round_trips)
{
    CHECK(run("local v = {'ev', 1, -7, 1.25, 2^53, 'bytes\\0x', siolua.binary('\\255\\0'), {a = {b = {c = {}}}},"
              " {true, false, siolua.null}, siolua.array(), {[1] = 'one', x = 'mixed'}}\n"
              "local back = dec(enc(v))\n"
              "return same(back[8], {a = {b = {c = {}}}}) and back[11]['1'] == 'one' and back[11].x == 'mixed'\n"
              "  and same(back[7], siolua.binary('\\255\\0')) and back[5] == 2^53 and math.type(back[5]) == 'integer'\n"
              "  and #back[10] == 0 and hex(enc(back[10])) == '90'"));
}

TEST(refuses_what_msgpack_cannot_carry)
{
    CHECK(run("return not pcall(enc, {f = print}) and not pcall(enc, {[true] = 1})"));
    CHECK(run("local t = {}; t[1] = t\n"
              "local ok, err = pcall(enc, t)\n"
              "return not ok and err:find('too deep') ~= nil"));
}

TEST(malformed_and_truncated_input)
{
    /* every proper prefix of a valid message is refused with nil + error, never a crash */
    CHECK(run("local s = enc({'IC0wBo', {type = 2, data = {'x', siolua.binary('abc'), {1, 2}}}, {rooms = {'r'}}})\n"
              "for i = 0, #s - 1 do\n"
              "  local v, err = dec(s:sub(1, i))\n"
              "  if v ~= nil or type(err) ~= 'string' then return false end\n"
              "end\n"
              "local v, err = dec(s .. 'x')\n"
              "return v == nil and err:find('trailing') ~= nil and dec(unhex('c1')) == nil"));
    /* notepack's undefined (fixext 1, type 0): dropped from maps, null in arrays */
    CHECK(run("local m = dec(unhex('82a161d40000a16201'))\n"
              "local a = dec(unhex('92d4000001'))\n"
              "return m.a == nil and m.b == 1 and a[1] == siolua.null and a[2] == 1"));
}

/* A container cannot declare more elements than the message has bytes: msgpack-c would allocate
 * them all before reading (here 2^32 - 1 elements, ~100 GB, from 5 bytes; ASan aborts on that). */
TEST(declared_sizes_are_bounded_by_the_message)
{
    CHECK(run("local v, err = dec(unhex('ddffffffff'))\n"
              "local w, err2 = dec(unhex('93a178dd40040000a173c0'))\n" /* inside a valid-looking array */
              "local x = dec(unhex('dfffffffff'))\n"
              "local y = dec(unhex('dc0003c0c0'))\n" /* 3 declared, 2 present: truncated */
              "return v == nil and err:find('declares more elements') ~= nil and w == nil and x == nil\n"
              "  and y == nil"));
    /* the bound is the message: as many elements as bytes is fine */
    CHECK(run("local a = dec(unhex('dc0003c0c0c0'))\n"
              "local m = dec(unhex('de0001a16bdc0001c3'))\n"
              "return #a == 3 and a[3] == siolua.null and m.k[1] == true"));
}

TEST(primitives_without_an_adapter)
{
    CHECK(run("local c = siolua._core\n"
              "local id, err = c.redis_command({'PING'})\n"
              "return c.redis_enabled() == false and c.redis_publish('ch', 'x') == false and id == nil\n"
              "  and err == 'not connected to Redis' and #c.redis_id() == 6 and c.redis_id() ~= c.redis_id()\n"
              "  and c.redis_config().key == 'socket.io' and c.redis_config().requestsTimeout == 5000"));
}

int main(void)
{
    RUN(decodes_a_node_broadcast);
    RUN(encodes_like_notepack);
    RUN(round_trips);
    RUN(refuses_what_msgpack_cannot_carry);
    RUN(malformed_and_truncated_input);
    RUN(declared_sizes_are_bounded_by_the_message);
    RUN(primitives_without_an_adapter);
    return test_summary();
}
