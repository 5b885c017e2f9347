// A connection may join at most 100 namespaces: the 101st CONNECT gets connect_error
// "Too many namespaces", and the connection keeps working.
import { test } from "node:test";
import assert from "node:assert/strict";
import { io } from "socket.io-client";
import { startServer, withTimeout, REF } from "./helpers.mjs";

test("namespaces per connection are capped", { skip: REF && "siolua limit" }, async () => {
  const srv = await startServer("nsp_limit");
  const manager = io(`http://127.0.0.1:${srv.port}`, { transports: ["websocket"], forceNew: true }).io;
  try {
    const results = [];
    for (let i = 0; i < 105; i++) {
      const s = manager.socket(`/dyn-${i}`);
      results.push(new Promise((resolve) => {
        s.once("connect", () => resolve("ok"));
        s.once("connect_error", (e) => resolve(e.message));
      }));
      s.connect();
    }
    const got = await withTimeout(Promise.all(results), 10000, "105 CONNECTs");
    // "/" was joined by io() itself: 99 more fit, 6 are refused
    assert.equal(got.filter((r) => r === "ok").length, 99);
    assert.deepEqual([...new Set(got.filter((r) => r !== "ok"))], ["Too many namespaces"]);
  } finally {
    manager._close?.();
    for (const s of Object.values(manager.nsps)) s.close();
    await srv.stop();
  }
});
