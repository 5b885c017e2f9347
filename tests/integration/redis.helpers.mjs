// Helpers of the Redis adapter tests: a private redis-server on a free loopback port (no
// persistence, its own folder), the Node peer (redis_peer.mjs), and siolua nodes on one Redis.
// Every process started here is stopped by PID at the end of its test file; their PIDs also go to
// SIOLUA_PIDFILE, and their command lines contain "siolua", so run.sh kills any left over.
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { ROOT, WAIT, closeAll, startServer, waitFor, watch, withTimeout } from "./helpers.mjs";

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
