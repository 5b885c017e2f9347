// The Redis adapter's README claims that need a cluster set up on purpose: a node started while
// Redis is unreachable (it serves its own clients, retries with a backoff of 100 ms doubling up to
// 5 s, joins once Redis is there); fetchSockets' timeout error when a node never answers; and
// publishOnSpecificResponseChannel, on siolua nodes and on a Node socket.io peer, each way.
// apps/redis.lua and its Node twin redis_peer.mjs (requestsTimeout 1500 ms in both).
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { REF, WAIT, connect, once, request, startServer, until } from "./helpers.mjs";
import { freePort, startNode, startPeer, startRedis, stopAll, uidOf, waitServers } from "./redis.helpers.mjs";

const require = createRequire(import.meta.url);
const { createClient } = require("redis");
const msgpack = require("notepack.io");
const skip = REF ? "the Redis adapter tests drive siolua nodes (redis-interop covers the Node side)" : false;

describe("redis adapter: a node started while Redis is unreachable", { skip }, () => {
  let srv, redis, b;
  after(() => stopAll([srv, b], redis));

  test("it serves its own clients, retries 100, 200, 400 ... ms up to 5 s, and joins once Redis is up", async () => {
    const port = await freePort(); // nothing listens there yet
    srv = await startServer("redis", ["--redis", `redis://127.0.0.1:${port}`], {
      env: { ...process.env, SIOLUA_NODE_NAME: "early" },
    });
    assert.match(srv.log(), new RegExp(`redis adapter: connecting to 127\\.0\\.0\\.1:${port} \\(key "socket\\.io", node uid \\w{6}\\)`));
    // meanwhile, a node of its own: clients connect, broadcasts and requests answer for this node
    const c = await connect(srv.url, { auth: { name: "c" } });
    const got = once(c, "msg");
    c.emit("bcast", "alone");
    assert.deepEqual(await got, ["alone"]);
    assert.deepEqual(await request(c, "count"), [1]);
    assert.deepEqual((await request(c, "fetch", null))[0].map((s) => s.id), [c.id]);
    assert.deepEqual(await request(c, "sse", 1), [null, []]);

    // one line per round of retries (the two connections share one timer); 3200 doubled is capped
    await srv.waitLog(/retrying in 5000 ms/, 3 * WAIT);
    const rounds = [...srv.log().matchAll(/\[warn\] siolua: redis adapter: cannot connect to 127\.0\.0\.1:(\d+) \(([^)]*)\); retrying in (\d+) ms/g)];
    assert.deepEqual(rounds.slice(0, 7).map((m) => Number(m[3])), [100, 200, 400, 800, 1600, 3200, 5000]);
    for (const m of rounds) assert.deepEqual([Number(m[1]), m[2]], [port, "Connection refused"]);
    assert.equal(srv.exited(), null);

    // Redis comes: at its next retry the node is ready (the first time: "ready", not "reconnected")
    redis = await startRedis(port);
    await srv.waitLog(/redis adapter: ready \(127\.0\.0\.1:\d+, node uid \w+, \d+ subscriptions\)/, 2 * WAIT);
    assert.doesNotMatch(srv.log(), /reconnected/);
    b = await startNode(redis, { name: "b" });
    await waitServers(redis.port, 2);
    assert.deepEqual(await request(c, "count"), [2]);
    const cb = await connect(b.url, { auth: { name: "cb" } });
    const crossed = Promise.all([once(c, "msg"), once(cb, "msg")]);
    cb.emit("bcast", "together");
    assert.deepEqual(await crossed, [["together"], ["together"]]);
    assert.deepEqual((await request(c, "fetch", null))[0].map((s) => s.name).sort(), ["c", "cb"]);
  });
});

describe("redis adapter: fetchSockets when a node does not answer", { skip }, () => {
  let redis, a, fake;
  after(async () => {
    await fake?.quit();
    await stopAll([a], redis);
  });

  test("it raises \"timeout reached while waiting for fetchSockets response\" after requestsTimeout", async () => {
    redis = await startRedis();
    a = await startNode(redis, { name: "a" });
    // a silent node: subscribed to the request channel (so the server count includes it), mute
    fake = createClient({ url: redis.url });
    await fake.connect();
    const requests = [];
    await fake.subscribe("socket.io-request#/#", (msg) => requests.push(msg), true);
    await waitServers(redis.port, 2);
    const ca = await connect(a.url, { auth: { name: "ca" } });
    assert.deepEqual(await request(ca, "count"), [2]);

    const t0 = Date.now();
    assert.deepEqual(await request(ca, "fetch-pcall"), [false, "timeout reached while waiting for fetchSockets response"]);
    const elapsed = Date.now() - t0;
    assert.ok(elapsed >= 1400, `the error came after ${elapsed} ms, requestsTimeout is 1500 ms`);
    // the silent node did get the request: the Node adapter's REMOTE_FETCH (5), from a
    const fetches = requests.map((m) => JSON.parse(m.toString())).filter((r) => r.type === 5);
    assert.equal(fetches.length, 1);
    assert.equal(fetches[0].uid, uidOf(a));
    assert.deepEqual(fetches[0].opts, { rooms: [], except: [] });

    // the node goes on: without the silent one, fetchSockets answers with a's sockets at once
    await fake.unsubscribe("socket.io-request#/#");
    await until(async () => (await request(ca, "count"))[0] === 1, "the silent node to be gone");
    assert.deepEqual(await request(ca, "fetch-pcall"), [true, 1]);
  });
});

describe("redis adapter: publishOnSpecificResponseChannel", { skip }, () => {
  let redis, a, b, n, sub;
  after(async () => {
    await sub?.quit();
    await stopAll([a, b, n], redis);
  });

  test("responses go to the requester's own channel when the responder has it on; every node gets them", async () => {
    redis = await startRedis();
    a = await startNode(redis, { name: "a" }); // off (the default)
    b = await startNode(redis, { name: "b", env: { SIOLUA_TEST_SPECIFIC: "1" } });
    n = await startPeer(redis, "node", ["--specific"]); // the Node adapter, on
    await waitServers(redis.port, 3);
    const [ca, cb, cn] = [[a, "ca"], [b, "cb"], [n, "cn"]].map(([s, name]) => connect(s.url, { auth: { name } }));
    const clients = { a: await ca, b: await cb, node: await cn };

    // every request and response, as the wire carries them
    sub = createClient({ url: redis.url });
    await sub.connect();
    const wire = [];
    const decode = (buf) => (buf[0] === 0x7b ? JSON.parse(buf.toString()) : msgpack.decode(buf));
    await sub.pSubscribe(["socket.io-request#*", "socket.io-response#*"], (msg, channel) => wire.push([channel.toString(), decode(msg)]), true);

    const names = ["ca", "cb", "cn"];
    const ids = Object.fromEntries(Object.entries(clients).map(([k, c]) => [c.id, k]));
    for (const [from, c] of Object.entries(clients)) {
      const mark = wire.length;
      const [all] = await request(c, "fetch", null);
      assert.deepEqual(all.map((s) => s.name).sort(), names, `fetchSockets from ${from}`);
      // the request, with the requester's uid; then one response from each other node
      const req = wire.slice(mark).find(([ch, m]) => ch === "socket.io-request#/#" && m.type === 5);
      assert.ok(req, `the request of ${from}`);
      const uid = req[1].uid;
      if (from !== "node") assert.equal(uid, uidOf(from === "a" ? a : b));
      const responses = await until(() => {
        const r = wire.slice(mark).filter(([ch, m]) => ch.startsWith("socket.io-response#") && m.requestId === req[1].requestId);
        return r.length === 2 && r;
      }, `the two responses to ${from}`);
      for (const [channel, m] of responses) {
        const responder = ids[m.sockets[0].id];
        const specific = responder !== "a"; // b and the Node peer have the option on
        assert.equal(channel, specific ? `socket.io-response#/#${uid}#` : "socket.io-response#/#", `${responder}'s response to ${from}`);
      }
    }
  });
});
