// The server API (issue 3), io.close() from the app: every socket of every namespace gets
// "server shutting down" (clients see their transport close), the process exits with status 0;
// at the app's top level it ends the process before anything is listened.
// App: apps/api_close.lua (twin: ref/api_apps.mjs).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { startServer, connect, once, closeAll, withTimeout, REF, ROOT, WAIT } from "./helpers.mjs";

const BIN = path.resolve(ROOT, process.env.SIOLUA_BIN || "./siolua");

for (const [spelling, event] of [["io.close()", "close-server"], ["io:close()", "close-server-colon"]]) {
  test(`${spelling}: every socket gets "server shutting down", the process exits 0`, async () => {
    const srv = await startServer("api_close");
    try {
      const a = await connect(srv.url, { transports: ["websocket"] });
      const b = await connect(srv.url, { transports: ["polling"] });
      const c = await connect(srv.url + "/admin", { transports: ["websocket"] });
      const lines = [["/", a.id], ["/", b.id], ["/admin", c.id]];
      const ds = [a, b, c].map((s) => once(s, "disconnect"));
      a.emit(event);
      const [da, db, dc] = await Promise.all(ds);
      assert.equal(da[0], "transport close");
      assert.equal(dc[0], "transport close");
      // polling: the pending GET is answered with a close packet or dropped (see disconnect.test.mjs)
      assert.ok(["transport close", "transport error"].includes(db[0]), db[0]);
      for (const [nsp, id] of lines) await srv.waitLog(new RegExp(`disconnect ${nsp} ${id} server shutting down`));
      // the process ends by itself: status 0, no sanitizer report in its complete output
      assert.deepEqual(await srv.ended(), { code: 0, signal: null });
      // nothing listens any more
      await assert.rejects(connect(srv.url, { transports: ["websocket"] }, 2000));
    } finally {
      closeAll();
      if (!srv.exited()) await srv.stop();
    }
  });
}

test("io.close() at the app's top level: nothing is listened, the process exits 0", { skip: REF && "siolua's process" }, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "siolua-close-"));
  const app = path.join(dir, "app.lua");
  // a timer and a namespace made before the close are taken down with the rest
  writeFileSync(app, 'setTimeout(function() print("fired") end, 60000)\nio.of("/admin")\n' +
    'io.close()\nprint("after close")\n');
  try {
    const proc = spawn(BIN, [app, "--port", "0"], { stdio: ["ignore", "pipe", "pipe"] });
    let log = "";
    proc.stdout.on("data", (d) => { log += d; });
    proc.stderr.on("data", (d) => { log += d; });
    const st = await withTimeout(new Promise((resolve) => proc.once("exit", (code, signal) => resolve({ code, signal }))),
      WAIT, "the server process to exit");
    assert.deepEqual(st, { code: 0, signal: null }, log);
    assert.match(log, /after close/);
    assert.doesNotMatch(log, /listening on|fired|Assertion|ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
