// Handlers that talk to the world (issue 17), against real services started here: siolua.redis
// (replies compared with node-redis's on the same commands, pipelines, pub/sub, Redis stopped and
// restarted, a timeout), siolua.sqlite (values against Python's sqlite3 on the same file, errors,
// an interrupted statement, the order of writes), siolua.fetch (a Node HTTP and HTTPS server: a CA
// made with the openssl CLI, redirects, caps, timeouts, refused connections) and siolua.route;
// waiting handlers do not hold others back, and waiting costs no handler budget. App:
// apps/hio.lua.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import os from "node:os";
import path from "node:path";
import zlib from "node:zlib";
import { REF, closeAll, connect, once, startServer } from "./helpers.mjs";
import { call, startWithEnv, until } from "./hio.helpers.mjs";
import { startRedis } from "./redis.helpers.mjs";

const skip = REF ? "siolua.redis, siolua.sqlite, siolua.fetch and siolua.route are siolua's own" : false;

/** A small PRNG (mulberry32) for the generated inputs; SEED=n replays a run. */
const SEED = Number(process.env.SEED || Date.now() % 100000);
function rng(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// the libraries are linked, but an app that uses none of them gets none of their threads or connections
test("nothing exists before it is used: an app that calls none of them has one thread and only its clients' sockets", { skip }, async () => {
  const srv = await startServer("main", ["--no-watch"]);
  try {
    const sock = await connect(srv.url, { transports: ["websocket"] });
    const pid = srv.proc.pid;
    assert.equal(readdirSync(`/proc/${pid}/task`).length, 1, "threads of siolua");
    const inodes = readdirSync(`/proc/${pid}/fd`)
      .map((fd) => { try { return readlinkSync(`/proc/${pid}/fd/${fd}`); } catch { return ""; } })
      .map((l) => /^socket:\[(\d+)\]$/.exec(l)?.[1]).filter(Boolean);
    const tcp = ["tcp", "tcp6"].flatMap((f) => readFileSync(`/proc/net/${f}`, "utf8").trim().split("\n").slice(1))
      .map((l) => l.trim().split(/\s+/)).filter((c) => inodes.includes(c[9]));
    // the listening socket (state 0A) and the one client's connection: no Redis, PostgreSQL or HTTP peer
    assert.deepEqual(tcp.map((c) => c[3]).sort(), ["01", "0A"], JSON.stringify(tcp));
    sock.close();
  } finally {
    await srv.stop();
  }
});

describe("siolua.redis", { skip }, () => {
  let redis, srv, sock, node;
  before(async () => {
    redis = await startRedis();
    // database 3 of the URL: SELECT is sent first
    srv = await startWithEnv("hio", { HIO_REDIS: `${redis.url}/3`, HIO_TIMEOUT: "4000" });
    sock = await connect(srv.url, { transports: ["websocket"] });
    const { createClient } = await import("redis");
    node = createClient({ url: `${redis.url}/4` });
    await node.connect();
    await until(async () => call(sock, "redis_connected"), "the client to connect");
  });
  after(async () => {
    closeAll();
    await node?.quit().catch(() => {});
    await srv?.stop();
    await redis?.stop();
  });

  test(`replies and errors are node-redis's, command for command (generated, SEED=${SEED})`, async () => {
    const r = rng(SEED);
    const pick = (a) => a[Math.floor(r() * a.length)];
    const word = () => pick(["a", "b", "", "é", "x y", "12", "-3", "3.5", "\u{1F600}", "k:1"]);
    const key = () => pick(["k1", "k2", "l1", "h1", "s1", "z1", "n1"]);
    const gens = [
      () => ["SET", key(), word()], () => ["GET", key()], () => ["INCRBY", key(), String(Math.floor(r() * 100) - 50)],
      () => ["APPEND", key(), word()], () => ["STRLEN", key()], () => ["RPUSH", key(), word(), word()],
      () => ["LRANGE", key(), "0", "-1"], () => ["LPOP", key()], () => ["HSET", key(), word(), word()],
      () => ["HGETALL", key()], () => ["HGET", key(), word()], () => ["SADD", key(), word()], () => ["SCARD", key()],
      () => ["ZADD", key(), String(Math.floor(r() * 10)), word()], () => ["ZRANGE", key(), "0", "-1", "WITHSCORES"],
      () => ["DEL", key()], () => ["EXISTS", key(), key()], () => ["MGET", key(), key(), key()], () => ["TYPE", key()],
      () => ["INCRBYFLOAT", key(), "1.5"], () => ["NOSUCH", key()], () => ["GETRANGE", key(), "0", "1"],
    ];
    await call(sock, "redis", ["FLUSHDB"]);
    await node.sendCommand(["FLUSHDB"]);
    for (let i = 0; i < 300; i++) {
      const cmd = pick(gens)();
      const got = await call(sock, "redis", cmd);
      let want;
      try {
        want = { ok: true, res: await node.sendCommand(cmd) };
      } catch (e) {
        want = { ok: false, res: e.message };
      }
      if (want.ok && want.res === null) delete want.res; // a top-level nil is nil in Lua
      assert.deepEqual(got, want, `command ${i}: ${JSON.stringify(cmd)} (SEED=${SEED})`);
    }
    // SELECT 3 was sent: node-redis on db 4 did not see siolua's keys, db 3 has them
    const c3 = node.duplicate({ database: 3 });
    await c3.connect();
    assert.ok(Number(await c3.sendCommand(["DBSIZE"])) > 0);
    await c3.quit();
  });

  test("pipelines and transactions: one wait, replies in order, failures reported as node-redis does", async () => {
    const ok = await call(sock, "redis_batch", [["SET", "p", "1"], ["INCR", "p"], ["GET", "p"]], false);
    assert.deepEqual(ok, { ok: true, res: ["OK", 2, "2"] });
    const partly = await call(sock, "redis_batch", [["SET", "p", "x"], ["INCR", "p"], ["GET", "p"]], false);
    assert.equal(partly.ok, false);
    assert.deepEqual(partly.res.errorIndexes, [2]);
    assert.equal(partly.res.message, "1 command failed, see .replies and .errorIndexes");
    assert.deepEqual(partly.res.replies[0], "OK");
    assert.match(partly.res.replies[1].message, /^ERR value is not an integer/);
    assert.equal(partly.res.replies[2], "x");
    const tx = await call(sock, "redis_batch", [["SET", "t", "1"], ["INCR", "t"]], true);
    assert.deepEqual(tx, { ok: true, res: ["OK", 2] });
    const aborted = await call(sock, "redis_batch", [["SET", "t", "1"], ["INCR"]], true);
    assert.deepEqual(aborted, { ok: false, res: "EXECABORT Transaction discarded because of previous errors." });
    const refused = await call(sock, "redis", ["SUBSCRIBE", "x"]);
    assert.match(refused.res, /use r:subscribe/);
    // a handler closes clients that have just answered it
    assert.deepEqual(await call(sock, "use_then_close", false), { sqlite: 1, redis: "three" });
  });

  test("pub/sub: channels and patterns reach the callback, unsubscribe stops them", async () => {
    const got = [];
    sock.on("message", (...a) => got.push(a));
    await call(sock, "subscribe", "news", false);
    await call(sock, "subscribe", "room.*", true);
    await until(async () => Number((await node.sendCommand(["PUBSUB", "NUMSUB", "news"]))[1]) === 1, "subscription");
    await until(async () => Number(await node.sendCommand(["PUBSUB", "NUMPAT"])) === 1, "pattern subscription");
    await node.publish("news", "hello");
    await node.publish("room.42", "in 42");
    await until(() => got.length === 2, "two messages");
    assert.deepEqual(got[0], ["hello", "news", null]);
    assert.deepEqual(got[1], ["in 42", "room.42", "room.*"]);
    await call(sock, "unsubscribe", "news");
    await until(async () => Number((await node.sendCommand(["PUBSUB", "NUMSUB", "news"]))[1]) === 0, "unsubscribe");
    await node.publish("room.1", "after");
    await until(() => got.length === 3, "the pattern message");
    assert.deepEqual(got[2], ["after", "room.1", "room.*"]);
  });

  test("200 handlers waiting at once share one connection, each gets its own reply", async () => {
    const replies = await Promise.all(Array.from({ length: 200 }, (_, i) => call(sock, "redis", ["ECHO", `m${i}`])));
    replies.forEach((r, i) => assert.deepEqual(r, { ok: true, res: `m${i}` }));
    // one command connection (the subscriber, flags=P, is the other one on db 3)
    const clients = (await node.sendCommand(["CLIENT", "LIST"])).split("\n").filter((l) => / flags=N db=3 /.test(l));
    assert.equal(clients.length, 1, clients.join("\n"));
  });

  test("a call past its timeout raises; the connection serves the next calls", async () => {
    const slow = await call(sock, "redis", ["BLPOP", "nolist", "5"]);
    assert.deepEqual(slow, { ok: false, res: "siolua.redis: timed out after 4000 ms" });
    // (the next command waits for BLPOP's end at 5 s, well within its own 4 s)
    assert.deepEqual(await call(sock, "redis", ["ECHO", "after"]), { ok: true, res: "after" });
  });

  test("while a paused Redis holds 100 handlers, another client's events are answered first", async () => {
    const bystander = await connect(srv.url, { transports: ["websocket"] });
    // (2 s of pause: the 5 echoes have margin on a loaded machine; the calls' timeout is 4 s)
    await node.sendCommand(["CLIENT", "PAUSE", "2000", "ALL"]);
    const order = [];
    const waiting = Array.from({ length: 100 }, (_, i) =>
      call(sock, "redis", ["ECHO", `w${i}`]).then((r) => order.push("redis") && r));
    for (let i = 0; i < 5; i++) {
      assert.equal(await call(bystander, "echo", i), i);
      order.push("echo");
    }
    const done = await Promise.all(waiting);
    done.forEach((r, i) => assert.deepEqual(r, { ok: true, res: `w${i}` }));
    assert.deepEqual(order.slice(0, 5), Array(5).fill("echo"));
  });

  test("Redis stopped: calls fail at once; restarted: the client reconnects and its subscriptions are back", async () => {
    const got = [];
    sock.on("message", (...a) => got.push(a));
    await call(sock, "subscribe", "back", false);
    await until(async () => Number((await node.sendCommand(["PUBSUB", "NUMSUB", "back"]))[1]) === 1, "subscription");
    await node.quit();
    node = null;
    const port = redis.port;
    await redis.stop();
    await srv.waitLog(/siolua\.redis: connection lost to 127\.0\.0\.1:\d+/, 5000);
    const down = await call(sock, "redis", ["GET", "k1"]);
    assert.equal(down.ok, false);
    assert.match(down.res, /^siolua\.redis: (not connected to 127\.0\.0\.1:\d+|connection to 127\.0\.0\.1:\d+ lost)/);
    redis = await startRedis(port);
    await until(async () => call(sock, "redis_connected"), "reconnection", 10000);
    const { createClient } = await import("redis");
    node = createClient({ url: redis.url });
    await node.connect();
    await until(async () => Number((await node.sendCommand(["PUBSUB", "NUMSUB", "back"]))[1]) === 1, "resubscribe", 10000);
    await node.publish("back", "again");
    await until(() => got.some((m) => m[0] === "again"), "a message after the restart");
    assert.deepEqual(await call(sock, "redis", ["ECHO", "up"]), { ok: true, res: "up" });
  });
});

describe("siolua.sqlite", { skip }, () => {
  let srv, sock, dir, file;
  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "siolua-sqlite-"));
    file = path.join(dir, "t.db");
    srv = await startWithEnv("hio", { HIO_SQLITE: file, HIO_TIMEOUT: "1500" });
    sock = await connect(srv.url, { transports: ["websocket"] });
  });
  after(async () => {
    closeAll();
    await srv?.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const sql = (kind, q, params = []) => call(sock, "sql", kind, q, params);
  const python = (code) => execFileSync("/usr/bin/python3", ["-c", code, file]).toString();

  test("a top-level call and a call in the app's own coroutine raise a clear error", async () => {
    assert.match(srv.log(), /hio top level: false siolua\.sqlite cannot wait at the top level of the app/);
    assert.match(await call(sock, "own_coroutine"), /siolua\.sqlite must be called from a handler/);
    assert.deepEqual(await call(sock, "closed_use"), { ok: false, res: "the database is closed" });
  });

  test("an ack callback waits like any other handler", async () => {
    sock.once("ask", (cb) => cb("from the client"));
    assert.deepEqual(await call(sock, "query_in_ack"), { ok: true, res: [{ answer: "from the client" }] });
  });

  test(`values written by siolua read the same in Python's sqlite3, and back (generated, SEED=${SEED})`, async () => {
    const r = rng(SEED + 1);
    const value = () => {
      switch (Math.floor(r() * 6)) {
        case 0: return Math.floor((r() - 0.5) * 2 ** 53);
        case 1: return (r() - 0.5) * 10 ** Math.floor(r() * 30 - 15);
        case 2: return ["", "a", "é\u{1F600}", "x\ny", "'; DROP TABLE v; --", "\u0000nul"][Math.floor(r() * 6)];
        case 3: return Buffer.from(Array.from({ length: Math.floor(r() * 20) }, () => Math.floor(r() * 256)));
        case 4: return null;
        default: return Math.floor(r() * 1000);
      }
    };
    assert.deepEqual(await sql("exec", "CREATE TABLE v (i INTEGER PRIMARY KEY, a, b, c)"), { ok: true, res: { changes: 0, lastInsertRowid: 0 } });
    const rows = Array.from({ length: 150 }, () => [value(), value(), value()]);
    for (const [i, row] of rows.entries()) {
      const res = await sql("exec", "INSERT INTO v (i, a, b, c) VALUES (?, ?, ?, ?)", [i + 1, ...row]);
      assert.deepEqual(res, { ok: true, res: { changes: 1, lastInsertRowid: i + 1 } });
    }
    // Python reads the file siolua wrote (WAL: the reader sees what was committed)
    const seen = JSON.parse(python(`
import sqlite3, sys, json
db = sqlite3.connect(sys.argv[1])
out = []
for row in db.execute("SELECT a, b, c FROM v ORDER BY i"):
    out.append([{"b": list(x)} if isinstance(x, bytes) else x for x in row])
print(json.dumps(out))`));
    const norm = (x) => (Buffer.isBuffer(x) ? { b: [...x] } : x);
    assert.deepEqual(seen, rows.map((row) => row.map(norm)), `SEED=${SEED}`);
    // and siolua reads them back as they were sent: integers, floats, text, blobs, null
    // (3 rows at a time: socket.io-client's decoder takes at most 10 binaries per packet)
    const back = [];
    for (let i = 1; i <= rows.length; i += 3) {
      const part = await sql("query", "SELECT a, b, c FROM v WHERE i BETWEEN ? AND ? ORDER BY i", [i, i + 2]);
      assert.equal(part.ok, true, JSON.stringify(part));
      back.push(...part.res.map((o) => [o.a, o.b, o.c]));
    }
    assert.deepEqual(back, rows, `SEED=${SEED}`);
    // beyond 2^53 an integer stays exact inside siolua (Python wrote it)
    python(`
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("INSERT INTO v (i, a) VALUES (1000, 4611686018427387905)")
db.commit()`);
    const big = await sql("query", "SELECT typeof(a) AS t, a = ? AS same, CAST(a AS TEXT) AS s FROM v WHERE i = 1000", ["4611686018427387905"]);
    assert.deepEqual(big.res, [{ t: "integer", same: 0, s: "4611686018427387905" }]);
    const exact = await sql("query", "SELECT a - 4611686018427387904 AS d FROM v WHERE i = 1000");
    assert.deepEqual(exact.res, [{ d: 1 }]);
  });

  test("columns keep their order, the journal is WAL, tables become JSON text", async () => {
    const res = await sql("query", "SELECT 1 AS z, 2 AS a, 3 AS m");
    assert.equal(JSON.stringify(res.res), '[{"z":1,"a":2,"m":3}]');
    assert.deepEqual((await sql("query", "PRAGMA journal_mode")).res, [{ journal_mode: "wal" }]);
    assert.deepEqual((await sql("query", "PRAGMA synchronous")).res, [{ synchronous: 1 }]); // NORMAL
    const j = await sql("query", "SELECT ? AS j, json_extract(?, '$.b[1]') AS x", [{ b: [1, 2] }, { b: [1, 2] }]);
    assert.deepEqual(j.res, [{ j: '{"b":[1,2]}', x: 2 }]);
    assert.deepEqual((await sql("query", "SELECT 1 WHERE 0")).res, []);
  });

  test("errors raise SQLite's message; the connection goes on", async () => {
    assert.deepEqual(await sql("query", "SELEC 1"), { ok: false, res: 'siolua.sqlite: near "SELEC": syntax error' });
    assert.deepEqual(await sql("query", "SELECT ?"), { ok: false, res: "siolua.sqlite: the statement takes 1 parameter(s), 0 given" });
    assert.match((await sql("query", "SELECT 1; SELECT 2")).res, /one statement at a time/);
    await sql("exec", "CREATE TABLE u (x UNIQUE)");
    await sql("exec", "INSERT INTO u VALUES (?)", [1]);
    assert.deepEqual(await sql("exec", "INSERT INTO u VALUES (?)", [1]), { ok: false, res: "siolua.sqlite: UNIQUE constraint failed: u.x" });
    assert.deepEqual((await sql("query", "SELECT 2 AS two")).res, [{ two: 2 }]);
  });

  test("a statement past its timeout is interrupted; a result over maxResultBytes is refused", async () => {
    const forever = await sql("query", "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c");
    assert.deepEqual(forever, { ok: false, res: "siolua.sqlite: timed out after 1500 ms" });
    const big = await sql("query", "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 5000) SELECT printf('%050d', x) FROM c");
    assert.deepEqual(big, { ok: false, res: "siolua.sqlite: the result is larger than 100000 bytes (maxResultBytes)" });
    assert.deepEqual((await sql("query", "SELECT 3 AS three")).res, [{ three: 3 }]);
  });

  test("writes from 300 handlers at once run one at a time, in the order they were called", async () => {
    await sql("exec", "CREATE TABLE o (n INTEGER)");
    const all = await Promise.all(Array.from({ length: 300 }, (_, n) => sql("exec", "INSERT INTO o VALUES (?)", [n])));
    all.forEach((r) => assert.equal(r.ok, true, JSON.stringify(r)));
    const rows = await sql("query", "SELECT n FROM o ORDER BY rowid");
    assert.deepEqual(rows.res.map((x) => x.n), Array.from({ length: 300 }, (_, n) => n));
  });

  test("a file that cannot be opened gives its error at the first call", async () => {
    const bad = await startWithEnv("hio", { HIO_SQLITE: path.join(dir, "no/such/dir/x.db") });
    try {
      const s = await connect(bad.url, { transports: ["websocket"] });
      const res = await call(s, "sql", "query", "SELECT 1", []);
      assert.equal(res.ok, false);
      assert.match(res.res, /^siolua\.sqlite: cannot open .*x\.db: unable to open database file/);
    } finally {
      closeAll();
      await bad.stop();
      sock = await connect(srv.url, { transports: ["websocket"] });
    }
  });
});

describe("siolua.fetch and siolua.route", { skip }, () => {
  let srv, sock, web, tls, base, tbase, dir;
  before(async () => {
    web = http.createServer((req, res) => {
      let body = "";
      req.on("data", (c) => (body += c));
      req.on("end", () => {
        const u = new URL(req.url, "http://x");
        if (u.pathname === "/redirect") return res.writeHead(302, { location: "/echo?from=redirect" }).end();
        if (u.pathname === "/loop") return res.writeHead(302, { location: "/loop" }).end();
        if (u.pathname === "/big") return res.end("x".repeat(Number(u.searchParams.get("n"))));
        if (u.pathname === "/slow") return setTimeout(() => res.end("late"), 2500);
        if (u.pathname === "/gzip") {
          return res.writeHead(200, { "content-encoding": "gzip" }).end(zlib.gzipSync("squeezed ".repeat(100)));
        }
        res.writeHead(201, { "content-type": "application/json", "x-multi": ["a", "b"], "set-cookie": ["c=1", "d=2"] });
        res.end(JSON.stringify({ method: req.method, url: req.url, body, token: req.headers["x-token"] ?? null }));
      });
    });
    await new Promise((r) => web.listen(0, "127.0.0.1", r));
    base = `http://127.0.0.1:${web.address().port}`;
    // a CA and a certificate for "localhost" and 127.0.0.1, made with the openssl CLI
    dir = mkdtempSync(path.join(os.tmpdir(), "siolua-fetch-"));
    const ossl = (...a) => execFileSync("openssl", a, { cwd: dir, stdio: "ignore" });
    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=siolua test CA");
    ossl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=localhost");
    writeFileSync(path.join(dir, "ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n");
    ossl("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "srv.pem", "-days", "2", "-extfile", "ext");
    const { readFileSync } = await import("node:fs");
    tls = https.createServer({ key: readFileSync(path.join(dir, "srv.key")), cert: readFileSync(path.join(dir, "srv.pem")) }, (req, res) => res.end("secure " + req.url));
    await new Promise((r) => tls.listen(0, "127.0.0.1", r));
    tbase = `https://127.0.0.1:${tls.address().port}`;
    srv = await startServer("hio");
    sock = await connect(srv.url, { transports: ["websocket"] });
  });
  after(async () => {
    closeAll();
    await srv?.stop();
    web?.close();
    tls?.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const fetch = (url, opts = {}) => call(sock, "fetch", url, opts);

  test("GET and POST: status, headers (lower-case, repeats joined), body, method and request headers", async () => {
    const get = await fetch(base + "/echo?q=1");
    assert.equal(get.ok, true);
    assert.equal(get.res.status, 201);
    assert.equal(get.res.ok, true);
    assert.equal(get.res.headers["content-type"], "application/json");
    assert.equal(get.res.headers["x-multi"], "a, b");
    assert.equal(get.res.headers["set-cookie"], "c=1, d=2");
    assert.deepEqual(JSON.parse(get.res.body), { method: "GET", url: "/echo?q=1", body: "", token: null });
    assert.equal(get.res.redirected, false);
    const post = await fetch(base + "/echo", { method: "PUT", body: "payload", headers: { "x-token": "t1" } });
    assert.deepEqual(JSON.parse(post.res.body), { method: "PUT", url: "/echo", body: "payload", token: "t1" });
  });

  test("redirects: followed (up to 20), returned with manual, refused with error", async () => {
    const r = await fetch(base + "/redirect");
    assert.equal(r.res.redirected, true);
    assert.equal(r.res.url, base + "/echo?from=redirect");
    const m = await fetch(base + "/redirect", { redirect: "manual" });
    assert.equal(m.res.status, 302);
    assert.equal(m.res.headers.location, "/echo?from=redirect");
    assert.match((await fetch(base + "/redirect", { redirect: "error" })).res, /redirected \(302\)/);
    assert.match((await fetch(base + "/loop")).res, /^siolua\.fetch: Maximum \(20\) redirects followed/);
  });

  test("caps, timeouts, refused connections and bad arguments raise clear errors", async () => {
    assert.equal((await fetch(base + "/big?n=1000", { maxSize: 1000 })).res.body.length, 1000);
    assert.deepEqual(await fetch(base + "/big?n=1001", { maxSize: 1000 }), { ok: false, res: "siolua.fetch: the response body is larger than 1000 bytes (maxSize)" });
    assert.deepEqual(await fetch(base + "/slow", { timeout: 300 }), { ok: false, res: "siolua.fetch: timed out after 300 ms" });
    const refused = await fetch("http://127.0.0.1:1/");
    assert.match(refused.res, /^siolua\.fetch: Failed to connect to 127\.0\.0\.1 port 1/);
    assert.match((await fetch("file:///etc/passwd")).res, /Protocol "file" not supported/);
    assert.deepEqual(await fetch(base, { body: "x" }), { ok: false, res: "siolua.fetch: a GET request cannot have a body" });
    assert.match((await fetch(base, { headers: { "x-a": "b\r\nx-injected: 1" } })).res, /bad header/);
    assert.equal((await fetch(base + "/gzip")).res.body, "squeezed ".repeat(100));
  });

  test("HTTPS checks the certificate: trusted through `ca`, refused without it or for another name", async () => {
    const ok = await fetch(tbase + "/x", { ca: path.join(dir, "ca.pem") });
    assert.deepEqual([ok.ok, ok.res.body], [true, "secure /x"]);
    const untrusted = await fetch(tbase + "/x");
    assert.equal(untrusted.ok, false);
    assert.match(untrusted.res, /SSL certificate problem: unable to get local issuer certificate/);
    // a name the certificate does not carry (the same server through another address)
    const wrongName = await fetch(`https://127.0.0.2:${tls.address().port}/x`, { ca: path.join(dir, "ca.pem") });
    assert.equal(wrongName.ok, false);
  });

  test("100 fetches from 100 handlers at once all complete", async () => {
    const all = await Promise.all(Array.from({ length: 100 }, (_, i) => fetch(`${base}/echo?i=${i}`)));
    all.forEach((r, i) => assert.equal(JSON.parse(r.res.body).url, `/echo?i=${i}`));
  });

  test("siolua.route answers HTTP from a handler: status, body, headers, errors, a handler that waits", async () => {
    const r1 = await globalThis.fetch(srv.url + "/hio/route?status=202", { method: "POST", body: "b", headers: { "x-in": "v" } });
    assert.equal(r1.status, 202);
    assert.equal(await r1.text(), "POST b");
    assert.equal(r1.headers.get("x-hio"), "v");
    assert.equal(r1.headers.get("content-type"), "text/plain; charset=utf-8");
    const r2 = await globalThis.fetch(srv.url + "/hio/route?fail=1");
    assert.equal(r2.status, 500);
    await srv.waitLog(/error in route \/hio\/route: .*hio\.lua:\d+: route failure/);
    const r3 = await globalThis.fetch(srv.url + "/hio/route?fetch=" + encodeURIComponent(base + "/echo"));
    assert.equal(r3.status, 200);
    assert.match(await r3.text(), /^fetched 201 \{"method":"GET"/);
    assert.equal((await globalThis.fetch(srv.url + "/hio/other")).status, 404);
  });
});

describe("the handler budget counts running time, not waiting", { skip }, () => {
  let redis, srv, sock;
  before(async () => {
    redis = await startRedis();
    srv = await startWithEnv("hio", { HIO_REDIS: redis.url, HIO_TIMEOUT: "6000" }, ["--handler-timeout", "2000"]);
    sock = await connect(srv.url, { transports: ["websocket"] });
  });
  after(async () => {
    closeAll();
    await srv?.stop();
    await redis?.stop();
  });

  // (little work and a long wait: the work must fit the budget on a loaded machine, under ASan)
  test("50 ms of work, a 2.5 s wait, 50 ms of work: over 2.5 s in all, completes under a 2 s budget", async () => {
    const res = await call(sock, "spin_wait_spin", 50, { kind: "redis", args: ["BLPOP", "nothing", "2.5"] });
    assert.deepEqual(res, { ok: true });
    // the control: 4 s of work in one go is aborted (the budget is on)
    sock.emit("spin_wait_spin", 4000, { kind: "redis", args: ["PING"] }, () => {});
    await srv.waitLog(/handler aborted: it ran longer than 2000 ms/, 15000);
  });
});
