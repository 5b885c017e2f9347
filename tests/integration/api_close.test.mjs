// The server API (issue 3), io.close() from the app: every socket of every namespace gets
// "server shutting down" (clients see their transport close), the process exits with status 0.
// App: apps/api_close.lua (twin: ref/api_apps.mjs).
import { test } from "node:test";
import assert from "node:assert/strict";
import { startServer, connect, once, closeAll } from "./helpers.mjs";

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
