// The server API (issue 3), middlewares: io.use refusals with a message and data (a table or a
// string), middlewares that call next() later, nsp.use, socket.use on every incoming packet
// (refusal -> "error" on the socket, the packet rewritten), and the catch-all listeners onAny,
// prependAny, offAny, listenersAny, onAnyOutgoing, prependAnyOutgoing, offAnyOutgoing.
// App: apps/api_middleware.lua (twin: ref/api_apps.mjs).
import { test, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { startServer, connect, once, closeAll, request, collect } from "./helpers.mjs";

let srv;
before(async () => { srv = await startServer("api_middleware"); });
afterEach(() => closeAll());
after(async () => { closeAll(); await srv?.stop(); });

const WS = { transports: ["websocket"] };
const POLL = { transports: ["polling"] };

/** Connecting must fail with connect_error (message, data). */
function refused(p, message, data) {
  return assert.rejects(p, (err) => {
    assert.equal(err.message, message);
    assert.deepEqual(err.data, data);
    return true;
  });
}

test("io.use: the middlewares run in order, the second one from a timer, before \"connection\"", async () => {
  for (const opts of [WS, POLL]) {
    const s = await connect(srv.url, opts);
    assert.deepEqual(await request(s, "trail"), [["sync", "async", "connection"]]);
  }
});

test("io.use refusal with next({message, data}): connect_error with .message and .data", async () => {
  const [before] = await request(await connect(srv.url, WS), "connections");
  await refused(connect(srv.url, { ...WS, auth: { refuse: "table" } }), "not authorized", { content: "retry later" });
  await refused(connect(srv.url, { ...POLL, auth: { refuse: "table" } }), "not authorized", { content: "retry later" });
  // a refused socket never reaches "connection"
  const [now] = await request(await connect(srv.url, WS), "connections");
  assert.equal(now, before + 1);
});

test("io.use refusal with a string: connect_error with that message and no data", async () => {
  await refused(connect(srv.url, { ...WS, auth: { refuse: "string" } }), "plain refusal", undefined);
});

test("an asynchronous middleware refuses from a timer: connect_error with .message and .data", async () => {
  await refused(connect(srv.url, { ...WS, auth: { refuse: "async" } }), "refused later", { from: "timer" });
  await refused(connect(srv.url, { ...POLL, auth: { refuse: "async" } }), "refused later", { from: "timer" });
});

test("nsp.use guards its namespace only; io.use does not run for it", async () => {
  await refused(connect(srv.url + "/admin", WS), "admin only", { need: "token" });
  await refused(connect(srv.url + "/admin", { ...WS, auth: { token: "wrong" } }), "admin only", { need: "token" });
  const a = await connect(srv.url + "/admin", { ...WS, auth: { token: "secret" } });
  assert.deepEqual(await request(a, "trail"), ["none"]);
  // the same token on the main namespace changes nothing there
  const m = await connect(srv.url, { ...WS, auth: { token: "secret" } });
  assert.deepEqual(await request(m, "trail"), [["sync", "async", "connection"]]);
});

test("socket.use: next(err) drops the packet and emits \"error\" on the socket; packets can be rewritten", async () => {
  for (const opts of [WS, POLL]) {
    const s = await connect(srv.url + "/packets", opts);
    const leaked = collect(s, "leaked");
    const errors = collect(s, "mw-error");
    const e1 = once(s, "mw-error");
    s.emit("forbidden", 1);
    assert.deepEqual(await e1, ["forbidden event", { event: "forbidden" }]);
    const e2 = once(s, "mw-error");
    s.emit("forbidden-string");
    assert.deepEqual(await e2, ["refused by string", null]);
    // the middleware changed the first argument before the listener saw it; acks still work
    assert.deepEqual(await request(s, "rewrite", "original"), ["rewritten by middleware"]);
    assert.deepEqual(await request(s, "echo", { x: 1 }), [{ x: 1 }]);
    // the round trips above came after the refused packets: a leak would have arrived first
    assert.deepEqual(leaked, []);
    assert.equal(errors.length, 2);
  }
});

test("onAny, prependAny, offAny, listenersAny: incoming events in listener order, before the handlers", async () => {
  const s = await connect(srv.url + "/any", WS);
  s.emit("hello", "a");
  s.emit("bye");
  const [log, n] = await request(s, "log");
  assert.equal(n, 3);
  assert.deepEqual(log, [
    "pre:hello", "any1:hello", "any2:hello:a",
    "pre:bye", "any1:bye", "any2:bye:none",
    "pre:log", "any1:log", "any2:log:ack",
  ]);
  assert.deepEqual(await request(s, "off-any1"), [2]);
  s.emit("again", 7);
  const [log2, n2] = await request(s, "log");
  assert.equal(n2, 2);
  assert.deepEqual(log2.slice(log.length), [
    "pre:off-any1", "any1:off-any1", "any2:off-any1:ack", // offAny ran inside the handler, after these
    "pre:again", "any2:again:7",
    "pre:log", "any2:log:ack",
  ]);
  assert.deepEqual(await request(s, "off-any"), [0]);
  const [log3, n3] = await request(s, "log");
  assert.equal(n3, 0);
  assert.deepEqual(log3.slice(log2.length), ["pre:off-any", "any2:off-any:ack"]);
});

test("onAnyOutgoing, prependAnyOutgoing, offAnyOutgoing: emitted events, not acks", async () => {
  const s = await connect(srv.url + "/any", { transports: ["polling"] });
  const got = collect(s, "one");
  const [out, n] = await request(s, "send-two");
  assert.equal(n, 2);
  assert.deepEqual(out, ["pre:one:1", "out1:one", "pre:two:2", "out1:two"]);
  assert.deepEqual(got, [[1]]);
  const [out2, n2] = await request(s, "off-out1");
  assert.equal(n2, 1);
  assert.deepEqual(out2.slice(out.length), ["pre:three:3"]);
  const [out3, n3] = await request(s, "off-out");
  assert.equal(n3, 0);
  assert.deepEqual(out3.slice(out2.length), []);
});
