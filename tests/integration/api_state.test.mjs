// The server API (issue 3), socket state: socket.data (from a middleware to the handlers and
// fetchSockets, replaced whole), the app's own fields on a socket, socket.handshake,
// socket.connected, socket.conn.transport.name, and the reserved event names that raise.
// App: apps/api_state.lua (twin: ref/api_apps.mjs).
import { test, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { startServer, connect, once, closeAll, request, until } from "./helpers.mjs";

let srv;
before(async () => { srv = await startServer("api_state"); });
afterEach(() => closeAll());
after(async () => { closeAll(); await srv?.stop(); });

test("socket.data: set by a middleware, kept across events, replaced whole, returned by fetchSockets", async () => {
  const a = await connect(srv.url, { transports: ["websocket"], auth: { user: "ann" } });
  const b = await connect(srv.url, { transports: ["polling"] });
  assert.deepEqual(await request(a, "data"), [{ fromMiddleware: "ann" }]);
  assert.deepEqual(await request(b, "data"), [{ fromMiddleware: "nobody" }]);
  assert.deepEqual(await request(a, "set-data", "score", 10), [{ fromMiddleware: "ann", score: 10 }]);
  assert.deepEqual(await request(a, "data"), [{ fromMiddleware: "ann", score: 10 }]);
  const [all] = await request(b, "fetch-data");
  assert.deepEqual(all[a.id], { fromMiddleware: "ann", score: 10 });
  assert.deepEqual(all[b.id], { fromMiddleware: "nobody" });
  assert.deepEqual(await request(a, "replace-data", { fresh: true }), [{ fresh: true }]);
  assert.deepEqual(await request(a, "data"), [{ fresh: true }]);
});

test("the app's own fields on a socket live as long as the socket", async () => {
  const a = await connect(srv.url, { transports: ["websocket"] });
  const b = await connect(srv.url, { transports: ["websocket"] });
  assert.deepEqual(await request(a, "set-field", "neo"), ["neo"]);
  assert.deepEqual(await request(a, "get-field"), ["neo"]);
  assert.deepEqual(await request(b, "get-field"), [null]);
});

test("socket.handshake, socket.connected and socket.conn.transport.name", async () => {
  for (const transport of ["websocket", "polling"]) {
    const s = await connect(srv.url, { transports: [transport], auth: { user: "u", n: 1 }, query: { q: "v w" } });
    const [st] = await request(s, "state");
    assert.deepEqual(st, {
      connected: true,
      transport,
      secure: false,
      xdomain: false,
      host: true,
      address: "127.0.0.1",
      issued: "integer",
      time: "string",
      url: "/socket.io/",
      query: "v w",
      auth: { user: "u", n: 1 },
    });
  }
});

test("socket.connected is false once disconnected", async () => {
  const observer = await connect(srv.url, { transports: ["websocket"] });
  const s = await connect(srv.url, { transports: ["websocket"] });
  const id = s.id;
  s.disconnect();
  // the app records the state when its "disconnect" listener runs
  const st = await until(async () => (await request(observer, "state-of", id))[0], `the disconnect of ${id}`);
  assert.deepEqual(st, { connected: false, reason: "client namespace disconnect" });
});

test("emitting a reserved event name raises, from a socket, io, a room, a broadcast, a namespace, with a timeout", async () => {
  const s = await connect(srv.url, { transports: ["websocket"] });
  const ordinary = once(s, "ordinary");
  const [out] = await request(s, "reserved");
  const all = { socket: true, io: true, room: true, broadcast: true, nsp: true, timeout: true };
  assert.deepEqual(out, {
    connect: all, connect_error: all, disconnect: all, disconnecting: all, newListener: all, removeListener: all,
    ordinary: true,
  });
  assert.deepEqual(await ordinary, [1]);
  assert.equal(s.connected, true);
});
