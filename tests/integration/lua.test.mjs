// The Lua side: a handler that raises is logged with file:line and a traceback, and the server
// keeps serving everyone (the raising socket included). siolua's own: skipped against the reference.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { APPS, REF, startServer, connect, closeAll, request } from "./helpers.mjs";

describe("Lua handlers", { skip: REF && "Lua errors and Lua's io library are siolua's" }, () => {
  let srv;
  before(async () => { srv = await startServer("main"); });
  after(async () => { closeAll(); await srv?.stop(); });

  // the line of main.lua whose handler raises "kaboom"
  const BOOM = readFileSync(path.join(APPS, "main.lua"), "utf8").split("\n").findIndex((l) => l.includes('error("kaboom")')) + 1;

  test("a handler error is logged with file:line and a traceback; the server keeps serving", async () => {
    assert.ok(BOOM > 0, "main.lua raises kaboom somewhere");
    const a = await connect(srv.url, { transports: ["websocket"] });
    const b = await connect(srv.url, { transports: ["polling"] });
    a.emit("boom");
    // the event, the socket id, file:line and the message; then Lua's traceback down to that line
    const file = path.join(APPS, "main.lua").replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    const [, where] = await srv.waitLog(new RegExp(
      `\\[error\\] error in handler for "boom" of socket ${a.id}: (${file}:\\d+): kaboom\\nstack traceback:\\n(?:\\t.*\\n)*?\\t${file}:${BOOM}: in `));
    assert.equal(where, `${path.join(APPS, "main.lua")}:${BOOM}`);
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
    const before = (srv.log().match(/: kaboom\n/g) || []).length;
    for (let i = 0; i < 20; i++) a.emit("boom");
    // the echo is answered after the 20 events before it: each was logged by then
    assert.deepEqual(await request(a, "echo", "ok"), ["ok"]);
    await srv.waitLog(new RegExp(`(?:[\\s\\S]*?: kaboom\\n){${before + 20}}`));
    assert.equal(srv.exited(), null);
  });

  test("Lua's io library still works through the global io", async () => {
    const a = await connect(srv.url, { transports: ["websocket"] });
    assert.deepEqual(await request(a, "luaio", "written by io.open"), ["written by io.open", "function", "function"]);
  });
});
