// The server API (issue 3), acknowledgements and time: server -> client acks with and without
// socket.timeout(ms), broadcasts with acks (one reply per recipient, the timeout error with the
// replies so far), emitWithAck suspending its handler (a coroutine) without blocking the loop,
// from an event handler, a timer and a connection listener, and setTimeout/setInterval/clear*.
// App: apps/api_acks.lua (twin: ref/api_apps.mjs).
import { test, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { io as ioClient } from "socket.io-client";
import { startServer, connect, once, closeAll, request, collect, withTimeout, WAIT } from "./helpers.mjs";

let srv;
before(async () => { srv = await startServer("api_acks"); });
afterEach(() => closeAll());
after(async () => { closeAll(); await srv?.stop(); });

const TIMED_OUT = { message: "operation has timed out", str: "operation has timed out" };

/**
 * Connects a client named `name` that answers "question" with "re:<text>:<name>" (unless silent);
 * a question with hold = true is answered only when the test calls release(text).
 */
async function answerer(name, opts = {}, { silent = false } = {}) {
  const s = await connect(srv.url, { transports: ["websocket"], ...opts, auth: { name } });
  const held = new Map();
  const waiting = new Map();
  if (!silent) {
    s.on("question", (q, cb) => {
      const answer = () => cb(`re:${q.text}:${name}`);
      if (!q.hold) return answer();
      held.set(q.text, answer);
      waiting.get(q.text)?.();
    });
  }
  s.held = (text) => withTimeout(new Promise((resolve) => {
    if (held.has(text)) resolve();
    else waiting.set(text, resolve);
  }), WAIT, `question "${text}" held`);
  s.release = (text) => held.get(text)();
  return s;
}

test("server -> client ack without a timeout", async () => {
  for (const transport of ["websocket", "polling"]) {
    const A = await answerer("A", { transports: [transport] });
    assert.deepEqual(await request(A, "ask", "question", { text: "q1" }), ["re:q1:A"]);
  }
});

test("socket.timeout(ms).emit: callback(nil, reply) on a reply, an error value on the timeout", async () => {
  for (const transport of ["websocket", "polling"]) {
    const A = await answerer("A", { transports: [transport] });
    assert.deepEqual(await request(A, "ask-timeout", "question", { text: "q2" }, 5000), [null, "re:q2:A"]);
    assert.deepEqual(await request(A, "ask-timeout", "silent", { text: "q3" }, 30), [TIMED_OUT]);
    // a reply after the timeout is dropped: the callback ran once, the socket keeps working
    const late = request(A, "ask-timeout", "question", { text: "late", hold: true }, 30);
    await A.held("late");
    assert.deepEqual(await late, [TIMED_OUT]);
    A.release("late");
    assert.deepEqual(await request(A, "ask-timeout", "question", { text: "q4" }, 5000), [null, "re:q4:A"]);
  }
});

test("broadcast with an ack: io.timeout(ms).to(room).emit collects one reply per recipient", async () => {
  const A = await answerer("A");
  const B = await answerer("B", { transports: ["polling"] });
  const S = await answerer("S", {}, { silent: true });
  const C = await answerer("C");
  for (const [s, room] of [[A, "ab"], [B, "ab"], [A, "abs"], [B, "abs"], [S, "abs"]]) await request(s, "join", room);
  assert.deepEqual(await request(C, "ask-all", "ab", "question", 5000), [null, ["re:all:A", "re:all:B"]]);
  // a recipient that never answers: the timeout error, with the replies that came (A's and B's:
  // 2 s is ample for them, even on a loaded machine)
  assert.deepEqual(await request(C, "ask-all", "abs", "question", 2000), [TIMED_OUT, ["re:all:A", "re:all:B"]]);
  // nobody to ask: at once, no error, no replies
  assert.deepEqual(await request(C, "ask-all", "nobody", "question", 5000), [null, []]);
  // socket.broadcast.to(room).timeout(ms): the sender is not asked
  assert.deepEqual(await request(A, "ask-others", "ab", "question", 5000), [null, ["re:others:B"]]);
});

test("emitWithAck suspends the handler until the reply; a timeout raises the error (caught with pcall)", async () => {
  const A = await answerer("A");
  assert.deepEqual(await request(A, "ewa", "question", { text: "e1" }, null), [{ reply: "re:e1:A" }]);
  assert.deepEqual(await request(A, "ewa", "question", { text: "e2" }, 5000), [{ reply: "re:e2:A" }]);
  assert.deepEqual(await request(A, "ewa", "silent", { text: "e3" }, 30), [{ err: TIMED_OUT }]);
});

test("a suspended handler blocks nothing: other events run meanwhile, two suspended handlers resume with their own replies", async () => {
  const A = await answerer("A", { transports: ["polling"] });
  const B = await answerer("B");
  const p1 = request(A, "ewa", "question", { text: "first", hold: true }, 5000);
  await A.held("first");
  const p2 = request(A, "ewa", "question", { text: "second", hold: true }, 5000);
  await A.held("second");
  // both handlers are suspended: the same socket and another one are served
  assert.deepEqual(await request(A, "ask", "question", { text: "meanwhile" }), ["re:meanwhile:A"]);
  assert.deepEqual(await request(B, "ewa", "question", { text: "other" }, 5000), [{ reply: "re:other:B" }]);
  A.release("second");
  assert.deepEqual(await p2, [{ reply: "re:second:A" }]);
  A.release("first");
  assert.deepEqual(await p1, [{ reply: "re:first:A" }]);
});

test("io.to(room).timeout(ms).emitWithAck returns the replies, or raises at the timeout", async () => {
  const A = await answerer("A");
  const B = await answerer("B", { transports: ["polling"] });
  const S = await answerer("S", {}, { silent: true });
  for (const [s, room] of [[A, "w"], [B, "w"], [A, "ws"], [S, "ws"]]) await request(s, "join", room);
  assert.deepEqual(await request(A, "ewa-all", "w", "question", 5000), [{ replies: ["re:all:A", "re:all:B"] }]);
  assert.deepEqual(await request(A, "ewa-all", "ws", "question", 100), [{ err: TIMED_OUT }]);
});

test("emitWithAck from a timer callback and from a connection listener", async () => {
  const A = await answerer("A");
  const got = once(A, "timer-result");
  A.emit("ewa-timer", { text: "tick" });
  assert.deepEqual(await got, ["re:tick:A"]);

  // /hello's connection listener asks first and waits: the handler must be set before connecting
  const H = ioClient(srv.url + "/hello", { forceNew: true, reconnection: false, transports: ["websocket"] });
  try {
    H.on("question", (q, cb) => cb(`re:${q.text}:H`));
    assert.deepEqual(await once(H, "got"), ["re:hello:H"]);
  } finally {
    H.disconnect();
  }
});

test("setTimeout passes its extra arguments and fires once; siolua.* are the same functions", async () => {
  const A = await answerer("A");
  const fired = collect(A, "fired");
  const first = once(A, "fired");
  A.emit("timeout-once", 10);
  assert.deepEqual(await first, ["x", 2]);
  assert.deepEqual(await request(A, "timer-names"), [true]);
  // a later timer on the same socket: by then a second "fired" would have come
  const done = once(A, "cleared-ok");
  A.emit("cleared");
  await done;
  assert.equal(fired.length, 1);
});

test("setInterval ticks until clearInterval; clearTimeout and clearInterval stop timers before they fire", async () => {
  const A = await answerer("A", { transports: ["polling"] });
  const ticks = collect(A, "tick");
  const never = collect(A, "should-not-fire");
  const done = once(A, "interval-done");
  A.emit("interval", 3, 10);
  assert.deepEqual(await done, [3]);
  assert.deepEqual(ticks, [[1], [2], [3]]);
  const ok = once(A, "cleared-ok");
  A.emit("cleared");
  await ok;
  assert.deepEqual(never, []);
});
