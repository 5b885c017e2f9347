// The wire options in headless Chromium (issue 15): a page loads the msgpack bundle siolua serves
// (/socket.io/socket.io.msgpack.min.js) and talks to a --parser msgpack server; a page loads
// socket.io-client@2's browser bundle and talks to an --allow-eio3 server over XHR2 polling, where
// binary travels in binary payloads (the Node v2 client asks for base64), and over WebSocket.
// Both pass against the reference too (SIOLUA_REF=1).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { startServer, ROOT, WAIT } from "../helpers.mjs";
import { launchChromium } from "./chat.helpers.mjs";

let browser;
const servers = [];
before(async () => {
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
  for (const s of servers) await s.stop();
});

/** A page of srv's origin (its static index), with errors collected. */
async function page(srv) {
  const context = await browser.newContext();
  const p = await context.newPage();
  const errors = [];
  p.on("pageerror", (e) => errors.push(e.message));
  await p.goto(srv.url + "/index.html", { timeout: WAIT });
  return { p, errors };
}

// In the page: connect with the given options, echo a value holding binary at depth, then ask the
// server to ask back (a server -> client ack); resolves to what came back, binaries as byte arrays.
const SCRIPT = async ({ opts, v2, wait }) => {
  const bytes = (b) => Array.from(new Uint8Array(b));
  const plain = (x) => x instanceof ArrayBuffer || ArrayBuffer.isView(x) ? { bin: bytes(x.buffer ? x : x) } :
    Array.isArray(x) ? x.map(plain) : x && typeof x === "object" ? Object.fromEntries(Object.entries(x).map(([k, v]) => [k, plain(v)])) : x;
  const s = io(location.origin, { forceNew: true, reconnection: false, ...opts });
  await new Promise((resolve, reject) => {
    s.once("connect", resolve);
    s.once(v2 ? "error" : "connect_error", reject);
    setTimeout(() => reject(new Error("no connect")), wait);
  });
  const value = { text: "héllo 😀", n: 2 ** 53 - 1, f: 0.1, list: [new Uint8Array([0, 1, 255]).buffer, { deep: new Uint8Array([7]).buffer }] };
  const echoed = await new Promise((resolve) => s.emit("echo", value, resolve));
  s.on("question", (q, cb) => cb(q, new Uint8Array([9, 8]).buffer));
  const answered = new Promise((resolve) => s.once("answered", (...a) => resolve(a)));
  s.emit("ask", "why?");
  const answer = await answered;
  const transport = s.io.engine.transport.name;
  s.close();
  return { echoed: plain(echoed), answer: plain(answer), transport };
};

const WANT_ECHO = { text: "héllo 😀", n: 2 ** 53 - 1, f: 0.1, list: [{ bin: [0, 1, 255] }, { deep: { bin: [7] } }] };

test("msgpack: a page with the served socket.io.msgpack.min.js, over polling, WebSocket and upgrade", async () => {
  const srv = await startServer("parsers", ["--parser", "msgpack"]);
  servers.push(srv);
  const { p, errors } = await page(srv);
  await p.addScriptTag({ url: srv.url + "/socket.io/socket.io.msgpack.min.js" });
  for (const transports of [["polling"], ["websocket"], ["polling", "websocket"]]) {
    const r = await p.evaluate(SCRIPT, { opts: { transports }, v2: false, wait: WAIT });
    assert.deepEqual(r.echoed, WANT_ECHO, String(transports));
    assert.deepEqual(r.answer, ["why?", { bin: [9, 8] }]);
    assert.equal(r.transport, transports.at(-1));
  }
  assert.deepEqual(errors, []);
});

test("Socket.IO v2: a page with socket.io-client@2's bundle, XHR2 polling (binary payloads), WebSocket and upgrade", async () => {
  const srv = await startServer("parsers", ["--allow-eio3"]);
  servers.push(srv);
  const { p, errors } = await page(srv);
  // binary payloads both ways: POSTs and polling answers of type application/octet-stream
  const binary = { sent: 0, received: 0 };
  p.on("request", (r) => {
    if (r.url().includes("EIO=3") && r.method() === "POST" && r.headers()["content-type"] === "application/octet-stream") binary.sent++;
  });
  p.on("response", (r) => {
    if (r.url().includes("EIO=3") && r.headers()["content-type"] === "application/octet-stream") binary.received++;
  });
  await p.addScriptTag({ content: readFileSync(path.join(ROOT, "node_modules/socket.io-client-v2/dist/socket.io.js"), "utf8") });
  for (const transports of [["polling"], ["websocket"], ["polling", "websocket"]]) {
    const r = await p.evaluate(SCRIPT, { opts: { transports }, v2: true, wait: WAIT });
    assert.deepEqual(r.echoed, WANT_ECHO, String(transports));
    assert.deepEqual(r.answer, ["why?", { bin: [9, 8] }]);
    if (transports.length === 1) assert.equal(r.transport, transports[0]);
    if (transports[0] === "polling" && transports.length === 1)
      assert.ok(binary.sent > 0 && binary.received > 0, `binary payloads: ${JSON.stringify(binary)}`);
  }
  assert.deepEqual(errors, []);
});
