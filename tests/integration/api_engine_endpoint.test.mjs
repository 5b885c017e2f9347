// The server API (issue 3), io.engine (written before it existed): its
// "connection" event with the raw Engine.IO session (id, transport.name, message, packet,
// upgrade, close), "connection_error" with code and message, "initial_headers" and "headers".
// App: apps/api_engine_endpoint.lua (twin: ref/api_apps.mjs), with a short ping interval so that
// pong packets come.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, connect, closeAll, request, until } from "./helpers.mjs";

let srv, observer;
before(async () => {
  srv = await startServer("api_engine_endpoint", ["--ping-interval", "100"]);
  observer = await connect(srv.url, { transports: ["websocket"] });
});
after(async () => { closeAll(); await srv?.stop(); });

/** Asks until pred(report) holds (the app records what its io.engine listeners saw). */
async function report(id, pred = () => true) {
  let r;
  return until(async () => {
    [r] = await request(observer, "engine", id);
    return pred(r) && r;
  }, () => `io.engine report for ${id} to match ${pred}: ${JSON.stringify(r)}`);
}

test("io.engine.on(\"connection\"): a raw session per Engine.IO connection, with id and transport.name", async () => {
  const ws = await connect(srv.url, { transports: ["websocket"] });
  const poll = await connect(srv.url, { transports: ["polling"] });
  const r = await report(null);
  assert.ok(r.conns.some((c) => c.id === ws.io.engine.id && c.transport === "websocket"), JSON.stringify(r.conns));
  assert.ok(r.conns.some((c) => c.id === poll.io.engine.id && c.transport === "polling"), JSON.stringify(r.conns));
});

test("the raw session's message, packet, upgrade and close events", async () => {
  const s = await connect(srv.url, { transports: ["polling", "websocket"], auth: { k: 1 } });
  const id = s.io.engine.id;
  s.emit("hello", "raw");
  const r = await report(id, (x) => x.upgrade !== null && x.packets?.pong && x.messages?.length >= 2);
  // the Socket.IO packets, as the Engine.IO messages that carried them
  assert.equal(r.messages[0], '0{"k":1}');
  assert.ok(r.messages.includes('2["hello","raw"]'), JSON.stringify(r.messages));
  assert.equal(r.packets.message, true);
  assert.equal(r.upgrade, "websocket");
  s.disconnect();
  const closed = await report(id, (x) => x.close !== null);
  assert.equal(closed.close, "transport close");
});

test("connection_error: the Engine.IO error code and message of a refused request", async () => {
  const base = `${srv.url}/socket.io/?EIO=4`;
  assert.equal((await fetch(`${base}&transport=polling&sid=nope`)).status, 400);
  assert.equal((await fetch(`${base}&transport=carrier-pigeon`)).status, 400);
  const r = await report(null, (x) => x.errors.length >= 2);
  assert.deepEqual(r.errors.slice(-2), [
    { code: 1, message: "Session ID unknown" },
    { code: 0, message: "Transport unknown" },
  ]);
});

test("initial_headers on the handshake response only, headers on every response", async () => {
  const base = `${srv.url}/socket.io/?EIO=4&transport=polling`;
  const open = await fetch(base);
  assert.equal(open.headers.get("x-initial"), "yes");
  assert.equal(open.headers.get("x-every"), "yes");
  const sid = JSON.parse((await open.text()).slice(1)).sid;
  const post = await fetch(`${base}&sid=${sid}`, { method: "POST", body: "40" });
  assert.equal(post.status, 200);
  assert.equal(post.headers.get("x-initial"), null);
  assert.equal(post.headers.get("x-every"), "yes");
  await post.text();
  const get = await fetch(`${base}&sid=${sid}`);
  assert.equal(get.headers.get("x-initial"), null);
  assert.equal(get.headers.get("x-every"), "yes");
  // the CONNECT answer, maybe after a ping (every 100 ms here)
  assert.match(await get.text(), /^(2\x1e)?40/);
  await fetch(`${base}&sid=${sid}`, { method: "POST", body: "1" }).then((r) => r.text());
});
