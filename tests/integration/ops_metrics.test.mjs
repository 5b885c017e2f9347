// Prometheus /metrics: off by default; on, its exposition parses with Debian's
// python3-prometheus-client; a scripted load moves the counters by what it sent; on a listener of
// its own (--metrics-listen), the main port no longer serves it; bad metrics options stop the start.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { startServer, connect, closeAll, request, sleep, withTimeout, REF, ROOT, APPS } from "./helpers.mjs";
import { get, scrape } from "./ops.helpers.mjs";

const SKIP = REF && "siolua's own metrics";

test("metrics are off by default and on with --metrics, at --metrics-path too", { skip: SKIP, timeout: 60000 }, async () => {
  const off = await startServer("ops");
  try {
    assert.equal((await get(off.url + "/metrics")).status, 404);
  } finally {
    await off.stop();
  }
  const on = await startServer("ops", ["--metrics-path", "/internal/prom"]);
  try {
    assert.equal((await get(on.url + "/metrics")).status, 404);
    const m = await scrape(on.url + "/internal/prom");
    assert.equal(m.families.siolua_handshakes.type, "counter");
    assert.equal(m.families.siolua_handler_duration_seconds.type, "histogram");
    assert.equal(m.families.siolua_connections.type, "gauge");
    assert.ok(m.value("process_resident_memory_bytes") > 1e6);
    assert.ok(m.value("process_open_fds") >= 3);
    assert.equal((await fetch(on.url + "/internal/prom", { method: "POST" })).status, 405);
  } finally {
    await on.stop();
  }
});

test("a scripted load moves the counters by what it sent", { skip: SKIP, timeout: 90000 }, async () => {
  const srv = await startServer("ops", ["--metrics"]);
  try {
    const url = srv.url + "/metrics";
    const before = await scrape(url);
    const d = (after, name, labels) => (after.value(name, labels) ?? 0) - (before.value(name, labels) ?? 0);
    const WS = 4, POLL = 3, ECHOES = 5, FANOUTS = 3;
    const ws = await Promise.all(Array.from({ length: WS }, () => connect(srv.url, { transports: ["websocket"] })));
    const poll = await Promise.all(Array.from({ length: POLL }, () => connect(srv.url, { transports: ["polling"], upgrade: false })));
    const all = [...ws, ...poll];
    // every client: ECHOES acked echoes
    let sentBytes = 0;
    await Promise.all(
      all.map(async (s, i) => {
        for (let k = 0; k < ECHOES; k++) {
          const payload = `client ${i} message ${k} ` + "x".repeat(100);
          sentBytes += payload.length;
          assert.deepEqual(await request(s, "echo", payload), [payload]);
        }
      }),
    );
    // FANOUTS broadcasts to the room every client joined: each client gets each one
    const fans = all.map((s) => {
      let n = 0;
      return new Promise((resolve) => s.on("fan", () => ++n === FANOUTS && resolve()));
    });
    for (let k = 0; k < FANOUTS; k++) ws[0].emit("fanout", k);
    await withTimeout(Promise.all(fans), 20000, "every fan-out message at every client");
    // one handler error, acked by the next echo in the same socket's order
    ws[1].emit("boom");
    await request(ws[1], "echo", 1);
    // an ack the server asks for, answered; one that times out
    ws[2].on("question", (n, answer) => answer(n + 1));
    assert.deepEqual(await request(ws[2], "ask"), [43]);
    assert.deepEqual(await request(ws[2], "ask_unanswered"), ["operation has timed out"]);
    // a refused namespace, a refused Engine.IO request
    const bad = connect(srv.url + "/nope", { transports: ["websocket"] });
    await assert.rejects(bad, /Invalid namespace/);
    assert.equal((await get(srv.url + "/socket.io/?EIO=4&transport=bogus")).status, 400);
    // one client leaves
    const gone = poll[2];
    gone.disconnect();
    await withTimeout(
      (async () => {
        for (;;) {
          const m = await scrape(url);
          if (m.value("siolua_sockets", { namespace: "/" }) === WS + POLL - 1 &&
              m.value("siolua_connections", { transport: "polling" }) === POLL - 1) break;
          await sleep(50);
        }
      })(),
      20000,
      "the socket and the session of the client that left to be gone",
    );
    const after = await scrape(url);
    const N = WS + POLL;
    assert.equal(d(after, "siolua_handshakes_total"), N + 1, "sessions opened: the clients and the /nope one");
    assert.equal(d(after, "siolua_namespace_connects_total"), N);
    assert.equal(d(after, "siolua_namespace_connect_errors_total"), 1);
    assert.equal(d(after, "siolua_handshake_failures_total", { reason: "Transport unknown" }), 1);
    assert.equal(d(after, "siolua_packets_received_total", { type: "event" }), N * ECHOES + FANOUTS + 4);
    assert.equal(d(after, "siolua_packets_received_total", { type: "ack" }), 1);
    assert.equal(d(after, "siolua_ack_duration_seconds_count"), 1);
    assert.ok(d(after, "siolua_ack_duration_seconds_sum") > 0);
    assert.equal(d(after, "siolua_ack_timeouts_total"), 1);
    assert.equal(d(after, "siolua_packets_received_total", { type: "connect" }), N + 1);
    assert.equal(d(after, "siolua_packets_received_total", { type: "disconnect" }), 1);
    assert.equal(d(after, "siolua_broadcasts_total"), FANOUTS);
    assert.equal(d(after, "siolua_broadcast_recipients_total"), FANOUTS * N);
    // sent: a CONNECT per socket, the CONNECT_ERROR, an ack per echo, a message per fan-out recipient,
    // "question" and "silent" and the acks of "ask" and "ask_unanswered"
    assert.equal(d(after, "siolua_packets_sent_total"), N + 1 + (N * ECHOES + 1) + FANOUTS * N + 4);
    assert.equal(d(after, "siolua_disconnects_total", { reason: "client namespace disconnect" }), 1);
    assert.equal(d(after, "siolua_handler_errors_total"), 1);
    assert.ok(d(after, "siolua_handler_duration_seconds_count") >= N * ECHOES + FANOUTS + N, "a handler call each");
    assert.ok(d(after, "siolua_received_bytes_total") > sentBytes, "bytes in: at least the payloads");
    assert.ok(d(after, "siolua_sent_bytes_total") > sentBytes, "bytes out: at least the echoed payloads");
    assert.equal(after.value("siolua_sockets", { namespace: "/" }), N - 1);
    assert.equal(after.value("siolua_connections", { transport: "websocket" }), WS);
    assert.equal(after.value("siolua_connections", { transport: "polling" }), POLL - 1);
    assert.ok(after.value("siolua_upgrades_total") >= 0);
    // histograms: cumulative buckets, +Inf equals the count
    const h = after.families.siolua_handler_duration_seconds.samples.filter(([n]) => n.endsWith("_bucket"));
    for (let i = 1; i < h.length; i++) assert.ok(h[i][2] >= h[i - 1][2]);
    assert.equal(h.at(-1)[1].le, "+Inf");
    assert.equal(h.at(-1)[2], after.value("siolua_handler_duration_seconds_count"));
  } finally {
    closeAll();
    await srv.stop();
  }
});

test("the watchdog's aborts and hot reloads are counted, with the swap time", { skip: SKIP, timeout: 60000 }, async () => {
  const srv = await startServer("ops", ["--metrics", "--handler-timeout", "300"]);
  try {
    const url = srv.url + "/metrics";
    const s = await connect(srv.url, { transports: ["websocket"] });
    s.emit("spin");
    await srv.waitLog(/handler aborted/, 20000);
    let m = await scrape(url);
    assert.equal(m.value("siolua_handler_aborts_total"), 1);
    assert.equal(m.value("siolua_handler_errors_total"), 1, "an abort is an error too");
    assert.equal(m.value("siolua_reloads_total", { result: "success" }), 0);
    srv.proc.kill("SIGHUP"); // the same app, reloaded
    await srv.waitLog(/reloaded .*ops\.lua: generation 2/, 20000);
    m = await scrape(url);
    assert.equal(m.value("siolua_reloads_total", { result: "success" }), 1);
    assert.equal(m.value("siolua_reloads_total", { result: "failure" }), 0);
    assert.ok(m.value("siolua_reload_swap_seconds") > 0);
    assert.deepEqual(await request(s, "echo", "after"), ["after"], "the socket was kept");
  } finally {
    closeAll();
    await srv.stop();
  }
});

test("io.options{ metrics = ..., probes = ... }, and the flags win over them", { skip: SKIP, timeout: 60000 }, async () => {
  const srv = await startServer("ops_options");
  try {
    const s = await connect(srv.url, { transports: ["websocket"] });
    await request(s, "echo", 1);
    const m = await scrape(srv.url + "/internal/metrics");
    assert.equal(m.value("siolua_sockets", { namespace: "/" }), 1);
    assert.equal((await get(srv.url + "/metrics")).status, 404);
    assert.equal((await get(srv.url + "/healthz")).status, 404, "probes = false");
  } finally {
    closeAll();
    await srv.stop();
  }
  const flags = await startServer("ops_options", ["--metrics-path", "/m2"]);
  try {
    await scrape(flags.url + "/m2");
    assert.equal((await get(flags.url + "/internal/metrics")).status, 404, "--metrics-path wins over io.options");
  } finally {
    await flags.stop();
  }
});

test("--metrics-listen: metrics and probes on their own listener, not on the main port", { skip: SKIP, timeout: 60000 }, async () => {
  const srv = await startServer("ops", ["--metrics-listen", "127.0.0.1:0"]);
  try {
    const [, port] = await srv.waitLog(/metrics and probes on http:\/\/127\.0\.0\.1:(\d+)\/metrics/);
    const ops = `http://127.0.0.1:${port}`;
    const s = await connect(srv.url, { transports: ["websocket"] });
    await request(s, "echo", 1);
    const m = await scrape(ops + "/metrics");
    assert.equal(m.value("siolua_sockets", { namespace: "/" }), 1);
    assert.equal((await get(ops + "/healthz")).status, 200);
    assert.equal((await get(ops + "/readyz")).text, "ready\n");
    assert.equal((await get(ops + "/socket.io/socket.io.js")).status, 404, "the ops listener serves nothing else");
    assert.equal((await get(srv.url + "/metrics")).status, 404, "the main port no longer serves metrics");
    assert.equal((await get(srv.url + "/healthz")).status, 200, "probes stay on the main port");
  } finally {
    closeAll();
    await srv.stop();
  }
});

test("bad metrics options are refused at the start, with the reason", { skip: SKIP, timeout: 120000 }, async () => {
  const BIN = path.resolve(ROOT, process.env.SIOLUA_BIN || "./siolua");
  const app = path.join(APPS, "ops.lua");
  const dir = mkdtempSync(path.join(os.tmpdir(), "siolua-ops-"));
  // a port in use: the metrics listener cannot listen there
  const busy = net.createServer();
  await new Promise((resolve) => busy.listen(0, "127.0.0.1", resolve));
  // exit status 1 (the server could not start as told) or 2 (usage)
  const bad = [
    [[app, "--metrics-listen", ":9"], 1, /--metrics-listen :9: HOST:PORT expected/],
    [[app, "--metrics-listen", "127.0.0.1:99999"], 1, /HOST:PORT expected/],
    [[app, "--metrics-listen", "127.0.0.1:x"], 1, /HOST:PORT expected/],
    [[app, "--metrics-listen", `127.0.0.1:${busy.address().port}`], 1, /cannot listen on 127\.0\.0\.1:\d+ for metrics/],
    [[app, "--metrics-listen", "nocolon"], 2, /--metrics-listen/],
    [[app, "--metrics-path", "nopath"], 2, /--metrics-path/],
    [[app, "--metrics-path", "/a?b"], 2, /--metrics-path/],
  ];
  for (const [name, body, re] of [
    ["badkey.lua", "io.options{ metrics = { bogus = 1 } }", /unknown metrics option "bogus"/],
    ["badlisten.lua", 'io.options{ metrics = { listen = "nope" } }', /metrics\.listen must be "HOST:PORT"/],
    ["badpath.lua", 'io.options{ metrics = "nopath" }', /the metrics path must start with \//],
    ["badtype.lua", "io.options{ metrics = 5 }", /true, a path or \{path =, listen =\}/],
  ]) {
    writeFileSync(path.join(dir, name), body + "\n");
    bad.push([[path.join(dir, name)], 1, re]);
  }
  try {
    for (const [args, status, re] of bad) {
      const r = spawnSync(BIN, [...args, "--port", "0", "--no-watch"], { encoding: "utf8", timeout: 30000 });
      assert.equal(r.status, status, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, re, args.join(" "));
    }
  } finally {
    busy.close();
  }
});
