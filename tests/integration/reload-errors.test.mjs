// Hot reload that fails (src/reload.h, step 2): a syntax error or an error at the top level of the
// new code keeps the old code serving untouched, logs the error with file:line, and the next save
// of a fixed file reloads.
import { test, afterEach } from "node:test";
import assert from "node:assert/strict";
import {
  SKIP, closeRecorded, copyApp, withVersion, startCopy, waitReloaded, waitFailures, hasGeneration,
  connectRecorded, ask, eventually, once,
} from "./reload.helpers.mjs";

let srv, copy;
afterEach(async () => {
  closeRecorded();
  try {
    await srv?.stop();
  } finally {
    copy?.remove();
    srv = copy = undefined;
  }
});

const V1 = { app: 1, lib: 1, fmt: 1, reloaded: false, connections: 1, loads: 1 };

/** The line number a line appended to text gets. */
const nextLine = (text) => {
  assert.ok(text.endsWith("\n"));
  return text.split("\n").length;
};

test("a syntax error, a top-level error and a broken module keep the old handlers; the fix reloads", { skip: SKIP }, async () => {
  copy = copyApp();
  srv = await startCopy(copy);
  const ws = await connectRecorded(srv.url, { transports: ["websocket"] });
  const poll = await connectRecorded(srv.url, { transports: ["polling"] });
  const good = copy.read("app.lua");
  assert.deepEqual(await ask(ws, "version"), V1);

  // 1. a syntax error in app.lua
  let line = nextLine(good);
  copy.write("app.lua", withVersion(good, 2) + "local x = = 1\n");
  await waitFailures(srv, 1);
  assert.match(srv.log(), new RegExp(`app\\.lua:${line}:`), "the error names file:line");
  for (const s of [ws, poll]) assert.deepEqual(await ask(s, "version"), V1);

  // 2. an error at the top level, after the new code registered handlers and started a timer
  // (the half-loaded VM is thrown away with its timer: no beat 666 ever)
  line = nextLine(good) + 1;
  copy.write("app.lua", withVersion(good, 2) +
    'siolua.setInterval(function() io.emit("beat", 666) end, 5)\nerror("top-level boom")\n');
  await waitFailures(srv, 2);
  assert.match(srv.log(), new RegExp(`app\\.lua:${line}: top-level boom`));
  for (const s of [ws, poll]) assert.deepEqual(await ask(s, "version"), V1);

  // 3. a syntax error in a module the app requires
  const lib = copy.read("lib.lua");
  line = nextLine(lib);
  copy.write("lib.lua", lib + "return return\n");
  await waitFailures(srv, 3);
  assert.match(srv.log(), new RegExp(`lib\\.lua:${line}:`));
  for (const s of [ws, poll]) assert.deepEqual(await ask(s, "version"), V1);

  // new clients are served by the old code meanwhile
  const late = await connectRecorded(srv.url, {});
  assert.deepEqual(await eventually(late, "hello"), [1]);
  assert.deepEqual(await ask(late, "version"), V1);

  // the thrown-away timer (every 5 ms) had three failed reloads and a connect to fire by now; a
  // round trip each delivers whatever was sent before it
  for (const s of [ws, poll, late]) assert.deepEqual(await ask(s, "version"), V1);
  assert.equal(hasGeneration(srv, 2), false, "no reload succeeded");
  for (const s of [ws, poll, late]) {
    assert.deepEqual(s.events.filter(([ev]) => ev === "beat" || ev === "reloaded"), []);
    assert.deepEqual(s.disconnects, []);
  }

  // 4. fixing the files reloads (the module first: app.lua still broken, so it fails again)
  copy.write("lib.lua", lib);
  await waitFailures(srv, 4);
  const reloaded = [ws, poll].map((s) => once(s, "reloaded"));
  copy.write("app.lua", withVersion(good, 2));
  await waitReloaded(srv, 2);
  assert.deepEqual(await Promise.all(reloaded), [[2, 2], [2, 2]]);
  for (const s of [ws, poll]) {
    assert.deepEqual(await ask(s, "version"), { ...V1, app: 2, reloaded: true, connections: 2, loads: 2 });
    assert.deepEqual(s.disconnects, []);
  }
  assert.doesNotMatch(srv.log(), /^disconnect /m);
});

test("SIGHUP reloads a broken file without harm, and the fixed one", { skip: SKIP }, async () => {
  copy = copyApp();
  srv = await startCopy(copy, ["--no-watch"]);
  const ws = await connectRecorded(srv.url, { transports: ["websocket"] });
  const good = copy.read("app.lua");
  copy.write("app.lua", "io.on('connection', function(socket)\n");
  srv.proc.kill("SIGHUP");
  await waitFailures(srv, 1);
  assert.match(srv.log(), /app\.lua:\d+:/);
  assert.deepEqual(await ask(ws, "version"), V1);
  copy.write("app.lua", withVersion(good, 2));
  srv.proc.kill("SIGHUP");
  await waitReloaded(srv, 2);
  assert.equal((await ask(ws, "version")).app, 2);
  assert.deepEqual(ws.disconnects, []);
});
