// README, "The Lua API": "every method works both as obj.method(...) (JS habit) and obj:method(...)
// (Lua habit)". The methods come from the README itself: every `receiver.method(` of the Lua column
// of the API tables (or of the JS column where the Lua one says "same"), and of the Redis
// section's table, classified by its receiver (a namespace, a socket, a broadcast operator, an
// Engine.IO connection or endpoint). apps/api_colon.lua runs a case for each with two groups of
// fixtures, one spelled obj.m(...), the other obj:m(...); the test checks that every documented
// method has a case, that both spellings returned and changed the same, and that the clients of
// both groups received the same. io.options (both spellings at the app's top level) is checked in
// the handshake here, io:close() in api_close.test.mjs.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { Socket as EioSocket } from "engine.io-client";
import { io as ioClient } from "socket.io-client";
import { REF, ROOT, WAIT, startServer, connect, closeAll, once, request, until, withTimeout } from "./helpers.mjs";

const skip = REF && "obj:method() is a Lua spelling";

/** The documented [kind, method] pairs (see the file's comment). */
function documented() {
  const md = readFileSync(path.join(ROOT, "README.md"), "utf8");
  const cut = (from, to) => md.slice(md.indexOf(from), md.indexOf(to, md.indexOf(from)));
  const spans = [];
  const rows = (text, lua) => {
    for (const line of text.split("\n")) {
      if (!line.startsWith("| ") || /^\| (---|JS|Lua) /.test(line)) continue;
      const cells = line.slice(2, -2).split(" | ");
      const cell = lua === 1 && /^same\b/.test(cells[1] || "") ? cells[0] : cells[lua];
      for (const m of (cell || "").matchAll(/`([^`]+)`/g)) spans.push(m[1]);
    }
  };
  rows(cut("### The Lua API", "### Values"), 1);
  rows(cut("What is cluster-wide", "Every namespace has its own channels"), 0);
  const pairs = new Set();
  for (const code of spans) {
    for (const m of code.matchAll(/(?:\.(\w+)|\["(\w+)"\])\s*[({]/g)) {
      let i = m.index;
      let depth = 0;
      while (i > 0) { // the receiver: walk back over names, dots and bracketed groups
        const ch = code[i - 1];
        if (")]}".includes(ch)) depth++;
        else if ("([{".includes(ch)) {
          if (depth === 0) break;
          depth--;
        } else if (depth === 0 && !/[\w.]/.test(ch)) break;
        i--;
      }
      const kind = kindOf(code.slice(i, m.index));
      if (kind) pairs.add(`${kind}.${m[1] || m[2]}`);
    }
  }
  return [...pairs].sort();
}

/** The kind of object a receiver expression is, from its base and what was applied to it. */
function kindOf(receiver) {
  const steps = receiver.match(/^\w+|\.\w+|\["\w+"\]/g) || [];
  const base = steps.shift();
  let kind = { io: "namespace", admin: "namespace", dyn: "namespace", nsp: "namespace", socket: "socket", conn: "conn", engine: "engine" }[base];
  for (const s of steps.map((x) => x.replace(/^\.|^\["|"\]$/g, ""))) {
    if (["to", "in", "except", "timeout", "compress", "volatile", "local", "broadcast"].includes(s)) kind = "operator";
    else if (s === "engine" && kind === "namespace") kind = "engine";
    else if (s === "conn" && kind === "socket") kind = "conn";
    else if (s === "of" || s === "sockets" || s === "nsp") kind = "namespace";
  }
  return kind; // undefined for siolua.*, string.*, ...: module functions, not methods
}

// Checked elsewhere: io.options below (the handshake), io.close in api_close.test.mjs.
const ELSEWHERE = ["namespace.options", "namespace.close"];

let srv;
const clients = {}; // group -> role -> { socket, got: [events] }
const raws = [];
const sockets = [];
before(async () => {
  if (REF) return;
  srv = await startServer("api_colon");
});
after(async () => {
  for (const r of raws) r.close();
  for (const c of sockets) c.disconnect();
  closeAll();
  await srv?.stop();
});

/**
 * A socket.io client of a group and role, recording every event but the questions it answers,
 * from the first (its namespace's connection listeners may emit before "connect" reaches us).
 */
async function client(group, role, nsp = "/") {
  const socket = ioClient(srv.url + nsp, { forceNew: true, reconnection: false, transports: ["websocket"], auth: { group, role } });
  sockets.push(socket);
  const got = [];
  socket.on("question", (x, cb) => cb(`re:${x}`));
  socket.onAny((ev, ...args) => ev !== "question" && got.push([ev, ...args]));
  socket.on("disconnect", (reason) => got.push(["disconnect", reason]));
  await once(socket, "connect");
  return { socket, got };
}

/** A raw Engine.IO client of the endpoint /colon-eio/, recording its messages and its close. */
function raw(query) {
  const s = new EioSocket(srv.url, { path: "/colon-eio/", transports: ["websocket"], query });
  raws.push(s);
  s.got = [];
  s.on("message", (d) => s.got.push(["message", d]));
  s.on("close", (reason) => s.got.push(["close", reason]));
  return withTimeout(new Promise((resolve, reject) => {
    s.once("open", () => resolve(s));
    s.once("error", reject);
  }), WAIT, `raw connection ${JSON.stringify(query)}`);
}

test("io.options and io:options at the top level both apply", { skip }, async () => {
  const res = await fetch(`${srv.url}/socket.io/?EIO=4&transport=polling`);
  const open = JSON.parse((await res.text()).slice(1));
  assert.deepEqual([open.pingInterval, open.pingTimeout], [21000, 11000]);
});

test("every documented method of io, namespaces, sockets, operators and Engine.IO objects: obj:m() is obj.m()", { skip }, async () => {
  const doc = documented();
  // the parser finds what it must: a few known pairs of each kind
  for (const p of ["namespace.on", "namespace.fetchSockets", "namespace.serverCount", "socket.join", "socket.emitWithAck",
    "operator.emit", "operator.emitWithAck", "conn.send", "engine.on"]) assert.ok(doc.includes(p), `${p} in ${doc}`);

  for (const g of ["dot", "colon"]) {
    clients[g] = {};
    for (const role of ["s", "peer", "victim", "victim2"]) clients[g][role] = await client(g, role);
    clients[g].n = await client(g, "n", `/colon-${g}`);
    for (const role of ["raw", "rawclose"]) clients[g][role] = await raw({ group: g, role });
  }
  const driver = await connect(srv.url, { transports: ["websocket"], auth: { role: "driver" } });
  const [results, cases] = await request(driver, "run");

  // every documented method has a case (or is checked elsewhere)
  const missing = doc.filter((p) => !cases.includes(p) && !ELSEWHERE.includes(p));
  assert.deepEqual(missing, [], "documented methods without a case in apps/api_colon.lua");
  // both spellings returned and changed the same, case by case
  assert.equal(results.dot.length, cases.length);
  for (const [i, [name, dot]] of results.dot.entries()) {
    const [cname, colon] = results.colon[i];
    assert.equal(cname, name);
    assert.deepEqual(colon, dot, `${name}: obj:m() gave ${JSON.stringify(colon)}, obj.m() ${JSON.stringify(dot)}`);
  }
  const byName = Object.fromEntries(results.dot);
  // and what they gave is right, not just equal (a few checks; the clients' side below)
  assert.deepEqual(byName["socket.join"], ["fixture:s", ["j1", "j2", "s"]]);
  assert.deepEqual(byName["socket.emitWithAck"], "re:socket.emitWithAck");
  assert.deepEqual(byName["operator.emitWithAck"], ["re:operator.emitWithAck"]);
  assert.deepEqual(byName["namespace.fetchSockets"], ["fixture:n"]);
  assert.deepEqual(byName["socket.timeout"].op, { nsp: "io", rooms: [], except: [], flags: { timeout: 1234 }, socket: "fixture:s" });
  assert.deepEqual(byName["socket.disconnect"], ["fixture:victim", false]);
  assert.deepEqual(byName["conn.on"], ["conn of fixture:s", "fixture:raw"]);

  // what the clients do after the run reaches the listeners both spellings registered
  for (const g of ["dot", "colon"]) {
    const { s, raw: r } = clients[g];
    assert.deepEqual(await request(s.socket, "probe-on"), ["socket.on"]);
    s.socket.emit("probe-once");
    s.socket.emit("probe-once");
    s.socket.emit("probe-off");
    s.socket.emit("probe-use", "unchanged");
    await request(s.socket, "probe-on"); // after those four: their effects have arrived
    r.send("probe");
    await until(() => r.got.some(([, d]) => d === "conn.on"), `${g}: conn.on's answer`);
    const late = await client(g, "late", `/colon-late-${g}`);
    await until(() => late.got.length >= 2, `${g}: the late socket's connection listeners`);
    clients[g].late = late;
  }
  const greeted = await raw({ role: "after" });
  await until(() => greeted.got.length >= 2, "both engine.on listeners");
  assert.deepEqual(greeted.got.map(([, d]) => d).sort(), ["engine.on:colon", "engine.on:dot"]);
  const res = await fetch(`${srv.url}/socket.io/?EIO=4&transport=polling`);
  assert.deepEqual([res.headers.get("x-colon-dot"), res.headers.get("x-colon-colon")], ["engine.on", "engine.on"]);
  await res.text();

  // each role of both groups received the same, and the right thing
  for (const role of ["s", "peer", "victim", "victim2", "n", "late"]) {
    await until(() => !["victim", "victim2", "n"].includes(role) || clients.colon[role].got.some(([ev]) => ev === "disconnect"), `${role} disconnected`);
    assert.deepEqual(clients.colon[role].got, clients.dot[role].got, `what ${role} received`);
  }
  for (const role of ["raw", "rawclose"]) {
    await until(() => role !== "rawclose" || clients.colon[role].got.some(([ev]) => ev === "close"), `${role} closed`);
    assert.deepEqual(clients.colon[role].got, clients.dot[role].got, `what ${role} received`);
  }
  const got = (role) => clients.dot[role].got;
  assert.deepEqual(got("s"), [
    ["fx", "socket.emit"], ["message", "socket.send"], ["message", "socket.write"], ["fx", "watched"], ["fx", "unwatched"],
    ["fx", "operator.emit (local)"], ["fx", "socket.once"], ["fx", "socket.use"],
  ]);
  assert.deepEqual(got("peer"), [["fx", "operator.emit (broadcast)"]]);
  assert.deepEqual(got("victim"), [["disconnect", "io server disconnect"]]);
  assert.deepEqual(got("victim2"), [["disconnect", "io server disconnect"]]);
  assert.deepEqual(got("n"), [["fx", "namespace.emit"], ["fx", "operator.emit"], ["disconnect", "io server disconnect"]]);
  assert.deepEqual(got("late"), [["fx", "namespace.on"], ["fx", "namespace.use"]]);
  assert.deepEqual(got("raw"), [["message", "conn.send"], ["message", "conn.on"]]);
  assert.deepEqual(got("rawclose")[0][0], "close");
});
