// Hot reload (src/reload.h): saving app.lua swaps in the new handlers while every client stays
// connected with the same socket id, Engine.IO session, rooms and socket.data.
import { test, afterEach } from "node:test";
import assert from "node:assert/strict";
import { closeAll, connect, request, until } from "./helpers.mjs";
import {
  SKIP, closeRecorded, copyApp, withVersion, startCopy, waitReloaded, connectRecorded, ask, eventually, once,
} from "./reload.helpers.mjs";

let srv, copy;
afterEach(async () => {
  closeAll();
  closeRecorded();
  try {
    await srv?.stop();
  } finally {
    copy?.remove();
    srv = copy = undefined;
  }
});

test("websocket and polling clients stay connected across a reload; the next event runs the new handler", { skip: SKIP }, async () => {
  copy = copyApp();
  srv = await startCopy(copy);
  const ws = await connectRecorded(srv.url, { transports: ["websocket"] });
  const poll = await connectRecorded(srv.url, { transports: ["polling"] });
  const admin = await connectRecorded(srv.url + "/admin", { transports: ["websocket"] });
  const before = [ws, poll].map((s) => ({ id: s.id, sid: s.io.engine.id, transport: s.io.engine.transport.name }));
  assert.deepEqual(before.map((b) => b.transport), ["websocket", "polling"]);
  for (const s of [ws, poll]) {
    assert.deepEqual(await eventually(s, "hello"), [1]);
    assert.deepEqual(await ask(s, "version"),
      { app: 1, lib: 1, fmt: 1, reloaded: false, connections: 1, loads: 1 });
  }
  assert.deepEqual(await request(admin, "version"), [1, false]);

  const reloaded = [once(ws, "reloaded"), once(poll, "reloaded")];
  copy.edit("app.lua", (t) => withVersion(t, 2));
  const { sockets } = await waitReloaded(srv, 2);
  assert.equal(sockets, 3, "every socket, of every namespace, is re-bound");
  // io.on("reload") of the new code gets the generation
  assert.deepEqual(await Promise.all(reloaded), [[2, 2], [2, 2]]);

  for (const [i, s] of [ws, poll].entries()) {
    // the next event runs the new handler; "connection" ran again, with socket.reloaded
    assert.deepEqual(await ask(s, "version"),
      { app: 2, lib: 1, fmt: 1, reloaded: true, connections: 2, loads: 2 });
    assert.equal(s.connected, true);
    assert.deepEqual({ id: s.id, sid: s.io.engine.id, transport: s.io.engine.transport.name }, before[i]);
    assert.deepEqual(s.disconnects, []);
    // the app skips its greeting for a re-bound socket
    assert.equal(s.events.filter(([ev]) => ev === "hello").length, 1);
  }
  assert.deepEqual(await request(admin, "version"), [2, true]);

  // a second reload: generation 3, everything still there
  const again = once(poll, "reloaded");
  copy.edit("app.lua", (t) => withVersion(t, 3));
  await waitReloaded(srv, 3);
  assert.deepEqual(await again, [3, 3]);
  assert.deepEqual(await ask(poll, "version"),
    { app: 3, lib: 1, fmt: 1, reloaded: true, connections: 3, loads: 3 });
  assert.equal(poll.io.engine.id, before[1].sid);

  // a new client runs the new code as a fresh connection
  const late = await connectRecorded(srv.url, {});
  assert.deepEqual(await eventually(late, "hello"), [3]);
  assert.deepEqual(await ask(late, "version"),
    { app: 3, lib: 1, fmt: 1, reloaded: false, connections: 1, loads: 3 });

  // nobody was disconnected on either side (a round trip each: a disconnect would have come first)
  for (const s of [ws, poll]) await ask(s, "version");
  await request(admin, "version");
  for (const s of [ws, poll, admin]) assert.deepEqual(s.disconnects, []);
  assert.doesNotMatch(srv.log(), /^disconnect /m);
});

test("rooms, socket.data and other socket fields survive a reload; what is not JSON-able does not", { skip: SKIP }, async () => {
  copy = copyApp();
  srv = await startCopy(copy);
  const a = await connectRecorded(srv.url, { transports: ["websocket"] });
  const b = await connectRecorded(srv.url, { transports: ["polling"] });
  const c = await connectRecorded(srv.url, { transports: ["websocket"] });
  assert.equal(await ask(a, "join", "r1"), true);
  assert.equal(await ask(a, "join", "r2"), true);
  assert.equal(await ask(b, "join", "r1"), true);
  const profile = { age: 42, tags: ["x", "y"], nested: { ok: true, none: null }, pi: 3.5 };
  assert.equal(await ask(a, "set", "profile", profile), true);
  assert.equal(await ask(a, "set", "nick", "ann"), true);
  assert.equal(await ask(b, "set-field", "nickname", "zed"), true);
  assert.equal(await ask(a, "set-function"), "function");

  copy.edit("app.lua", (t) => withVersion(t, 2));
  await waitReloaded(srv, 2);

  assert.deepEqual(await ask(a, "rooms"), ["r1", "r2"]);
  assert.deepEqual(await ask(b, "rooms"), ["r1"]);
  assert.deepEqual(await ask(c, "rooms"), []);
  assert.deepEqual(await request(a, "get", "profile"), [profile, "table"]);
  assert.equal(await ask(a, "get", "nick"), "ann");
  assert.equal(await ask(b, "get-field", "nickname"), "zed");
  // a function is not JSON-able: documented as not surviving
  assert.deepEqual(await request(a, "get", "fn"), [null, "nil"]);

  // broadcasting to a room reaches its members, with the new code
  b.emit("to-room", "r1", "hi");
  assert.deepEqual(await eventually(a, "room"), ["hi", 2]);
  assert.deepEqual(await eventually(b, "room"), ["hi", 2]);
  a.emit("to-room", "r2", "only a");
  assert.deepEqual(await eventually(a, "room", (m) => m === "only a"), ["only a", 2]);
  await ask(c, "version");
  assert.deepEqual(c.events.filter(([ev]) => ev === "room"), []);
  assert.deepEqual(b.events.filter(([ev, m]) => ev === "room" && m === "only a"), []);
});

test("siolua.stash survives reloads and the clients see the new generation", { skip: SKIP }, async () => {
  copy = copyApp();
  srv = await startCopy(copy);
  const a = await connectRecorded(srv.url, { transports: ["websocket"] });
  for (let gen = 2; gen <= 4; gen++) {
    const r = once(a, "reloaded");
    copy.edit("app.lua", (t) => withVersion(t, gen * 10));
    await waitReloaded(srv, gen);
    assert.deepEqual(await r, [gen, gen * 10]);
    assert.equal((await ask(a, "version")).loads, gen);
  }
});

// A CONNECT to a namespace that does not exist must not touch the app's state.
test("siolua.stash survives a client's connect to an unknown namespace", { skip: SKIP }, async () => {
  copy = copyApp();
  srv = await startCopy(copy);
  const a = await connectRecorded(srv.url, { transports: ["websocket"] });
  await assert.rejects(connect(srv.url + "/nope", { transports: ["websocket"] }), /Invalid namespace/);
  assert.equal((await ask(a, "version")).loads, 1);
  copy.edit("app.lua", (t) => withVersion(t, 2));
  await waitReloaded(srv, 2);
  assert.equal((await ask(a, "version")).loads, 2);
});

test("the old code's timers stop and its pending ack callbacks are dropped; the new code restarts its own", { skip: SKIP }, async () => {
  copy = copyApp();
  srv = await startCopy(copy);
  const a = await connectRecorded(srv.url, { transports: ["websocket"] });
  const b = await connectRecorded(srv.url, { transports: ["polling"] });
  assert.equal(await ask(a, "start-beat"), true); // a server-wide setInterval (flag in siolua.stash)
  assert.equal(await ask(a, "start-push"), true); // a per-socket setInterval (count in socket.data)
  await eventually(a, "beat");
  await eventually(b, "beat");
  await eventually(a, "push", (n) => n >= 3);
  // the old code asks the client; the client answers only after the reload
  const question = new Promise((resolve) => a.once("question", (v, callback) => resolve([v, callback])));
  a.emit("ask");
  const [v1, lateAnswer] = await question;
  assert.equal(v1, 1);

  const reloaded = [once(a, "reloaded"), once(b, "reloaded")];
  copy.edit("app.lua", (t) => withVersion(t, 2));
  await waitReloaded(srv, 2);
  await Promise.all(reloaded);
  // the new code's timers run (restarted from what survived)...
  await eventually(a, "beat", (v) => v === 2);
  await eventually(b, "beat", (v) => v === 2);
  await eventually(a, "push", (n, v) => v === 2);
  lateAnswer("late");
  await ask(a, "version"); // after the late answer on the same connection: handled by now
  // ten more beats of the new code (20 ms apart, as the old code's were): an old timer still
  // armed would have fired in between
  const marks = [a, b].map((s) => s.events.length);
  const beats = (s, from) => s.events.slice(from).filter(([ev, v]) => ev === "beat" && v === 2).length;
  await until(() => beats(a, marks[0]) >= 10 && beats(b, marks[1]) >= 10, "ten more beats of the new code");
  for (const s of [a, b]) {
    // ...and after the swap (the "reloaded" event), nothing of the old code's ran any more
    const r = s.events.findIndex(([ev]) => ev === "reloaded");
    assert.ok(r >= 0);
    const version = ([ev, x, y]) => (ev === "beat" ? x : ev === "push" ? y : undefined);
    const timed = (list) => list.filter(([ev]) => ev === "beat" || ev === "push");
    assert.deepEqual(timed(s.events.slice(r + 1)).filter((e) => version(e) !== 2), []);
    assert.deepEqual(timed(s.events.slice(0, r)).filter((e) => version(e) !== 1), []);
  }
  // the per-socket stream went on with no gap and no duplicate
  const pushes = a.events.filter(([ev]) => ev === "push").map(([, n]) => n);
  assert.deepEqual(pushes, pushes.map((_, i) => i + 1));
  // the old code's ack callback was dropped: the late answer went nowhere
  assert.deepEqual(a.events.filter(([ev]) => ev === "answered"), []);
  // the new code's callbacks work
  const again = new Promise((resolve) => a.once("question", (v, callback) => { callback("now"); resolve(v); }));
  a.emit("ask");
  assert.equal(await again, 2);
  assert.deepEqual(await eventually(a, "answered"), ["now", 2]);
  assert.deepEqual([a.disconnects, b.disconnects], [[], []]);
});

// lua-cjson refuses a sparse array ({[1000] = true}) by default: the re-bind and the stash must not
// depend on that (src/reload.h: JSON-able values survive, the socket is re-bound in any case).
test("a sparse table in socket.data or in siolua.stash does not break the reload", { skip: SKIP }, async () => {
  copy = copyApp();
  srv = await startCopy(copy);
  const a = await connectRecorded(srv.url, { transports: ["websocket"] });
  assert.equal(await ask(a, "set", "nick", "ann"), true);
  assert.equal(await ask(a, "set-sparse", "seen"), true);
  assert.equal(await ask(a, "stash-sparse"), true);
  copy.edit("app.lua", (t) => withVersion(t, 2));
  await waitReloaded(srv, 2);
  const v = await ask(a, "version");
  assert.deepEqual([v.app, v.reloaded, v.connections, v.loads], [2, true, 2, 2]);
  assert.equal(await ask(a, "get", "nick"), "ann");
  assert.deepEqual(a.disconnects, []);
});

test("a handler suspended in emitWithAck is abandoned by a reload: a late answer resumes nothing", { skip: SKIP }, async () => {
  copy = copyApp();
  srv = await startCopy(copy);
  const a = await connectRecorded(srv.url, { transports: ["websocket"] });
  // the old code's handler waits in emitWithAck for this client's answer
  const question = new Promise((resolve) => a.once("question", (v, callback) => resolve([v, callback])));
  a.emit("ask-wait");
  const [v1, lateAnswer] = await question;
  assert.equal(v1, 1);

  const reloaded = once(a, "reloaded");
  copy.edit("app.lua", (t) => withVersion(t, 2));
  await waitReloaded(srv, 2);
  await reloaded;
  lateAnswer("late");
  // handled before this event of the same connection: a resumed handler would have emitted first
  assert.equal((await ask(a, "version")).app, 2);
  assert.deepEqual(a.events.filter(([ev]) => ev === "resumed"), []);

  // the new code's handlers suspend and resume as usual
  const again = new Promise((resolve) => a.once("question", (v, callback) => { callback("now"); resolve(v); }));
  a.emit("ask-wait");
  assert.equal(await again, 2);
  assert.deepEqual(await eventually(a, "resumed"), ["now", 2]);
  assert.deepEqual(a.events.filter(([ev]) => ev === "resumed"), [["resumed", "now", 2]]);
  assert.deepEqual(a.disconnects, []);
  assert.doesNotMatch(srv.log(), /\[error\]/);
});

test("a reloaded app's io.options are ignored, except allowRequest, which is the new code's", { skip: SKIP }, async () => {
  copy = copyApp("reload_options");
  srv = await startCopy(copy);
  const base = `${srv.url}/socket.io/?EIO=4&transport=polling`;
  /** What a handshake shows of the options: the open packet's timers and maxPayload, CORS. */
  const handshake = async () => {
    const res = await fetch(base, { headers: { Origin: "http://elsewhere.example" } });
    assert.equal(res.status, 200);
    const open = JSON.parse((await res.text()).slice(1));
    return {
      pingInterval: open.pingInterval, pingTimeout: open.pingTimeout, maxPayload: open.maxPayload,
      origin: res.headers.get("access-control-allow-origin"),
    };
  };
  /** allowRequest's answer to ?deny=n: the status and the body. */
  const deny = async (n) => {
    const res = await fetch(`${base}&deny=${n}`);
    return [res.status, await res.text()];
  };
  const v1 = { pingInterval: 20001, pingTimeout: 10001, maxPayload: 100001, origin: "http://v1.example" };
  const refused = (v) => [403, JSON.stringify({ code: 4, message: `refused by version ${v}` })];
  assert.deepEqual(await handshake(), v1);
  assert.deepEqual(await deny(1), refused(1));
  assert.equal((await deny(2))[0], 200);
  const s = await connectRecorded(srv.url, { transports: ["websocket"] });

  // version 2: every option changes (they show as 20002, 10002, ...); only allowRequest applies
  copy.edit("app.lua", (t) => withVersion(t, 2));
  await waitReloaded(srv, 2);
  assert.match(srv.log(), /io\.options is read at start-up: 4 option\(s\) of the reloaded app ignored/);
  assert.equal(await ask(s, "version"), 2);
  assert.deepEqual(await handshake(), v1);
  assert.equal((await deny(1))[0], 200);
  assert.deepEqual(await deny(2), refused(2));

  // version 3 has no allowRequest at all: nothing is refused any more
  copy.edit("app.lua", (t) => withVersion(t, 3).replace(/  allowRequest = function[\s\S]*?\n  end,\n/, ""));
  await waitReloaded(srv, 3);
  assert.equal(await ask(s, "version"), 3);
  assert.deepEqual(await handshake(), v1);
  for (const n of [1, 2, 3]) assert.equal((await deny(n))[0], 200);
  assert.deepEqual(s.disconnects, []);
});
