// What triggers a hot reload (src/reload.h): a change to app.lua or to a module it required from
// its folder (subfolders included, in place or by rename, debounced), or SIGHUP; --no-watch turns
// the file watching off but not SIGHUP.
import { test, afterEach } from "node:test";
import assert from "node:assert/strict";
import { sleep } from "./helpers.mjs";
import {
  SKIP, closeRecorded, copyApp, withVersion, startCopy, waitReloaded, hasGeneration, connectRecorded, ask,
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

// For "nothing happened" checks: ten times the 100 ms debounce. A correct server passes them
// whatever the load; the longer window keeps a wrong reload from landing after the check.
const QUIET = 1000;
const reloads = (srv) => (srv.log().match(/siolua: reloading /g) || []).length;

test("the modules the app requires are watched, in subfolders too, and those the new code requires", { skip: SKIP }, async () => {
  copy = copyApp();
  srv = await startCopy(copy);
  const s = await connectRecorded(srv.url, { transports: ["websocket"] });
  assert.deepEqual(await ask(s, "version"), { app: 1, lib: 1, fmt: 1, reloaded: false, connections: 1, loads: 1 });

  // a module of the app's folder, saved the way vim does (new file renamed over the old one)
  copy.writeByRename("lib.lua", copy.read("lib.lua").replace("VERSION = 1", "VERSION = 2"));
  await waitReloaded(srv, 2);
  assert.deepEqual(await ask(s, "version"), { app: 1, lib: 2, fmt: 1, reloaded: true, connections: 2, loads: 2 });

  // a module in a subfolder, required by that module, saved in place
  copy.edit("parts/fmt.lua", (t) => t.replace("return 1", "return 2"));
  await waitReloaded(srv, 3);
  assert.equal((await ask(s, "version")).fmt, 2);

  // a module only the new code requires is watched after the reload that loaded it
  copy.write("extra.lua", "return { VERSION = 7 }\n");
  await sleep(QUIET);
  assert.equal(hasGeneration(srv, 4), false, "a file the app does not use does not reload");
  copy.edit("app.lua", (t) => t.replace(/^local VERSION = .*$/m, 'local VERSION = require("extra").VERSION'));
  await waitReloaded(srv, 4);
  assert.equal((await ask(s, "version")).app, 7);
  copy.edit("extra.lua", (t) => t.replace("7", "8"));
  await waitReloaded(srv, 5);
  assert.equal((await ask(s, "version")).app, 8);

  // other files of the folder do not reload
  copy.write("notes.txt", "not Lua\n");
  copy.write("unused.lua", "return 1\n");
  await sleep(QUIET);
  assert.equal(hasGeneration(srv, 6), false);
  assert.equal(reloads(srv), 4);
  assert.deepEqual(s.disconnects, []);
});

test("an editor's burst of writes reloads once, with the last content", { skip: SKIP }, async () => {
  copy = copyApp();
  srv = await startCopy(copy);
  const s = await connectRecorded(srv.url, { transports: ["polling"] });
  const text = copy.read("app.lua");
  // truncate, partial write, full write: what some editors do on save
  copy.write("app.lua", "");
  copy.write("app.lua", withVersion(text, 2).slice(0, 200));
  copy.write("app.lua", withVersion(text, 2));
  await waitReloaded(srv, 2);
  await sleep(QUIET);
  assert.equal(reloads(srv), 1);
  assert.equal(hasGeneration(srv, 3), false);
  assert.doesNotMatch(srv.log(), /reload failed/);
  assert.equal((await ask(s, "version")).app, 2);
});

test("with --no-watch, editing does not reload and SIGHUP does", { skip: SKIP }, async () => {
  copy = copyApp();
  srv = await startCopy(copy, ["--no-watch"]);
  const ws = await connectRecorded(srv.url, { transports: ["websocket"] });
  const poll = await connectRecorded(srv.url, { transports: ["polling"] });
  copy.edit("app.lua", (t) => withVersion(t, 2));
  copy.edit("lib.lua", (t) => t.replace("VERSION = 1", "VERSION = 2"));
  await sleep(QUIET);
  assert.equal(reloads(srv), 0, "no reload without SIGHUP");
  assert.equal((await ask(ws, "version")).app, 1);

  srv.proc.kill("SIGHUP");
  const { sockets } = await waitReloaded(srv, 2);
  assert.equal(sockets, 2);
  assert.match(srv.log(), /siolua: reloading [^\n]*\(SIGHUP\)/);
  for (const s of [ws, poll]) {
    const v = await ask(s, "version");
    assert.deepEqual([v.app, v.lib, v.reloaded], [2, 2, true]);
    assert.deepEqual(s.disconnects, []);
  }
  // still not watching after a reload
  copy.edit("app.lua", (t) => withVersion(t, 3));
  await sleep(QUIET);
  assert.equal(reloads(srv), 1);

});

test("SIGHUP reloads when watching too", { skip: SKIP }, async () => {
  copy = copyApp();
  srv = await startCopy(copy);
  const s = await connectRecorded(srv.url, { transports: ["websocket"] });
  srv.proc.kill("SIGHUP");
  await waitReloaded(srv, 2);
  assert.deepEqual(await ask(s, "version"), { app: 1, lib: 1, fmt: 1, reloaded: true, connections: 2, loads: 2 });
});
