/* Unit tests for lvalue: JSON <-> Lua values with real Lua (yajl underneath).
 * Most cases are Lua chunks run against helpers that call the C API:
 *   decode(json [, depth [, att...]])  lvalue_push_json with the strings as attachments
 *   encode(...)                        lvalue_encode_args: returns json, att1, att2, ...
 *   encode_d(depth, ...)               the same with a depth limit
 *   value(v [, depth [, raw]])         lvalue_encode_value (raw: LVALUE_RAW)
 *   args(json [, att...])              lvalue_push_json_args: the values it pushed
 *   fails(pattern, f, ...)             f(...) must raise an error matching pattern
 *   same(a, b)                         deep equality (binaries by bytes) */
#include <lauxlib.h>
#include <lualib.h>
#include <stdlib.h>

#include "lvalue.h"
#include "test.h"

#define DEPTH 32
#define MAX_ATT 8

/* Attachment rbufs boxed in a userdata, so that an error raised by the code under test cannot
 * leak them: the GC unrefs them. */
typedef struct {
    int n;
    rbuf_t *b[MAX_ATT];
} attbox_t;

static int attbox_gc(lua_State *L)
{
    attbox_t *a = lua_touserdata(L, 1);
    for (int i = 0; i < a->n; i++)
        rbuf_unref(a->b[i]);
    a->n = 0;
    return 0;
}

static attbox_t *new_attbox(lua_State *L)
{
    attbox_t *a = lua_newuserdatauv(L, sizeof *a, 0);
    a->n = 0;
    if (luaL_newmetatable(L, "test.attbox")) {
        lua_pushcfunction(L, attbox_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    return a;
}

/* A box holding the strings stack[first..top] as attachment rbufs. [-0, +1, e] */
static attbox_t *boxed_atts(lua_State *L, int first)
{
    int natt = lua_gettop(L) - first + 1;
    luaL_argcheck(L, natt <= MAX_ATT, first, "too many attachments");
    attbox_t *a = new_attbox(L);
    for (int i = 0; i < natt; i++) {
        size_t n;
        const char *p = luaL_checklstring(L, first + i, &n);
        a->b[a->n++] = rbuf_from(p, n);
    }
    return a;
}

static int l_decode(lua_State *L)
{
    size_t len;
    const char *json = luaL_checklstring(L, 1, &len);
    int depth = (int)luaL_optinteger(L, 2, DEPTH);
    lua_settop(L, lua_gettop(L) < 2 ? 2 : lua_gettop(L));
    attbox_t *a = boxed_atts(L, 3);
    lvalue_push_json(L, json, len, a->b, (size_t)a->n, depth);
    return 1;
}

static int encode_from(lua_State *L, int first, int depth)
{
    int n = lua_gettop(L) - first + 1;
    attbox_t *a = new_attbox(L);
    int box = lua_gettop(L);
    int k = lvalue_encode_args(L, first, n, a->b, MAX_ATT, depth);
    a->n = k;
    luaL_checkstack(L, k, NULL);
    for (int i = 0; i < k; i++) {
        if (!(a->b[i]->flags & RBUF_BINARY) || a->b[i]->refs != 1)
            return luaL_error(L, "attachment %d: bad flags or refs", i);
        lua_pushlstring(L, rbuf_payload(a->b[i]), a->b[i]->len);
    }
    lua_remove(L, box);
    return k + 1;
}

static int l_encode(lua_State *L)
{
    return encode_from(L, 1, DEPTH);
}

static int l_encode_d(lua_State *L)
{
    return encode_from(L, 2, (int)luaL_checkinteger(L, 1));
}

static int l_value(lua_State *L)
{
    int depth = (int)luaL_optinteger(L, 2, DEPTH);
    int flags = lua_toboolean(L, 3) ? LVALUE_RAW : 0;
    lua_settop(L, 1);
    lvalue_encode_value(L, 1, depth, flags);
    return 1;
}

static int l_args(lua_State *L)
{
    size_t len;
    const char *json = luaL_checklstring(L, 1, &len);
    attbox_t *a = boxed_atts(L, 2);
    int top = lua_gettop(L);
    int n = lvalue_push_json_args(L, json, len, a->b, (size_t)a->n, DEPTH);
    if (lua_gettop(L) != top + n)
        return luaL_error(L, "args: pushed %d values, returned %d", lua_gettop(L) - top, n);
    return n;
}

static const char prelude[] =
    "function fails(pat, f, ...)\n"
    "  local ok, err = pcall(f, ...)\n"
    "  if ok then error('expected an error matching ' .. pat, 2) end\n"
    "  if not tostring(err):find(pat) then error('error ' .. tostring(err) .. ' does not match ' .. pat, 2) end\n"
    "end\n"
    "function same(a, b)\n"
    "  if type(a) ~= type(b) then return false end\n"
    "  if type(a) == 'number' then return a == b and math.type(a) == math.type(b) end\n"
    "  if type(a) ~= 'table' then return a == b end\n"
    "  for k, v in pairs(a) do if not same(v, b[k]) then return false end end\n"
    "  for k in pairs(b) do if a[k] == nil then return false end end\n"
    "  return true\n"
    "end\n"
    "function eq(a, b) if a ~= b then error(('got %q, expected %q'):format(tostring(a), tostring(b)), 2) end end\n";

static lua_State *new_state(void)
{
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    lua_newtable(L);
    lvalue_open(L);
    lua_setglobal(L, "siolua");
    lua_register(L, "decode", l_decode);
    lua_register(L, "encode", l_encode);
    lua_register(L, "encode_d", l_encode_d);
    lua_register(L, "value", l_value);
    lua_register(L, "args", l_args);
    if (luaL_dostring(L, prelude) != LUA_OK) {
        fprintf(stderr, "prelude: %s\n", lua_tostring(L, -1));
        abort();
    }
    return L;
}

static int traceback(lua_State *L)
{
    luaL_traceback(L, L, lua_tostring(L, 1), 1);
    return 1;
}

/* Runs a chunk in a fresh state; 1 if it ran without error. The state is closed with a full
 * collection, so ASan sees any rbuf the code under test leaked. */
static int run(const char *code)
{
    lua_State *L = new_state();
    lua_pushcfunction(L, traceback);
    int ok = luaL_loadstring(L, code) == LUA_OK && lua_pcall(L, 0, 0, 1) == LUA_OK;
    if (!ok)
        fprintf(stderr, "  lua: %s\n", lua_tostring(L, -1));
    lua_close(L);
    return ok;
}

/* ---------------------------------------------------------------------------------------------
 * Cases
 * ------------------------------------------------------------------------------------------- */

TEST(null)
{
    CHECK(run("eq(decode('null'), siolua.null)\n"
              "eq(decode('[null]')[1], siolua.null)\n"
              "eq(decode('{\"a\":null}').a, siolua.null)\n"
              "eq(value(siolua.null), 'null')\n"
              "eq(value(nil), 'null')\n"
              "eq(encode('a', nil, 1), '[\"a\",null,1]')\n"
              "eq(encode('a', nil), '[\"a\",null]')\n"
              "eq(value({siolua.null, 1}), '[null,1]')\n"));
}

TEST(nested)
{
    CHECK(run("local v = decode('{\"a\":[1,{\"b\":[[2],{\"c\":\"x\"}]}],\"d\":true,\"e\":false}')\n"
              "assert(same(v, {a = {1, {b = {{2}, {c = 'x'}}}}, d = true, e = false}))\n"
              "assert(same(decode(value(v)), v))\n"
              "eq(value({1, {2, {3}}, 'x'}), '[1,[2,[3]],\"x\"]')\n"
              "eq(value({a = {b = {c = 1}}}), '{\"a\":{\"b\":{\"c\":1}}}')\n"
              "eq(decode('\"s\"'), 's')\n"
              "eq(decode(' [ 1 , 2 ] ')[2], 2)\n"));
}

TEST(numbers)
{
    CHECK(run("eq(math.type(decode('1')), 'integer')\n"
              "eq(math.type(decode('[1]')[1]), 'integer')\n"
              "eq(math.type(decode('1.5')), 'float')\n"
              "eq(decode('1.5'), 1.5)\n"
              "eq(math.type(decode('1.0')), 'integer')\n"
              "eq(math.type(decode('{\"a\":1e3}').a), 'integer')\n"
              "eq(decode('-42'), -42)\n"
              "eq(math.type(decode('-0')), 'integer')\n"
              "eq(math.type(decode('9007199254740992')), 'integer')\n"
              "eq(decode('9007199254740992'), 9007199254740992)\n"
              "eq(math.type(decode('-9007199254740992')), 'integer')\n"
              "eq(math.type(decode('9007199254740994')), 'float')\n"
              "eq(math.type(decode('1e300')), 'float')\n"
              "eq(value(1), '1')\n"
              "eq(value(-3), '-3')\n"
              "eq(value(1.5), '1.5')\n"
              "eq(value(3.0), '3')\n"
              "eq(value(99999999999999), '99999999999999')\n"
              "eq(value(123456789012345), '123456789012345')\n"
              "eq(value(-123456789012345), '-123456789012345')\n"
              "eq(value(2^53), '9007199254740992')\n"
              "eq(value(math.maxinteger), '9223372036854775807')\n"
              "eq(value(math.mininteger), '-9223372036854775808')\n"
              "eq(value({n = 1234567890123456}), '{\"n\":1234567890123456}')\n"
              "eq(encode('t', 1700000000000123), '[\"t\",1700000000000123]')\n"
              "eq(decode(value(9007199254740991)), 9007199254740991)\n"
              "eq(value(1e300), '1e+300')\n"
              /* NaN and infinities are written null, as JSON.stringify does; 1e400 is inf */
              "eq(value(0/0), 'null')\n"
              "eq(value({1/0}), '[null]')\n"
              "eq(encode('x', -1/0), '[\"x\",null]')\n"
              "eq(decode('1e400'), math.huge)\n"
              "eq(decode('-1e400'), -math.huge)\n"
              "eq(value(decode('[1e400]')), '[null]')\n"
              "fails('invalid JSON', decode, 'NaN')\n"
              "fails('invalid JSON', decode, 'Infinity')\n"
              "fails('invalid JSON', decode, '0x10')\n"
              "fails('invalid JSON', decode, '01')\n"
              "fails('invalid JSON', decode, '1.')\n"
              "fails('invalid JSON', decode, '+1')\n"
              "fails('invalid JSON', decode, '.5')\n"));
}

TEST(binary_userdata)
{
    CHECK(run("local b = siolua.binary('a\\0bc')\n"
              "assert(siolua.isbinary(b))\n"
              "assert(not siolua.isbinary('a\\0bc'))\n"
              "assert(not siolua.isbinary(nil))\n"
              "eq(#b, 4)\n"
              "eq(tostring(b), 'a\\0bc')\n"
              "eq(b:tostring(), 'a\\0bc')\n"
              "eq(b:byte(), 97)\n"
              "eq(select('#', b:byte(1, -1)), 4)\n"
              "eq(select(2, b:byte(1, -1)), 0)\n"
              "eq(b:byte(-1), 99)\n"
              "eq(select('#', b:byte(10)), 0)\n"
              "eq(b:sub(2):tostring(), '\\0bc')\n"
              "eq(b:sub(2, -2):tostring(), '\\0b')\n"
              "eq(#b:sub(3, 2), 0)\n"
              "assert(siolua.isbinary(b:sub(1)))\n"
              "assert(b == siolua.binary('a\\0bc'))\n"
              "assert(b ~= siolua.binary('a\\0bd'))\n"
              "assert(b ~= siolua.binary(''))\n"
              "eq(getmetatable(b).__name, 'siolua.binary')\n"
              "assert(siolua.binary(b) == b and rawequal(siolua.binary(b), b) == false)\n"
              "fails('string expected', siolua.binary, {})\n"
              "local t = {}\n"
              "assert(siolua.array(t) == t)\n"
              "eq(getmetatable(siolua.array()).__name, 'siolua.array')\n"
              "fails('table expected', siolua.array, 1)\n"
              "eq(type(siolua.null), 'userdata')\n"));
}

TEST(binaries_decode)
{
    CHECK(run("local v = decode('[\"ev\",{\"a\":[1,{\"_placeholder\":true,\"num\":1}]},"
              "{\"_placeholder\":true,\"num\":0}]', nil, 'AAA', 'B\\0B')\n"
              "eq(v[1], 'ev')\n"
              "assert(siolua.isbinary(v[2].a[2]))\n"
              "eq(tostring(v[2].a[2]), 'B\\0B')\n"
              "eq(tostring(v[3]), 'AAA')\n"
              "eq(math.type(v[2].a[1]), 'integer')\n"
              "eq(tostring(decode('{\"_placeholder\":true,\"num\":0}', nil, 'root')), 'root')\n"
              "eq(#decode('[{\"_placeholder\":true,\"num\":0}]', nil, '')[1], 0)\n"
              /* _placeholder must be exactly true to make a placeholder */
              "eq(decode('{\"_placeholder\":1,\"num\":5}').num, 5)\n"
              "eq(decode('{\"_placeholder\":\"true\",\"num\":5}').num, 5)\n"));
}

TEST(binaries_bad_placeholder)
{
    CHECK(run("fails('illegal attachments', decode, '[{\"_placeholder\":true,\"num\":1}]', nil, 'x')\n"
              "fails('illegal attachments', decode, '[{\"_placeholder\":true,\"num\":-1}]', nil, 'x')\n"
              "fails('illegal attachments', decode, '[{\"_placeholder\":true,\"num\":0.5}]', nil, 'x', 'y')\n"
              "fails('illegal attachments', decode, '[{\"_placeholder\":true,\"num\":\"0\"}]', nil, 'x')\n"
              "fails('illegal attachments', decode, '[{\"_placeholder\":true}]', nil, 'x')\n"
              "fails('illegal attachments', decode, '{\"a\":{\"b\":[{\"_placeholder\":true,\"num\":1e9}]}}', nil, 'x')\n"
              /* without attachments (a plain EVENT) placeholder-looking objects are data, as in the
               * reference (issue 12 item 6) */
              "local v = decode('[{\"_placeholder\":true,\"num\":0}]')\n"
              "eq(v[1]._placeholder, true) eq(v[1].num, 0)\n"
              "eq(value(v), '[{\"_placeholder\":true,\"num\":0}]')\n"
              "eq(decode('{\"_placeholder\":true,\"num\":7}').num, 7)\n"));
}

TEST(binaries_encode)
{
    CHECK(run("local json, a, b, c = encode('ev', {siolua.binary('x'), {k = {siolua.binary('yy')}}}, siolua.binary('z\\0'))\n"
              "eq(json, '[\"ev\",[{\"_placeholder\":true,\"num\":0},{\"k\":[{\"_placeholder\":true,\"num\":1}]}],"
              "{\"_placeholder\":true,\"num\":2}]')\n"
              "eq(a, 'x') eq(b, 'yy') eq(c, 'z\\0')\n"
              /* round trip through the attachments */
              "local orig = {'ev', {m = siolua.binary('1'), n = {siolua.binary('2'), siolua.binary('3')}}}\n"
              "local r = table.pack(encode(table.unpack(orig)))\n"
              "eq(r.n, 4)\n"
              "assert(same(decode(r[1], nil, r[2], r[3], r[4]), orig))\n"
              /* the caller's tables are not modified */
              "local t = {b = siolua.binary('q')}\n"
              "encode(t)\n"
              "assert(siolua.isbinary(t.b))\n"
              /* the same binary twice is two attachments, as in the reference */
              "local s = siolua.binary('s')\n"
              "local j2, s1, s2 = encode(s, s)\n"
              "eq(j2, '[{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]')\n"
              "eq(s1, 's') eq(s2, 's')\n"
              /* bounds */
              "local many = {} for i = 1, 9 do many[i] = siolua.binary('m') end\n"
              "fails('too many binary attachments', encode, many)\n"
              "fails('cannot encode a binary here', value, {siolua.binary('x')})\n"
              "fails('cannot encode a binary here', value, siolua.binary('x'))\n"));
}

TEST(exact_event)
{
    lua_State *L = new_state();
    lua_settop(L, 0);
    lua_pushliteral(L, "ev");
    lua_pushinteger(L, 1);
    lua_newtable(L);
    lvalue_push_binary(L, "\x01\x00\xff", 3);
    lua_setfield(L, -2, "b");
    rbuf_t *att[MAX_ATT] = {NULL};
    int k = lvalue_encode_args(L, 1, 3, att, MAX_ATT, DEPTH);
    CHECK_EQ_INT(k, 1);
    CHECK_EQ_INT(lua_gettop(L), 4);
    size_t len;
    const char *json = lua_tolstring(L, -1, &len);
    CHECK_EQ_MEM(json, len, "[\"ev\",1,{\"b\":{\"_placeholder\":true,\"num\":0}}]");
    CHECK(att[0] != NULL);
    if (att[0] != NULL) {
        CHECK_EQ_MEM(rbuf_payload(att[0]), att[0]->len, "\x01\x00\xff");
        CHECK(att[0]->flags & RBUF_BINARY);
        CHECK_EQ_INT(att[0]->refs, 1);
        rbuf_unref(att[0]);
    }
    CHECK(att[1] == NULL);
    /* the values are untouched below the result */
    CHECK(lua_type(L, 3) == LUA_TTABLE);
    lua_getfield(L, 3, "b");
    CHECK(lvalue_tobinary(L, -1, &len) != NULL && len == 3);
    CHECK(lvalue_tobinary(L, 1, &len) == NULL);
    lua_close(L);
}

TEST(decode_binary_c_api)
{
    lua_State *L = new_state();
    rbuf_t *att[2] = {rbuf_from("hello", 5), rbuf_from("", 0)};
    static const char json[] = "[{\"_placeholder\":true,\"num\":1},{\"_placeholder\":true,\"num\":0}]";
    lvalue_push_json(L, json, sizeof json - 1, att, 2, DEPTH);
    rbuf_unref(att[0]); /* the binaries are copies */
    rbuf_unref(att[1]);
    size_t len;
    lua_rawgeti(L, -1, 2);
    const char *p = lvalue_tobinary(L, -1, &len);
    CHECK(p != NULL);
    if (p != NULL)
        CHECK_EQ_MEM(p, len, "hello");
    lua_rawgeti(L, -2, 1);
    CHECK(lvalue_tobinary(L, -1, &len) != NULL && len == 0);
    lua_close(L);
}

TEST(invalid_json)
{
    CHECK(run("fails('^invalid JSON', decode, '')\n"
              "fails('^invalid JSON', decode, '[1,')\n"
              "fails('^invalid JSON', decode, '[1] x')\n"
              "fails('^invalid JSON', decode, '{\"a\"}')\n"
              "fails('^invalid JSON', decode, \"{'a':1}\")\n"
              "fails('^invalid JSON', decode, '[1]\\0')\n"
              "fails('^invalid JSON', decode, '[\"a\\0\"]')\n"
              "fails('^invalid JSON', decode, '[\"\\\\x\"]')\n"));
}

TEST(too_deep)
{
    CHECK(run("eq(decode('[[1]]', 2)[1][1], 1)\n"
              "fails('^invalid JSON', decode, '[[[1]]]', 2)\n"
              "fails('^invalid JSON', decode, string.rep('[', 100) .. string.rep(']', 100), 32)\n"
              "eq(decode('[[1]]', 32)[1][1], 1)\n"
              "eq(decode('[[[1]]]', 3)[1][1][1], 1)\n"
              /* encode_args: the arguments array is level 1 */
              "eq(encode_d(3, {{1}}), '[[[1]]]')\n"
              "fails('too deep', encode_d, 2, {{1}})\n"
              "eq(value({{1}}, 2), '[[1]]')\n"
              "fails('too deep', value, {{{1}}}, 2)\n"
              /* a placeholder is an object, so it is a level */
              "eq(select(2, encode_d(2, siolua.binary('x'))), 'x')\n"
              "fails('too deep', encode_d, 2, {siolua.binary('x')})\n"
              "local t = {} local c = t for i = 1, 100 do c[1] = {} c = c[1] end\n"
              "fails('too deep', value, t)\n"
              "fails('too deep', encode, t)\n"));
}

TEST(bad_values)
{
    CHECK(run("fails('cannot encode a function', value, print)\n"
              "fails('cannot encode a function', encode, 'ev', {f = function() end})\n"
              "fails('cannot encode a thread', value, {coroutine.create(print)})\n"
              "fails('cannot encode a userdata', value, {io.stdout})\n"
              "fails('cannot encode a userdata', encode, io.stdout)\n"
              "fails('table key', value, {[true] = 1})\n"
              "fails('sparse', value, {[1] = 1, [1000] = 2})\n"));
}

TEST(cycles)
{
    CHECK(run("local t = {} t.self = t\n"
              "fails('contains itself', value, t)\n"
              "fails('contains itself', encode, 'ev', {a = {b = t}})\n"
              "local u = {1} u[2] = {u}\n"
              "fails('contains itself', encode, u)\n"
              /* a shared table that is not a cycle is fine, as in JSON.stringify */
              "local s = {1}\n"
              "eq(value({s, s}), '[[1],[1]]')\n"
              "eq(encode(s, s), '[[1],[1]]')\n"
              "local sb = {siolua.binary('x')}\n"
              "local j, a1, a2 = encode(sb, sb)\n"
              "eq(j, '[[{\"_placeholder\":true,\"num\":0}],[{\"_placeholder\":true,\"num\":1}]]')\n"));
}

TEST(empty_tables)
{
    CHECK(run("eq(value(siolua.array()), '[]')\n"
              "eq(value({}), '{}')\n"
              "eq(value({a = siolua.array()}), '{\"a\":[]}')\n"
              "eq(value({a = {}}), '{\"a\":{}}')\n"
              "eq(value(siolua.array({siolua.array(), {}})), '[[],{}]')\n"
              "eq(value(siolua.array({1, 2})), '[1,2]')\n"
              "eq(encode(), '[]')\n"
              "eq(encode(siolua.array()), '[[]]')\n"
              "eq(encode('ev', {}), '[\"ev\",{}]')\n"
              /* decoded [] is an empty array (marked), {} an empty plain table: both go back out as
               * they came, at every depth */
              "assert(next(decode('[]')) == nil and getmetatable(decode('[]')) == getmetatable(siolua.array()))\n"
              "assert(next(decode('{}')) == nil and getmetatable(decode('{}')) == nil)\n"
              "eq(value(decode('[]')), '[]')\n"
              "eq(value(decode('{}')), '{}')\n"
              "eq(value(decode('{\"items\":[],\"meta\":{}}')), '{\"items\":[],\"meta\":{}}')\n"
              "eq(value(decode('[[],{},[[]]]')), '[[],{},[[]]]')\n"
              /* an array the app empties stays an array */
              "local a = decode('[1,2]') a[2] = nil a[1] = nil eq(value(a), '[]')\n"));
}

TEST(placeholder_lookalike_strings)
{
    /* strings that look like what the encoder writes come out as they went in */
    CHECK(run("local strs = {'~siolua~', '\"_placeholder\"', '{\"_placeholder\":true,\"num\":0}', '[]', '1e+21'}\n"
              "local json, att = encode(strs, siolua.binary('B'), siolua.array())\n"
              "eq(att, 'B')\n"
              "local back = decode(json, nil, att)\n"
              "assert(same(back[1], strs))\n"
              "eq(tostring(back[2]), 'B')\n"
              "eq(json, '[[\"~siolua~\",\"\\\\\"_placeholder\\\\\"\",\"{\\\\\"_placeholder\\\\\":true,\\\\\"num\\\\\":0}\",\"[]\",\"1e+21\"],"
              "{\"_placeholder\":true,\"num\":0},[]]')\n"));
}

TEST(unicode)
{
    CHECK(run("eq(decode('\"h\\195\\169llo \\226\\152\\131\"'), 'h\\195\\169llo \\226\\152\\131')\n"
              "eq(decode('\"\\\\u00e9\\\\ud83d\\\\ude00\"'), '\\195\\169\\240\\159\\152\\128')\n"
              "eq(value('h\\195\\169llo \\226\\152\\131 \\240\\159\\152\\128'), '\"h\\195\\169llo \\226\\152\\131 \\240\\159\\152\\128\"')\n"
              "eq(value('a\"b\\\\c\\n'), '\"a\\\\\"b\\\\\\\\c\\\\n\"')\n"
              "local k = decode('{\"\\226\\152\\131\":1}')\n"
              "eq(k['\\226\\152\\131'], 1)\n"));
}

/* Every row of issue 11's table, and the values of its "What to build": what a client sends comes
 * back out as the same JSON text (the text JSON.stringify writes). */
TEST(issue11_rows)
{
    CHECK(run("local function rt(json) eq(value(decode(json)), json) end\n"
              "rt('{\"items\":[],\"meta\":{}}')\n"
              "rt('[[],{},[[]]]')\n"
              "rt('0.30000000000000004')\n"
              "rt('3.141592653589793')\n"
              "rt('9007199254740994')\n"
              "rt('1.0000000000000002')\n"
              "rt('\"a\\\\ud800b\"')\n"
              "rt('1e+21') rt('1e-7') rt('123456789012345680000') rt('5e-324')\n"
              "rt('{\"1\":\"a\",\"2\":\"b\"}')\n"
              "rt('{\"a\":1,\"b\":2,\"c\":3,\"d\":4}')\n"
              "eq(value(decode('-0')), '0')\n"
              "eq(value(decode('1E2')), '100')\n"
              "eq(value(decode('1.5e-7')), '1.5e-7')\n"
              "eq(value(decode('1e21')), '1e+21')\n"
              "eq(value(decode('123456789012345678901')), '123456789012345680000')\n"
              /* arrays are still sequences for the app */
              "local v = decode('{\"items\":[1,2,3]}') eq(#v.items, 3)\n"
              "local n = 0 for i, x in ipairs(v.items) do n = n + x end eq(n, 6)\n"
              /* integers the app computes stay exact */
              "eq(value(2^53 + 1), '9007199254740992') eq(value((1 << 53) + 1), '9007199254740993')\n"
              "eq(value({x = 0.1 + 0.2}), '{\"x\":0.30000000000000004}')\n"));
}

TEST(key_order)
{
    CHECK(run("local o = decode('{\"d\":1,\"c\":2,\"b\":3,\"a\":4}')\n"
              "eq(value(o), '{\"d\":1,\"c\":2,\"b\":3,\"a\":4}')\n"
              /* JS order: array indices first, ascending, then the rest as they came */
              "eq(value(decode('{\"b\":1,\"4294967294\":2,\"4294967295\":3,\"1\":4,\"01\":5,\"-1\":6,\"0\":7,\"a\":8}')),"
              "  '{\"0\":7,\"1\":4,\"4294967294\":2,\"b\":1,\"4294967295\":3,\"01\":5,\"-1\":6,\"a\":8}')\n"
              /* a duplicate keeps its first place and its last value */
              "eq(value(decode('{\"b\":1,\"a\":2,\"b\":3}')), '{\"b\":3,\"a\":2}')\n"
              "eq(decode('{\"a\":1,\"a\":2}').a, 2)\n"
              /* pairs walks the same order; getmetatable shows the key list */
              "local ks = {} for k in pairs(o) do ks[#ks + 1] = k end eq(table.concat(ks), 'dcba')\n"
              "assert(getmetatable(o) ~= nil)\n"
              "assert(getmetatable(decode('{\"a\":1}')) == nil)\n"
              /* the app changes a value: order kept; removes a key: the rest in order */
              "o.c = 'x' o.b = nil eq(value(o), '{\"d\":1,\"c\":\"x\",\"a\":4}')\n"
              /* adds keys: after the recorded ones (indices first, as in JS) */
              "o.z = true eq(value(o), '{\"d\":1,\"c\":\"x\",\"a\":4,\"z\":true}')\n"
              "o['7'] = 0 eq(value(o), '{\"7\":0,\"d\":1,\"c\":\"x\",\"a\":4,\"z\":true}')\n"
              "ks = {} for k in pairs(o) do ks[#ks + 1] = k end eq(table.concat(ks, ','), '7,d,c,a,z')\n"
              /* nested objects and arrays of objects, at every depth */
              "local j = '[{\"y\":1,\"x\":2},{\"y\":3,\"x\":4,\"w\":[{\"q\":1,\"p\":2}]}]'\n"
              "eq(value(decode(j)), j)\n"
              /* an app-built object: indices first, the others in next() order */
              "eq(value({[2] = 'b', [1] = 'a', k = 1}), '{\"1\":\"a\",\"2\":\"b\",\"k\":1}')\n"
              /* emptied to only integer keys: an array again, as an app-built one would be */
              "local m = decode('{\"a\":1,\"b\":2}') m.a = nil m.b = nil m[1] = 'x' eq(value(m), '[\"x\"]')\n"
              /* __proto__-like keys are plain keys */
              "eq(value(decode('{\"__proto__\":1,\"constructor\":2}')), '{\"__proto__\":1,\"constructor\":2}')\n"));
}

TEST(strings)
{
    CHECK(run(/* lone surrogates: WTF-8 in Lua, escapes on the wire */
              "eq(decode('\"a\\\\ud800b\"'), 'a\\237\\160\\128b')\n"
              "eq(decode('\"\\\\udc00\"'), '\\237\\176\\128')\n"
              "eq(decode('\"\\\\ud800\\\\u0041\"'), '\\237\\160\\128A')\n"
              "eq(decode('\"\\\\ud83d\\\\ude00\"'), '\\240\\159\\152\\128')\n"
              "eq(decode('\"\\\\uD83D\\\\uDE00x\\\\uDBFF\"'), '\\240\\159\\152\\128x\\237\\175\\191')\n"
              "eq(decode('\"\\\\\\\\ud800\"'), '\\\\ud800')\n" /* an escaped backslash, then text */
              "eq(decode('\"\\\\\\\\\\\\ud800\"'), '\\\\\\237\\160\\128')\n"
              "eq(decode('{\"\\\\udfff\":1}')['\\237\\191\\191'], 1)\n"
              "eq(value('a\\237\\160\\128b'), '\"a\\\\ud800b\"')\n"
              "eq(value('\\237\\191\\191'), '\"\\\\udfff\"')\n"
              /* the two halves of an emoji, joined by the app, are the emoji */
              "eq(value('\\237\\160\\189' .. '\\237\\184\\128'), '\"\\240\\159\\152\\128\"')\n"
              /* invalid UTF-8 an app builds: U+FFFD on the wire, as it is with LVALUE_RAW */
              "eq(value('a\\255b\\226\\130'), '\"a\\239\\191\\189b\\239\\191\\189\"')\n"
              "eq(value('a\\255b', nil, true), '\"a\\255b\"')\n"
              /* a surrogate's bytes cut short: two maximal subparts (ED, A0), as Node's decoder */
              "eq(value('a\\237\\160z'), '\"a\\239\\191\\189\\239\\191\\189z\"')\n"
              "eq(decode(value('a\\255\\237\\160\\128', nil, true)), 'a\\255\\237\\160\\128')\n"
              /* escapes exactly as JSON.stringify: nothing else escaped */
              "eq(value('\\0\\1\\8\\9\\10\\12\\13\\31\"\\\\/\\127'), '\"\\\\u0000\\\\u0001\\\\b\\\\t\\\\n\\\\f\\\\r\\\\u001f\\\\\"\\\\\\\\/\\127\"')\n"
              "eq(value('\\226\\128\\168'), '\"\\226\\128\\168\"')\n" /* U+2028 as it is */
              "eq(decode('\"\\\\u0000x\\\\/\"'), '\\0x/')\n"
              /* JSON.parse refuses \\v and \\f outside strings (yajl alone would take them) */
              "fails('invalid JSON', decode, '[1,\\v2]')\n"
              "fails('invalid JSON', decode, '[1,\\f2]')\n"
              "eq(decode(' \\t\\r\\n[1]\\n')[1], 1)\n"
              "fails('invalid JSON', decode, '\"a\\1\"')\n"
              "fails('invalid JSON', decode, '\"\\\\ud800\\\\\"')\n"));
}

TEST(args)
{
    CHECK(run("local t = table.pack(args('[\"ev\",1,[],{\"a\":1},null]'))\n"
              "eq(t.n, 5) eq(t[1], 'ev') eq(t[2], 1) eq(value(t[3]), '[]') eq(t[4].a, 1) eq(t[5], siolua.null)\n"
              "eq(select('#', args('[]')), 0)\n"
              "fails('not an array', args, '{\"a\":1}')\n"
              "fails('not an array', args, '\"ev\"')\n"
              "fails('invalid JSON', args, '[1')\n"
              "local b = table.pack(args('[\"b\",{\"_placeholder\":true,\"num\":0}]', 'xyz'))\n"
              "eq(tostring(b[2]), 'xyz')\n"));
}

/* issue 12 item 3: naming one attachment many times builds one binary, shared */
TEST(shared_attachments)
{
    CHECK(run("local parts = {} for i = 1, 1000 do parts[i] = '{\"_placeholder\":true,\"num\":0}' end\n"
              "local v = decode('[' .. table.concat(parts, ',') .. ']', nil, string.rep('x', 100000))\n"
              "eq(#v, 1000)\n"
              "for i = 2, #v do assert(rawequal(v[1], v[i])) end\n"
              "local w = decode('[{\"_placeholder\":true,\"num\":1},{\"_placeholder\":true,\"num\":0},"
              "{\"_placeholder\":true,\"num\":1}]', nil, 'a', 'b')\n"
              "assert(rawequal(w[1], w[3]) and not rawequal(w[1], w[2]))\n"
              "eq(tostring(w[2]), 'a')\n"));
}

/* Malformed input, and valid input cut at every byte: an error (never a crash or a leak); only
 * the whole text decodes, and decoding what it encodes gives the same text. */
TEST(cut_at_every_byte)
{
    CHECK(run("local texts = {'{\"a\":[1,2.5,-3e-7,{\"b\":null}],\"c\":\"x\\\\ud800\\\\u00e9\\\\n\",\"d\":true,\"e\":false}',"
              "  '[\"\\\\ud83d\\\\ude00\",{\"k\":{}},[],\"\\226\\130\\172\"]', '{\"_placeholder\":true,\"num\":0}'}\n"
              "for _, j in ipairs(texts) do\n"
              "  for i = 0, #j - 1 do\n"
              "    assert(not pcall(decode, j:sub(1, i)), 'prefix ' .. i .. ' of ' .. j)\n"
              "    assert(not pcall(decode, j:sub(1, i) .. '\\0' .. j:sub(i + 1)))\n"
              "  end\n"
              "  local v = decode(j)\n"
              "  eq(value(decode(value(v))), value(v))\n"
              "end\n"
              "for _, bad in ipairs({'', ' ', '[', ']', '{', '}', '[1,]', '{\"a\":1,}', '{\"a\"}', '{1:2}', '[1 2]',"
              "  'nul', 'tru', '\"\\\\x\"', '\"\\\\u12\"', '\"\\\\u12g4\"', '[1]]', '[[1]', '\\239\\187\\1911', '/**/1', \"'a'\"}) do\n"
              "  assert(not pcall(decode, bad), bad)\n"
              "end\n"));
}

TEST(stack_balance)
{
    lua_State *L = new_state();
    lua_settop(L, 0);
    lua_pushliteral(L, "x");
    int k = lvalue_encode_args(L, 1, 1, NULL, 0, DEPTH);
    CHECK_EQ_INT(k, 0);
    CHECK_EQ_INT(lua_gettop(L), 2);
    lvalue_encode_value(L, 1, DEPTH, 0);
    CHECK_EQ_INT(lua_gettop(L), 3);
    lvalue_push_json(L, "[1,{\"a\":[]}]", 12, NULL, 0, DEPTH);
    CHECK_EQ_INT(lua_gettop(L), 4);
    size_t len;
    const char *p = lua_tolstring(L, 2, &len);
    CHECK_EQ_MEM(p, len, "[\"x\"]");
    p = lua_tolstring(L, 3, &len);
    CHECK_EQ_MEM(p, len, "\"x\"");
    /* the depth limit can change between calls */
    lua_settop(L, 0);
    lua_newtable(L);
    lua_newtable(L);
    lua_rawseti(L, -2, 1);
    lvalue_encode_value(L, 1, 2, 0);
    p = lua_tolstring(L, -1, &len);
    CHECK_EQ_MEM(p, len, "[{}]");
    lua_close(L);
}

int main(void)
{
    RUN(null);
    RUN(nested);
    RUN(numbers);
    RUN(binary_userdata);
    RUN(binaries_decode);
    RUN(binaries_bad_placeholder);
    RUN(binaries_encode);
    RUN(exact_event);
    RUN(decode_binary_c_api);
    RUN(invalid_json);
    RUN(too_deep);
    RUN(bad_values);
    RUN(cycles);
    RUN(empty_tables);
    RUN(placeholder_lookalike_strings);
    RUN(unicode);
    RUN(issue11_rows);
    RUN(key_order);
    RUN(strings);
    RUN(args);
    RUN(shared_attachments);
    RUN(cut_at_every_byte);
    RUN(stack_balance);
    return test_summary();
}
