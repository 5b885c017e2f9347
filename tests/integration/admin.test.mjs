// The Admin UI's protocol (io.instrument, --admin-ui): siolua and the Node reference with
// @socket.io/admin-ui 0.5.1's instrument() (ref/apps.mjs's admin twin) side by side, the same
// scripted scenario against each, the admin namespace's events compared once what depends on
// time and ids is replaced by placeholders: basic auth (good, bad, none, a session id), config,
// all_sockets, the development notifications, each of the UI's commands, readonly, production
// mode, server_stats' fields. Then siolua's own: the command-line flags, bad options, the UI's page.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { io as ioClient } from "socket.io-client";
import { ROOT, REF, WAIT, startServer, withTimeout, closeAll } from "./helpers.mjs";

const BIN = path.resolve(ROOT, process.env.SIOLUA_BIN || "./siolua");
// bcrypt hashes of "s3cret!": bcryptjs's $2a$ (what the reference's README makes), and libxcrypt's
// $2b$ (python's crypt) with its $2y$ spelling
const HASH_2A = "$2a$10$ISJ84lB4V5i1NfgpzDlCg.DSlmbYljSOU8bV3fMBDaYF.amGTsV9y";
const PASSWORD = "s3cret!";

after(closeAll);

const servers = [];
after(() => Promise.all(servers.map((s) => s.stop())));
async function start(env, args = [], { ref = REF } = {}) {
  const srv = await startServer("admin", args, { env: { ...process.env, ...env }, ref });
  servers.push(srv);
  return srv;
}

/** A client of url that records every event it gets, in order; resolves once connected. */
function client(url, opts = {}) {
  const s = ioClient(url, { forceNew: true, reconnection: false, transports: ["websocket"], ...opts });
  s.log = [];
  s.onAny((ev, ...args) => s.log.push([ev, ...args]));
  s.ready = withTimeout(
    new Promise((resolve, reject) => {
      s.once("connect", resolve);
      s.once("connect_error", reject);
    }),
    WAIT,
    `connect to ${url}`,
  );
  return s;
}

/** Resolves once socket's log has an event ev whose args satisfy pred (from index `from`). */
function until(socket, ev, pred = () => true) {
  return withTimeout(
    new Promise((resolve) => {
      const check = () => {
        const hit = socket.log.find((e) => e[0] === ev && pred(...e.slice(1)));
        if (hit) {
          socket.offAny(check);
          resolve(hit);
        }
      };
      socket.onAny(check);
      check();
    }),
    WAIT,
    () => `"${ev}" on ${socket.nsp}; got ${JSON.stringify(socket.log.map((e) => e[0]))}`,
  );
}

const emitAck = (s, ...args) => withTimeout(new Promise((resolve) => s.emit(...args, (...r) => resolve(r))), WAIT, args[0]);

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

/** Replaces what depends on time, ports and random ids with placeholders. */
function normalize(log, names) {
  const fix = (v, key) => {
    if (typeof v === "string") {
      if (names.has(v)) return names.get(v);
      if (ISO.test(v)) return "<date>";
      return v;
    }
    if (Array.isArray(v)) return v.map((x) => fix(x));
    if (v && typeof v === "object") {
      if (key === "handshake") {
        return {
          address: v.address,
          secure: v.secure,
          xdomain: v.xdomain,
          issued: typeof v.issued,
          time: typeof v.time,
          url: v.url.replace(/&t=[^&]*/, ""),
          query: Object.fromEntries(Object.entries(v.query).filter(([k]) => k !== "t")),
          headers: Object.keys(v.headers).sort(),
        };
      }
      const out = {};
      for (const k of Object.keys(v).sort()) {
        if (k === "clientId") out[k] = typeof v[k] === "string" && v[k].length === 12 ? "<clientId>" : v[k];
        else out[k] = fix(v[k], k);
      }
      if (key === "socket" && Array.isArray(out.rooms)) out.rooms.sort(); // (a set: no order to compare)
      return out;
    }
    return v;
  };
  return log.filter((e) => e[0] !== "server_stats").map(([ev, ...args]) => {
    if (ev === "all_sockets") {
      const list = args[0].map((s) => fix(s, "socket"));
      list.sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
      return [ev, list];
    }
    if (ev === "socket_connected") return [ev, fix(args[0], "socket"), fix(args[1])];
    if (ev === "session") return [ev, /^[0-9a-f]{16}$/.test(args[0]) ? "<session>" : args[0]];
    return [ev, ...args.map((a) => fix(a))];
  });
}

/**
 * The scenario, against one server: an admin UI (password auth) and two clients, every
 * notification and every command. Returns the admin's normalized events and what the clients saw.
 */
async function scenario(url, { readonly = false, dev = true } = {}) {
  const names = new Map();
  const admin = client(url + "/admin", { auth: { username: "admin", password: PASSWORD } });
  await admin.ready;
  names.set(admin.id, "<admin>");
  await until(admin, dev ? "all_sockets" : "config");
  const a = client(url);
  await a.ready;
  names.set(a.id, "<A>");
  const seen = (ev, pred) => (dev ? until(admin, ev, pred) : Promise.resolve());
  await seen("socket_connected", (s) => s.id === a.id);
  await emitAck(a, "join", "r1");
  await seen("room_joined", (nsp, room) => room === "r1");
  await emitAck(a, "echo", { n: 1, list: [1, "x", null] });
  await seen("event_sent", (nsp, id, args) => args[0] === "echo");
  const chat = client(url + "/chat");
  await chat.ready;
  names.set(chat.id, "<chat>");
  await seen("room_joined", (nsp, room) => nsp === "/chat" && room === "news");

  // the UI's commands (the UI's own argument shapes: ui/src), one at a time: the reference
  // reports a leave on the next tick, after whatever else the same read of the socket brought
  const hello = new Promise((resolve) => a.once("hello", (...args) => resolve(args)));
  const act = (what, ...args) => (readonly ? Promise.resolve() : seen(...args)).then(() => what);
  admin.emit("join", "/", "r2", a.id);
  await act(0, "room_joined", (nsp, room) => room === "r2");
  admin.emit("leave", "/chat", "news");
  await act(0, "room_left", (nsp, room) => room === "news");
  admin.emit("join", "/chat", "everyone");
  await act(0, "room_joined", (nsp, room) => room === "everyone");
  admin.emit("emit", "/", "r2", "hello", 1, "two");
  let gotHello = null;
  if (!readonly) {
    gotHello = await withTimeout(hello, WAIT, "hello from the UI's emit");
    await seen("event_sent", (nsp, id, args) => args[0] === "hello");
  } else {
    // refused commands leave no trace to wait for: two stats periods (4 s) after they were sent
    const n = admin.log.filter((e) => e[0] === "server_stats").length;
    await until(admin, "server_stats", () => admin.log.filter((e) => e[0] === "server_stats").length >= n + 2);
  }
  const [, inR2] = await emitAck(a, "whoami");
  await emitAck(a, "leave", "r1");
  await seen("room_left", (nsp, room) => room === "r1");
  const aGone = new Promise((resolve) => a.once("disconnect", resolve));
  const aId = a.id, chatId = chat.id;
  admin.emit("_disconnect", "/", false, aId);
  let aReason = null;
  if (!readonly) {
    aReason = await withTimeout(aGone, WAIT, "A disconnected by the UI");
    await seen("room_left", (nsp, room, id) => id === aId && room === "r2");
  } else {
    await emitAck(a, "echo", "still here");
  }
  chat.disconnect();
  await seen("socket_disconnected", (nsp, id) => id === chatId);
  await seen("room_left", (nsp, room, id) => id === chatId && room === (readonly ? "news" : "everyone"));
  // a client that upgrades from polling: socket_updated with its transport
  const c = client(url, { transports: ["polling", "websocket"] });
  await c.ready;
  names.set(c.id, "<C>");
  await seen("socket_updated", (u) => u.id === c.id && u.transport === "websocket");
  const stats = (await until(admin, "server_stats", (s) => s.namespaces.some((n) => n.name === "/chat")))[1];
  const cId = c.id;
  c.disconnect();
  await seen("socket_disconnected", (nsp, id) => id === cId);
  await seen("room_left", (nsp, room, id) => id === cId);
  // the admin's log up to here (a server_stats may still come: they are compared apart)
  const log = normalize(admin.log, names);
  admin.disconnect();
  a.disconnect();
  return { log, inR2, gotHello, aReason, stats };
}

function checkStats(stats, serverId) {
  assert.deepEqual(Object.keys(stats).sort(), ["aggregatedEvents", "clientsCount", "hostname", "namespaces",
    "pid", "pollingClientsCount", "serverId", "uptime"]);
  assert.equal(stats.serverId, serverId);
  assert.equal(typeof stats.hostname, "string");
  assert.ok(Number.isInteger(stats.pid) && stats.uptime > 0 && Number.isInteger(stats.clientsCount));
  assert.ok(Number.isInteger(stats.pollingClientsCount));
  for (const e of stats.aggregatedEvents) {
    assert.ok(["rawConnection", "rawDisconnection", "packetsIn", "packetsOut", "bytesIn", "bytesOut"].includes(e.type), e.type);
    assert.ok(Number.isInteger(e.timestamp) && e.timestamp % 1000 === 0 && e.count > 0, JSON.stringify(e));
  }
  return stats.namespaces.map((n) => `${n.name}:${n.socketsCount}`).sort();
}

test("development mode: siolua's admin namespace sends what the reference's sends, the commands act alike", { skip: REF && "side by side already" }, async () => {
  const env = { ADMIN_HASH: HASH_2A, ADMIN_SERVER_ID: "node-1" };
  const [sio, ref] = await Promise.all([start(env), start(env, [], { ref: true })]);
  const [got, want] = await Promise.all([scenario(sio.url), scenario(ref.url)]);
  assert.deepEqual(got.log, want.log);
  assert.deepEqual(got.log.map((e) => e[0]).filter((e, i, l) => l.indexOf(e) === i).sort(), ["all_sockets", "config",
    "event_received", "event_sent", "room_joined", "room_left", "session", "socket_connected", "socket_disconnected",
    "socket_updated"], "every notification was in the scenario");
  assert.deepEqual([got.inR2, got.gotHello, got.aReason], [want.inR2, want.gotHello, want.aReason]);
  assert.deepEqual([got.inR2, got.gotHello, got.aReason], [true, [1, "two"], "io server disconnect"]);
  assert.deepEqual(checkStats(got.stats, "node-1"), checkStats(want.stats, "node-1"));
});

test("readonly: the commands change nothing, config says so, as the reference", { skip: REF && "side by side already" }, async () => {
  const env = { ADMIN_HASH: HASH_2A, ADMIN_READONLY: "1", ADMIN_SERVER_ID: "ro" };
  const [sio, ref] = await Promise.all([start(env), start(env, [], { ref: true })]);
  const [got, want] = await Promise.all([scenario(sio.url, { readonly: true }), scenario(ref.url, { readonly: true })]);
  assert.deepEqual(got.log, want.log);
  assert.deepEqual(got.log.find((e) => e[0] === "config")[1], { supportedFeatures: ["AGGREGATED_EVENTS", "ALL_EVENTS"] });
  assert.deepEqual([got.inR2, got.gotHello, got.aReason], [false, null, null]);
});

test("production mode: config and session only, the counts in server_stats, as the reference", { skip: REF && "side by side already" }, async () => {
  const env = { ADMIN_HASH: HASH_2A, ADMIN_MODE: "production", ADMIN_SERVER_ID: "prod" };
  const [sio, ref] = await Promise.all([start(env), start(env, [], { ref: true })]);
  const [got, want] = await Promise.all([scenario(sio.url, { dev: false }), scenario(ref.url, { dev: false })]);
  assert.deepEqual(got.log, want.log);
  assert.deepEqual(got.log.map((e) => e[0]), ["session", "config"]);
  assert.deepEqual(got.log[1][1].supportedFeatures, ["EMIT", "JOIN", "LEAVE", "DISCONNECT", "MJOIN", "MLEAVE",
    "MDISCONNECT", "AGGREGATED_EVENTS"]);
  assert.deepEqual([got.inR2, got.gotHello, got.aReason], [true, [1, "two"], "io server disconnect"]);
  assert.deepEqual(checkStats(got.stats, "prod"), checkStats(want.stats, "prod"));
  // the aggregated counts moved with the scenario's traffic
  const admin = client(sio.url + "/admin", { auth: { username: "admin", password: PASSWORD } });
  await admin.ready;
  const types = new Set();
  for (let i = 0; i < 3 && !["rawConnection", "packetsIn", "packetsOut", "bytesIn", "bytesOut"].every((t) => types.has(t)); i++) {
    const n = admin.log.filter((e) => e[0] === "server_stats").length;
    const s = (await until(admin, "server_stats", () => admin.log.filter((e) => e[0] === "server_stats").length > n))[1];
    for (const e of s.aggregatedEvents) types.add(e.type);
  }
  for (const t of ["rawConnection", "packetsIn", "packetsOut", "bytesIn", "bytesOut"]) assert.ok(types.has(t), `${t} in ${[...types]}`);
  admin.disconnect();
});

test("a change of socket.data reaches the UI as socket_updated, as the reference (siolua: within 2 s)", { skip: REF && "side by side already" }, async () => {
  const env = { ADMIN_HASH: HASH_2A };
  const [sio, ref] = await Promise.all([start(env), start(env, [], { ref: true })]);
  const updates = await Promise.all([sio.url, ref.url].map(async (url) => {
    const admin = client(url + "/admin", { auth: { username: "admin", password: PASSWORD } });
    await admin.ready;
    await until(admin, "all_sockets");
    const a = client(url);
    await a.ready;
    await until(admin, "socket_connected", (s) => s.id === a.id);
    await emitAck(a, "set", "user", { name: "ann", tags: ["x"] });
    const [, u] = await until(admin, "socket_updated", (x) => x.id === a.id && x.data);
    await emitAck(a, "set", "score", 3);
    const [, v] = await until(admin, "socket_updated", (x) => x.id === a.id && x.data && "score" in x.data);
    admin.disconnect();
    a.disconnect();
    return [u, v].map((x) => ({ ...x, id: "<A>" }));
  }));
  assert.deepEqual(updates[0], updates[1]);
  assert.deepEqual(updates[0][1], { id: "<A>", nsp: "/", data: { user: { name: "ann", tags: ["x"] }, score: 3 } });
});

test("sockets that connected before the UI are reported once it is there, as the reference", { skip: REF && "side by side already" }, async () => {
  const env = { ADMIN_HASH: HASH_2A };
  const [sio, ref] = await Promise.all([start(env), start(env, [], { ref: true })]);
  const logs = await Promise.all([sio.url, ref.url].map(async (url) => {
    const names = new Map();
    const a = client(url);
    await a.ready;
    names.set(a.id, "<A>");
    await emitAck(a, "join", "early");
    const admin = client(url + "/admin", { auth: { username: "admin", password: PASSWORD } });
    await admin.ready;
    names.set(admin.id, "<admin>");
    await until(admin, "all_sockets");
    await emitAck(a, "echo", "late");
    await until(admin, "event_sent", (nsp, id, args) => args[0] === "echo");
    const aId = a.id;
    a.disconnect();
    await until(admin, "room_left", (nsp, room, id) => id === aId && room === "early");
    const log = normalize(admin.log, names);
    admin.disconnect();
    return log;
  }));
  assert.deepEqual(logs[0], logs[1]);
  assert.deepEqual(logs[0].map((e) => e[0]), ["session", "room_joined", "socket_connected", "config", "all_sockets",
    "event_received", "event_sent", "socket_disconnected", "room_left", "room_left"]);
});

/** How an admin connection with auth ends: ["connect", session?] or ["connect_error", message]. */
async function login(url, auth) {
  const s = client(url + "/admin", { auth });
  try {
    await s.ready;
  } catch (e) {
    s.close();
    return ["connect_error", e.message];
  }
  const session = (await until(s, "session").catch(() => null)) ?? null;
  await until(s, "config");
  const sid = s.log.find((e) => e[0] === "session")?.[1];
  s.disconnect();
  return ["connect", session ? /^[0-9a-f]{16}$/.test(sid) : "no session", sid];
}

test("basic auth: good, bad and no credentials, a session id, as the reference", { skip: REF && "side by side already" }, async () => {
  const env = { ADMIN_HASH: HASH_2A };
  const [sio, ref] = await Promise.all([start(env), start(env, [], { ref: true })]);
  // (a password that is not a string crashes the reference's server: bcryptjs throws)
  assert.deepEqual(await login(sio.url, { username: "admin", password: 42 }), ["connect_error", "invalid credentials"]);
  for (const url of [sio.url, ref.url]) {
    const good = await login(url, { username: "admin", password: PASSWORD });
    assert.deepEqual(good.slice(0, 2), ["connect", true], url);
    assert.deepEqual(await login(url, { sessionId: good[2] }).then((r) => r[0]), "connect", "a session id logs in");
    assert.deepEqual(await login(url, { username: "admin", password: "s3cret" }), ["connect_error", "invalid credentials"]);
    // (crypt(3) would stop at the NUL and match: siolua refuses such a password before it)
    assert.deepEqual(await login(url, { username: "admin", password: PASSWORD + "\0x" }), ["connect_error", "invalid credentials"]);
    assert.deepEqual(await login(url, { username: "root", password: PASSWORD }), ["connect_error", "invalid credentials"]);
    assert.deepEqual(await login(url, { sessionId: "0123456789abcdef" }), ["connect_error", "invalid credentials"]);
    assert.deepEqual(await login(url, undefined), ["connect_error", "invalid credentials"]);
  }
});

test("with --redis, every node reports to the UI: two nodes' stats, sockets and commands through one UI", { skip: REF && "siolua nodes only" }, async () => {
  const { startRedis } = await import("./redis.helpers.mjs");
  const redis = await startRedis();
  try {
    const [a, b] = await Promise.all(["node-a", "node-b"].map((id) =>
      start({ ADMIN_HASH: HASH_2A, ADMIN_SERVER_ID: id }, ["--redis", redis.url])));
    await Promise.all([a, b].map((n) => n.waitLog(/redis adapter: ready/, WAIT)));
    const admin = client(a.url + "/admin", { auth: { username: "admin", password: PASSWORD } });
    await admin.ready;
    await until(admin, "all_sockets");
    // both servers in the UI's server list
    await until(admin, "server_stats", (s) => s.serverId === "node-a");
    await until(admin, "server_stats", (s) => s.serverId === "node-b");
    // a client of node B: its connection and its rooms reach the UI on node A
    const bc = client(b.url);
    await bc.ready;
    const bId = bc.id;
    await until(admin, "socket_connected", (s) => s.id === bId);
    await emitAck(bc, "join", "r1");
    await until(admin, "room_joined", (nsp, room, id) => room === "r1" && id === bId);
    // a UI that connects later lists it (fetchSockets across the cluster), with its room
    const admin2 = client(a.url + "/admin", { auth: { username: "admin", password: PASSWORD } });
    await admin2.ready;
    const [, list] = await until(admin2, "all_sockets");
    const seen = list.find((s) => s.id === bId);
    assert.ok(seen, `node B's socket in all_sockets: ${JSON.stringify(list.map((s) => s.id))}`);
    assert.deepEqual([...seen.rooms].sort(), [bId, "r1"].sort());
    // the UI's commands reach node B's socket
    const hello = new Promise((resolve) => bc.once("hello", (...args) => resolve(args)));
    admin.emit("emit", "/", "r1", "hello", "from a");
    assert.deepEqual(await withTimeout(hello, WAIT, "hello through Redis"), ["from a"]);
    const gone = new Promise((resolve) => bc.once("disconnect", resolve));
    admin.emit("_disconnect", "/", false, bId);
    assert.equal(await withTimeout(gone, WAIT, "disconnect through Redis"), "io server disconnect");
    await until(admin, "socket_disconnected", (nsp, id) => id === bId);
    admin.disconnect();
    admin2.disconnect();
  } finally {
    await Promise.all(servers.splice(0).map((s) => s.stop()));
    await redis.stop();
  }
});

test("--admin-ui flags: on for an app without io.instrument, over io.instrument's options; bad ones refused", { skip: REF && "siolua's command line" }, async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "siolua-admin-"));
  const plain = path.join(dir, "plain.lua");
  writeFileSync(plain, 'io.on("connection", function(socket) socket.join("lobby") end)\n');
  // libxcrypt's $2b$ (cost 4) of PASSWORD, and the same hash spelled $2y$
  const hash2b = "$2b$04$2fmODLVbZ0267zS3pDvmYOLDPjqVtbyw5IeZvYCyj6fIxgvWLWorO";
  for (const hash of [hash2b, hash2b.replace("$2b$", "$2y$")]) {
    const srv = await startServer(plain, ["--admin-ui", `ops:${hash}`, "--admin-ui-mode", "production",
      "--admin-ui-server-id", "cli", "--admin-ui-namespace", "/ops"]);
    servers.push(srv);
    const s = client(srv.url + "/ops", { auth: { username: "ops", password: PASSWORD } });
    await s.ready;
    const [, config] = await until(s, "config");
    assert.deepEqual(config.supportedFeatures, ["EMIT", "JOIN", "LEAVE", "DISCONNECT", "MJOIN", "MLEAVE", "MDISCONNECT", "AGGREGATED_EVENTS"]);
    assert.equal((await until(s, "server_stats"))[1].serverId, "cli");
    assert.deepEqual(await login(srv.url, { username: "ops", password: PASSWORD }),
      ["connect_error", "Invalid namespace"], "/admin is not the admin namespace");
    s.disconnect();
  }
  // the flags win over the app's io.instrument{}: no auth, readonly
  const srv = await start({ ADMIN_HASH: HASH_2A }, ["--admin-ui-no-auth", "--admin-ui-readonly"], { ref: false });
  const s = client(srv.url + "/admin");
  await s.ready;
  assert.deepEqual((await until(s, "config"))[1].supportedFeatures, ["AGGREGATED_EVENTS", "ALL_EVENTS"]);
  s.disconnect();
  // refused at the start: exit status 1 (a bad hash, io.instrument's own checks) or 2 (usage)
  const bad = [
    [[plain, "--admin-ui", "ops:$2b$04$tooshort"], 1, /the `password` field must be a valid bcrypt hash/],
    [[plain, "--admin-ui", "no-colon"], 2, /admin-ui/],
    [[plain, "--admin-ui-mode", "staging"], 2, /admin-ui-mode/],
    [[plain, "--admin-ui", `ops:${hash2b}`, "--admin-ui-no-auth"], 1, /give one of them/],
  ];
  for (const [app, body, re] of [
    ["noauth.lua", "io.instrument{}", /the `auth` option must be specified or explicitly set to `false`/],
    ["badhash.lua", 'io.instrument{ auth = { type = "basic", username = "a", password = "secret" } }', /valid bcrypt hash/],
    ["badtype.lua", 'io.instrument{ auth = { type = "digest" } }', /invalid `auth` option/],
    ["badkey.lua", "io.instrument{ auth = false, mode = 'dev' }", /mode must be/],
    ["twice.lua", "io.instrument{ auth = false } io.instrument{ auth = false }", /already called/],
  ]) {
    writeFileSync(path.join(dir, app), body + "\n");
    bad.push([[path.join(dir, app)], 1, re]);
  }
  for (const [args, status, re] of bad) {
    const r = spawnSync(BIN, [...args, "--port", "0", "--no-watch"], { encoding: "utf8", timeout: 30000 });
    assert.equal(r.status, status, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, re, args.join(" "));
  }
});

test("the UI's page at --admin-ui-path / io.instrument{uiPath}: index, files, redirect, 404", { skip: REF && "siolua's flag" }, async () => {
  const srv = await start({ ADMIN_UI_PATH: "/dash" }, [], { ref: false });
  await srv.waitLog(/admin ui: the page at http:\/\/127\.0\.0\.1:\d+\/dash\//, WAIT);
  const get = (p) => fetch(srv.url + p, { redirect: "manual" });
  const index = await get("/dash/");
  assert.equal(index.status, 200);
  assert.match(index.headers.get("content-type"), /^text\/html/);
  const html = await index.text();
  assert.match(html, /<title>Socket\.IO Admin UI<\/title>/);
  const local = [...html.matchAll(/(?:href|src)="((?:js|css)\/[^"]+)"/g)].map((m) => m[1]);
  assert.ok(local.length >= 4, "the page's scripts and styles");
  for (const src of local) {
    const r = await get("/dash/" + src);
    assert.equal(r.status, 200, src);
    assert.equal((await r.arrayBuffer()).byteLength > 0, true);
  }
  const redirect = await get("/dash");
  assert.equal(redirect.status, 301);
  assert.equal(redirect.headers.get("location"), "/dash/");
  assert.equal((await get("/dash/js/nope.js")).status, 404);
  assert.equal((await get("/socket.io/socket.io.js")).status, 200, "the client bundle is still there");
  // a UI at "/" takes the app's page, not Socket.IO's paths
  const root = await start({ ADMIN_UI_PATH: "/" }, [], { ref: false });
  assert.match(await (await fetch(root.url + "/")).text(), /<title>Socket\.IO Admin UI<\/title>/);
  const c = client(root.url, { transports: ["polling", "websocket"] });
  await c.ready;
  assert.deepEqual(await emitAck(c, "echo", "through"), ["through"]);
  c.disconnect();
});

test("bad commands from the UI are refused and logged, a hot reload keeps the UI reporting", { skip: REF && "siolua's process" }, async () => {
  const srv = await start({}, ["--no-watch"], { ref: false });
  const admin = client(srv.url + "/admin");
  await admin.ready;
  await until(admin, "all_sockets");
  const a = client(srv.url);
  await a.ready;
  admin.emit("join", 42, "r");                    // not a namespace
  admin.emit("emit", "^/.*", null, "x");          // a pattern is not a namespace name
  admin.emit("emit", "/", null, "connect");       // a reserved event
  admin.emit("join", "/", { a: { b: 1 } }, a.id); // a room that is no string: nothing joined
  admin.emit("_disconnect");                      // no arguments at all
  const hello = new Promise((resolve) => a.once("hello", (...args) => resolve(args)));
  admin.emit("emit", "/", null, "hello", "still"); // and the next command works
  assert.deepEqual(await withTimeout(hello, WAIT, "hello"), ["still"]);
  assert.deepEqual(await emitAck(a, "whoami").then((r) => r[1]), false);
  assert.equal(a.connected && admin.connected, true);
  await srv.waitLog(/not a namespace: 42/, WAIT);
  await srv.waitLog(/reserved event name/, WAIT);
  // a hot reload (SIGHUP): the UI stays connected, the new code reports to it
  srv.proc.kill("SIGHUP");
  await srv.waitLog(/siolua: reloaded [^\n]*generation 2/, WAIT);
  const b = client(srv.url);
  await b.ready;
  await until(admin, "socket_connected", (s) => s.id === b.id);
  await emitAck(b, "join", "after");
  await until(admin, "room_joined", (nsp, room) => room === "after");
  const n = admin.log.filter((e) => e[0] === "server_stats").length;
  await until(admin, "server_stats", () => admin.log.filter((e) => e[0] === "server_stats").length > n);
  admin.disconnect();
});
