// One event emitter (src/lemitter.c): a socket, io, a namespace, io.engine, a siolua.engine
// endpoint and a conn all have the reference's EventEmitter methods (on, addListener, once,
// prependListener, prependOnceListener, off, removeListener, removeAllListeners, listeners,
// listenerCount, eventNames) with its semantics; one-shot and prepended listeners fire in the
// reference's order on a client's events and on a namespace's connections.
// App: apps/api_emitter.lua (twin: ref/api_apps.mjs).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, connect, closeAll, request } from "./helpers.mjs";

let srv;
before(async () => { srv = await startServer("api_emitter"); });
after(async () => { closeAll(); await srv?.stop(); });

test("every object that emits has the EventEmitter methods, with the reference's semantics", async () => {
  const s = await connect(srv.url, { transports: ["websocket"] });
  const [out] = await request(s, "exercise");
  const want = { chain: true, count: 4, order: true, off: true, afterOff: true, afterRemove: 3, names: true,
    removeAll: true, afterAll: 0, u: 1, none: 0 };
  for (const k of ["socket", "io", "nsp", "engine", "endpoint", "conn"]) assert.deepEqual(out[k], want, k);
});

test("a client's event: prepended listeners first, one-shot listeners once", async () => {
  const s = await connect(srv.url, { transports: ["websocket"] });
  s.emit("t", 1);
  s.emit("t", 2);
  const [log] = await request(s, "log");
  assert.deepEqual(log, ["prependOnce1", "prepend1", "on1", "once1", "prepend2", "on2"]);
});

test("a namespace's connections: the same order for its connection listeners", async () => {
  await connect(srv.url + "/other", { transports: ["websocket"] });
  await connect(srv.url + "/other", { transports: ["websocket"] });
  const s = await connect(srv.url, { transports: ["websocket"] });
  const [order] = await request(s, "order");
  assert.deepEqual(order, ["prependOnce", "prepend", "on", "once", "prepend", "on"]);
});
