// Issue 11, the reference's wire behaviours on the transports, in raw HTTP and WebSocket bytes:
// - binary in a polling body is base64 as Node decodes it (line breaks and other characters
//   skipped, "-_" as "+/", the first "=" ends it): the bytes engine.io-client-java sends, and a
//   differential check over generated inputs (seed printed on failure: SEED=n to replay);
// - a close packet while a GET is held: the GET gets a noop and the session is gone (polling); over
//   WebSocket the reference ignores the packet;
// - a WebSocket opened with the sid of a session that upgraded (or is upgrading), or with
//   transport=polling: 101, then a close frame without a code.
// App: apps/wire_polling.lua (twin: ref/wire_apps.mjs); SIOLUA_REF=1 runs it against Node.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { startServer, withTimeout, REF, WAIT } from "./helpers.mjs";

let srv;
before(async () => { srv = await startServer("wire_polling"); });
after(async () => { await srv?.stop(); });

const polling = (path = "/socket.io/") => `${srv.url}${path}?EIO=4&transport=polling`;

/** Opens a polling session; resolves to its sid. */
async function handshake(path) {
  const res = await fetch(polling(path));
  const body = await res.text();
  assert.equal(res.status, 200, body);
  return JSON.parse(body.slice(1)).sid;
}

async function post(path, sid, body) {
  const res = await fetch(`${polling(path)}&sid=${sid}`, { method: "POST", body });
  return [res.status, await res.text()];
}

async function get(path, sid) {
  const res = await fetch(`${polling(path)}&sid=${sid}`);
  return [res.status, await res.text()];
}

/** GETs until `count` records came (heartbeats and noops left out); resolves to them. */
async function records(path, sid, count) {
  const got = [];
  while (got.length < count) {
    const [status, body] = await withTimeout(get(path, sid), 10000, `${count - got.length} more records`);
    assert.equal(status, 200, body);
    for (const r of body.split("\x1e")) if (r !== "2" && r !== "6") got.push(r);
  }
  return got;
}

/** base64 as engine.io-client-java writes it (android Base64.DEFAULT): a line break every 76
 * characters and one at the end. */
const mime = (bytes) => bytes.toString("base64").replace(/.{76}/g, "$&\n").replace(/\n?$/, "\n");

test("a binary emit as engine.io-client-java sends it over polling (MIME base64) arrives intact", async () => {
  const path = "/socket.io/";
  const sid = await handshake(path);
  assert.deepEqual(await post(path, sid, "40"), [200, "ok"]);
  assert.match((await records(path, sid, 1))[0], /^40\{"sid":/);
  const cases = [[Buffer.from([0, 1, 2, 255]), "bAAEC/w==\n"]]; // the example, as bytes
  for (const size of [57, 200, 1000]) {
    const bytes = Buffer.from(Array.from({ length: size }, (_, i) => (i * 37 + size) & 255));
    cases.push([bytes, "b" + mime(bytes)]);
  }
  for (const [bytes, record] of cases) {
    const size = bytes.length;
    const body = `451-0["bin",{"_placeholder":true,"num":0}]\x1e${record}`;
    assert.deepEqual(await post(path, sid, body), [200, "ok"]);
    const [ack, att] = await records(path, sid, 2);
    assert.equal(ack, `461-0[{"_placeholder":true,"num":0},${size}]`);
    assert.ok(att.startsWith("b"), att);
    assert.deepEqual(Buffer.from(att.slice(1), "base64"), bytes, `${size} bytes`);
  }
});

/** A seeded generator of "b" record bodies: base64 text with line breaks, spaces, "=" anywhere,
 * the base64url alphabet, other ASCII, UTF-8 characters (some whose UTF-16 low byte is a base64
 * character or "=") and bytes that are not UTF-8. Never 0x1e (the record separator). */
function generator(seed) {
  let s = seed >>> 0 || 1;
  const rnd = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32);
  const pick = (a) => a[Math.floor(rnd() * a.length)];
  const alphabet = [..."ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"];
  const noise = ["=", "\n", "\r\n", " ", "\t", "-", "_", "!", ".", "\0", "\u0141", "\u00c1", "\u013d", "\u{1F600}",
    "\u{1F43D}", "é", "\u0100", "\u2041"].map((x) => Buffer.from(x));
  const notUtf8 = [[0xff], [0xc5], [0xe2, 0x82], [0xed, 0xa0, 0x80], [0xc0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0x80]]
    .map((x) => Buffer.from(x));
  return () => {
    if (rnd() < 0.25) { // the MIME form of random bytes
      const bytes = Buffer.from(Array.from({ length: Math.floor(rnd() * 300) }, () => Math.floor(rnd() * 256)));
      return Buffer.from(mime(bytes));
    }
    const parts = [];
    const len = Math.floor(rnd() * (rnd() < 0.1 ? 400 : 30));
    const level = rnd();
    for (let i = 0; i < len; i++) {
      const r = rnd();
      parts.push(r < level * 0.3 ? pick(noise) : r < level * 0.35 ? pick(notUtf8) : Buffer.from(pick(alphabet)));
    }
    return Buffer.concat(parts);
  };
}

test("base64 in polling bodies decodes as Node's Buffer.from(text, \"base64\"): generated inputs", async () => {
  const seed = Number(process.env.SEED) || Date.now() % 1e9;
  const next = generator(seed);
  const path = "/engine.io/";
  const sid = await handshake(path);
  let checked = 0;
  try {
    for (let batch = 0; batch < 8; batch++) {
      const inputs = Array.from({ length: 30 }, next);
      const body = Buffer.concat(inputs.flatMap((b, i) => (i ? [Buffer.from("\x1eb"), b] : [Buffer.from("b"), b])));
      assert.deepEqual(await post(path, sid, body), [200, "ok"]);
      const echoes = await records(path, sid, inputs.length);
      inputs.forEach((input, i) => {
        // engine.io reads the body as UTF-8 text, then decodes the record with Buffer.from
        const want = Buffer.from(input.toString("utf8"), "base64");
        assert.ok(echoes[i].startsWith("b"), `echo ${i} of batch ${batch} is binary: ${echoes[i]}`);
        assert.deepEqual(Buffer.from(echoes[i].slice(1), "base64").toString("hex"), want.toString("hex"),
          `input ${JSON.stringify(input.toString("latin1"))} (hex ${input.toString("hex")})`);
        checked++;
      });
    }
  } catch (e) {
    e.message = `SEED=${seed}: ${e.message}`;
    throw e;
  }
  assert.equal(checked, 240);
});

/**
 * A new session's GET, then (once it is held) a POST of body; resolves to the GET's answer. Nothing
 * tells a client that its GET is held: when the POST overtook it (the session was closed first,
 * so the GET got "Session ID unknown"), the case runs again with a longer head start.
 */
async function heldThenPost(path, body) {
  const UNKNOWN = [400, JSON.stringify({ code: 1, message: "Session ID unknown" })];
  let answer;
  for (const ms of [50, 500, 2000]) {
    const sid = await handshake(path);
    const held = get(path, sid);
    await new Promise((r) => setTimeout(r, ms)); // the GET's head start
    assert.deepEqual(await post(path, sid, body), [200, "ok"]);
    answer = await held;
    if (JSON.stringify(answer) !== JSON.stringify(UNKNOWN)) return { answer, sid };
  }
  return { answer };
}

test("a close packet while a GET is held: the GET gets a noop, the session is gone", async () => {
  for (const path of ["/socket.io/", "/engine.io/"]) {
    const { answer, sid } = await heldThenPost(path, "1");
    assert.deepEqual(answer, [200, "6"], path);
    const [status, body] = await get(path, sid);
    assert.equal(status, 400);
    assert.deepEqual(JSON.parse(body), { code: 1, message: "Session ID unknown" });
  }
  // packets after the close packet in the same body are not acted on
  assert.deepEqual((await heldThenPost("/socket.io/", "1\x1e40")).answer, [200, "6"]);
});

/** A raw WebSocket on the Socket.IO path; resolves once open, with every text message in .got. */
function wsOpen(query) {
  const ws = new WebSocket(`ws://127.0.0.1:${srv.port}/socket.io/?EIO=4&${query}`);
  ws.got = [];
  ws.on("message", (d) => ws.got.push(d.toString()));
  ws.next = (pred, what) => withTimeout(new Promise((resolve) => {
    const check = () => {
      const i = ws.got.findIndex(pred);
      if (i >= 0) {
        ws.off("message", check);
        resolve(ws.got.splice(i, 1)[0]);
      }
    };
    ws.on("message", check);
    check();
  }), WAIT, what);
  return withTimeout(new Promise((resolve, reject) => {
    ws.once("open", () => resolve(ws));
    ws.once("unexpected-response", (req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    ws.once("error", reject);
  }), WAIT, `WebSocket ${query}`);
}

test("over WebSocket the reference ignores a close packet: the session stays", async () => {
  const ws = await wsOpen("transport=websocket");
  await ws.next((m) => m.startsWith("0"), "open packet");
  ws.send("1");
  ws.send("40");
  assert.match(await ws.next((m) => m.startsWith("40"), "CONNECT answer"), /^40\{"sid":/);
  ws.close();
});

/** What a WebSocket opened with this query sees: its HTTP status, then how it ends. */
function wsOutcome(query) {
  return withTimeout(new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${srv.port}/socket.io/?EIO=4&${query}`);
    const seen = { status: null, close: null, messages: [] };
    ws.on("upgrade", (res) => { seen.status = res.statusCode; });
    ws.on("unexpected-response", (req, res) => {
      seen.status = res.statusCode;
      res.resume();
      resolve(seen);
    });
    ws.on("message", (d) => seen.messages.push(d.toString()));
    ws.on("error", () => {});
    ws.on("close", (code) => {
      seen.close = code;
      resolve(seen);
    });
    // the reference keeps a socket opened with a WebSocket session's sid as an upgrade probe
    ws.on("open", () => { if (query.includes("ws-session")) setTimeout(() => { ws.terminate(); resolve(seen); }, 300); });
  }), 8000, `WebSocket ${query}`);
}

test("a WebSocket with the sid of a session that upgraded or is upgrading: 101, then closed", async () => {
  const sid = await handshake("/socket.io/");
  const probe = await wsOpen(`transport=websocket&sid=${sid}`);
  probe.send("2probe");
  assert.equal(await probe.next((m) => m === "3probe", "3probe"), "3probe");
  // upgrading
  assert.deepEqual(await wsOutcome(`transport=websocket&sid=${sid}`), { status: 101, close: 1005, messages: [] });
  probe.send("5");
  probe.send("40");
  assert.match(await probe.next((m) => m.startsWith("40"), "CONNECT answer"), /^40\{"sid":/);
  // upgraded
  assert.deepEqual(await wsOutcome(`transport=websocket&sid=${sid}`), { status: 101, close: 1005, messages: [] });
  assert.deepEqual(await wsOutcome(`transport=polling&sid=${sid}`), { status: 101, close: 1005, messages: [] });
  probe.send("41");
  probe.close();
  // transport=polling as a WebSocket: on a polling session, and as a handshake
  const sid2 = await handshake("/socket.io/");
  assert.deepEqual(await wsOutcome(`transport=polling&sid=${sid2}`), { status: 101, close: 1005, messages: [] });
  assert.deepEqual(await post("/socket.io/", sid2, "40"), [200, "ok"]);
  assert.match((await records("/socket.io/", sid2, 1))[0], /^40\{"sid":/);
  assert.deepEqual(await wsOutcome("transport=polling"), { status: 101, close: 1005, messages: [] });
  // an unknown sid is still an HTTP error
  assert.equal((await wsOutcome("transport=websocket&sid=nope")).status, 400);
});

test("a WebSocket with the sid of a WebSocket session: 101", async () => {
  const ws = await wsOpen("transport=websocket");
  const sid = JSON.parse((await ws.next((m) => m.startsWith("0"), "open packet")).slice(1)).sid;
  const seen = await wsOutcome(`transport=websocket&sid=${sid}&ws-session=1`);
  assert.equal(seen.status, 101);
  // siolua closes it at once; the reference keeps it as an upgrade probe (a WebSocket session
  // upgrading to another WebSocket), until upgradeTimeout
  if (!REF) assert.equal(seen.close, 1005);
  ws.send("40");
  assert.match(await ws.next((m) => m.startsWith("40"), "CONNECT answer"), /^40\{"sid":/);
  ws.close();
});
