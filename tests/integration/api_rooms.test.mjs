// The server API (issue 3), rooms and broadcasting: join/leave/rooms, every broadcast operator on
// io, a namespace and a socket (to/in/except with a room or a list, chained; broadcast; volatile;
// compress; local), multi-room dedup, socket.to excluding the sender, fetchSockets and its handles,
// socketsJoin/socketsLeave, disconnectSockets, and disconnecting (rooms readable) then disconnect.
// App: apps/api_rooms.lua (twin: ref/api_apps.mjs).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, connect, once, closeAll, request, waitGone, waitFor } from "./helpers.mjs";

let srv, observer;
before(async () => {
  srv = await startServer("api_rooms");
  observer = await connect(srv.url, { transports: ["websocket"], auth: { name: "observer" } });
});
after(async () => { closeAll(); await srv?.stop(); });

const WS = { transports: ["websocket"] };
const POLL = { transports: ["polling"] };
const client = (name, opts = WS) => connect(srv.url, { ...opts, auth: { name } });

/**
 * Has `driver` run a broadcast spec (see api_rooms.lua "bcast") and returns how many "hit"s with
 * the spec's tag each client got: every client of / gets "done" after the hit, so a missing
 * count is a hit that was not sent. `clients` is {name: socket}; `extra` are sockets of another
 * namespace, synchronised by `sync` (a spec run after, reaching them).
 */
let tagN = 0;
async function bcast(clients, driver, from, steps) {
  const tag = `t${++tagN}`;
  const got = {};
  const offs = [];
  for (const [k, s] of Object.entries(clients)) {
    const on = (t) => { if (t === tag || t.startsWith(tag + ":")) got[k] = (got[k] || 0) + 1; };
    s.on("hit", on);
    offs.push(() => s.off("hit", on));
  }
  const dones = Object.values(clients).filter((s) => s.nsp === "/").map((s) => waitFor(s, "done", (t) => t === tag));
  driver.emit("bcast", { from, steps, tag });
  await Promise.all(dones);
  offs.forEach((f) => f());
  return got;
}

test("join a room or a list, leave, socket.rooms (its own id included)", async () => {
  const a = await client("a");
  assert.deepEqual(await request(a, "rooms"), [["<self>"], true]);
  assert.deepEqual(await request(a, "join", "r1"), [["<self>", "r1"]]);
  assert.deepEqual(await request(a, "join", ["r2", "r3"]), [["<self>", "r1", "r2", "r3"]]);
  assert.deepEqual(await request(a, "join", "r1"), [["<self>", "r1", "r2", "r3"]]);
  assert.deepEqual(await request(a, "leave", "r2"), [["<self>", "r1", "r3"]]);
  assert.deepEqual(await request(a, "leave", "never-joined"), [["<self>", "r1", "r3"]]);
  assert.deepEqual(await request(a, "rooms"), [["<self>", "r1", "r3"], true]);
  a.disconnect();
});

test("to / in / except on io and on a socket: room or list, chained, a socket in two rooms gets one copy", async () => {
  // A: a, b   B: b   C: a   D: none (A and C on WebSocket, B and D on polling)
  const A = await client("A");
  const B = await client("B", POLL);
  const C = await client("C");
  const D = await client("D", POLL);
  await request(A, "join", ["a", "b"]);
  await request(B, "join", "b");
  await request(C, "join", "a");
  const all = { A, B, C, D };
  const cases = [
    ["io", [["to", "a"]], { A: 1, C: 1 }],
    ["io", [["to", ["a", "b"]]], { A: 1, B: 1, C: 1 }],
    ["io", [["to", "a"], ["to", "b"]], { A: 1, B: 1, C: 1 }],
    ["io", [["in", "b"]], { A: 1, B: 1 }],
    ["io", [["except", "b"]], { C: 1, D: 1, observer: 1 }],
    ["io", [["to", "a"], ["except", "b"]], { C: 1 }],
    ["io", [["to", ["a", "b"]], ["except", ["a"]]], { B: 1 }],
    ["io", [["except", "a"], ["except", "b"]], { D: 1, observer: 1 }],
    ["io", [["to", A.id]], { A: 1 }],
    ["io", [["to", "nobody"]], {}],
    ["/", [["to", "a"]], { A: 1, C: 1 }],
    // from the socket: the sender is left out
    ["socket", [["to", "a"]], { C: 1 }],
    ["socket", [["to", ["a", "b"]]], { B: 1, C: 1 }],
    ["socket", [["in", "b"]], { B: 1 }],
    ["socket", [["broadcast"]], { B: 1, C: 1, D: 1, observer: 1 }],
    ["socket", [["broadcast"], ["to", "b"]], { B: 1 }],
    ["socket", [["except", "b"]], { C: 1, D: 1, observer: 1 }],
    ["socket", [["to", "a"], ["except", "b"]], { C: 1 }],
  ];
  for (const [from, steps, want] of cases) {
    const got = await bcast({ ...all, observer }, A, from, steps);
    assert.deepEqual(got, want, `${from} ${JSON.stringify(steps)}`);
  }
  // a socket can send to another socket's id (a private message)
  assert.deepEqual(await bcast({ ...all, observer }, B, "socket", [["to", A.id]]), { A: 1 });
  for (const s of [A, B, C, D]) s.disconnect();
});

test("rooms belong to a namespace: /other's room \"a\" is not /'s room \"a\"", async () => {
  const A = await client("A2");
  const O = await connect(srv.url + "/other", WS);
  await request(A, "join", "a");
  await request(O, "join", "a");
  const hitsO = [];
  O.on("hit", (t) => hitsO.push(t));
  assert.deepEqual(await bcast({ A }, A, "io", [["to", "a"]]), { A: 1 });
  // then a broadcast that reaches O, sent after the first one on the same server loop
  const next = `t${tagN + 1}`;
  const seen = waitFor(O, "hit", (t) => t === next);
  assert.deepEqual(await bcast({ A }, A, "/other", [["to", "a"]]), {});
  await seen;
  assert.deepEqual(hitsO, [next]);
  A.disconnect();
  O.disconnect();
});

test("volatile, compress(false) and local still reach a writable client", async () => {
  const A = await client("VA");
  const C = await client("VC");
  const B = await client("VB", POLL);
  await request(A, "join", "v");
  await request(C, "join", "v");
  const two = { A, B, C };
  assert.deepEqual(await bcast(two, A, "socket", [["volatile"]]), { A: 1 });
  assert.deepEqual(await bcast(two, A, "io", [["to", "v"], ["volatile"]]), { A: 1, C: 1 });
  assert.deepEqual(await bcast(two, A, "io", [["volatile"], ["to", "v"]]), { A: 1, C: 1 });
  assert.deepEqual(await bcast(two, A, "socket", [["volatile"], ["to", "v"]]), { C: 1 });
  assert.deepEqual(await bcast(two, A, "socket", [["compress", false]]), { A: 1 });
  assert.deepEqual(await bcast(two, A, "io", [["to", "v"], ["compress", false]]), { A: 1, C: 1 });
  assert.deepEqual(await bcast(two, A, "io", [["compress", true], ["to", "v"]]), { A: 1, C: 1 });
  assert.deepEqual(await bcast(two, A, "io", [["local"], ["to", "v"]]), { A: 1, C: 1 });
  assert.deepEqual(await bcast(two, A, "socket", [["local"]]), { B: 1, C: 1 });
  for (const s of [A, B, C]) s.disconnect();
});

test("fetchSockets: handles with id, rooms, data and handshake; emit, join, leave, disconnect through them", async () => {
  const A = await client("FA");
  const B = await client("FB", POLL);
  const C = await client("FC");
  await request(A, "join", ["f", "f2"]);
  await request(B, "join", "f");
  const [inF] = await request(C, "fetch", "f");
  assert.deepEqual(inF, [
    { id: A.id, rooms: ["<self>", "f", "f2"], name: "FA", auth: "FA" },
    { id: B.id, rooms: ["<self>", "f"], name: "FB", auth: "FB" },
  ]);
  const [everyone] = await request(C, "fetch", null);
  for (const s of [A, B, C, observer]) assert.ok(everyone.some((d) => d.id === s.id), `io.fetchSockets() has ${s.id}`);

  // handle.emit
  const tag = `fe${++tagN}`;
  const got = [];
  for (const s of [A, B, C]) s.on("hit", (t) => got.push(t));
  const dones = [A, B, C].map((s) => waitFor(s, "done", (t) => t === tag));
  C.emit("fetch-emit", "f", tag);
  await Promise.all(dones);
  assert.deepEqual(got.sort(), [`${tag}:FA`, `${tag}:FB`]);

  // handle.join / handle.leave
  const [joined] = await request(C, "fetch-join", "f", "fj");
  assert.deepEqual(joined.map((d) => d.name), ["FA", "FB"]);
  assert.deepEqual(await request(B, "rooms"), [["<self>", "f", "fj"], true]);
  const [left] = await request(C, "fetch-leave", "f2", "fj");
  assert.deepEqual(left.map((d) => d.name), ["FB"]);
  assert.deepEqual(await request(A, "rooms"), [["<self>", "f", "f2"], true]);

  // handle.disconnect: "io server disconnect" for the client, "server namespace disconnect" for the app
  const dA = once(A, "disconnect");
  const gone = waitGone(observer, A.id);
  const [afterKick] = await request(C, "fetch-disconnect", "f2");
  assert.deepEqual(afterKick, []);
  assert.equal((await dA)[0], "io server disconnect");
  assert.equal(await gone, "server namespace disconnect");
  assert.equal(B.connected, true);
  for (const s of [B, C]) s.disconnect();
});

test("socketsJoin and socketsLeave, on io and on a room", async () => {
  const A = await client("SA");
  const B = await client("SB", POLL);
  await request(A, "join", "s1");
  const [j1] = await request(B, "sockets-join", "s1", "s2");
  assert.deepEqual(j1.map((d) => d.name), ["SA"]);
  assert.deepEqual(await request(A, "rooms"), [["<self>", "s1", "s2"], true]);
  const [j2] = await request(B, "sockets-join", null, "s3");
  for (const s of [A, B, observer]) assert.ok(j2.some((d) => d.id === s.id));
  assert.deepEqual(await request(B, "rooms"), [["<self>", "s3"], true]);
  const [l1] = await request(B, "sockets-leave", "s1", "s3");
  assert.ok(!l1.some((d) => d.id === A.id) && l1.some((d) => d.id === B.id));
  const [l2] = await request(B, "sockets-leave", null, "s3");
  assert.deepEqual(l2, []);
  assert.deepEqual(await request(A, "rooms"), [["<self>", "s1", "s2"], true]);
  // a list of rooms (the reference's Room | Room[])
  const [l3] = await request(B, "sockets-leave", "s1", ["s1", "s2"]);
  assert.deepEqual(l3, []);
  assert.deepEqual(await request(A, "rooms"), [["<self>"], true]);
  for (const s of [A, B]) s.disconnect();
});

test("disconnectSockets() and disconnectSockets(true): the room's sockets only", async () => {
  for (const close of [false, true]) {
    const room = `dk-${close}`;
    const A = await client("DA");
    const B = await client("DB", POLL);
    const C = await client("DC");
    await request(A, "join", room);
    await request(B, "join", room);
    const ds = [A, B].map((s) => once(s, "disconnect"));
    const gone = [A, B].map((s) => waitGone(observer, s.id));
    C.emit("disconnect-sockets", room, close);
    for (const d of await Promise.all(ds)) assert.equal(d[0], "io server disconnect");
    for (const r of await Promise.all(gone)) assert.equal(r, "server namespace disconnect");
    assert.deepEqual(await request(C, "fetch", room), [[]]);
    assert.equal(C.connected, true);
    C.disconnect();
  }
});

test("\"disconnecting\" sees the rooms, then \"disconnect\"; the socket leaves its rooms", async () => {
  for (const [how, reason] of [["client", "client namespace disconnect"], ["transport", "transport close"]]) {
    const X = await client("X", how === "client" ? WS : POLL);
    await request(X, "join", ["x1", "x2"]);
    const id = X.id;
    const gone = waitGone(observer, id);
    if (how === "client") X.disconnect();
    else X.io.engine.close();
    assert.equal(await gone, reason);
    const [report] = await request(observer, "report", id);
    assert.deepEqual(report, {
      seq: ["disconnecting", "disconnect:" + reason],
      reason,
      roomsDuring: ["<self>", "x1", "x2"],
      connectedDuring: true,
      roomsAfter: [],
      connectedAfter: false,
    });
    assert.deepEqual(await request(observer, "fetch", "x1"), [[]]);
  }
});
