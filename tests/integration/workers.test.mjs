// --workers (issue 18): one server made of worker processes. The adapter's cases of two servers
// (redis.helpers.mjs clusterCases: broadcasts, rooms, fetchSockets, socketsJoin/Leave,
// disconnectSockets, serverSideEmit, broadcast acks) between a client of worker 0 and one of worker
// 1, over the workers' channel, no Redis; sessions reached through any connection (one keep-alive
// connection carrying requests of sessions held by both workers, and nginx reusing its upstream
// connections for every client); with --redis, each worker a node of the Redis cluster (the same
// cases); a worker killed under load (the other's clients untouched, the killed one's
// reconnect, the worker is back); SIGHUP reloads every worker; io.options{workers = 2}; what
// --workers refuses (TLS, --metrics-listen, an app that does not load): status 1, the reason logged.
// Which worker holds a session is in its id (the first two characters: its number in base64url).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { existsSync } from "node:fs";
import { REF, WAIT, closeAll, connect, once, request, startServer, until, watch } from "./helpers.mjs";
import { NGINX, startNginx } from "./nginx.helpers.mjs";
import { clusterCases, startRedis, stopAll, waitServers } from "./redis.helpers.mjs";

const skip = REF ? "--workers is siolua's own" : false;
const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const workerOf = (id) => B64.indexOf(id[0]) * 64 + B64.indexOf(id[1]);
const ENV = { ...process.env };
delete ENV.SIOLUA_TEST_REDIS; // apps/redis.lua without Redis: the workers' channel
delete ENV.SIOLUA_NODE_NAME; // its name is then its worker: "a", "b"

/** A client held by worker `w`: connects until the kernel gives one to it (it spreads connections
 * over the workers by their addresses); the others are closed. */
async function clientOn(url, w, opts) {
  for (let i = 0; i < 64; i++) {
    const s = await connect(url, opts);
    if (workerOf(s.io.engine.id) === w) return s;
    s.disconnect();
  }
  throw new Error(`no connection reached worker ${w} in 64 tries`);
}

/** A raw HTTP request on `agent`; resolves to { status, body, reused }. */
function get(url, { method = "GET", body, agent = false } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, agent, headers: body ? { "Content-Type": "text/plain" } : {} }, (res) => {
      let data = "";
      res.setEncoding("utf8");
      res.on("data", (d) => (data += d));
      res.on("end", () => resolve({ status: res.statusCode, body: data, reused: req.reusedSocket }));
    });
    req.on("error", reject);
    req.setTimeout(WAIT, () => req.destroy(new Error(`${method} ${url}: no answer`)));
    req.end(body);
  });
}

describe("--workers 2: one server to the app", { skip }, () => {
  let srv, ca, cb;
  before(async () => {
    srv = await startServer("redis", ["--workers", "2"], { env: ENV });
    ca = await clientOn(srv.url, 0, { auth: { name: "ca" } }); // polling, then upgraded
    cb = await clientOn(srv.url, 1, { auth: { name: "cb" }, transports: ["websocket"] });
    await request(cb, "join", "r1");
  });
  after(async () => {
    closeAll();
    await srv?.stop();
  });

  clusterCases(() => ({ ca, cb }));

  test("one keep-alive connection carries requests of sessions of both workers, each served by its own", async () => {
    const base = `${srv.url}/socket.io/?EIO=4&transport=polling`;
    const sids = new Map(); // worker -> sid, handshakes on fresh connections until both have one
    for (let i = 0; i < 64 && sids.size < 2; i++) {
      const { status, body } = await get(base);
      assert.equal(status, 200);
      const { sid } = JSON.parse(body.slice(1));
      if (!sids.has(workerOf(sid))) sids.set(workerOf(sid), sid);
    }
    assert.equal(sids.size, 2, "handshakes on both workers");
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 }); // one connection, reused
    try {
      let reused = 0;
      for (const [w, sid] of sids) {
        const url = `${base}&sid=${sid}`;
        const r1 = await get(url, { method: "POST", body: "40", agent });
        assert.deepEqual([r1.status, r1.body], [200, "ok"]);
        const r2 = await get(url, { agent });
        assert.match(r2.body, /^40\{"sid":"[^"]+"\}$/);
        reused += r1.reused + r2.reused;
        void w;
      }
      for (let round = 0; round < 3; round++) {
        for (const [w, sid] of sids) {
          const url = `${base}&sid=${sid}`;
          const r1 = await get(url, { method: "POST", body: `42${round}["whoami"]`, agent });
          assert.deepEqual([r1.status, r1.body], [200, "ok"]);
          const r2 = await get(url, { agent });
          assert.equal(r2.body, `43${round}[{"node":"${"ab"[w]}"}]`, `worker ${w} answers its session`);
          reused += r1.reused + r2.reused;
        }
      }
      assert.equal(reused, 4 + 12 - 1, "every request but the first went over the same connection");
    } finally {
      agent.destroy();
    }
  });

  test("behind nginx reusing its upstream connections for every client: each request reaches its session's worker",
    { skip: !existsSync(NGINX) && "nginx is not installed" }, async () => {
      const proxy = await startNginx("", [srv.port], { keepalive: 2 });
      try {
        const cs = [];
        for (let i = 0; i < 8; i++) // polling only, and two that upgrade to WebSocket through nginx
          cs.push(await connect(proxy.url, { auth: { name: `p${i}` }, ...(i < 6 ? { transports: ["polling"] } : {}) }));
        const workers = cs.map((c) => workerOf(c.io.engine.id));
        for (let round = 0; round < 4; round++)
          await Promise.all(cs.map(async (c, i) => assert.deepEqual(await request(c, "whoami"), [{ node: "ab"[workers[i]] }])));
        const got = Promise.all(cs.map((c) => once(c, "msg")));
        cs[0].emit("bcast", "through the proxy");
        assert.equal((await got).length, cs.length);
        await until(() => cs[6].io.engine.transport.name === "websocket", "the upgrade through nginx");
        for (const c of cs) c.disconnect();
        // (where nginx's connections land is the kernel's choice: a run with every session on one
        // worker proves less, but cannot fail wrongly)
        void workers;
      } finally {
        await proxy.stop();
      }
    });

  test("SIGHUP reloads every worker, each keeps its connections and its place in the server", async () => {
    const mark = srv.log().length;
    srv.proc.kill("SIGHUP");
    await until(() => (srv.log().slice(mark).match(/\[w\d\] siolua: reloaded/g) || []).length === 2, "both workers to reload");
    assert.equal(ca.connected && cb.connected, true);
    const got = Promise.all([once(ca, "msg"), once(cb, "msg")]);
    cb.emit("bcast", "after reload");
    assert.deepEqual(await got, [["after reload"], ["after reload"]]);
    assert.deepEqual(await request(ca, "count"), [2]);
  });
});

describe("--workers 2 --redis: each worker is a node of the Redis cluster", { skip }, () => {
  let redis, srv, ca, cb;
  before(async () => {
    redis = await startRedis();
    srv = await startServer("redis", ["--workers", "2", "--redis", redis.url], { env: ENV });
    await waitServers(redis.port, 2); // one subscriber per worker
    ca = await clientOn(srv.url, 0, { auth: { name: "ca" } });
    cb = await clientOn(srv.url, 1, { auth: { name: "cb" }, transports: ["websocket"] });
    await request(cb, "join", "r1");
  });
  after(() => stopAll([srv], redis));

  clusterCases(() => ({ ca, cb }));
});

describe("--workers 2: a worker killed under load", { skip }, () => {
  let srv;
  before(async () => {
    srv = await startServer("redis", ["--workers", "2"], { env: ENV });
  });
  after(async () => {
    closeAll();
    await srv?.stop();
  });

  test("the other worker's clients are untouched, the killed one's reconnect, the worker is back", async () => {
    // WebSocket clients: each holds one connection to its worker (a polling client's next request
    // may be on a new connection that the dying worker had accepted: see README)
    const opts = { transports: ["websocket"], reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 500 };
    const on0 = [], on1 = [];
    for (let i = 0; i < 3; i++) {
      on0.push(await clientOn(srv.url, 0, { ...opts, auth: { name: `w0-${i}` } }));
      on1.push(await clientOn(srv.url, 1, { ...opts, auth: { name: `w1-${i}` } }));
    }
    const all = [...on0, ...on1];
    const stats = new Map(all.map((s) => [s, { acks: 0, disconnects: 0, connects: 0 }]));
    for (const s of all) {
      s.on("disconnect", () => stats.get(s).disconnects++);
      s.on("connect", () => stats.get(s).connects++);
    }
    let running = true;
    const loads = all.map(async (s) => {
      while (running) {
        try {
          await s.timeout(WAIT).emitWithAck("rooms");
          stats.get(s).acks++;
        } catch {
          await new Promise((r) => setTimeout(r, 50)); // disconnected: the ack never comes
        }
      }
    });
    await until(() => all.every((s) => stats.get(s).acks >= 5), "load on every client");
    const pid = Number(srv.log().match(/\[w1\] siolua: worker 1 ready \(pid (\d+)\)/)[1]);
    const before0 = on0.map((s) => stats.get(s).acks);
    process.kill(pid, "SIGKILL");
    await srv.waitLog(/worker 1 \(pid \d+\) was killed by signal 9/);
    await until(() => on1.every((s) => stats.get(s).disconnects === 1 && s.connected), "worker 1's clients to reconnect");
    await srv.waitLog(/worker 1 is back/);
    const after1 = on1.map((s) => stats.get(s).acks);
    await until(() => on1.every((s, i) => stats.get(s).acks >= after1[i] + 5), "reconnected clients to be served");
    await until(() => on0.every((s, i) => stats.get(s).acks >= before0[i] + 20), "worker 0's clients served on");
    running = false;
    await Promise.all(loads);
    for (const s of on0) assert.deepEqual(stats.get(s), { ...stats.get(s), disconnects: 0, connects: 0 });
    // one server again: both workers count, a broadcast reaches everyone
    await until(async () => (await request(on0[0], "count"))[0] === 2, "worker 1 counted again");
    const got = Promise.all(all.map((s) => once(s, "msg")));
    on1[0].emit("bcast", "all of you");
    assert.equal((await got).length, all.length);
  });
});

describe("io.options{workers = 2}", { skip }, () => {
  test("the script's option starts the supervisor and its workers", async () => {
    const srv = await startServer("workers_options", [], { env: ENV });
    try {
      assert.match(srv.log(), /io.options\{workers = 2\}: starting again as their supervisor/);
      assert.match(srv.log(), /listening on http:\/\/127.0.0.1:\d+ \(2 workers\)/);
      const s = await connect(srv.url);
      assert.deepEqual(await request(s, "worker"), [workerOf(s.io.engine.id)]);
      s.disconnect();
    } finally {
      await srv.stop();
    }
  });
});

describe("--workers: what it refuses", { skip }, () => {
  const bin = process.env.SIOLUA_BIN || "./siolua";
  for (const [what, args, re] of [
    ["TLS", ["--tls-cert", "c.pem", "--tls-key", "k.pem"], /--workers cannot serve TLS itself/],
    ["--metrics-listen", ["--metrics-listen", "127.0.0.1:0"], /--workers cannot share --metrics-listen/],
    ["an app that does not load", [], /cannot load .*broken\.lua:1: syntax error/],
  ]) {
    test(`${what}: the workers say why, the supervisor stops them and exits 1`, async () => {
      let app = "tests/integration/apps/redis.lua", dir = null;
      if (what.startsWith("an app")) {
        dir = mkdtempSync(path.join(os.tmpdir(), "siolua-workers-"));
        app = path.join(dir, "broken.lua");
        writeFileSync(app, "this is not Lua\n");
      }
      const p = watch(bin, [app, "--port", "0", "--workers", "2", ...args], { env: ENV });
      assert.deepEqual(await p.ended(2 * WAIT, { code: 1 }), { code: 1, signal: null });
      assert.match(p.log(), re);
      assert.match(p.log(), /worker \d could not start \(exit status 1\): stopping/);
      assert.doesNotMatch(p.log(), /listening on/);
      if (dir) rmSync(dir, { recursive: true, force: true });
    });
  }
});
