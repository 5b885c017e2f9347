// examples/history/app.lua with real clients: the token check through siolua.fetch against the
// example's own auth endpoint (missing, invalid, valid, the auth service down), the last 50
// messages sent to whoever joins, in order, kept across a restart (SQLite); then the same app on
// PostgreSQL with presence in Redis (both started here).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { io as ioClient } from "socket.io-client";
import { REF, closeAll, connect, once } from "./helpers.mjs";
import { HAVE_PG, startPostgres, startWithEnv, until } from "./hio.helpers.mjs";
import { freePort, startRedis } from "./redis.helpers.mjs";

const APP = "examples/history/app.lua";
const skip = REF ? "the example runs on siolua" : false;

/** Starts the example on a port of its own, its auth URL pointing at itself. */
async function startExample(env) {
  const port = await freePort();
  const srv = await startWithEnv(APP, { HISTORY_AUTH_URL: `http://127.0.0.1:${port}/auth/check`, ...env }, ["--port", String(port)]);
  return srv;
}

/** Connects with a token; resolves to { socket, history } once the history came (the listener is
 * there before the connection: the history may come in the same read as the CONNECT answer). */
const joined = new Set();
async function join(url, token) {
  const socket = ioClient(url, { forceNew: true, reconnection: false, auth: { token }, transports: ["websocket"] });
  joined.add(socket);
  const history = once(socket, "history", 10000);
  await once(socket, "connect", 10000);
  return { socket, history: (await history)[0] };
}
function leaveAll() {
  closeAll();
  for (const s of joined) s.disconnect();
  joined.clear();
}

async function refused(url, auth) {
  try {
    await connect(url, { auth, transports: ["websocket"] });
  } catch (err) {
    return err.message;
  }
  throw new Error("the connection was accepted");
}

describe("examples/history on SQLite", { skip }, () => {
  let dir, srv;
  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "siolua-history-"));
    srv = await startExample({ HISTORY_DB: path.join(dir, "chat.db") });
  });
  after(async () => {
    leaveAll();
    await srv?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("the auth endpoint refuses a missing or unknown token; a known one joins", async () => {
    assert.equal(await refused(srv.url, {}), "missing token");
    assert.equal(await refused(srv.url, { token: "mallory" }), "invalid token");
    const r = await fetch(`${srv.url}/auth/check`, { method: "POST", body: JSON.stringify({ token: "bob-token" }) });
    assert.deepEqual([r.status, await r.json()], [200, { user: "bob" }]);
    const { socket, history } = await join(srv.url, "alice-token");
    assert.deepEqual(history, []);
    socket.disconnect();
  });

  test("60 messages: whoever joins gets the last 50, in order; live messages reach everyone", async () => {
    const { socket: alice } = await join(srv.url, "alice-token");
    const presence = once(alice, "presence");
    for (let i = 1; i <= 60; i++) {
      const ack = await alice.timeout(5000).emitWithAck("chat message", `message ${i}`);
      assert.equal(ack.id, i);
    }
    const { socket: bob, history } = await join(srv.url, "bob-token");
    assert.deepEqual((await presence)[0], ["alice", "bob"]);
    assert.equal(history.length, 50);
    assert.deepEqual(history.map((m) => m.text), Array.from({ length: 50 }, (_, i) => `message ${i + 11}`));
    assert.deepEqual(Object.keys(history[0]), ["id", "author", "text", "ts"]);
    assert.equal(history[0].author, "alice");
    const got = once(alice, "chat message");
    bob.emit("chat message", "hi alice");
    const [m] = await got;
    assert.deepEqual([m.id, m.author, m.text], [61, "bob", "hi alice"]);
    const bad = await bob.timeout(5000).emitWithAck("chat message", "");
    assert.deepEqual(bad, { error: "a message is 1 to 2000 bytes of text" });
    leaveAll();
  });

  test("the history survives a restart (the SQLite file)", async () => {
    await srv.stop();
    srv = await startExample({ HISTORY_DB: path.join(dir, "chat.db") });
    const { history } = await join(srv.url, "bob-token");
    assert.equal(history.length, 50);
    assert.equal(history.at(-1).text, "hi alice");
    leaveAll();
  });

  test("the auth service down: joining is refused with a reason, the server goes on", async () => {
    const down = await startWithEnv(APP, { HISTORY_DB: path.join(dir, "other.db"), HISTORY_AUTH_URL: "http://127.0.0.1:1/auth/check" });
    try {
      assert.equal(await refused(down.url, { token: "alice-token" }), "auth service unavailable");
      await down.waitLog(/auth service unreachable: siolua\.fetch: Failed to connect to 127\.0\.0\.1 port 1/);
    } finally {
      await down.stop();
    }
  });
});

describe("examples/history on PostgreSQL with presence in Redis", { skip: skip || (!HAVE_PG && "PostgreSQL is not installed") }, () => {
  let pg, redis, srv, node;
  before(async () => {
    [pg, redis] = await Promise.all([startPostgres(), startRedis()]);
    srv = await startExample({ HISTORY_PG: pg.conninfo, HISTORY_REDIS: redis.url });
    const { createClient } = await import("redis");
    node = createClient({ url: redis.url });
    await node.connect();
  });
  after(async () => {
    leaveAll();
    await node?.quit().catch(() => {});
    await srv?.stop();
    await redis?.stop();
    await pg?.destroy();
  });

  test("two first users at once make the schema once; messages are rows in PostgreSQL", async () => {
    const [a, b] = await Promise.all([join(srv.url, "alice-token"), join(srv.url, "bob-token")]);
    assert.deepEqual([a.history, b.history], [[], []]);
    for (let i = 1; i <= 55; i++) await a.socket.timeout(5000).emitWithAck("chat message", `pg ${i}`);
    assert.equal(pg.psql("SELECT count(*) FROM messages"), "55");
    const c = await join(srv.url, "bob-token");
    assert.deepEqual(c.history.map((m) => m.text), Array.from({ length: 50 }, (_, i) => `pg ${i + 6}`));
    leaveAll();
  });

  test("presence is a Redis hash: a second tab counts once, leaving removes the user", async () => {
    await until(async () => Object.keys(await node.hGetAll("history:online")).length === 0, "an empty presence");
    const a1 = await join(srv.url, "alice-token");
    const a2 = await join(srv.url, "alice-token");
    const b = await join(srv.url, "bob-token");
    assert.deepEqual({ ...(await node.hGetAll("history:online")) }, { alice: "2", bob: "1" });
    const seen = once(b.socket, "presence");
    a1.socket.disconnect();
    await until(async () => (await node.hGet("history:online", "alice")) === "1", "alice's count to drop");
    assert.deepEqual((await seen)[0], ["alice", "bob"]);
    a2.socket.disconnect();
    await until(async () => (await node.hGet("history:online", "alice")) == null, "alice to leave");
    leaveAll();
  });
});
