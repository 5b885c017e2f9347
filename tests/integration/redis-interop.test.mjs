// A mixed cluster: a siolua node (apps/redis.lua) and a Node socket.io server with
// @socket.io/redis-adapter (redis_peer.mjs, the same app in JS) on one redis-server, a client on
// each; then @socket.io/redis-emitter publishing to siolua's clients. Everything crosses in both
// directions: broadcasts, rooms, fetchSockets, socketsJoin, remote emits, serverSideEmit with acks,
// broadcast acks, the server count, disconnectSockets.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { REF, collect, connect, once, request, until } from "./helpers.mjs";
import { bothEnds, startNode, startPeer, startRedis, stopAll, waitServers } from "./redis.helpers.mjs";

const require = createRequire(import.meta.url);
const skip = REF ? "drives a siolua node beside the Node peer" : false;

describe("redis adapter: siolua and Node servers in one cluster", { skip }, () => {
  let redis, s, n, cs, cn;
  before(async () => {
    redis = await startRedis();
    s = await startNode(redis, { name: "siolua" });
    n = await startPeer(redis, "node");
    await waitServers(redis.port, 2);
    cs = await connect(s.url, { auth: { name: "cs" } });
    cn = await connect(n.url, { auth: { name: "cn" }, transports: ["websocket"] });
    await request(cs, "join", "sroom");
    await request(cn, "join", "nroom");
  });
  after(() => stopAll([s, n], redis));

  test("io.emit crosses both ways, binaries and nested values intact", async () => {
    const args = ["x", 42, 2.5, Buffer.from([0, 255]), { deep: [null, { b: Buffer.from("hi") }], t: true }];
    let got = Promise.all([once(cs, "msg"), once(cn, "msg")]);
    cs.emit("bcast", ...args);
    assert.deepEqual(await got, [args, args]);
    got = Promise.all([once(cs, "msg"), once(cn, "msg")]);
    cn.emit("bcast", ...args);
    assert.deepEqual(await got, [args, args]);
  });

  test("to(room), except and socket.broadcast cross both ways", async () => {
    const seenS = collect(cs, "msg");
    const seenN = collect(cn, "msg");
    const ended = bothEnds([cs, cn], ["end-s", "end-n"]);
    cs.emit("room", "nroom", "s->nroom");
    cn.emit("room", "sroom", "n->sroom");
    cs.emit("except", "nroom", "s except nroom");
    cn.emit("broadcast", "n broadcast");
    cs.emit("broadcast", "s broadcast");
    cs.emit("bcast", "end-s");
    cn.emit("bcast", "end-n");
    await ended;
    assert.deepEqual(seenS.map((x) => x[0]).sort(), ["end-n", "end-s", "n broadcast", "n->sroom", "s except nroom"].sort());
    assert.deepEqual(seenN.map((x) => x[0]).sort(), ["end-n", "end-s", "s broadcast", "s->nroom"].sort());
    cs.off("msg");
    cn.off("msg");
  });

  test("serverCount and fetchSockets agree on both kinds of node", async () => {
    assert.deepEqual(await request(cs, "count"), [2]);
    assert.deepEqual(await request(cn, "count"), [2]);
    for (const [from, other, otherName, otherRoom] of [[cs, cn, "cn", "nroom"], [cn, cs, "cs", "sroom"]]) {
      const [all] = await request(from, "fetch", null);
      assert.equal(all.length, 2);
      const remote = all.find((x) => x.id === other.id);
      assert.deepEqual(remote, { id: other.id, remote: true, rooms: [other.id, otherRoom].sort(), name: otherName });
      const [inRoom] = await request(from, "fetch", otherRoom);
      assert.deepEqual(inRoom.map((x) => x.id), [other.id]);
    }
  });

  test("socketsJoin and a remote socket's emit/join cross both ways", async () => {
    await request(cn, "socketsJoin", "sroom", "joined-by-node");
    await until(async () => (await request(cs, "rooms"))[0].includes("joined-by-node"), "cs to join");
    await request(cs, "socketsJoin", "nroom", "joined-by-siolua");
    await until(async () => (await request(cn, "rooms"))[0].includes("joined-by-siolua"), "cn to join");
    await request(cs, "socketsLeave", null, "joined-by-siolua");
    await until(async () => !(await request(cn, "rooms"))[0].includes("joined-by-siolua"), "cn to leave");

    let direct = once(cs, "msg");
    assert.deepEqual(await request(cn, "remoteEmit", cs.id), [true]);
    assert.deepEqual(await direct, ["direct from node"]);
    direct = once(cn, "msg");
    assert.deepEqual(await request(cs, "remoteEmit", cn.id), [true]);
    assert.deepEqual(await direct, ["direct from siolua"]);
    await until(async () => (await request(cn, "rooms"))[0].includes("picked"), "cn to join picked");
    await until(async () => (await request(cs, "rooms"))[0].includes("picked"), "cs to join picked");
  });

  test("serverSideEmit with and without acks crosses both ways", async () => {
    assert.deepEqual(await request(cs, "sse", 1), [null, ["pong-1-node"]]);
    assert.deepEqual(await request(cn, "sse", 2), [null, ["pong-2-siolua"]]);
    assert.deepEqual(await request(cs, "ssewithack", 3), [null, ["pong-3-node"]]);
    assert.deepEqual(await request(cn, "ssewithack", 4), [null, ["pong-4-siolua"]]);
    let noted = once(cn, "noted");
    cs.emit("note", "from s");
    assert.deepEqual(await noted, ["from s", "node"]);
    noted = once(cs, "noted");
    cn.emit("note", "from n");
    assert.deepEqual(await noted, ["from n", "siolua"]);
  });

  test("broadcast acks are collected across both kinds of node", async () => {
    cs.on("question", (ack) => ack("cs says"));
    cn.on("question", (ack) => ack("cn says"));
    assert.deepEqual(await request(cs, "ackall", null), [null, ["cn says", "cs says"]]);
    assert.deepEqual(await request(cn, "ackall", null), [null, ["cn says", "cs says"]]);
    assert.deepEqual(await request(cn, "ackall", "sroom"), [null, ["cs says"]]);
  });

  test("a second namespace crosses both ways on its own channels", async () => {
    const xs = await connect(s.url + "/admin");
    const xn = await connect(n.url + "/admin");
    assert.deepEqual(await request(xs, "count"), [2]);
    let got = Promise.all([once(xs, "amsg"), once(xn, "amsg")]);
    xs.emit("bcast", "admin from siolua");
    assert.deepEqual(await got, [["admin from siolua"], ["admin from siolua"]]);
    got = Promise.all([once(xs, "amsg"), once(xn, "amsg")]);
    xn.emit("bcast", "admin from node");
    assert.deepEqual(await got, [["admin from node"], ["admin from node"]]);
  });

  test("@socket.io/redis-emitter reaches siolua's clients", async () => {
    const { createClient } = require("redis");
    const { Emitter } = require("@socket.io/redis-emitter");
    const client = createClient({ url: redis.url });
    await client.connect();
    try {
      const emitter = new Emitter(client);
      let got = Promise.all([once(cs, "msg"), once(cn, "msg")]);
      emitter.emit("msg", "from the emitter", Buffer.from([9]), { n: 1 });
      assert.deepEqual(await got, [
        ["from the emitter", Buffer.from([9]), { n: 1 }],
        ["from the emitter", Buffer.from([9]), { n: 1 }],
      ]);
      const seenN = collect(cn, "msg");
      got = once(cs, "msg");
      emitter.to("sroom").emit("msg", "emitter to sroom");
      assert.deepEqual(await got, ["emitter to sroom"]);
      got = once(cs, "msg");
      emitter.except("nroom").emit("msg", "emitter except nroom");
      assert.deepEqual(await got, ["emitter except nroom"]);
      got = once(cs, "msg");
      emitter.to(cs.id).emit("msg", "emitter to a socket id");
      assert.deepEqual(await got, ["emitter to a socket id"]);
      const noted = once(cs, "noted");
      emitter.serverSideEmit("note", "emitter note");
      assert.deepEqual(await noted, ["emitter note", "siolua"]);
      emitter.in("sroom").socketsJoin("emitter-room");
      await until(async () => (await request(cs, "rooms"))[0].includes("emitter-room"), "cs to join emitter-room");
      emitter.in("sroom").socketsLeave("emitter-room");
      await until(async () => !(await request(cs, "rooms"))[0].includes("emitter-room"), "cs to leave emitter-room");
      assert.deepEqual(seenN, []); // cn is in none of the targets
      const gone = once(cs, "disconnect");
      emitter.in("sroom").disconnectSockets(true);
      await gone;
    } finally {
      await client.quit();
    }
  });

  test("disconnectSockets from the Node server closes a siolua client (and back)", async () => {
    const c2 = await connect(s.url, { auth: { name: "c2" } });
    await request(c2, "join", "kick");
    let gone = once(c2, "disconnect");
    await request(cn, "disconnectSockets", "kick");
    await gone;
    const c3 = await connect(n.url, { auth: { name: "c3" } });
    await request(c3, "join", "kick2");
    const c4 = await connect(s.url);
    gone = once(c3, "disconnect");
    await request(c4, "disconnectSockets", "kick2");
    await gone;
  });
});
