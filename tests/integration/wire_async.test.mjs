// Issue 11: allowRequest and dynamic namespace functions may answer later, as in Node: after a
// timer, or after asking connected clients (emitWithAck); meanwhile the HTTP request (or the
// CONNECT) waits. siolua bounds the wait by connectTimeout (2000 ms here), then refuses with a
// warning, ignores a second answer, and refuses at once when the function raises; the reference
// has no deadline, answers twice (and throws), and crashes on a raising function: those cases run
// against siolua only. A client that goes away while its request waits breaks nothing.
// App: apps/wire_async.lua (twin: ref/wire_apps.mjs); SIOLUA_REF=1 runs it against Node.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { startServer, connect, closeAll, request, once, sleep, withTimeout, REF, WAIT } from "./helpers.mjs";

const SIOLUA_ONLY = REF && "siolua bounds the wait, ignores a second answer and survives a raising function";
let srv, approver;
const approvals = []; // what the approver was asked
before(async () => {
  srv = await startServer("wire_async", ["--connect-timeout", "2000"]);
  approver = await connect(srv.url, { transports: ["websocket"] });
  approver.on("approve", async (who, ack) => {
    approvals.push(who);
    if (who === "/late-slow") await sleep(300); // answers after its asker went away
    ack(who === "alice" || who === "/late-yes" || who === "/late-slow");
  });
  await request(approver, "approver");
});
after(async () => { closeAll(); await srv?.stop(); });

const handshakeUrl = (query) => `${srv.url}/socket.io/?EIO=4&transport=polling&${query}`;

async function handshake(query) {
  const res = await fetch(handshakeUrl(query));
  return [res.status, await res.text()];
}

test("allowRequest answering after a timer: the handshake waits for it (polling and WebSocket)", async () => {
  const [status, body] = await handshake("mode=timer&ms=200");
  assert.equal(status, 200);
  assert.match(body, /^0\{"sid":/);
  for (const transports of [["polling"], ["websocket"]]) {
    const s = await connect(srv.url, { transports, query: { mode: "timer" } });
    assert.equal(s.connected, true);
    s.disconnect();
  }
});

test("a later refusal: 403 with allowRequest's message", async () => {
  const [status, body] = await handshake("mode=refuse");
  assert.equal(status, 403);
  assert.deepEqual(JSON.parse(body), { code: 4, message: "not today" });
});

test("allowRequest asking connected clients with emitWithAck", async () => {
  assert.equal((await handshake("mode=ask&who=alice"))[0], 200);
  assert.equal((await handshake("mode=ask&who=bob"))[0], 403);
  const s = await connect(srv.url, { transports: ["websocket"], query: { mode: "ask", who: "alice" } });
  s.disconnect();
  assert.deepEqual(approvals.filter((w) => w === "alice" || w === "bob"), ["alice", "bob", "alice"]);
});

test("a client that goes away while allowRequest waits", async () => {
  const ctl = new AbortController();
  const pending = fetch(handshakeUrl("mode=timer&ms=300"), { signal: ctl.signal });
  await sleep(50);
  ctl.abort();
  await assert.rejects(pending);
  const ws = new WebSocket(`ws://127.0.0.1:${srv.port}/socket.io/?EIO=4&transport=websocket&mode=timer&ms=300`);
  ws.on("error", () => {});
  await sleep(50);
  ws.terminate();
  await sleep(400); // the answers come for requests that are gone
  assert.equal((await handshake("mode=timer&ms=10"))[0], 200);
});

test("allowRequest calling back twice: the first answer holds", { skip: SIOLUA_ONLY }, async () => {
  const [status, body] = await handshake("mode=twice");
  assert.equal(status, 200);
  assert.match(body, /^0\{"sid":/);
});

test("allowRequest that never answers: refused after connectTimeout, with a warning", { skip: SIOLUA_ONLY }, async () => {
  const [status, body] = await withTimeout(handshake("mode=never"), 8000, "the refusal");
  assert.equal(status, 403);
  assert.deepEqual(JSON.parse(body), { code: 4, message: "Forbidden" });
  await srv.waitLog(/allowRequest did not answer \/socket\.io\/\?EIO=4&transport=polling&mode=never within 2000 ms: refused/);
});

test("allowRequest that raises: refused at once, the error logged", { skip: SIOLUA_ONLY }, async () => {
  const [status] = await handshake("mode=raise");
  assert.equal(status, 403);
  await srv.waitLog(/allowRequest failed on purpose/);
});

/** A socket on namespace nsp over the approver's connection... no: its own connection. */
async function nspSocket(nsp, auth) {
  const s = await connect(`${srv.url}${nsp}`, { transports: ["websocket"], auth });
  return s;
}

test("a dynamic namespace function answering after a timer, or refusing", async () => {
  const s = await nspSocket("/late-1", { ok: true });
  assert.deepEqual(await request(s, "where"), ["/late-1", "late"]);
  await assert.rejects(nspSocket("/late-2", { ok: false }), /Invalid namespace/);
  // the names the function refuses go to the next dynamic namespace, a pattern
  const p = await nspSocket("/pat-7", {});
  assert.deepEqual(await request(p, "where"), ["/pat-7", "pattern"]);
  await assert.rejects(nspSocket("/nothing", {}), /Invalid namespace/);
});

test("a dynamic namespace function asking connected clients with emitWithAck", async () => {
  const s = await nspSocket("/late-yes", { mode: "ask" });
  assert.deepEqual(await request(s, "where"), ["/late-yes", "late"]);
  await assert.rejects(nspSocket("/late-no", { mode: "ask" }), /Invalid namespace/);
});

test("a client that goes away while its namespace is being decided", async () => {
  const s = (await import("socket.io-client")).io(`${srv.url}/late-slow`, {
    forceNew: true, reconnection: false, transports: ["websocket"], auth: { mode: "ask" },
  });
  await withTimeout(new Promise((resolve) => {
    const check = () => (approvals.includes("/late-slow") ? resolve() : setTimeout(check, 10));
    check();
  }), WAIT, "the approver being asked");
  s.disconnect(); // before the approver answers (300 ms)
  await sleep(400);
  const again = await nspSocket("/late-1", { ok: true });
  assert.deepEqual(await request(again, "where"), ["/late-1", "late"]);
});

test("a dynamic namespace function calling next twice: the first answer holds", { skip: SIOLUA_ONLY }, async () => {
  const s = await nspSocket("/late-3", { mode: "twice" });
  assert.deepEqual(await request(s, "where"), ["/late-3", "late"]);
  await sleep(100);
  assert.equal(s.connected, true);
});

test("a dynamic namespace function that never answers: connect_error after connectTimeout", { skip: SIOLUA_ONLY }, async () => {
  const main = await connect(srv.url, { transports: ["websocket"] });
  const late = main.io.socket("/late-4", { auth: { mode: "never" } });
  const [err] = await once(late, "connect_error", 8000);
  assert.equal(err.message, "Invalid namespace");
  await srv.waitLog(/the dynamic namespaces did not answer a CONNECT to \/late-4 within 2000 ms: refused/);
  assert.deepEqual(await request(main, "approver"), []); // the connection itself is fine
  late.close();
});

test("a dynamic namespace function that raises: Invalid namespace at once, the error logged", { skip: SIOLUA_ONLY }, async () => {
  await assert.rejects(nspSocket("/late-5", { mode: "raise" }), /Invalid namespace/);
  await srv.waitLog(/namespace function failed on purpose/);
});
