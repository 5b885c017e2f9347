// Issue 11, the reference's remaining wire behaviours on io.engine: the connection events
// packet, packetCreate, flush, drain, heartbeat, upgrading, upgrade, data and message, in the
// reference's order and with its arguments, and socket.conn being the very conn io.engine's
// "connection" gave (same object, same listeners), from every namespace of the client.
// App: apps/wire_engine.lua (twin: ref/wire_apps.mjs); SIOLUA_REF=1 runs it against Node.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { io as ioClient } from "socket.io-client";
import { startServer, connect, closeAll, request, sleep, once, withTimeout, WAIT } from "./helpers.mjs";

let srv, observer;
before(async () => {
  srv = await startServer("wire_engine", ["--ping-interval", "100"]);
  observer = await connect(srv.url, { transports: ["websocket"] });
});
after(async () => { closeAll(); await srv?.stop(); });

/** The app's event log of s's connection, once pred(log) holds (sids replaced by <sid>); read
 * through another client, so that reading it adds nothing to it. */
async function log(s, pred = () => true) {
  let got;
  for (let i = 0; i < 100; i++) {
    [got] = await request(observer, "log", s.io.engine.id);
    got = got.map((l) => l.replace(/"sid":"[^"]+"/g, '"sid":"<sid>"'));
    if (pred(got)) return got;
    await sleep(30);
  }
  assert.fail(`the log never matched ${pred}: ${JSON.stringify(got, null, 1)}`);
}

/** Asserts that `run` appears in `lines` as consecutive lines. */
function hasRun(lines, run) {
  for (let i = 0; i + run.length <= lines.length; i++) {
    if (run.every((l, k) => lines[i + k] === l)) return;
  }
  assert.fail(`missing, in a row: ${JSON.stringify(run, null, 1)}\nin: ${JSON.stringify(lines, null, 1)}`);
}

/** Asserts that `seq` appears in `lines` in this order (not necessarily in a row). */
function inOrder(lines, seq) {
  let k = 0;
  for (const l of lines) if (k < seq.length && l === seq[k]) k++;
  assert.equal(k, seq.length, `missing in order: ${JSON.stringify(seq.slice(k))}\nin: ${JSON.stringify(lines, null, 1)}`);
}

test("WebSocket: packet, data and message in, packetCreate, flush and drain out, heartbeat on a pong", async () => {
  const s = await connect(srv.url, { transports: ["websocket"] });
  assert.deepEqual(await request(s, "hi", "a"), ["yo a"]);
  const lines = await log(s, (l) => l.includes("heartbeat"));
  hasRun(lines, [
    'packet message:20["hi","a"]',
    'data 20["hi","a"]',
    'message 20["hi","a"]',
    'packetCreate message:30["yo a"] compress',
    'flush message:30["yo a"]',
    "drain",
  ]);
  hasRun(lines, ['packetCreate message:0{"sid":"<sid>"} compress', 'flush message:0{"sid":"<sid>"}', "drain"]);
  hasRun(lines, ["packetCreate ping compress", "flush ping", "drain"]);
  hasRun(lines, ["packet pong", "heartbeat"]);
  // a binary ack: the attachment is a packet of its own, with its bytes as data
  await request(s, "bytes");
  inOrder(await log(s, (l) => l.includes("flush message:<binary 3>")), [
    'packetCreate message:61-1[{"_placeholder":true,"num":0}] compress',
    'flush message:61-1[{"_placeholder":true,"num":0}]',
    "packetCreate message:<binary 3> compress",
    "flush message:<binary 3>",
  ]);
  s.disconnect();
});

test("polling: packets queued between two GETs are flushed in order; upgrading comes before upgrade", async () => {
  const p = await connect(srv.url, { transports: ["polling"] });
  const got = [once(p, "e1"), once(p, "e2"), once(p, "e3")];
  p.emit("burst");
  await Promise.all(got);
  const lines = await log(p, (l) => l.some((x) => x.startsWith("flush") && x.includes('2["e3"]')));
  inOrder(lines, ['packetCreate message:2["e1"] compress', 'packetCreate message:2["e2"] compress',
    'packetCreate message:2["e3"] compress']);
  const flushed = lines.filter((l) => l.startsWith("flush ")).flatMap((l) => l.slice(6).split(" | "));
  inOrder(flushed, ['message:2["e1"]', 'message:2["e2"]', 'message:2["e3"]']);
  p.disconnect();

  const u = ioClient(srv.url, { forceNew: true, reconnection: false, transports: ["polling", "websocket"] });
  try {
    const upgraded = withTimeout(new Promise((resolve) => u.io.once("open", () => u.io.engine.once("upgrade", resolve))),
      WAIT, "the upgrade");
    await once(u, "connect");
    await upgraded;
    const ul = await log(u, (l) => l.includes("upgrade websocket"));
    inOrder(ul, ["upgrading websocket", "upgrade websocket"]);
    // the probe's packets are not the connection's
    assert.ok(!ul.some((l) => /^packet (ping:probe|upgrade)/.test(l)), JSON.stringify(ul, null, 1));
  } finally {
    u.disconnect();
  }
});

test("socket.conn is io.engine's conn: one object with the same listeners, from every namespace", async () => {
  for (const transports of [["websocket"], ["polling"]]) {
    const s = await connect(srv.url, { transports });
    const [r] = await request(s, "same");
    assert.deepEqual(r, { same: true, stable: true, before: 1, during: 2, after: 1, id: true, transport: transports[0] });
    const other = s.io.socket("/other"); // the same connection, another namespace (connects itself)
    try {
      await once(other, "connect");
      assert.deepEqual(await request(other, "same"), [true]);
    } finally {
      other.disconnect();
    }
    s.disconnect();
  }
});

test("siolua.engine{} takes the Engine.IO options: cors, cookie, allowRequest, heartbeat", async () => {
  const base = `${srv.url}/eio-opts/?EIO=4&transport=polling`;
  const origin = { Origin: "http://a.test" };
  const pre = await fetch(base, { method: "OPTIONS", headers: { ...origin, "Access-Control-Request-Method": "POST" } });
  assert.equal(pre.status, 204);
  assert.equal(pre.headers.get("access-control-allow-origin"), "http://a.test");
  assert.equal(pre.headers.get("access-control-allow-credentials"), "true");
  assert.equal(pre.headers.get("access-control-allow-methods"), "GET,HEAD,PUT,PATCH,POST,DELETE");

  const open = await fetch(base, { headers: origin });
  assert.equal(open.status, 200);
  const hs = JSON.parse((await open.text()).slice(1));
  assert.equal(hs.pingInterval, 20000);
  assert.equal(hs.pingTimeout, 10000);
  assert.equal(open.headers.get("access-control-allow-origin"), "http://a.test");
  assert.equal(open.headers.get("access-control-allow-credentials"), "true");
  assert.equal(open.headers.get("set-cookie"), `eio=${hs.sid}; Path=/; HttpOnly; SameSite=Lax`);
  const post = await fetch(`${base}&sid=${hs.sid}`, { method: "POST", body: "4echo", headers: origin });
  assert.equal(await post.text(), "ok");
  assert.equal(await (await fetch(`${base}&sid=${hs.sid}`, { headers: origin })).text(), "4echo");

  const denied = await fetch(`${base}&deny=1`, { headers: origin });
  assert.equal(denied.status, 403);
  assert.equal(denied.headers.get("access-control-allow-origin"), "http://a.test");
  assert.deepEqual(await denied.json(), { code: 4, message: "denied here" });

  // the Socket.IO endpoint keeps the server's options: no CORS, no cookie
  const sio = await fetch(`${srv.url}/socket.io/?EIO=4&transport=polling`, { headers: origin });
  assert.equal(sio.status, 200);
  assert.equal(sio.headers.get("access-control-allow-origin"), null);
  assert.equal(sio.headers.get("set-cookie"), null);
  assert.equal(JSON.parse((await sio.text()).slice(1)).pingInterval, 100);
});
