// examples/rooms: per-room chat and the /admin namespace guarded by an auth-token middleware.
import { test } from "node:test";
import assert from "node:assert/strict";
import { io } from "socket.io-client";
import { startServer, withTimeout, REF, WAIT } from "./helpers.mjs";

const once = (s, ev) => new Promise((r) => s.once(ev, (...a) => r(a)));

test("examples/rooms: messages stay in their room; /admin needs the token and sees the activity",
  { skip: REF && "siolua example" }, async () => {
    const srv = await startServer("examples/rooms/app.lua");
    const url = `http://127.0.0.1:${srv.port}`;
    const opts = { transports: ["websocket"], forceNew: true };
    const a = io(url, opts), b = io(url, opts), c = io(url, opts);
    try {
      const [err] = await withTimeout(once(io(url + "/admin", { ...opts, auth: { token: "no" } }), "connect_error"), WAIT, "refusal");
      assert.equal(err.message, "not authorized");
      assert.deepEqual(err.data, { hint: "the token is in app.lua" });
      const admin = io(url + "/admin", { ...opts, auth: { token: "letmein" } });
      await withTimeout(once(admin, "rooms"), WAIT, "admin rooms");
      await Promise.all([a, b, c].map((s) => (s.connected ? null : withTimeout(once(s, "connect"), WAIT, "connect"))));
      assert.deepEqual(await a.emitWithAck("join", "ann", "r1"), { room: "r1" });
      assert.deepEqual(await b.emitWithAck("join", "bob", "r1"), { room: "r1" });
      assert.deepEqual(await c.emitWithAck("join", "cy", "r2"), { room: "r2" });
      const leaked = [];
      c.on("message", (m) => leaked.push(m));
      const activity = withTimeout(once(admin, "activity"), WAIT, "admin activity");
      const got = withTimeout(once(b, "message"), WAIT, "message in r1");
      a.emit("message", "hello r1");
      assert.deepEqual((await got)[0], { from: "ann", text: "hello r1" });
      // the admin's announcement to r2 reaches c only
      const ann = withTimeout(once(c, "system"), WAIT, "announcement");
      admin.emit("announce", "r2", "for r2");
      assert.equal((await ann)[0], "announcement to r2: for r2");
      await activity;
      assert.deepEqual(leaked, []);
      admin.close();
    } finally {
      for (const s of [a, b, c]) s.close();
      await srv.stop();
    }
  });
