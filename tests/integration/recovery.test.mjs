// Connection state recovery (issue 14): socket.io-client's own recovery (its pid and offset in the
// CONNECT auth, socket.recovered) against siolua and against the Node reference on the same
// generated scenarios, side by side; across a network drop, a hot reload and a restart with
// --state-file; and the limits (maxDisconnectionDuration, the byte bound, a corrupt state file).
// The app is apps/recovery.lua (its twin: ref/recovery_apps.mjs).
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { APPS, REF, WAIT, closeAll, connect, mulberry32, once, request, sleep, startServer, until } from "./helpers.mjs";
import { startNode, startRedis, stopAll, waitServers } from "./redis.helpers.mjs";

const TMP = mkdtempSync(path.join(os.tmpdir(), "siolua-recovery-"));
after(() => {
  closeAll();
  rmSync(TMP, { recursive: true, force: true });
});

// An event as the client got it, its offset (the last argument of a kept packet: a string; the
// scenarios' own arguments are numbers) written "<offset>": the two servers' offsets differ.
const strip = ([ev, ...args]) => {
  const last = args[args.length - 1];
  return typeof last === "string" ? [ev, ...args.slice(0, -1), "<offset>"] : [ev, ...args];
};
const state = async (s) => (await request(s, "state"))[0];

// The targets of a scenario's emits while the client is away, and whether each reaches it (its
// rooms: its own id and "news"; "x" and "/b" are not its own; an ack is never kept; volatile never).
const TARGETS = {
  "room:news": true,
  all: true,
  ID: true,
  "room:ID": true,
  "volatile:news": false,
  "except:news": false,
  "except:ID": false,
  "room:x": false,
  "nsp:/b": false,
  "ack:ID": false,
};

/**
 * One scenario on the server at url: client a (transport) gets a first packet (its offset), loses
 * its connection (its engine is closed, as a network drop), the server emits `steps` while it is
 * away, a connects again; then a sentinel. Returns what the client saw.
 */
async function scenario(url, transport, steps, { beforeReconnect, opts = {} } = {}) {
  const a = await connect(url, { transports: [transport], ...opts });
  const b = await connect(url, { transports: ["websocket"], ...opts });
  const got = [];
  a.onAny((ev, ...args) => got.push([ev, ...args]));
  await request(b, "send", "room:news", "first", [0]);
  await until(() => got.length >= 1, "the first packet");
  const before = await state(a);
  const id = a.id;
  a.io.engine.close(); // the network drops
  await until(async () => !(await request(b, "connected", id))[0], "the server to see a leave");
  for (const [target, i] of steps) await request(b, "send", target.replace("ID", id), "m", [i]);
  if (beforeReconnect) await beforeReconnect({ a, b, id });
  const n0 = got.length;
  a.connect();
  await once(a, "connect");
  const seen = { recovered: a.recovered, sameId: a.id === id };
  const now = await state(a);
  await request(b, "send", "room:news", "sentinel", [-1]);
  await until(() => got.some((e) => e[0] === "sentinel"), "the sentinel");
  a.disconnect();
  b.disconnect();
  const norm = (st) => ({ ...st, id: st.id === id ? "ID" : "other", rooms: st.rooms.map((r) => (r === id ? "ID" : r === now.id ? "NEW" : r)).sort() });
  return { ...seen, before: norm(before), after: norm(now), mw: now.mw - before.mw, events: got.slice(n0).map(strip) };
}

const expectedEvents = (steps) => [
  ...steps.filter(([t]) => TARGETS[t]).map(([, i]) => ["m", i, "<offset>"]),
  ["sentinel", -1, "<offset>"],
];

function generate(rand, n) {
  const names = Object.keys(TARGETS);
  return Array.from({ length: n }, (_, i) => [names[Math.floor(rand() * names.length)], i + 1]);
}

for (const transport of ["websocket", "polling"]) {
  test(`generated scenarios over ${transport}: socket.io-client recovers id, rooms, data and every missed event, once and in order, as with the reference`, async () => {
    const seed = Number(process.env.SEED) || Date.now() % 100000;
    const rand = mulberry32(seed);
    const siolua = await startServer("recovery");
    const ref = await startServer("recovery", [], { ref: true });
    try {
      for (let round = 0; round < 4; round++) {
        const steps = generate(rand, 3 + Math.floor(rand() * 10));
        const mine = await scenario(siolua.url, transport, steps);
        const theirs = await scenario(ref.url, transport, steps);
        const what = `seed ${seed} (SEED=${seed} replays), round ${round}: ${JSON.stringify(steps)}`;
        assert.deepEqual(mine, theirs, `siolua and the reference differ, ${what}`);
        assert.equal(mine.recovered, true, what);
        assert.equal(mine.sameId, true, what);
        assert.deepEqual(mine.events, expectedEvents(steps), what);
        assert.deepEqual(mine.after, { ...mine.before, recovered: true, mw: mine.after.mw }, what);
        assert.equal(mine.mw, 0, "skipMiddlewares: a restored socket does not go through them");
      }
    } finally {
      await siolua.stop();
      await ref.stop();
    }
  });
}

test("with the msgpack parser: the same recovery, as the reference", async () => {
  const parser = (await import("socket.io-msgpack-parser")).default;
  const steps = [["room:news", 1], ["ID", 2], ["volatile:news", 3], ["all", 4]];
  const results = [];
  for (const ref of [false, true]) {
    const srv = await startServer("recovery", ["--parser", "msgpack"], { ref: ref || REF });
    try {
      results.push(await scenario(srv.url, "polling", steps, { opts: { parser } }));
    } finally {
      await srv.stop();
    }
  }
  assert.equal(results[0].recovered, true);
  assert.deepEqual(results[0].events, expectedEvents(steps));
  assert.deepEqual(results[0], results[1]);
});

test("what does not recover, as the reference: a client that never got a packet, middlewares when skipMiddlewares is false, an expired session", async () => {
  for (const ref of [false, true]) {
    // no packet before the drop: the client has no offset, it gets a new socket
    let srv = await startServer("recovery", [], { ref: ref || REF });
    try {
      const a = await connect(srv.url, { transports: ["websocket"] });
      const b = await connect(srv.url, { transports: ["websocket"] });
      const id = a.id;
      a.io.engine.close();
      await until(async () => !(await request(b, "connected", id))[0], "a leave");
      a.connect();
      await once(a, "connect");
      assert.equal(a.recovered, false);
      assert.notEqual(a.id, id);
      a.disconnect();
      b.disconnect();
    } finally {
      await srv.stop();
    }
    // skipMiddlewares false: recovered, through the middlewares once more
    srv = await startServer("recovery", [], { ref: ref || REF, env: { ...process.env, REC_SKIP_MW: "0" } });
    try {
      const r = await scenario(srv.url, "websocket", [["room:news", 1], ["ID", 2]]);
      assert.equal(r.recovered, true);
      assert.equal(r.mw, 1);
      assert.deepEqual(r.events, expectedEvents([["room:news", 1], ["ID", 2]]));
    } finally {
      await srv.stop();
    }
    // maxDisconnectionDuration 1000: back after 1.5 s (at least), a new socket; nothing replayed
    srv = await startServer("recovery", [], { ref: ref || REF, env: { ...process.env, REC_DURATION: "1000" } });
    try {
      const r = await scenario(srv.url, "websocket", [["room:news", 1]], { beforeReconnect: () => sleep(1500) });
      assert.equal(r.recovered, false);
      assert.equal(r.sameId, false);
      assert.deepEqual(r.events, [["sentinel", -1, "<offset>"]]);
      assert.deepEqual(r.after.data, { n: 7 });
    } finally {
      await srv.stop();
    }
  }
});

test("bogus pids and offsets get a new socket and leave the real session alone, as the reference", async () => {
  for (const ref of [false, true]) {
    const srv = await startServer("recovery", [], { ref: ref || REF });
    try {
      const r = await scenario(srv.url, "websocket", [["ID", 1]], {
        beforeReconnect: async ({ a, id }) => {
          const pid = a._pid, offset = a._lastOffset;
          const bogus = [{ pid, offset: "" }, { pid, offset: "x".repeat(5000) }, { pid, offset: "!!" }, { pid, offset: 12 },
            { pid: 12, offset }, { pid: "p".repeat(10000), offset }, { pid: [pid], offset }, { pid: pid + "x", offset },
            { pid, offset: "0" }, { pid: null, offset: null }];
          for (const auth of bogus) {
            const c = await connect(srv.url, { transports: ["websocket"], auth });
            const st = await state(c);
            assert.equal(st.recovered, false, JSON.stringify(auth).slice(0, 80));
            assert.notEqual(st.id, id);
            c.disconnect();
          }
        },
      });
      assert.equal(r.recovered, true, "the real client still recovers");
      assert.deepEqual(r.events, expectedEvents([["ID", 1]]));
    } finally {
      await srv.stop();
    }
  }
});

const SIOLUA_ONLY = (why) => (REF ? why : false);

test("a hot reload keeps the sessions waiting for their client and their missed packets", { skip: SIOLUA_ONLY("the Node reference has no hot reload") }, async () => {
  const dir = mkdtempSync(path.join(TMP, "reload-"));
  const app = path.join(dir, "recovery.lua");
  copyFileSync(path.join(APPS, "recovery.lua"), app);
  const srv = await startServer(app, ["--no-watch"]);
  try {
    const steps = [["room:news", 1], ["all", 2]];
    const r = await scenario(srv.url, "websocket", steps, {
      beforeReconnect: async ({ b, id }) => {
        writeFileSync(app, readFileSync(app, "utf8") + "\n-- reloaded\n");
        srv.proc.kill("SIGHUP");
        await srv.waitLog(/reloaded .*generation 2/);
        await request(b, "send", id, "m", [3]); // after the reload, from the new code
      },
    });
    assert.equal(r.recovered, true);
    assert.equal(r.sameId, true);
    assert.deepEqual(r.events, expectedEvents([...steps, ["ID", 3]]));
  } finally {
    await srv.stop();
  }
});

test("the byte bound: a session whose missed packets were evicted is not recovered (never with a gap); under it, it is", { skip: SIOLUA_ONLY("siolua limit") }, async () => {
  const srv = await startServer("recovery", ["--recovery-max-bytes", "20000"]);
  try {
    const big = "x".repeat(1000);
    // under the bound: 5 packets of ~1 KB
    let r = await scenario(srv.url, "websocket", [], {
      beforeReconnect: async ({ b }) => {
        for (let i = 0; i < 5; i++) await request(b, "send", "room:news", "big", [i, big]);
      },
    });
    assert.equal(r.recovered, true);
    assert.equal(r.events.filter((e) => e[0] === "big").length, 5);
    // over it: 40 of them push the client's offset (and the packets after it) out
    r = await scenario(srv.url, "websocket", [], {
      beforeReconnect: async ({ b }) => {
        for (let i = 0; i < 40; i++) await request(b, "send", "room:news", "big", [i, big]);
      },
    });
    assert.equal(r.recovered, false);
    assert.equal(r.sameId, false);
    assert.deepEqual(r.events, [["sentinel", -1, "<offset>"]]);
  } finally {
    await srv.stop();
  }
});

test("a restart with --state-file: every event emitted while the client was away arrives once, in order, from the new process", { skip: SIOLUA_ONLY("siolua's flag") }, async () => {
  const file = path.join(TMP, "state.bin");
  let srv = await startServer("recovery", ["--state-file", file]);
  const port = srv.port;
  const a = await connect(srv.url, { transports: ["websocket"] });
  const b = await connect(srv.url, { transports: ["polling"], reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 200 });
  const got = [];
  a.onAny((ev, ...args) => got.push(strip([ev, ...args])));
  await request(a, "set", "k", "v");
  await request(a, "join", "x");
  for (let i = 1; i <= 3; i++) await request(b, "send", "room:news", "tick", [i]);
  await until(() => got.length >= 3, "the first ticks");
  const id = a.id;
  a.io.engine.close(); // the connection drops...
  await until(async () => !(await request(b, "connected", id))[0], "the server to see a leave");
  for (let i = 4; i <= 20; i++) await request(b, "send", i % 2 ? "room:x" : id, "tick", [i]); // ...events meanwhile
  const bid = b.id;
  await srv.stop(); // SIGTERM: the state goes to the file
  assert.match(srv.log(), /recovery: 2 sessions and 20 packets written to /);
  srv = await startServer("recovery", ["--state-file", file, "--port", String(port)].slice(0), {});
  try {
    assert.match(srv.log(), /recovery: 2 sessions and 20 packets restored from /);
    await until(() => b.connected, "b to reconnect to the new process");
    assert.equal(b.recovered, true);
    assert.equal(b.id, bid);
    const n0 = got.length;
    a.connect();
    await once(a, "connect");
    assert.equal(a.recovered, true);
    assert.equal(a.id, id);
    const st = await state(a);
    assert.deepEqual([...st.rooms].sort(), [id, "news", "x"].sort());
    assert.deepEqual(st.data, { n: 7, k: "v" });
    await request(b, "send", id, "tick", [21]);
    await until(() => got.length >= n0 + 18, "the missed events and the new one");
    assert.deepEqual(got.slice(n0), Array.from({ length: 18 }, (_, i) => ["tick", i + 4, "<offset>"]));
  } finally {
    a.disconnect();
    b.disconnect();
    await srv.stop();
  }
});

test("a state file that cannot be used (garbage, cut short, another parser) is logged and ignored: the server starts empty and writes a good one at shutdown", { skip: SIOLUA_ONLY("siolua's flag") }, async () => {
  const file = path.join(TMP, "bad-state.bin");
  // a real one first, to cut
  let srv = await startServer("recovery", ["--state-file", file]);
  let a = await connect(srv.url, { transports: ["websocket"] });
  const b = await connect(srv.url, { transports: ["websocket"] });
  await request(b, "send", "room:news", "tick", [1]);
  await until(async () => (await state(a)).data.n === 7, "a");
  await srv.stop();
  const good = readFileSync(file);
  assert.ok(good.length > 50);
  const cases = [
    ["garbage", Buffer.from("not a state file at all\n"), /ignored: not a siolua state file/],
    ["cut short", good.subarray(0, good.length >> 1), /ignored: corrupt \(checksum mismatch\)/],
    ["one byte changed", Buffer.from(good.map((x, i) => (i === 20 ? x ^ 1 : x))), /ignored: corrupt/],
  ];
  for (const [what, bytes, re] of cases) {
    writeFileSync(file, bytes);
    srv = await startServer("recovery", ["--state-file", file]);
    try {
      assert.match(srv.log(), re, what);
      a = await connect(srv.url, { transports: ["websocket"] });
      assert.equal((await state(a)).recovered, false);
    } finally {
      a.disconnect();
      await srv.stop();
    }
    assert.match(srv.log(), /recovery: \d+ sessions and \d+ packets written to /, what);
  }
  // written with --parser msgpack: another format, ignored by a server with the JSON parser
  srv = await startServer("recovery", ["--state-file", file, "--parser", "msgpack"]);
  await srv.stop();
  srv = await startServer("recovery", ["--state-file", file]);
  assert.match(srv.log(), /ignored: written with another parser/);
  await srv.stop();
});

test("--shutdown-window: a shutdown disconnects the clients in batches over the window, and they all recover on the new process", { skip: SIOLUA_ONLY("siolua's flag") }, async () => {
  const file = path.join(TMP, "window-state.bin");
  let srv = await startServer("recovery", ["--state-file", file, "--shutdown-window", "1000"]);
  const port = srv.port;
  const opts = { transports: ["websocket"], reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 200 };
  const clients = [];
  for (let i = 0; i < 12; i++) clients.push(await connect(srv.url, opts));
  const ids = clients.map((c) => c.id);
  const feeder = clients[0];
  await request(feeder, "send", "room:news", "tick", [1]); // every client gets an offset
  const gone = [];
  clients.forEach((c, i) => c.once("disconnect", () => (gone[i] = Date.now())));
  await until(async () => {
    for (const c of clients) await state(c);
    return true;
  }, "every client");
  await srv.stop();
  assert.match(srv.log(), /disconnecting 12 clients over 1000 ms \(--shutdown-window\), 1 every 50 ms/);
  assert.match(srv.log(), /recovery: 12 sessions and 1 packets written to /);
  // not all at once: the last left at least 0.3 s after the first (12 batches, 50 ms apart)
  assert.equal(gone.filter(Boolean).length, 12);
  assert.ok(Math.max(...gone) - Math.min(...gone) >= 300, `disconnects spread over ${Math.max(...gone) - Math.min(...gone)} ms`);
  srv = await startServer("recovery", ["--state-file", file, "--port", String(port)]);
  try {
    await until(() => clients.every((c) => c.connected), "every client to reconnect");
    assert.deepEqual(clients.map((c) => c.recovered), clients.map(() => true));
    assert.deepEqual(clients.map((c) => c.id), ids);
  } finally {
    for (const c of clients) c.disconnect();
    await srv.stop();
  }
});

test("with --redis: a client that comes back to its node recovers what the other node broadcast meanwhile; on another node it gets a new socket, recovered false", { skip: SIOLUA_ONLY("siolua cluster") }, async () => {
  const redis = await startRedis();
  const n1 = await startNode(redis, { name: "n1", app: "recovery" });
  const n2 = await startNode(redis, { name: "n2", app: "recovery" });
  try {
    await waitServers(redis.port, 2);
    const steps = [["room:news", 1], ["all", 2], ["ID", 3], ["room:x", 4], ["volatile:news", 5]];
    // the emits are made on n2 (b is its client): they reach n1 through Redis and are kept there
    const a = await connect(n1.url, { transports: ["websocket"] });
    const b = await connect(n2.url, { transports: ["websocket"] });
    const got = [];
    a.onAny((ev, ...args) => got.push(strip([ev, ...args])));
    await request(b, "send", "room:news", "first", [0]);
    await until(() => got.length >= 1, "the first packet, through Redis");
    const id = a.id;
    a.io.engine.close();
    await until(async () => {
      const probe = await connect(n1.url, { transports: ["websocket"] });
      const gone = !(await request(probe, "connected", id))[0];
      probe.disconnect();
      return gone;
    }, "n1 to see a leave");
    for (const [target, i] of steps) await request(b, "send", target.replace("ID", id), "m", [i]);
    const n0 = got.length;
    a.connect();
    await once(a, "connect");
    assert.equal(a.recovered, true);
    assert.equal(a.id, id);
    await request(b, "send", "room:news", "sentinel", [-1]);
    await until(() => got.some((e) => e[0] === "sentinel"), "the sentinel");
    assert.deepEqual(got.slice(n0), expectedEvents(steps));
    // the same client's pid and offset presented to n2, which does not hold its session
    const pid = a._pid, offset = a._lastOffset;
    assert.ok(pid && offset);
    a.io.engine.close();
    const elsewhere = await connect(n2.url, { transports: ["websocket"], auth: { pid, offset } });
    const st = await state(elsewhere);
    assert.equal(st.recovered, false);
    assert.notEqual(st.id, id);
    assert.deepEqual(st.data, { n: 7 });
  } finally {
    await stopAll([n1, n2], redis);
  }
});

// With --workers, a session is kept by the worker that held the socket (README: "With --workers
// N"): a client whose new connection reaches that worker recovers everything it missed, once and in
// order, including what clients of the other worker emitted meanwhile (through the workers' channel);
// one that reaches the other worker gets a new socket, recovered false, and nothing of the old one's
// missed events (never a restore with a gap). The kernel picks the worker of each connection, so the
// client drops and comes back until it has seen both outcomes (each round is one or the other with
// about even odds; 40 rounds miss one of them once in 2^39).
test("with --workers 2: a client back on the worker that holds its session recovers all it missed; on the other it gets a new socket, recovered false", { skip: SIOLUA_ONLY("siolua's flag") }, async () => {
  const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  const workerOf = (sid) => B64.indexOf(sid[0]) * 64 + B64.indexOf(sid[1]);
  const srv = await startServer("recovery", ["--workers", "2"]);
  const a = await connect(srv.url, { transports: ["websocket"] });
  const b = await connect(srv.url, { transports: ["websocket"] });
  try {
    const got = [];
    a.onAny((ev, ...args) => got.push(strip([ev, ...args])));
    await request(b, "send", "room:news", "first", [0]);
    await until(() => got.length >= 1, "the first packet");
    const seen = { recovered: 0, fresh: 0 };
    for (let round = 1; round <= 40 && !(seen.recovered && seen.fresh); round++) {
      const id = a.id;
      const w = workerOf(a.io.engine.id);
      a.io.engine.close(); // the network drops
      // the server has seen the leave when a client of the same worker no longer finds the socket
      await until(async () => {
        const probe = await connect(srv.url, { transports: ["websocket"] });
        const gone = workerOf(probe.io.engine.id) === w && !(await request(probe, "connected", id))[0];
        probe.disconnect();
        return gone;
      }, "a's worker to see the leave");
      const steps = [["room:news", round * 10 + 1], ["all", round * 10 + 2], ["ID", round * 10 + 3], ["room:x", round * 10 + 4]];
      for (const [target, i] of steps) await request(b, "send", target.replace("ID", id), "m", [i]);
      const n0 = got.length;
      a.connect();
      await once(a, "connect");
      await request(b, "send", "room:news", "sentinel", [-round]);
      await until(() => got.some((e) => e[0] === "sentinel" && e[1] === -round), "the sentinel");
      const events = got.slice(n0);
      if (workerOf(a.io.engine.id) === w) {
        assert.equal(a.recovered, true, `round ${round}: back on worker ${w}`);
        assert.equal(a.id, id);
        assert.deepEqual(events, [...expectedEvents(steps).slice(0, -1), ["sentinel", -round, "<offset>"]]);
        seen.recovered++;
      } else {
        assert.equal(a.recovered, false, `round ${round}: on the other worker`);
        assert.notEqual(a.id, id);
        assert.deepEqual(events, [["sentinel", -round, "<offset>"]], "nothing of the old socket's missed events");
        seen.fresh++;
      }
    }
    assert.ok(seen.recovered > 0 && seen.fresh > 0, `both outcomes seen: ${JSON.stringify(seen)}`);
  } finally {
    a.disconnect();
    b.disconnect();
    await srv.stop();
  }
});
