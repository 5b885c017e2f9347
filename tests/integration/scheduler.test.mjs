// The scheduler (lhost.h): a long handler is preempted after a slice of Lua time and goes on
// later, so other clients are served in the middle of it; the time budget counts a call's own time
// across slices and its abort cannot be caught by pcall; the app's top level is not preempted.
// siolua only: the reference runs JavaScript handlers.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, connect, closeAll, request, REF, WAIT } from "./helpers.mjs";

const SKIP = REF && "the reference runs JavaScript handlers";
let srv;
before(async () => {
  // a budget (wall-clock time) that the handlers' few hundred ms of CPU cannot exhaust even when
  // a loaded machine gives them a tenth of a core (4000 did, at load 13)
  if (!REF) srv = await startServer("scheduler", ["--handler-timeout", "8000"]);
});
after(async () => {
  closeAll();
  await srv?.stop();
});

test("the top level is never preempted: its io.options{} after 200 ms of work apply", { skip: SKIP }, async () => {
  const res = await fetch(`${srv.url}/socket.io/?EIO=4&transport=polling`);
  const open = JSON.parse((await res.text()).slice(1));
  assert.equal(open.pingInterval, 12345);
});

test("a long handler is preempted: another client's handler runs in the middle of it", { skip: SKIP }, async () => {
  const a = await connect(srv.url, { transports: ["websocket"] });
  const b = await connect(srv.url, { transports: ["websocket"] });
  const long = request(a, "long");
  let done = false;
  long.finally(() => { done = true; });
  // b keeps marking until a's handler answers: it answers true once it saw one run meanwhile
  while (!done) {
    await request(b, "echo", 1);
    b.emit("mark");
  }
  assert.deepEqual(await long, [true]);
});

test("a preempted handler goes on, and can still wait in emitWithAck", { skip: SKIP }, async () => {
  const a = await connect(srv.url, { transports: ["websocket"] });
  a.on("question", (x, cb) => cb(`answer to ${x}`));
  assert.deepEqual(await request(a, "long-then-ask"), ["answer to true"]);
});

test("a client's events keep their order: the next one waits while a long one is preempted", { skip: SKIP }, async () => {
  const a = await connect(srv.url, { transports: ["websocket"] });
  a.emit("first");
  a.emit("second");
  assert.deepEqual(await request(a, "order"), ["first second"]);
});

test("the budget spans slices, and pcall cannot catch the abort", { skip: SKIP }, async () => {
  const a = await connect(srv.url, { transports: ["websocket"] });
  const after = [];
  a.on("after-pcall", (ok) => after.push(ok));
  a.emit("pcall-spin");
  await srv.waitLog(/handler for "pcall-spin"[^\n]*handler aborted: it ran longer than 8000 ms/, 4 * WAIT);
  // the server answers in order: an "after-pcall" would have come before this echo
  assert.deepEqual(await request(a, "echo", "still here"), ["still here"]);
  assert.deepEqual(after, []);
});
