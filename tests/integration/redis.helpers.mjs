// Helpers of the Redis adapter tests: a private redis-server on a free loopback port (no
// persistence, its own folder), the Node peer (redis_peer.mjs), and siolua nodes on one Redis.
// Every process started here is stopped by PID at the end of its test file; their PIDs also go to
// SIOLUA_PIDFILE, and their command lines contain "siolua", so run.sh kills any left over.
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import assert from "node:assert/strict";
import { ROOT, WAIT, closeAll, collect, once, request, startServer, until, waitFor, watch, withTimeout } from "./helpers.mjs";

/** A free TCP port on 127.0.0.1 (bound then released). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** watch() (helpers.mjs) with `ready`: a promise of the first match of re in its output. */
function spawnWatched(cmd, args, re, what) {
  const p = watch(cmd, args, { what });
  return Object.assign(p, { ready: p.waitLog(re, 2 * WAIT) });
}

/**
 * Starts redis-server on a free port (or `port`, to restart one on the same address).
 * Resolves to { port, url, stop() } once it accepts connections.
 */
export async function startRedis(port) {
  port = port || (await freePort());
  const dir = mkdtempSync(path.join(os.tmpdir(), "siolua-redis-"));
  const r = spawnWatched(
    "redis-server",
    [
      "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir,
      // redis rewrites its command line: keep "siolua" in it for run.sh's clean-up
      "--proc-title-template", "{title} {listen-addr} siolua-test",
    ],
    /Ready to accept connections/,
    "redis-server",
  );
  await r.ready;
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    log: r.log,
    async stop() {
      await r.stop();
      rmSync(dir, { recursive: true, force: true });
    },
    /** SIGKILL: Redis gone without a goodbye. */
    async kill() {
      r.proc.kill("SIGKILL");
      await withTimeout(new Promise((res) => (r.exited() ? res() : r.proc.once("exit", res))), WAIT, "redis exit");
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A siolua node on redis (by --redis, or through io.options with `viaOptions`), ready in the
 * cluster; `env`: more environment for the app (apps/redis.lua reads SIOLUA_TEST_*).
 */
export async function startNode(redis, { name = "siolua", viaOptions = false, app = "redis", env: more = {} } = {}) {
  const env = { ...process.env, ...more, SIOLUA_NODE_NAME: name };
  if (viaOptions) env.SIOLUA_TEST_REDIS = redis.url;
  else delete env.SIOLUA_TEST_REDIS;
  const srv = await startServer(app, viaOptions ? [] : ["--redis", redis.url], { env });
  await srv.waitLog(/redis adapter: ready/);
  srv.name = name;
  return srv;
}

/** The Node peer (socket.io + @socket.io/redis-adapter) on redis; `flags`: more of its flags. */
export async function startPeer(redis, name = "node", flags = []) {
  const p = spawnWatched(
    process.execPath,
    [path.join(ROOT, "tests/integration/redis_peer.mjs"), "--siolua-peer", "--port", "0", "--redis", redis.url, "--name", name, ...flags],
    /siolua listening on http:\/\/127\.0\.0\.1:(\d+)/,
    "node peer",
  );
  const m = await p.ready;
  return { name, port: Number(m[1]), url: `http://127.0.0.1:${m[1]}`, log: p.log, stop: p.stop };
}

/** Resolves once `n` servers are subscribed to the main namespace's request channel. */
export async function waitServers(redisPort, n, ms = WAIT) {
  const { createClient } = await import("redis");
  const c = createClient({ url: `redis://127.0.0.1:${redisPort}` });
  await c.connect();
  try {
    const t0 = Date.now();
    for (;;) {
      const r = await c.sendCommand(["PUBSUB", "NUMSUB", "socket.io-request#/#"]);
      if (Number(r[1]) >= n) return;
      if (Date.now() - t0 > ms) throw new Error(`only ${r[1]} servers subscribed, expected ${n}`);
      await new Promise((res) => setTimeout(res, 20));
    }
  } finally {
    await c.quit();
  }
}

/**
 * Resolves once each client got both "end-a" and "end-b" ("msg"): a sentinel from each sending
 * client. Redis delivers one publisher's messages in order and a node handles one client's packets
 * in order, so whatever a sender emitted before its sentinel has reached every client by then.
 */
export function bothEnds(clients, tags = ["end-a", "end-b"]) {
  return Promise.all(clients.flatMap((c) => tags.map((t) => waitFor(c, "msg", (m) => m === t))));
}

/**
 * Closes the clients and stops the servers (siolua nodes, Node peers), then redis (if given): all
 * of them, whatever fails; the first failure is thrown afterwards.
 */
export async function stopAll(servers, redis) {
  closeAll();
  const errors = [];
  for (const s of servers) {
    try {
      await s?.stop();
    } catch (e) {
      errors.push(e);
    }
  }
  await redis?.stop();
  if (errors.length) throw errors[0];
}

/** The uid a siolua node logged when it connected to Redis. */
export const uidOf = (srv) => srv.log().match(/redis adapter: connecting to .* node uid (\w+)\)/)[1];

/**
 * The cases of two servers sharing an adapter (apps/redis.lua): ca is a client of the server named
 * "a", cb one of "b", which joined room r1; get() gives { ca, cb } once the caller's before() made
 * them. Two siolua nodes on one Redis (redis.test.mjs) and two workers of one --workers 2 server
 * (workers.test.mjs, over the workers' channel) run the same cases.
 */
export function clusterCases(get) {
  test("io.emit and to(room) reach the other node's clients, values and binaries intact", async () => {
    const { ca, cb } = get();
    const args = [1, "two", Buffer.from([1, 2, 3]), { k: [true, null], f: 1.5, nested: { bin: Buffer.from("x") } }];
    const got = Promise.all([once(ca, "msg"), once(cb, "msg")]);
    ca.emit("bcast", ...args);
    const [ga, gb] = await got;
    assert.deepEqual(ga, args);
    assert.deepEqual(gb, args);

    const seenA = collect(ca, "msg");
    const toRoom = once(cb, "msg");
    ca.emit("room", "r1", "to r1");
    assert.deepEqual(await toRoom, ["to r1"]);
    // a sentinel after it: Redis keeps the order, so anything ca would have got came before
    const end = Promise.all([once(ca, "msg"), once(cb, "msg")]);
    ca.emit("bcast", "end");
    await end;
    assert.deepEqual(seenA, [["end"]]);
    ca.off("msg");
  });

  test("except, socket.broadcast, local and two rooms follow the reference's semantics across nodes", async () => {
    const { ca, cb } = get();
    const seenA = collect(ca, "msg");
    const seenB = collect(cb, "msg");
    await request(ca, "join", "r2");
    const ended = bothEnds([ca, cb]);
    ca.emit("except", "r1", "not r1");       // ca (not in r1) only
    ca.emit("broadcast", "not the sender"); // cb only
    ca.emit("local", "only a's node");      // ca only
    cb.emit("rooms2", "r1", "r2", "r1 or r2"); // both, once each
    ca.emit("bcast", "end-a");
    cb.emit("bcast", "end-b");
    await ended;
    assert.deepEqual(seenA.map((x) => x[0]).sort(), ["end-a", "end-b", "not r1", "only a's node", "r1 or r2"].sort());
    assert.deepEqual(seenB.map((x) => x[0]).sort(), ["end-a", "end-b", "not the sender", "r1 or r2"].sort());
    await request(ca, "leave", "r2");
    ca.off("msg");
    cb.off("msg");
  });

  test("fetchSockets and serverCount see every node's sockets, with rooms and data", async () => {
    const { ca, cb } = get();
    const [count] = await request(ca, "count");
    assert.equal(count, 2);
    const [all] = await request(cb, "fetch", null);
    const byId = Object.fromEntries(all.map((s) => [s.id, s]));
    assert.equal(all.length, 2);
    assert.deepEqual(byId[ca.id], { id: ca.id, remote: true, rooms: [ca.id], name: "ca" });
    assert.deepEqual(byId[cb.id], { id: cb.id, remote: false, rooms: [cb.id, "r1"].sort(), name: "cb" });
    const [inR1] = await request(ca, "fetch", "r1");
    assert.deepEqual(inR1.map((s) => [s.id, s.remote]), [[cb.id, true]]);
  });

  test("socketsJoin/Leave, a remote socket's emit and join, and disconnectSockets act on the other node", async () => {
    const { ca, cb } = get();
    await request(ca, "socketsJoin", null, "everyone");
    await until(async () => (await request(cb, "rooms"))[0].includes("everyone"), "cb to join everyone");
    assert.ok((await request(ca, "rooms"))[0].includes("everyone"));
    await request(ca, "socketsLeave", "r1", "everyone");
    await until(async () => !(await request(cb, "rooms"))[0].includes("everyone"), "cb to leave everyone");

    const direct = once(cb, "msg");
    const [found] = await request(ca, "remoteEmit", cb.id);
    assert.equal(found, true);
    assert.deepEqual(await direct, ["direct from a"]);
    await until(async () => (await request(cb, "rooms"))[0].includes("picked"), "cb to join picked");
    // the same with s:emit, s:join, s:leave on the remote socket
    const colon = once(cb, "msg");
    assert.deepEqual(await request(ca, "remoteEmitColon", cb.id), [true]);
    assert.deepEqual(await colon, ["direct from a"]);
    await until(async () => {
      const [rooms] = await request(cb, "rooms");
      return rooms.includes("picked-colon") && !rooms.includes("picked");
    }, "cb to join picked-colon and leave picked");
  });

  test("serverSideEmit reaches the other nodes' listeners, acks come back", async () => {
    const { ca, cb } = get();
    assert.deepEqual(await request(ca, "sse", 7), [null, ["pong-7-b"]]);
    assert.deepEqual(await request(cb, "ssewithack", 8), [null, ["pong-8-a"]]);
    const seenA = collect(ca, "noted");
    const noted = once(cb, "noted");
    ca.emit("note", "hello");
    assert.deepEqual(await noted, ["hello", "b"]);
    // b answers with a note of its own, published after a's: had a taken its own "hello" (from its
    // subscription or at once), ca would have got it before this one
    const back = waitFor(ca, "noted", (x) => x === "back");
    cb.emit("note", "back");
    await back;
    assert.deepEqual(seenA, [["back", "a"]]); // never the sender's own server
  });

  test("broadcast with an ack collects one reply per client of every node", async () => {
    const { ca, cb } = get();
    ca.on("question", (ack) => ack("from ca"));
    cb.on("question", (ack) => ack("from cb"));
    assert.deepEqual(await request(ca, "ackall", null), [null, ["from ca", "from cb"]]);
    assert.deepEqual(await request(cb, "ackall", "r1"), [null, ["from cb"]]);
  });
}
