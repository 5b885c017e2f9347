// The Lua side: a handler that raises is logged with file:line and a traceback, and the server
// keeps serving everyone (the raising socket included).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, connect, closeAll, request, sleep } from "./helpers.mjs";

let srv;
before(async () => { srv = await startServer("main"); });
after(async () => { closeAll(); await srv?.stop(); });

test("a handler error is logged with file:line and a traceback; the server keeps serving", async () => {
  const a = await connect(srv.url, { transports: ["websocket"] });
  const b = await connect(srv.url, { transports: ["polling"] });
  a.emit("boom");
  const [line] = await srv.waitLog(/main\.lua:\d+:[^\n]*kaboom/);
  assert.ok(line);
  await srv.waitLog(/traceback/i);
  // the same socket and another one still work
  assert.deepEqual(await request(a, "echo", "after boom"), ["after boom"]);
  assert.deepEqual(await request(b, "echo", "other"), ["other"]);
  // and a new client can connect
  const c = await connect(srv.url, {});
  assert.deepEqual(await request(c, "echo", 3), [3]);
  assert.equal(srv.exited(), null);
});

test("repeated handler errors do not take the server down", async () => {
  const a = await connect(srv.url, { transports: ["websocket"] });
  for (let i = 0; i < 20; i++) a.emit("boom");
  assert.deepEqual(await request(a, "echo", "ok"), ["ok"]);
  await sleep(50);
  assert.equal(srv.exited(), null);
  const n = (srv.log().match(/kaboom/g) || []).length;
  assert.ok(n >= 21, `${n} errors logged`);
});

test("Lua's io library still works through the global io", async () => {
  const a = await connect(srv.url, { transports: ["websocket"] });
  assert.deepEqual(await request(a, "luaio", "written by io.open"), ["written by io.open", "function", "function"]);
});
