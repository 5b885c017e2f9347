// Events, acks both ways, broadcast, binary at any depth, the handshake seen from Lua, and how
// JSON values are typed on the Lua side.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, connect, once, closeAll, collect, request } from "./helpers.mjs";

let srv;
before(async () => { srv = await startServer("main"); });
after(async () => { closeAll(); await srv?.stop(); });

for (const transport of ["websocket", "polling"]) {
  test(`[${transport}] client -> server ack, with several arguments and emitWithAck`, async () => {
    const s = await connect(srv.url, { transports: [transport] });
    assert.deepEqual(await request(s, "echo", 1, "two", { three: [3, null] }, true),
      [1, "two", { three: [3, null] }, true]);
    assert.equal(await s.timeout(3000).emitWithAck("echo", "first only", 2), "first only");
    // unicode survives both codecs (and the polling length prefix counts characters)
    assert.deepEqual(await request(s, "echo", "héllo wörld ✓ 🎉"), ["héllo wörld ✓ 🎉"]);
    s.disconnect();
  });

  test(`[${transport}] server -> client ack`, async () => {
    const s = await connect(srv.url, { transports: [transport] });
    s.on("question", (q, cb) => cb(q + "?", 42, { ok: true }));
    const answered = once(s, "answered");
    s.emit("ask", "why");
    assert.deepEqual(await answered, ["why?", 42, { ok: true }]);
    s.disconnect();
  });

  test(`[${transport}] binary both ways, nested in objects and arrays`, async () => {
    const s = await connect(srv.url, { transports: [transport] });
    const payload = {
      top: Buffer.from([0, 1, 2, 255]),
      nested: [1, Buffer.from("abc"), { deep: new Uint8Array([9, 8, 7]).buffer, s: "str" }],
    };
    const [back, second] = await request(s, "echo", payload, Buffer.from("second"));
    assert.ok(Buffer.isBuffer(back.top));
    assert.deepEqual([...back.top], [0, 1, 2, 255]);
    assert.equal(back.nested[0], 1);
    assert.equal(back.nested[1].toString(), "abc");
    assert.deepEqual([...back.nested[2].deep], [9, 8, 7]);
    assert.equal(back.nested[2].s, "str");
    assert.equal(second.toString(), "second");

    // binary made in Lua with siolua.binary()
    const [obj, top] = await request(s, "make-binary");
    assert.ok(Buffer.isBuffer(obj.data));
    assert.deepEqual(obj.data, Buffer.from("\0\x01\x02hello", "latin1"));
    assert.deepEqual(obj.list[0], Buffer.from("xyz"));
    assert.equal(obj.list[1], 7);
    assert.deepEqual(top, Buffer.from("top"));
    s.disconnect();
  });
}

test("JSON values keep their types in Lua (integers, floats, null, binary)", async () => {
  const s = await connect(srv.url, { transports: ["websocket"] });
  const [d] = await request(s, "describe", {
    n: 42, neg: -7, big: 2 ** 40, f: 1.5, s: "x", t: true, no: false, z: null,
    arr: [1, "two", null], bin: Buffer.alloc(3), obj: { deep: [Buffer.alloc(2)] },
  });
  assert.deepEqual(d, {
    n: "integer:42", neg: "integer:-7", big: "integer:1099511627776", f: "float:1.5",
    s: "string:x", t: "boolean:true", no: "boolean:false", z: "null",
    arr: ["integer:1", "string:two", "null"], bin: "binary:3", obj: { deep: ["binary:2"] },
  });
  s.disconnect();
});

test("auth payload and handshake details are visible to the app", async () => {
  const s = await connect(srv.url, {
    transports: ["websocket"],
    auth: { token: "secret", n: 7 },
    query: { room: "lobby" },
    extraHeaders: { "user-agent": "siolua-test/1" },
  });
  const [me] = await request(s, "whoami");
  assert.equal(me.id, s.id);
  assert.equal(me.connected, true);
  assert.deepEqual(me.auth, { token: "secret", n: 7 });
  assert.equal(me.query.room, "lobby");
  assert.equal(me.query.EIO, "4");
  assert.equal(me.query.transport, "websocket");
  assert.equal(me.address, "127.0.0.1");
  assert.match(me.url, /^\/socket\.io\/\?.*room=lobby/);
  assert.equal(me.ua, "siolua-test/1");
  assert.equal(me.time, "string");   // the reference's handshake.time is a date string
  assert.equal(me.issued, "number"); // and handshake.issued a number of ms
  assert.equal(me.secure, false);    // plain HTTP (tls.test.mjs: true over TLS)
  s.disconnect();
});

test("broadcast reaches the others and not the sender; io.emit reaches everyone", async () => {
  const a = await connect(srv.url, { transports: ["websocket"] });
  const b = await connect(srv.url, { transports: ["polling"] });
  const c = await connect(srv.url, { transports: ["websocket"] });
  const gotA = collect(a, "shout");
  const pb = once(b, "shout");
  const pc = once(c, "shout");
  a.emit("shout", { text: "hello" });
  assert.deepEqual(await pb, [{ text: "hello" }, a.id]);
  assert.deepEqual(await pc, [{ text: "hello" }, a.id]);
  // a round trip on the sender after the others got it: a broadcast to it would have come first
  await request(a, "echo", "flush");
  assert.deepEqual(gotA, []);

  const all = [a, b, c].map((x) => once(x, "announcement"));
  b.emit("announce", "to all");
  for (const got of await Promise.all(all)) assert.deepEqual(got, ["to all"]);
  for (const x of [a, b, c]) x.disconnect();
});

test("the app's print() goes to the log", async () => {
  const s = await connect(srv.url, { transports: ["websocket"] });
  await srv.waitLog(new RegExp("connected " + s.id));
  s.disconnect();
});

test("connecting to a namespace the app does not serve: connect_error \"Invalid namespace\"", async () => {
  // reference: CONNECT_ERROR {"message":"Invalid namespace"}, and "/" on the same Manager still works
  await assert.rejects(connect(srv.url + "/nope", { transports: ["websocket"] }), (err) => {
    assert.equal(err.message, "Invalid namespace");
    return true;
  });
});
