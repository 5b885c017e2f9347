// The Redis adapter between siolua nodes (apps/redis.lua): broadcasts (io.emit, to/except, socket
// broadcast, local), fetchSockets, socketsJoin/Leave, disconnectSockets, serverSideEmit with acks,
// broadcast acks and the server count across 2 and 3 nodes; the wire format as the Node adapter
// writes it; Redis killed and restarted. Each describe has its own redis-server.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { REF, collect, connect, once, request, waitFor, watch, until, WAIT } from "./helpers.mjs";
import { clusterCases, startNode, startRedis, stopAll, uidOf, waitServers } from "./redis.helpers.mjs";

const require = createRequire(import.meta.url);
const skip = REF ? "the Redis adapter tests drive siolua nodes (redis-interop covers the Node side)" : false;

describe("redis adapter: two and three siolua nodes", { skip }, () => {
  let redis, a, b, c;
  let ca, cb;
  before(async () => {
    redis = await startRedis();
    // one node gets the URL from --redis, the other from io.options{adapter = {redis = ...}}
    a = await startNode(redis, { name: "a" });
    b = await startNode(redis, { name: "b", viaOptions: true });
    await waitServers(redis.port, 2);
    ca = await connect(a.url, { auth: { name: "ca" } });
    cb = await connect(b.url, { auth: { name: "cb" }, transports: ["websocket"] });
    await request(cb, "join", "r1");
  });
  after(() => stopAll([a, b, c], redis));

  clusterCases(() => ({ ca, cb }));

  test("a third node joins: counts, broadcasts, fetchSockets, serverSideEmit and acks span all three", async () => {
    c = await startNode(redis, { name: "c" });
    await waitServers(redis.port, 3);
    const cc = await connect(c.url, { auth: { name: "cc" } });
    cc.on("question", (ack) => ack("from cc"));
    assert.deepEqual(await request(cb, "count"), [3]);
    const got = Promise.all([ca, cb, cc].map((s) => once(s, "msg")));
    cc.emit("bcast", "three");
    assert.deepEqual(await got, [["three"], ["three"], ["three"]]);
    const [all] = await request(ca, "fetch", null);
    assert.deepEqual(all.map((s) => s.name).sort(), ["ca", "cb", "cc"]);
    assert.deepEqual(await request(cc, "sse", 9), [null, ["pong-9-a", "pong-9-b"]]);
    assert.deepEqual(await request(ca, "ackall", null), [null, ["from ca", "from cb", "from cc"]]);
    // disconnectSockets from c closes cb on b
    const gone = once(cb, "disconnect");
    await request(cc, "disconnectSockets", "r1");
    await gone;
  });

  test("namespaces have their own channels: /admin broadcasts cross, / clients do not get them", async () => {
    const xa = await connect(a.url + "/admin");
    const xb = await connect(b.url + "/admin");
    assert.deepEqual(await request(xa, "count"), [3]);
    const seenRoot = collect(ca, "amsg");
    const got = Promise.all([once(xa, "amsg"), once(xb, "amsg")]);
    xb.emit("bcast", "admins only");
    assert.deepEqual(await got, [["admins only"], ["admins only"]]);
    assert.deepEqual(seenRoot, []);
  });

  test("a hot reload (SIGHUP) keeps the node in the cluster: same connections, subscriptions, uid", async () => {
    const logged = uidOf(b);
    // the uid b's broadcasts carry on the wire (msgpack [uid, packet, opts]), before and after
    const { createClient } = require("redis");
    const msgpack = require("notepack.io");
    const sub = createClient({ url: redis.url });
    await sub.connect();
    const wire = [];
    await sub.pSubscribe("socket.io#/#*", (msg) => wire.push(msgpack.decode(msg)), true);
    const wireUid = async (x, tag) => {
      const got = waitFor(x, "msg", (m) => m === tag);
      x.emit("bcast", tag);
      await got;
      const found = await until(() => wire.find((m) => m[1]?.data?.[1] === tag), `"${tag}" on the wire`);
      return found[0];
    };
    try {
      const x0 = await connect(b.url);
      assert.equal(await wireUid(x0, "from b, before the reload"), logged);
      b.proc.kill("SIGHUP");
      await b.waitLog(/reloaded .*generation 2/, 10000);
      assert.deepEqual(await request(ca, "count"), [3]);
      const x1 = await connect(a.url);
      const x2 = await connect(b.url);
      let got = Promise.all([once(x1, "msg"), once(x2, "msg")]);
      x1.emit("bcast", "after reload, from a");
      assert.deepEqual(await got, [["after reload, from a"], ["after reload, from a"]]);
      got = Promise.all([once(x1, "msg"), once(x2, "msg")]);
      x2.emit("bcast", "after reload, from b");
      assert.deepEqual(await got, [["after reload, from b"], ["after reload, from b"]]);
      assert.deepEqual(await request(x1, "sse", 5), [null, ["pong-5-b", "pong-5-c"]]);
      // the same uid, on the wire, from the old connection and from a new one
      assert.equal(await wireUid(x0, "from b, after the reload"), logged);
      assert.equal(await wireUid(x2, "from b's new client"), logged);
      assert.match(logged, /^\w{6}$/);
      // one connection to Redis for the node's whole life
      assert.equal(b.log().match(/redis adapter: connecting/g).length, 1);
    } finally {
      await sub.quit();
    }
  });

  test("the messages are the Node adapter's: msgpack [uid, packet, {rooms, except, flags}] on socket.io#/#[room#]", async () => {
    const { createClient } = require("redis");
    const msgpack = require("notepack.io");
    const sub = createClient({ url: redis.url });
    await sub.connect();
    const got = [];
    await sub.pSubscribe("socket.io#/#*", (msg, channel) => got.push([channel, msgpack.decode(msg)]), true);
    try {
      const x = await connect(a.url);
      await request(x, "join", "wire");
      x.emit("bcast", 1, Buffer.from([7]));
      x.emit("room", "wire", "w");
      x.emit("volatile", "v");
      await until(() => got.length >= 3, "three published messages");
      const [[ch1, m1], [ch2, m2], [ch3, m3]] = got.map(([ch, m]) => [ch.toString(), m]);
      assert.equal(ch1, "socket.io#/#");
      assert.equal(typeof m1[0], "string");
      assert.equal(m1[0].length, 6);
      assert.deepEqual(m1.slice(1), [{ type: 2, data: ["msg", 1, Buffer.from([7])], nsp: "/" }, { rooms: [], except: [], flags: {} }]);
      assert.equal(ch2, "socket.io#/#wire#");
      assert.deepEqual(m2[2], { rooms: ["wire"], except: [], flags: {} });
      assert.equal(ch3, "socket.io#/#");
      assert.deepEqual(m3[2].flags, { volatile: true });
    } finally {
      await sub.quit();
    }
  });
});

describe("redis adapter: Redis killed and restarted", { skip }, () => {
  let redis, a, b;
  before(async () => {
    redis = await startRedis();
    a = await startNode(redis, { name: "a" });
    b = await startNode(redis, { name: "b" });
    await waitServers(redis.port, 2);
  });
  after(() => stopAll([a, b], redis));

  test("local traffic keeps flowing, cluster traffic resumes after the reconnect, the log says so", async () => {
    const ca = await connect(a.url, { auth: { name: "ca" } });
    const cb = await connect(b.url, { auth: { name: "cb" } });
    let crossed = Promise.all([once(ca, "msg"), once(cb, "msg")]);
    ca.emit("bcast", "before");
    await crossed;

    const port = redis.port;
    await redis.kill();
    await Promise.all([a.waitLog(/redis adapter: \w+ connection to .* lost/), b.waitLog(/redis adapter: \w+ connection to .* lost/)]);
    // local traffic: a's own clients still get a's broadcasts; requests answer with what a has
    const seenB = collect(cb, "msg");
    const local = once(ca, "msg");
    ca.emit("bcast", "during");
    assert.deepEqual(await local, ["during"]);
    assert.deepEqual(await request(ca, "count"), [1]);
    const [all] = await request(ca, "fetch", null);
    assert.deepEqual(all.map((s) => s.id), [ca.id]);
    assert.deepEqual(await request(ca, "sse", 1), [null, []]);
    await a.waitLog(/redis adapter: cannot connect to .*retrying in \d+ ms/, WAIT);

    redis = await startRedis(port);
    // at their next retry (the backoff has not reached its 5 s cap yet)
    await Promise.all([a.waitLog(/redis adapter: reconnected to .* after [\d.]+ s/, 2 * WAIT), b.waitLog(/redis adapter: reconnected/, 2 * WAIT)]);
    await waitServers(redis.port, 2);
    assert.deepEqual(seenB, []);
    crossed = Promise.all([once(ca, "msg"), once(cb, "msg")]);
    ca.emit("bcast", "after");
    assert.deepEqual(await crossed, [["after"], ["after"]]);
    assert.deepEqual(await request(cb, "count"), [2]);
    assert.ok(a.exited() === null && b.exited() === null, "both nodes still running");
  });
});

describe("redis adapter: configuration", { skip }, () => {
  test("a bad --redis URL is refused at start-up: usage error, status 2", async () => {
    const p = watch(process.env.SIOLUA_BIN || "./siolua", ["tests/integration/apps/redis.lua", "--port", "0", "--redis", "http://x"]);
    assert.deepEqual(await p.ended(10000, { code: 2 }), { code: 2, signal: null });
    assert.match(p.log(), /invalid value for --redis: http:\/\/x/);
  });
});
