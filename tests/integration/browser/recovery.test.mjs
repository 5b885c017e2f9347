// Connection state recovery in headless Chromium (issue 14): a page loads the client bundle the
// server serves, its socket gets an event, its connection drops (its engine is closed, as the
// network going away), the server emits while it is down (to its rooms, to everyone, to it, and
// volatile and excluded ones that must not come), then it connects again and the client's own
// recovery logic (its pid and last offset in the CONNECT) brings
// the same socket back with every missed event, in order, and socket.recovered set. Over WebSocket
// and polling; siolua and the Node reference side by side (the same results).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, WAIT } from "../helpers.mjs";
import { launchChromium } from "./chat.helpers.mjs";

let browser;
const servers = [];
before(async () => {
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
  for (const s of servers) await s.stop();
});

// In the page: the whole scenario with two sockets of the page (a, the one that drops; b, which asks
// the server to emit); a connects again once the emits are made. Resolves to what a saw.
const SCRIPT = async ({ transports, wait }) => {
  const call = (s, ...args) => new Promise((resolve) => s.emit(...args, (...r) => resolve(r)));
  const until = async (fn) => {
    const t0 = Date.now();
    while (!(await fn())) {
      if (Date.now() - t0 > wait) throw new Error("timed out");
      await new Promise((r) => setTimeout(r, 25));
    }
  };
  const a = io(location.origin, { forceNew: true, transports, reconnection: false });
  const b = io(location.origin, { forceNew: true, transports: ["websocket"] });
  const got = [];
  a.onAny((ev, ...args) => got.push([ev, ...args.map((x) => (typeof x === "string" ? "<offset>" : x))]));
  await until(() => a.connected && b.connected);
  await call(b, "send", "room:news", "first", [0]);
  await until(() => got.length === 1);
  const id = a.id;
  // the network goes away; the client connects again once the server has emitted everything
  // (with its automatic reconnection it could come back in between): its pid and offset go in the
  // CONNECT by the client's own logic
  a.io.engine.close();
  await until(async () => !(await call(b, "connected", id))[0]);
  const steps = [["room:news", 1], ["volatile:news", 2], ["all", 3], ["except:news", 4], [id, 5], ["room:x", 6]];
  for (const [target, i] of steps) await call(b, "send", target, "m", [i]);
  a.connect();
  await until(() => a.connected);
  await call(b, "send", "room:news", "after", [7]);
  await until(() => got.some((e) => e[0] === "after"));
  const out = { recovered: a.recovered, sameId: a.id === id, events: got, transport: a.io.engine.transport.name };
  a.close();
  b.close();
  return out;
};

test("the browser's socket.io-client recovers its socket and the events it missed, over WebSocket and polling, as with the reference", async () => {
  const results = [];
  for (const ref of [false, true]) {
    const srv = await startServer("recovery", [], { ref: ref || undefined });
    servers.push(srv);
    const context = await browser.newContext();
    const p = await context.newPage();
    const errors = [];
    p.on("pageerror", (e) => errors.push(e.message));
    await p.goto(srv.url + "/index.html", { timeout: WAIT });
    await p.addScriptTag({ url: srv.url + "/socket.io/socket.io.js" });
    for (const transports of [["websocket"], ["polling"]]) {
      const r = await p.evaluate(SCRIPT, { transports, wait: WAIT });
      assert.equal(r.recovered, true, String(transports));
      assert.equal(r.sameId, true);
      assert.equal(r.transport, transports[0]);
      assert.deepEqual(r.events, [["first", 0, "<offset>"], ["m", 1, "<offset>"], ["m", 3, "<offset>"],
        ["m", 5, "<offset>"], ["after", 7, "<offset>"]]);
      results.push(r);
    }
    assert.deepEqual(errors, []);
    await context.close();
  }
  assert.deepEqual(results.slice(0, 2), results.slice(2), "siolua and the reference");
});
