// Socket.IO v2 clients (allowEIO3, issue 15 item 3): npm socket.io-client@2 in Node over polling,
// WebSocket and upgrade, beside v4 clients, and the Engine.IO v3 wire (length-prefixed payloads in
// UTF-16 units, base64 and binary payloads, the client's pings) on raw HTTP. Every test runs
// against the reference too (SIOLUA_REF=1, with allowEIO3).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import ioV2 from "socket.io-client-v2";
import { startServer, connect, closeAll, withTimeout, once, rawSession, WAIT } from "./helpers.mjs";

const TRANSPORTS = { polling: ["polling"], websocket: ["websocket"], upgrade: ["polling", "websocket"] };

const v2clients = new Set();
let shared; // the --allow-eio3 server most tests share (each test closes its clients)
before(async () => {
  shared = await startServer("parsers", ["--allow-eio3"]);
});
after(async () => {
  closeV2();
  closeAll();
  await shared?.stop();
});

/** Closes every v2 client's connection (its Manager: all its namespaces). */
function closeV2() {
  for (const s of v2clients) s.io.close();
  v2clients.clear();
}

/** A v2 socket, resolved once connected (rejects with its 'error' data: a refusal). */
function connectV2(url, opts = {}) {
  const s = ioV2(url, { forceNew: true, reconnection: false, ...opts });
  v2clients.add(s);
  return withTimeout(
    new Promise((resolve, reject) => {
      s.once("connect", () => resolve(s));
      s.once("error", (e) => reject(Object.assign(new Error("refused"), { data: e })));
      s.once("connect_error", (e) => reject(e));
    }),
    WAIT,
    `v2 connect to ${url}`,
  );
}

/** emit with an ack, all the ack's arguments. */
const ask = (s, ev, ...args) =>
  withTimeout(new Promise((resolve) => s.emit(ev, ...args, (...r) => resolve(r))), WAIT, `ack of ${ev}`);

test("without allowEIO3 a v2 client is refused (Unsupported protocol version); an endpoint's own allowEIO3 takes it", async () => {
  const srv = await startServer("parsers");
  try {
    const res = await fetch(`${srv.url}/socket.io/?EIO=3&transport=polling`);
    assert.equal(res.status, 400);
    assert.deepEqual(await res.json(), { code: 5, message: "Unsupported protocol version" });
    // an Engine.IO endpoint of its own with allowEIO3 = true takes it: a v3 session echoes
    const open = await (await fetch(`${srv.url}/eio3/?EIO=3&transport=polling`)).text();
    assert.match(open, /^\d+:0\{"sid"/);
    const poll = `${srv.url}/eio3/?EIO=3&transport=polling&sid=${JSON.parse(open.slice(open.indexOf(":") + 2)).sid}`;
    const post = await fetch(poll, { method: "POST", body: "6:4hé 😀", headers: { "Content-Type": "text/plain;charset=UTF-8" } });
    assert.equal(await post.text(), "ok");
    assert.equal(await (await fetch(poll)).text(), "6:4hé 😀");
    await fetch(poll, { method: "POST", body: "1:1", headers: { "Content-Type": "text/plain;charset=UTF-8" } });
  } finally {
    await srv.stop();
  }
});

for (const [name, transports] of Object.entries(TRANSPORTS)) {
  test(`v2 client over ${name}: implicit /, ids, acks both ways, binary at depth, namespaces, refusals`, async () => {
    const srv = shared;
    try {
      const s = await connectV2(srv.url, { transports });
      // the main namespace is joined without a CONNECT; the socket id is the Engine.IO id
      assert.equal(s.id, s.io.engine.id);
      const [me] = await ask(s, "whoami");
      assert.deepEqual(me, { id: s.id, auth: {}, nsp: "/" });
      const bin = Buffer.from([0, 1, 2, 255]);
      const [txt, deep, n] = await ask(s, "echo", "hé 😀", { a: [bin, { b: Buffer.from("x") }] }, 2 ** 53 - 1);
      assert.equal(txt, "hé 😀");
      assert.deepEqual(deep, { a: [bin, { b: Buffer.from("x") }] });
      assert.equal(n, 2 ** 53 - 1);
      // server -> client ack
      s.once("question", (q, b, cb) => cb(q + "!", b));
      const answered = once(s, "answered");
      s.emit("ask", "why", Buffer.from("bb"));
      const [a1, a2] = await answered;
      assert.equal(a1, "why!");
      assert.deepEqual(a2, Buffer.from("bb"));
      if (name === "upgrade") assert.equal(s.io.engine.transport.name, "websocket");

      // another namespace: the query is its auth, the id "<nsp>#<engine id>"
      const admin = await connectV2(srv.url + "/admin", { transports, query: { token: "ok" } });
      const [who] = await ask(admin, "whoami");
      assert.equal(who.nsp, "/admin");
      assert.equal(who.auth.token, "ok");
      assert.equal(who.id, admin.id);
      assert.equal(admin.id, `/admin#${admin.io.engine.id}`);
      // refusals: err.data || err.message
      const e1 = await connectV2(srv.url + "/admin", { transports, query: { token: "bad" } }).catch((e) => e);
      assert.deepEqual(e1.data, { code: 42 });
      const e2 = await connectV2(srv.url + "/admin", { transports, query: { token: "plain" } }).catch((e) => e);
      assert.equal(e2.data, "plain refusal");
      // a server-side disconnect
      const gone = once(s, "disconnect");
      s.emit("bye");
      assert.equal((await gone)[0], "io server disconnect");
    } finally {
      closeV2();
    }
  });
}

test("v2 and v4 clients share rooms and broadcasts (each transport)", async () => {
  const srv = shared;
  try {
    const v2 = await Promise.all(Object.values(TRANSPORTS).map((transports) => connectV2(srv.url, { transports })));
    const v4 = await connect(srv.url, { transports: ["websocket"] });
    for (const s of v2) assert.deepEqual(await ask(s, "join", "r"), ["r"]);
    assert.equal(await v4.emitWithAck("join", "r"), "r");
    // a v4 client to the room: every v2 client gets it, binary included
    const got = v2.map((s) => once(s, "said"));
    v4.emit("say", "r", "from v4", Buffer.from([7]));
    for (const [m, b] of await Promise.all(got)) {
      assert.equal(m, "from v4");
      assert.deepEqual(b, Buffer.from([7]));
    }
    // a v2 client to the room: the v4 client and the other v2 clients
    const got4 = once(v4, "said");
    const others = v2.slice(1).map((s) => once(s, "said"));
    v2[0].emit("say", "r", { from: "v2" });
    assert.deepEqual((await got4)[0], { from: "v2" });
    for (const [m] of await Promise.all(others)) assert.deepEqual(m, { from: "v2" });
    // io.to(<v2 socket id>) reaches that client
    const told = once(v2[2], "told");
    v4.emit("tell", v2[2].id, "just you");
    assert.equal((await told)[0], "just you");
    // a broadcast to the namespace reaches everyone
    const heard = [...v2, v4].map((s) => once(s, "heard"));
    v2[1].emit("everyone", 1.5);
    for (const [x] of await Promise.all(heard)) assert.equal(x, 1.5);
  } finally {
    closeV2();
    closeAll();
  }
});

test("the chat example: v2 clients (polling and WebSocket) chat with a v4 client", async () => {
  const srv = await startServer("examples/chat/app.lua", ["--allow-eio3"]);
  try {
    const p = await connectV2(srv.url, { transports: ["polling"] });
    const w = await connectV2(srv.url, { transports: ["websocket"] });
    const v4 = await connect(srv.url);
    const rx = [once(w, "message"), once(v4, "message")];
    p.emit("message", "hello from v2");
    for (const [m] of await Promise.all(rx)) assert.equal(m, "hello from v2");
    const rx2 = [once(p, "message"), once(w, "message")];
    v4.emit("message", "hello from v4");
    for (const [m] of await Promise.all(rx2)) assert.equal(m, "hello from v4");
  } finally {
    await srv.stop();
  }
});

/* ---------------------------------------------------------------- the v3 wire, raw */

/** The records of a v3 text payload: [[length, packet], ...], checking each length in UTF-16 units. */
function records(body) {
  const out = [];
  for (let i = 0; i < body.length; ) {
    const c = body.indexOf(":", i);
    const n = Number(body.slice(i, c));
    const pkt = body.slice(c + 1, c + 1 + n);
    assert.equal(pkt.length, n, `record length of ${JSON.stringify(pkt)}`);
    out.push(pkt);
    i = c + 1 + n;
  }
  return out;
}

/** The packets of a v3 binary payload: [{ text } | { binary }]. */
function binaryRecords(buf) {
  const out = [];
  for (let i = 0; i < buf.length; ) {
    const kind = buf[i++];
    let len = "";
    while (buf[i] !== 255) len += String(buf[i++]);
    i++;
    const pkt = buf.subarray(i, i + Number(len));
    i += Number(len);
    out.push(kind === 0 ? { text: pkt.toString() } : { binary: pkt });
  }
  return out;
}

async function openV3(srv, query = "") {
  const res = await fetch(`${srv.url}/socket.io/?EIO=3&transport=polling${query}`);
  const [open] = records(await res.text());
  assert.match(open, /^0\{"sid":"[^"]+","upgrades":\["websocket"\],"pingInterval":\d+,"pingTimeout":\d+,"maxPayload":1000000\}$/);
  const sid = JSON.parse(open.slice(1)).sid;
  const poll = `${srv.url}/socket.io/?EIO=3&transport=polling&sid=${sid}${query}`;
  const get = async () => {
    const r = await fetch(poll);
    assert.equal(r.status, 200);
    return r;
  };
  const post = async (body, type = "text/plain;charset=UTF-8") => {
    const r = await fetch(poll, { method: "POST", body, headers: { "Content-Type": type } });
    assert.equal(r.status, 200);
    assert.equal(await r.text(), "ok");
  };
  // the server connects the client to "/" without a CONNECT: "40" comes on the next GET
  assert.deepEqual(records(await (await get()).text()), ["40"]);
  const close = () => fetch(poll, { method: "POST", body: "1:1", headers: { "Content-Type": "text/plain;charset=UTF-8" } });
  return { sid, poll, get, post, close };
}

const rec = (p) => `${p.length}:${p}`;

test("v3 polling: lengths in UTF-16 code units both ways, binary as b4<base64> with b64=1", async () => {
  const srv = shared;
  const c = await openV3(srv, "&b64=1");
  const text = '2["echo","😀é€",{"k":"𝄞"}]';
  await c.post(rec(`421${text.slice(1)}`));
  assert.deepEqual(records(await (await c.get()).text()), ['431["😀é€",{"k":"𝄞"}]']);
  // binary from the server: "b4" + base64 records
  await c.post(rec('452-7["echo",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]') + rec("b4AAH/") + rec("b4"));
  const body = await (await c.get()).text();
  assert.deepEqual(records(body), ['462-7[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]', "b4AAH/", "b4"]);
  // several packets, some empty records ("0:" is skipped)
  await c.post("0:" + rec('422["echo",1]') + "0:" + rec('423["echo","x"]'));
  assert.deepEqual(records(await (await c.get()).text()), ["432[1]", '433["x"]']);
  await c.close();
});

test("v3 polling without b64: binary payloads both ways (XHR2)", async () => {
  const srv = shared;
  const c = await openV3(srv);
  const frame = (kind, bytes) => {
    const digits = [...String(bytes.length)].map(Number);
    return Buffer.concat([Buffer.from([kind, ...digits, 255]), bytes]);
  };
  await c.post(
    Buffer.concat([
      frame(0, Buffer.from('451-3["echo","é",{"_placeholder":true,"num":0}]')),
      frame(1, Buffer.from([4, 9, 8, 7])),
    ]),
    "application/octet-stream",
  );
  const res = await c.get();
  assert.equal(res.headers.get("content-type"), "application/octet-stream");
  assert.deepEqual(binaryRecords(Buffer.from(await res.arrayBuffer())), [
    { text: '461-3["é",{"_placeholder":true,"num":0}]' },
    { binary: Buffer.from([4, 9, 8, 7]) },
  ]);
  // text-only answers stay text payloads
  await c.post(rec('421["echo","t"]'));
  const r2 = await c.get();
  assert.match(r2.headers.get("content-type"), /^text\/plain/);
  assert.deepEqual(records(await r2.text()), ['431["t"]']);
  await c.close();
});

test("v3 heartbeats: the client pings and the server answers; no ping closes the session; a pong is an error", async () => {
  const srv = await startServer("parsers", ["--allow-eio3", "--ping-interval", "300", "--ping-timeout", "200"]);
  try {
    const c = await openV3(srv);
    await c.post(rec("2"));
    assert.deepEqual(records(await (await c.get()).text()), ["3"]);
    // no ping: the server never pings a v3 client; after pingInterval + pingTimeout it closes
    const t0 = Date.now();
    assert.deepEqual(records(await (await c.get()).text()), ["1"]);
    assert.ok(Date.now() - t0 >= 300, "closed before pingInterval + pingTimeout");
    const gone = await fetch(c.poll);
    assert.equal(gone.status, 400);
    assert.deepEqual(await gone.json(), { code: 1, message: "Session ID unknown" });

    // a pong from the client: "invalid heartbeat direction", the session closes
    const d = await openV3(srv);
    await d.post(rec("3"));
    const r = await fetch(d.poll);
    assert.equal(r.status, 400);
    // a request of another protocol revision on a v3 session: PROTOCOL_MISMATCH
    const e = await openV3(srv);
    const m = await fetch(e.poll.replace("EIO=3", "EIO=4"));
    assert.equal(m.status, 400);
    assert.deepEqual(await m.json(), { code: 3, message: "Bad request" });
  } finally {
    await srv.stop();
  }
});

test("compression with v3 clients: permessage-deflate on v3 messages (a binary one with its type byte), httpCompression on v3 payloads", async () => {
  const srv = await startServer("parsers", ["--allow-eio3", "--per-message-deflate"]);
  try {
    // a v2 client negotiates permessage-deflate (through its ws 7) and chats with big messages
    const s = await connectV2(srv.url, { transports: ["websocket"] });
    assert.equal(s.io.engine.transport.ws.extensions, "permessage-deflate");
    const big = Buffer.alloc(20000, "compressible binary ");
    const [t, deep] = await ask(s, "echo", "x".repeat(5000), { a: [big] });
    assert.equal(t, "x".repeat(5000));
    assert.deepEqual(deep, { a: [big] });

    // raw: a v3 binary message is one binary frame, its type byte (4) first, compressed whole
    const { ws, next, frames, answer, start } = await rawSession(srv, { perMessageDeflate: { threshold: 0 } }, { eio: 3 });
    assert.equal(answer, "permessage-deflate");
    let id = 0;
    for (const n of [3, 5000, 70000]) {
      const bin = Buffer.concat([Buffer.from([4]), Buffer.alloc(n, "compressible binary ")]);
      ws.send(`451-${++id}["echo",{"_placeholder":true,"num":0}]`);
      ws.send(bin);
      assert.equal(await next(), `461-${id}[{"_placeholder":true,"num":0}]`);
      assert.ok(bin.equals(await next()), `binary message of ${n} bytes`);
    }
    // the big binary frames went compressed (RSV1), and shorter than their message
    const bins = frames.slice(start).filter((f) => f.op === 2);
    assert.equal(bins.length, 3);
    for (const [i, n] of [[1, 5000], [2, 70000]]) {
      assert.ok(bins[i].rsv1, `RSV1 on the binary message of ${n} bytes`);
      assert.ok(bins[i].len < n / 4, `${bins[i].len} bytes on the wire for ${n}`);
    }
    ws.close();

    // polling: v3 text payloads (b64=1) and binary payloads are gzipped from 1024 bytes
    const gz = { "accept-encoding": "gzip" };
    for (const query of ["&b64=1", ""]) {
      const c = await openV3(srv, query);
      const payload = Buffer.alloc(3000, "zzzz");
      await c.post(rec('451-1["echo",{"_placeholder":true,"num":0}]') + rec(`b4${payload.toString("base64")}`));
      const r = await fetch(c.poll, { headers: gz }); // fetch decodes the body
      assert.equal(r.status, 200);
      assert.equal(r.headers.get("content-encoding"), "gzip", `v3 payload${query}`);
      const answer = ['461-1[{"_placeholder":true,"num":0}]'];
      if (query) assert.deepEqual(records(await r.text()), [...answer, `b4${payload.toString("base64")}`]);
      else assert.deepEqual(binaryRecords(Buffer.from(await r.arrayBuffer())),
        [{ text: answer[0] }, { binary: Buffer.concat([Buffer.from([4]), payload]) }]);
      // a short answer stays as it is
      await c.post(rec('421["echo","t"]'));
      const r2 = await fetch(c.poll, { headers: gz });
      assert.equal(r2.headers.get("content-encoding"), null);
      assert.deepEqual(records(await r2.text()), ['431["t"]']);
      await c.close();
    }
  } finally {
    closeV2();
    await srv.stop();
  }
});
