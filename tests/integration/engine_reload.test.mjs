// Hot reload and raw Engine.IO (apps/engine_reload.lua, copied to a temporary folder): the
// sessions of a siolua.engine endpoint stay open across a reload and the new code's "connection"
// runs for each with conn.reloaded == true; io.engine's "connection" runs again too; a failed
// reload changes nothing; an endpoint the new code no longer creates is closed.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync, copyFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Socket } from "engine.io-client";
import { APPS, REF, startServer, connect, closeAll, once } from "./helpers.mjs";

const SKIP = REF ? "the Node reference has no hot reload" : false;
const dir = mkdtempSync(path.join(os.tmpdir(), "siolua-engine-reload-"));
const app = path.join(dir, "app.lua");
copyFileSync(path.join(APPS, "engine_reload.lua"), app);
const edit = (fn) => writeFileSync(app, fn(readFileSync(app, "utf8")));
const sockets = new Set();
let srv;
after(async () => {
  for (const s of sockets) s.close();
  closeAll();
  try {
    await srv?.stop();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

async function open(transports) {
  const s = new Socket(srv.url, { path: "/engine.io/", transports });
  sockets.add(s);
  await once(s, "open");
  return s;
}
async function roundTrip(s, data) {
  const got = once(s, "message");
  s.send(data);
  return (await got)[0];
}
async function reload(gen) {
  srv.proc.kill("SIGHUP");
  await srv.waitLog(new RegExp(`siolua: reloaded [^\\n]*: generation ${gen}`));
}

test("raw sessions survive reloads; connection runs again in the new code", { skip: SKIP }, async () => {
  srv = await startServer(app, ["--no-watch"]);
  const ws = await open(["websocket"]);
  const poll = await open(["polling"]);
  const sio = await connect(srv.url, { transports: ["websocket"] });
  const sid = sio.io.engine.id;
  await srv.waitLog(new RegExp(`io.engine connection ${sid} reloaded=false v1`));
  for (const s of [ws, poll]) {
    await srv.waitLog(new RegExp(`engine connection ${s.id} reloaded=false v1`));
    assert.equal(await roundTrip(s, "hi"), "v1:hi");
  }

  edit((t) => t.replace("local VERSION = 1", "local VERSION = 2"));
  await reload(2);
  for (const s of [ws, poll]) {
    await srv.waitLog(new RegExp(`engine connection ${s.id} reloaded=true v2`));
    assert.equal(await roundTrip(s, "hi"), "v2:hi", "the same session runs the new handler");
  }
  await srv.waitLog(new RegExp(`io.engine connection ${sid} reloaded=true v2`));
  assert.equal(sio.connected, true);

  // a reload that fails keeps everything as it was
  edit((t) => t.replace("local VERSION = 2", "local VERSION = = 3"));
  srv.proc.kill("SIGHUP");
  await srv.waitLog(/reload failed: the old code keeps running/);
  assert.equal(await roundTrip(ws, "still"), "v2:still");
  assert.equal(await roundTrip(poll, "still"), "v2:still");

  // new code without the endpoint: its sessions are closed, the path is gone
  const closed = [once(ws, "close"), once(poll, "close")];
  edit((t) => t.replace("local VERSION = = 3", "local VERSION = 4").replace("local ENDPOINT = true", "local ENDPOINT = false"));
  await reload(2 + 1);
  await Promise.all(closed);
  const res = await fetch(`${srv.url}/engine.io/?EIO=4&transport=polling`);
  assert.equal(res.status, 404);
  assert.equal(sio.connected, true);
  await srv.waitLog(new RegExp(`io.engine connection ${sid} reloaded=true v4`));
});
