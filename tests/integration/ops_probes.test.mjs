// /healthz and /readyz: what they answer through a drain (SIGTERM with --drain-delay: not ready,
// clients served as before, then the shutdown), with the Redis adapter down (not ready, unless
// --ready-ignore-redis) and back; --no-probes turns them off.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startServer, connect, closeAll, once, request, sleep, withTimeout, REF } from "./helpers.mjs";
import { startRedis } from "./redis.helpers.mjs";
import { get, scrape } from "./ops.helpers.mjs";

const SKIP = REF && "siolua's own probes";

/** Polls url until its status is `status`; resolves to the last answer. */
async function until(url, status, what, ms = 20000) {
  return withTimeout(
    (async () => {
      for (;;) {
        const r = await get(url);
        if (r.status === status) return r;
        await sleep(50);
      }
    })(),
    ms,
    what,
  );
}

test("probes through a drain: ready, then 503 draining while clients are served, then the shutdown", { skip: SKIP, timeout: 60000 }, async () => {
  // the drain is long enough for the checks below on a loaded machine; the test waits for its end
  const srv = await startServer("ops", ["--drain-delay", "4000"]);
  const h = await get(srv.url + "/healthz");
  assert.deepEqual([h.status, h.text, h.type], [200, "ok\n", "text/plain; charset=utf-8"]);
  assert.deepEqual(await get(srv.url + "/readyz").then((r) => [r.status, r.text]), [200, "ready\n"]);
  assert.equal((await fetch(srv.url + "/readyz", { method: "HEAD" })).status, 200);
  assert.equal((await fetch(srv.url + "/healthz", { method: "POST" })).status, 405);
  const s = await connect(srv.url, { transports: ["websocket"] });
  const gone = once(s, "disconnect", 30000);
  srv.proc.kill("SIGTERM");
  await srv.waitLog(/draining for 4000 ms/, 10000);
  const r = await get(srv.url + "/readyz");
  assert.deepEqual([r.status, r.text], [503, "draining\n"]);
  assert.equal((await get(srv.url + "/healthz")).status, 200, "still alive while draining");
  // clients are served as before: the connected one, and a new one
  assert.deepEqual(await request(s, "echo", "during the drain"), ["during the drain"]);
  const late = await connect(srv.url, { transports: ["polling"] });
  assert.deepEqual(await request(late, "echo", 2), [2]);
  // then the shutdown: the clients are disconnected by the server, and it exits cleanly
  assert.equal((await gone)[0], "transport close"); // as the reference's io.close()
  await srv.waitLog(/drain over/, 30000);
  closeAll();
  assert.deepEqual(await srv.ended(), { code: 0, signal: null });
});

test("a second SIGTERM while draining shuts down at once; SIGINT never drains", { skip: SKIP, timeout: 60000 }, async () => {
  const srv = await startServer("ops", ["--drain-delay", "600000"]);
  srv.proc.kill("SIGTERM");
  await srv.waitLog(/draining for 600000 ms/, 10000);
  assert.equal((await get(srv.url + "/readyz")).status, 503);
  srv.proc.kill("SIGTERM");
  assert.deepEqual(await srv.ended(), { code: 0, signal: null });
  assert.doesNotMatch(srv.log(), /drain over/);
  const srv2 = await startServer("ops", ["--drain-delay", "600000"]);
  srv2.proc.kill("SIGINT");
  await srv2.waitLog(/SIGINT received/, 10000);
  assert.deepEqual(await srv2.ended(), { code: 0, signal: null });
  assert.doesNotMatch(srv2.log(), /draining/);
});

test("--no-probes: /healthz and /readyz are the app's paths again", { skip: SKIP, timeout: 30000 }, async () => {
  const srv = await startServer("ops", ["--no-probes"]);
  try {
    assert.equal((await get(srv.url + "/healthz")).status, 404);
    assert.equal((await get(srv.url + "/readyz")).status, 404);
  } finally {
    await srv.stop();
  }
});

test("the Redis adapter down: not ready (and siolua_redis_up 0) unless --ready-ignore-redis; ready again once it is back", { skip: SKIP, timeout: 90000 }, async () => {
  const redis = await startRedis();
  const strict = await startServer("ops", ["--redis", redis.url, "--metrics"]);
  const lenient = await startServer("ops", ["--redis", redis.url, "--ready-ignore-redis"]);
  try {
    await until(strict.url + "/readyz", 200, "ready once the adapter is connected");
    assert.equal((await scrape(strict.url + "/metrics")).value("siolua_redis_up"), 1);
    const port = redis.port;
    await redis.kill();
    const r = await until(strict.url + "/readyz", 503, "not ready with Redis gone");
    assert.equal(r.text, "redis adapter down\n");
    assert.equal((await get(strict.url + "/healthz")).status, 200, "alive all the same");
    assert.equal((await get(lenient.url + "/readyz")).status, 200, "--ready-ignore-redis stays ready");
    const m = await scrape(strict.url + "/metrics");
    assert.equal(m.value("siolua_redis_up"), 0);
    const back = await startRedis(port);
    try {
      await until(strict.url + "/readyz", 200, "ready again once Redis is back", 30000);
      assert.equal((await scrape(strict.url + "/metrics")).value("siolua_redis_up"), 1);
    } finally {
      await strict.stop();
      await lenient.stop();
      await back.stop();
    }
  } catch (e) {
    if (strict.exited() === null) await strict.stop().catch(() => {});
    if (lenient.exited() === null) await lenient.stop().catch(() => {});
    throw e;
  }
});
