// siolua.pg against a PostgreSQL cluster of its own (initdb + postgres on a free loopback port, as
// the postgres user): values both ways (checked with psql), errors, a timeout, the pool's bound,
// the result cap, PostgreSQL stopped and started again. Then hot reloads: calls of every kind
// waiting while the code is replaced, and 100 reloads of an app that uses Redis, SQLite,
// PostgreSQL and fetch in every generation, after which the server holds the same file
// descriptors and threads, and PostgreSQL and Redis the same connections, as after the first.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { REF, closeAll, connect } from "./helpers.mjs";
import { HAVE_PG, call, fdsAndThreads, startPostgres, startWithEnv, until } from "./hio.helpers.mjs";
import { startRedis } from "./redis.helpers.mjs";

const skip = REF ? "siolua.pg is siolua's own" : !HAVE_PG ? "PostgreSQL is not installed (scripts/setup.sh installs it)" : false;

let pg;
before(async () => {
  if (!skip) pg = await startPostgres();
});
after(async () => {
  await pg?.destroy();
});

describe("siolua.pg", { skip }, () => {
  let srv, sock;
  before(async () => {
    srv = await startWithEnv("hio", { HIO_PG: pg.conninfo, HIO_TIMEOUT: "3000" });
    sock = await connect(srv.url, { transports: ["websocket"] });
  });
  after(async () => {
    closeAll();
    await srv?.stop();
  });
  const q = (kind, sql, params = []) => call(sock, "pg", kind, sql, params);

  test("values both ways: bound by libpq, stored as sent (psql), read back with their types", async () => {
    const ddl = await q("exec", `CREATE TABLE v (id serial PRIMARY KEY, b bool, i2 int2, i4 int4, i8 int8, f float8,
      n numeric, t text, by bytea, j jsonb, js json, ts timestamptz, nul text)`);
    assert.deepEqual(ddl, { ok: true, res: { changes: 0 } });
    const row = [true, -7, 2147483647, -9007199254740991, 0.1, "12345678901234567890.000000000001", "é 😀 'quote'",
      Buffer.from([0, 1, 254, 255]), { a: [1, null, "x"], b: { c: true } }, [1, 2], "2024-05-06T07:08:09Z", null];
    const ins = await q("exec", "INSERT INTO v (b, i2, i4, i8, f, n, t, by, j, js, ts, nul) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)", row);
    assert.deepEqual(ins, { ok: true, res: { changes: 1 } });
    assert.equal(pg.psql("SELECT b, i2, i4, i8, f, n, t, encode(by, 'hex'), j::text, js::text, nul IS NULL FROM v"),
      't|-7|2147483647|-9007199254740991|0.1|12345678901234567890.000000000001|é 😀 \'quote\'|0001feff|{"a": [1, null, "x"], "b": {"c": true}}|[1,2]|t');
    const back = await q("query", "SELECT b, i2, i4, i8, f, n, t, by, j, js, ts AT TIME ZONE 'UTC' AS ts, nul FROM v");
    assert.equal(back.ok, true, JSON.stringify(back));
    assert.deepEqual(back.res, [{ b: true, i2: -7, i4: 2147483647, i8: -9007199254740991, f: 0.1,
      n: "12345678901234567890.000000000001", t: "é 😀 'quote'", by: Buffer.from([0, 1, 254, 255]),
      j: { a: [1, null, "x"], b: { c: true } }, js: [1, 2], ts: "2024-05-06 07:08:09", nul: null }]);
    // columns in the order of the SELECT
    assert.equal(JSON.stringify((await q("query", "SELECT 3 AS z, 1 AS a")).res), '[{"z":3,"a":1}]');
    const special = await q("query", "SELECT 'NaN'::float8 AS nan, 'Infinity'::float8 AS inf, $1::int8 * 2 AS dbl", [21]);
    assert.deepEqual(special.res, [{ nan: null, inf: null, dbl: 42 }]); // NaN and infinities go out as null (JSON)
    assert.deepEqual((await q("query", "SELECT 1 WHERE false")).res, []);
  });

  test("200 generated texts and integers round-trip exactly", async () => {
    await q("exec", "CREATE TABLE g (k int PRIMARY KEY, t text, i int8)");
    const texts = [];
    for (let k = 0; k < 200; k++) {
      const t = String.fromCodePoint(...Array.from({ length: k % 17 }, (_, j) => [0x41 + j, 0xe9, 0x1f600, 0x27, 0x5c, 0x0a][(k + j) % 6]));
      const i = (k % 2 ? -1 : 1) * (k * 1234567891 % 9007199254740991);
      texts.push({ k, t, i });
      const r = await q("exec", "INSERT INTO g VALUES ($1, $2, $3)", [k, t, i]);
      assert.equal(r.ok, true, JSON.stringify(r));
    }
    const back = await q("query", "SELECT k, t, i FROM g ORDER BY k");
    assert.deepEqual(back.res, texts);
    assert.equal(pg.psql("SELECT count(*) FROM g WHERE length(t) = k % 17"), "200");
  });

  test("errors raise PostgreSQL's message; a script runs several statements", async () => {
    assert.match((await q("query", "SELEC 1")).res, /^siolua\.pg: ERROR: {2}syntax error at or near "SELEC"/);
    await q("exec", "CREATE TABLE u (x int UNIQUE)");
    assert.equal((await q("exec", "INSERT INTO u VALUES ($1)", [1])).ok, true);
    assert.match((await q("exec", "INSERT INTO u VALUES ($1)", [1])).res, /duplicate key value violates unique constraint "u_x_key"/);
    assert.match((await q("query", "SELECT $1::int")).res, /bind message supplies 0 parameters, but prepared statement "" requires 1/);
    assert.deepEqual(await q("exec", "INSERT INTO u VALUES (2); INSERT INTO u VALUES (3); UPDATE u SET x = x + 10"), { ok: true, res: { changes: 3 } });
    assert.deepEqual((await q("query", "SELECT count(*)::int AS n FROM u")).res, [{ n: 3 }]);
  });

  test("a call past its timeout raises and its connection is closed; the pool goes on", async () => {
    assert.deepEqual(await q("query", "SELECT pg_sleep(5)"), { ok: false, res: "siolua.pg: timed out after 3000 ms" });
    assert.deepEqual((await q("query", "SELECT 7 AS seven")).res, [{ seven: 7 }]);
    const big = await q("query", "SELECT repeat('x', 1000) FROM generate_series(1, 500)");
    assert.deepEqual(big, { ok: false, res: "siolua.pg: the result is larger than 100000 bytes (maxResultBytes)" });
    assert.deepEqual((await q("query", "SELECT 8 AS eight")).res, [{ eight: 8 }]);
  });

  test("12 calls at once use at most 3 connections (max = 3), every call answered", async () => {
    const all = await Promise.all(Array.from({ length: 12 }, (_, i) => q("query", "SELECT $1::int AS i, pg_sleep(0.05)", [i])));
    all.forEach((r, i) => assert.deepEqual(r.res, [{ i, pg_sleep: "" }]));
    // (the session of the timed-out pg_sleep(5) above lives on until the server notices: not ours)
    const n = Number(pg.psql("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND query NOT LIKE 'SELECT pg_sleep(5)%'"));
    assert.ok(n >= 1 && n <= 3, `siolua holds ${n} connections`);
  });

  test("a handler closes the clients that just answered it, then the server: nothing breaks", async () => {
    assert.deepEqual(await call(sock, "use_then_close", false), { sqlite: 1, pg: 2 });
    const own = await startWithEnv("hio", { HIO_PG: pg.conninfo });
    const s = await connect(own.url, { transports: ["websocket"] });
    const exited = new Promise((r) => own.proc.once("exit", (code, signal) => r({ code, signal })));
    assert.deepEqual(await call(s, "use_then_close", true), { sqlite: 1, pg: 2 });
    assert.deepEqual(await exited, { code: 0, signal: null }); // io.close() from a resumed handler
    assert.doesNotMatch(own.log(), /ERROR: AddressSanitizer|runtime error:/);
  });

  test("PostgreSQL stopped: calls fail at once with the reason; started again: calls succeed", async () => {
    await pg.stop();
    const down = await q("query", "SELECT 1");
    assert.equal(down.ok, false);
    assert.match(down.res, /^siolua\.pg: (cannot connect|connection lost)/);
    await pg.start();
    assert.deepEqual((await q("query", "SELECT 9 AS nine")).res, [{ nine: 9 }]);
  });
});

describe("hot reload and what the app opened", { skip }, () => {
  let redis, web, srv, sock, dir;
  let slowHits = 0;
  before(async () => {
    redis = await startRedis();
    web = http.createServer((req, res) => {
      if (req.url === "/slow") {
        slowHits++;
        return setTimeout(() => res.end("late"), 4000);
      }
      res.end("ok");
    });
    await new Promise((r) => web.listen(0, "127.0.0.1", r));
    dir = mkdtempSync(path.join(os.tmpdir(), "siolua-reload-"));
    srv = await startWithEnv("hio", {
      HIO_REDIS: redis.url, HIO_PG: pg.conninfo, HIO_SQLITE: path.join(dir, "r.db"), HIO_TIMEOUT: "10000",
      HIO_WARM: `http://127.0.0.1:${web.address().port}/`,
    }, ["--no-watch"]);
    await srv.waitLog(/hio warm v1 true/, 10000);
    sock = await connect(srv.url, { transports: ["websocket"] });
  });
  after(async () => {
    closeAll();
    await srv?.stop();
    await redis?.stop();
    web?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const dbPath = () => path.join(dir, "r.db");
  const warmCount = () => (srv.log().match(/hio warm v1 true/g) || []).length;
  async function reload(n) {
    srv.proc.kill("SIGHUP");
    await srv.waitLog(new RegExp(`generation ${n},`), 10000);
    await until(() => warmCount() >= n, `generation ${n} to use its clients`, 10000);
  }

  test("calls waiting when the code is replaced are abandoned, every client is closed, the new code serves", async () => {
    const base = `http://127.0.0.1:${web.address().port}`;
    const answered = [];
    const pending = [
      ["redis", ["BLPOP", "never", "5"]],
      ["sql", "query", "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c", []],
      ["pg", "query", "SELECT pg_sleep(5)", []],
      ["fetch", base + "/slow", {}],
    ];
    for (const [ev, ...args] of pending) sock.emit(ev, ...args, (r) => answered.push([ev, r]));
    const route = fetch(`${srv.url}/hio/route?fetch=${encodeURIComponent(base + "/slow")}`);
    await until(() => slowHits === 2, "the two fetches to reach the web server");
    await until(() => /pg_sleep\(5\)/.test(pg.psql("SELECT string_agg(query, ' ') FROM pg_stat_activity WHERE state = 'active'") || ""), "the query to run");
    await reload(2);
    assert.equal((await route).status, 503); // the route's request was not answered by the old code
    // the new code answers at once: the SQLite statement was interrupted, nothing is stuck
    assert.deepEqual(await call(sock, "sql", "query", "SELECT 1 AS one", []), { ok: true, res: [{ one: 1 }] });
    assert.deepEqual(await call(sock, "pg", "query", "SELECT 2 AS two", []), { ok: true, res: [{ two: 2 }] });
    assert.deepEqual(await call(sock, "redis", ["ECHO", "three"]), { ok: true, res: "three" });
    // the old code's pg_sleep connection was closed: the server ends that session
    await until(() => pg.psql("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(5)%'") === "0", "the abandoned query's session to end", 10000);
    assert.deepEqual(answered, []); // abandoned handlers are never resumed
  });

  // The database file is counted apart: the new code opens it before the old code's connection is
  // closed, and SQLite defers closing a descriptor of a file on which the process holds locks (a
  // close would drop them all: POSIX locks are per process) until it reuses it for the next open,
  // so the file has one or two descriptors depending on the order of the two threads, never more.
  test("100 reloads: the same file descriptors, threads and service connections as after the first", async () => {
    let gen = 2;
    for (; gen < 7; ) await reload(++gen); // warm-up: libuv's and libcurl's lazy state exists now
    const base = await until(async () => {
      await new Promise((r) => setTimeout(r, 200));
      return fdsAndThreads(srv.proc.pid, dbPath());
    }, "a baseline");
    const pgBase = Number(pg.psql("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"));
    for (; gen < 102; ) await reload(++gen);
    const now = await until(() => {
      const f = fdsAndThreads(srv.proc.pid, dbPath());
      return f.fds <= base.fds && f.threads <= base.threads && f.fileFds <= 2 ? f : null;
    }, `fds and threads back to ${JSON.stringify(base)} (now ${JSON.stringify(fdsAndThreads(srv.proc.pid, dbPath()))})`, 10000);
    assert.ok(now.fds <= base.fds && now.threads <= base.threads && now.fileFds <= 2);
    const pgNow = Number(pg.psql("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"));
    assert.ok(pgNow <= Math.max(pgBase, 3), `PostgreSQL sessions: ${pgNow} (after the warm-up: ${pgBase})`);
    const { createClient } = await import("redis");
    const c = createClient({ url: redis.url });
    await c.connect();
    const clients = (await c.sendCommand(["CLIENT", "LIST"])).trim().split("\n").length - 1; // less ours
    await c.quit();
    assert.ok(clients <= 2, `Redis connections of siolua: ${clients}`);
    assert.deepEqual(await call(sock, "version"), "v1");
  });
});
