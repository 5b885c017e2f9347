// Compression on the wire: perMessageDeflate (RFC 7692 permessage-deflate) and httpCompression.
// - the chat example with perMessageDeflate on: a socket.io-client that negotiates it (through
//   `ws`), one that does not and a polling one chat together;
// - the negotiation, differentially: for generated Sec-WebSocket-Extensions offers and every option
//   set of apps/compression.lua (each an Engine.IO endpoint's own, so that one server has them all),
//   the 101 answer (or 400) must be what the reference's own `ws` code (engine.io's copy, run here
//   in-process) answers;
// - compressed frames both ways (text, UTF-8, binary, every size class), RSV1 exactly on the
//   messages of the threshold or more, a compression bomb (1009), bad deflate data (1007), RSV1
//   where nothing was negotiated (1002);
// - httpCompression of polling answers and the client bundle's encodings, differentially: for
//   generated Accept-Encoding headers the Content-Encoding must be what the reference's
//   `negotiator` picks, and the body must decode to the right bytes (ETag and 304 kept).
// Every expectation holds against the reference too (SIOLUA_REF=1).
import { test, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import net from "node:net";
import zlib from "node:zlib";
import crypto from "node:crypto";
import path from "node:path";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { startServer, connect, closeAll, once, withTimeout, rawSession, REF, ROOT, WAIT } from "./helpers.mjs";
import { pmdSets, httpzSets } from "./ref/apps.mjs";

const require = createRequire(import.meta.url);
// the reference's own code: engine.io's copy of ws, and the negotiator that accepts() uses
const WSPMD = require(path.join(ROOT, "node_modules/engine.io/node_modules/ws/lib/permessage-deflate.js"));
const wsExtension = require(path.join(ROOT, "node_modules/engine.io/node_modules/ws/lib/extension.js"));
const Negotiator = require(path.join(ROOT, "node_modules/negotiator"));

const servers = [];
after(async () => {
  closeAll();
  await Promise.all(servers.map((s) => s.stop()));
});

/** The compression app, its Socket.IO with the perMessageDeflate set named (env of the server). */
async function startApp(pmd) {
  const saved = process.env.SIOLUA_PMD;
  process.env.SIOLUA_PMD = pmd;
  try {
    const srv = await startServer("compression");
    servers.push(srv);
    return srv;
  } finally {
    if (saved === undefined) delete process.env.SIOLUA_PMD;
    else process.env.SIOLUA_PMD = saved;
  }
}

/** One server for most tests: Socket.IO with perMessageDeflate on, and every set's endpoint. */
let shared;
const app = () => (shared ??= startApp("on"));

/** A seeded PRNG (mulberry32), so a failing case can be replayed. */
function rng(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const pick = (r, a) => a[Math.floor(r() * a.length)];

/** Compressible text of n bytes, different for each seed. */
function words(n, seed = 1) {
  const r = rng(seed);
  const w = ["socket", "room", "message", "hello", "world", "chat", "événement", "data", "42", "✓"];
  const parts = [];
  for (let len = 0; len < n;) {
    const x = pick(r, w) + " ";
    parts.push(x);
    len += Buffer.byteLength(x);
  }
  return Buffer.from(parts.join("")).subarray(0, n).toString().replace(/\uFFFD/g, "x");
}

// ------------------------------------------------------------------------------ the chat example

test("chat example with perMessageDeflate: a compressing client, a plain one and a polling one", async () => {
  const srv = await startServer("examples/chat/app.lua", ["--per-message-deflate"]);
  servers.push(srv);
  const z = await connect(srv.url, { transports: ["websocket"] }); // ws offers permessage-deflate
  const plain = await connect(srv.url, { transports: ["websocket"], perMessageDeflate: false });
  const poll = await connect(srv.url, { transports: ["polling"] });
  const zws = z.io.engine.transport.ws, plainws = plain.io.engine.transport.ws;
  assert.equal(zws.extensions, "permessage-deflate"); // agreed (ws lists the names)
  assert.equal(plainws.extensions, "");
  const long = words(20000, 7), short = "hi there";
  for (const [from, others] of [[z, [plain, poll]], [plain, [z, poll]], [poll, [z, plain]]]) {
    for (const msg of [long, short]) {
      const got = others.map((s) => once(s, "message"));
      const before = [zws._socket.bytesRead, plainws._socket.bytesRead];
      from.emit("message", msg);
      for (const [m] of await Promise.all(got)) assert.equal(m, msg);
      if (msg === long && from !== z) {
        // compressed for the client that asked for it, not for the other
        assert.ok(zws._socket.bytesRead - before[0] < long.length / 2, "z got it compressed");
      }
      if (msg === long && from !== plain) {
        assert.ok(plainws._socket.bytesRead - before[1] > long.length, "plain got it as it is");
      }
    }
  }
  z.disconnect();
  plain.disconnect();
  poll.disconnect();
});

// ------------------------------------------------------------------------------ negotiation

/** A generated Sec-WebSocket-Extensions value: mostly plausible offers, some odd or malformed. */
function genOffer(r) {
  const names = ["server_no_context_takeover", "client_no_context_takeover", "server_max_window_bits",
    "client_max_window_bits"];
  const good = ["8", "9", "10", "11", "12", "13", "14", "15"];
  const odd = ["7", "16", "0", "0xA", "1e1", "+9", "10.0", "09", "\"10\"", "\"1\\0\"", "\"\\10\"", "abc", "",
    "-10", "Infinity", "0b1010", "1_0", "0o12"];
  const offers = [];
  const n = r() < 0.7 ? 1 : 2 + Math.floor(r() * 2);
  for (let i = 0; i < n; i++) {
    let o = r() < 0.85 ? "permessage-deflate" : pick(r, ["x-webkit-deflate-frame", "foo", "Permessage-Deflate"]);
    const np = Math.floor(r() * r() * 4);
    for (let k = 0; k < np; k++) {
      const name = r() < 0.97 ? pick(r, names) : pick(r, ["foo", "server_max_window_bits ", "q"]);
      o += `;${r() < 0.2 ? " " : ""}${name}`;
      const bits = name.endsWith("_bits");
      if (bits ? r() < 0.8 : r() < 0.05) o += "=" + (r() < 0.75 ? pick(r, good) : pick(r, odd));
    }
    offers.push(o);
  }
  let h = offers.join(r() < 0.3 ? "," : ", ");
  if (r() < 0.06) h += pick(r, [";", ",", "=", " ;x", "\"", ", ,"]);
  return h;
}

/** What the reference's ws answers: [status, extension header or null]. */
function wsAnswer(opts, header) {
  const pmd = new WSPMD({ threshold: 1024, ...opts, isServer: true, maxPayload: 1e6 });
  try {
    const offers = wsExtension.parse(header);
    if (!offers["permessage-deflate"]) return [101, null];
    pmd.accept(offers["permessage-deflate"]);
    return [101, wsExtension.format({ "permessage-deflate": [pmd.params] })];
  } catch {
    return [400, null];
  }
}

/** A raw WebSocket handshake with the given extension header lines; resolves to [status, answer]. */
function handshake(port, extLines, path = "/socket.io/") {
  return new Promise((resolve, reject) => {
    const c = net.connect(port, "127.0.0.1");
    let data = "";
    const ext = extLines.map((v) => `Sec-WebSocket-Extensions: ${v}\r\n`).join("");
    c.on("data", (d) => {
      data += d.toString("latin1");
      const end = data.indexOf("\r\n\r\n");
      if (end < 0) return;
      c.destroy();
      const head = data.slice(0, end).split("\r\n");
      const m = head.map((l) => /^sec-websocket-extensions:\s*(.*)$/i.exec(l)).find(Boolean);
      resolve([Number(head[0].split(" ")[1]), m ? m[1] : null]);
    });
    c.on("error", reject);
    c.write(`GET ${path}?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n` +
      `Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${crypto.randomBytes(16).toString("base64")}\r\n` +
      `${ext}\r\n`);
  });
}

for (const set of Object.keys(pmdSets)) {
  test(`negotiation as the reference's ws answers it, perMessageDeflate "${set}", 120 generated offers`, async () => {
    const srv = await app();
    const opts = pmdSets[set] === true ? {} : pmdSets[set];
    const r = rng(set.length * 7919 + set.charCodeAt(0));
    const cases = [];
    for (let i = 0; i < Number(process.env.OFFERS || 120); i++) {
      // sometimes the offers come in two header lines (Node joins them with ", ")
      const h = genOffer(r);
      const lines = r() < 0.15 && h.includes(", ") ? [h.slice(0, h.indexOf(", ")), h.slice(h.indexOf(", ") + 2)] : [h];
      cases.push(lines);
    }
    for (let i = 0; i < cases.length; i += 20) {
      const got = await Promise.all(cases.slice(i, i + 20).map((l) => handshake(srv.port, l, `/pmd-${set}/`)));
      for (let k = 0; k < got.length; k++) {
        const lines = cases[i + k];
        const value = lines.map((l) => l.replace(/^[ \t]+|[ \t]+$/g, "")).join(", "); // as HTTP reads it
        assert.deepEqual(got[k], wsAnswer(opts, value), `offer ${JSON.stringify(lines)}`);
      }
    }
  });
}

// ------------------------------------------------------------------------------ frames

test("compressed frames both ways: text, UTF-8 and binary of every size round-trip; RSV1 exactly from the threshold", async () => {
  // serverNoContextTakeover: the reference applies its threshold only then (with context takeover
  // it compresses every message, siolua still only those of the threshold or more)
  const srv = await startApp("nct");
  const { ws, next, frames, answer, start } = await rawSession(srv, { perMessageDeflate: { threshold: 0 } });
  assert.equal(answer, "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
  let id = 0;
  for (const n of [0, 1, 100, 1000, 1021, 1022, 1023, 5000, 70000, 300000]) {
    const text = words(n, n + 3);
    ws.send(`42${++id}["echo",${JSON.stringify(text)}]`);
    assert.equal(await next(), `43${id}[${JSON.stringify(text)}]`);
    const bin = Buffer.alloc(n, "compressible binary ");
    ws.send(`451-${++id}["echo",{"_placeholder":true,"num":0}]`);
    ws.send(bin);
    assert.equal(await next(), `461-${id}[{"_placeholder":true,"num":0}]`);
    assert.ok(bin.equals(await next()), `binary of ${n}`);
  }
  const random = crypto.randomBytes(5000); // incompressible: any form will do, it must come back
  ws.send(`451-${++id}["echo",{"_placeholder":true,"num":0}]`);
  ws.send(random);
  await next();
  assert.ok(random.equals(await next()));
  // frames and messages arrive in the same order: RSV1 iff the message was 1024 bytes or more
  const sizes = [];
  for (const n of [0, 1, 100, 1000, 1021, 1022, 1023, 5000, 70000, 300000]) {
    const t = Buffer.byteLength(`43${0}[${JSON.stringify(words(n, n + 3))}]`); // id digits do not change the class
    sizes.push(["text", t], ["placeholder", 30], ["binary", n]);
  }
  const data = frames.slice(start).filter((f) => f.op !== 9 && f.op !== 10);
  for (let i = 0; i < sizes.length; i++) {
    const [kind, len] = sizes[i];
    if (Math.abs(len - 1024) < 8) continue; // an id digit more or less could cross the line
    assert.equal(data[i].rsv1, len >= 1024, `${kind} of ${len} bytes: RSV1 ${data[i].rsv1}`);
  }
  ws.close();
});

test("context takeover both ways (the default): a long conversation stays exact", async () => {
  const srv = await app();
  const { ws, next, answer } = await rawSession(srv, { perMessageDeflate: { threshold: 0 } });
  assert.equal(answer, "permessage-deflate"); // ws offers a bare client_max_window_bits, and drops it
  for (let i = 1; i <= 60; i++) {
    const text = words(200 + i * 137, i); // later messages refer back to earlier ones
    ws.send(`42${i}["echo",${JSON.stringify(text)},${i}]`);
    assert.equal(await next(), `43${i}[${JSON.stringify(text)},${i}]`);
  }
  ws.close();
});

test("a compression bomb (10 MB of zeros, ~10 KB compressed) is refused with close 1009", async () => {
  const srv = await app();
  const { ws } = await rawSession(srv, { perMessageDeflate: { threshold: 0 } });
  const watcher = await connect(srv.url, { transports: ["websocket"] });
  const closed = once(ws, "close");
  ws.send(Buffer.alloc(10 << 20));
  const [code] = await closed;
  assert.equal(code, 1009);
  assert.equal(await watcher.timeout(WAIT).emitWithAck("echo", "still here"), "still here");
  watcher.disconnect();
});

/** A WebSocket on a raw socket (frames masked by hand), after a 101 with the given extensions. */
async function rawWs(port, ext) {
  const c = net.connect(port, "127.0.0.1");
  await once(c, "connect");
  c.write(`GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n` +
    `Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n` +
    (ext ? `Sec-WebSocket-Extensions: ${ext}\r\n` : "") + "\r\n");
  let data = Buffer.alloc(0);
  const closeCode = new Promise((resolve) => {
    c.on("data", (d) => {
      data = Buffer.concat([data, d]);
      for (let i = data.indexOf("\r\n\r\n") + 4; i > 3 && i + 2 <= data.length;) {
        const len = data[i + 1] & 0x7f, off = len === 126 ? 4 : 2; // server frames here are small
        const l = len === 126 ? data.readUInt16BE(i + 2) : len;
        if ((data[i] & 0x0f) === 8 && i + off + 2 <= data.length) resolve(data.readUInt16BE(i + off));
        i += off + l;
      }
    });
    c.on("close", () => resolve("closed without a close frame"));
  });
  const frame = (first, payload) => {
    const mask = crypto.randomBytes(4), p = Buffer.from(payload);
    const h = p.length < 126 ? Buffer.from([first, 0x80 | p.length]) : Buffer.from([first, 0x80 | 126, p.length >> 8, p.length & 255]);
    c.write(Buffer.concat([h, mask, p.map((b, i) => b ^ mask[i % 4])]));
  };
  return { c, frame, closeCode };
}

test("bad deflate data: close 1007; RSV1 where permessage-deflate was not agreed: close 1002", async () => {
  const srv = await app();
  const a = await rawWs(srv.port, "permessage-deflate");
  a.frame(0xc1, Buffer.from([0xff, 0xff, 0xff, 0xff, 0x00])); // FIN + RSV1 + text, block type 3
  assert.equal(await withTimeout(a.closeCode, WAIT, "close"), 1007);
  a.c.destroy();
  const b = await rawWs(srv.port, null);
  b.frame(0xc1, zlib.deflateRawSync("40", { finishFlush: zlib.constants.Z_SYNC_FLUSH }).subarray(0, -4));
  assert.equal(await withTimeout(b.closeCode, WAIT, "close"), 1002);
  b.c.destroy();
  const c = await rawWs(srv.port, "permessage-deflate"); // a text message, not UTF-8 once inflated
  const bad = zlib.deflateRawSync(Buffer.from([0x34, 0xc3, 0x28]), { finishFlush: zlib.constants.Z_SYNC_FLUSH });
  c.frame(0xc1, bad.subarray(0, -4));
  assert.equal(await withTimeout(c.closeCode, WAIT, "close"), 1007);
  c.c.destroy();
});

// ------------------------------------------------------------------------------ HTTP

/** A generated Accept-Encoding value, or null (no header), or a list (several header lines). */
function genAcceptEncoding(r) {
  if (r() < 0.05) return null;
  const codings = ["gzip", "deflate", "br", "identity", "*", "GZIP", "x-gzip", "compress", "zstd", ""];
  const qs = ["", ";q=0", ";q=1", ";q=0.5", ";q=0.001", ";q=.7", ";q=abc", ";q=", ";foo=bar;q=0.3", " ;q=0.9", ";q=1e400"];
  const parts = [];
  const n = Math.floor(r() * 4) + 1;
  for (let i = 0; i < n; i++) parts.push(pick(r, codings) + (r() < 0.5 ? pick(r, qs) : ""));
  if (r() < 0.1) return [parts.slice(0, 1).join(", "), parts.slice(1).join(", ")];
  return parts.join(r() < 0.5 ? ", " : ",");
}

/** The coding the reference's negotiator picks among `offered` (false: none). */
function negotiated(ae, offered) {
  const headers = ae === null ? {} : { "accept-encoding": Array.isArray(ae) ? ae.join(", ") : ae };
  return new Negotiator({ headers }).encodings(offered)[0] || false;
}

/** A raw HTTP request (no automatic Accept-Encoding, no decoding). */
function request(port, method, url, headers = {}, body = null) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, method, path: url, headers, agent: false }, (res) => {
      const chunks = [];
      res.on("data", (d) => chunks.push(d));
      res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

function decode(enc, body) {
  if (enc === "gzip") return zlib.gunzipSync(body);
  if (enc === "deflate") return zlib.inflateSync(body);
  if (enc === "br") return zlib.brotliDecompressSync(body);
  return body;
}

/** A polling Engine.IO session at path, { get(headers), post(body) }, and (for Socket.IO)
 * connected to the main namespace. */
async function pollSession(port, path = "/socket.io/") {
  const base = `${path}?EIO=4&transport=polling`;
  const hs = await request(port, "GET", base);
  const sid = JSON.parse(hs.body.toString().slice(1)).sid;
  const url = `${base}&sid=${sid}`;
  const s = {
    get: (headers) => request(port, "GET", url, headers),
    post: (body) => request(port, "POST", url, { "content-type": "text/plain;charset=UTF-8" }, body),
  };
  if (path === "/socket.io/") {
    await s.post("40");
    assert.match((await s.get()).body.toString(), /^40\{/);
  }
  return s;
}

for (const [label, httpz, threshold] of [["default (threshold 1024)", null, 1024],
  ["{ threshold = 100, level = 1 }", "t100", 100], ["off", "off", Infinity]]) {
  test(`httpCompression ${label}: polling answers by Accept-Encoding as the reference chooses (90 generated headers)`, async () => {
    const srv = await app();
    // the default is Socket.IO's (its "big" event answers); the other sets are echo endpoints'
    const s = await pollSession(srv.port, httpz ? `/httpz-${httpz}/` : "/socket.io/");
    assert.ok(httpz === null || httpz in httpzSets);
    const r = rng(threshold === Infinity ? 3 : threshold);
    for (let i = 1; i <= Number(process.env.HEADERS || 90); i++) {
      const ae = genAcceptEncoding(r);
      const n = pick(r, [50, 90, 500, 1010, 1030, 4000, 30000]);
      const big = "abcdefghij".repeat(Math.floor(n / 10));
      assert.equal((await s.post(httpz ? `4${big}` : `42${i}["big",${n}]`)).status, 200);
      const res = await s.get(ae === null ? {} : { "accept-encoding": ae });
      const text = httpz ? `4${big}` : `43${i}["${big}"]`;
      const want = Buffer.byteLength(text) >= threshold ? negotiated(ae, ["gzip", "deflate"]) : false;
      assert.equal(res.headers["content-encoding"] || false, want, `Accept-Encoding ${JSON.stringify(ae)}, ${n} bytes`);
      assert.equal(decode(want, res.body).toString(), text);
    }
  });
}

test("the client bundle in br, gzip, deflate or as it is, as the reference chooses (60 generated headers); ETag and 304 kept", async () => {
  const srv = await app();
  const dist = path.join(ROOT, "node_modules/socket.io-client/dist");
  const r = rng(11);
  let etag = null;
  for (let i = 0; i < Number(process.env.HEADERS || 60); i++) {
    const ae = genAcceptEncoding(r);
    const name = pick(r, ["socket.io.js", "socket.io.min.js", "socket.io.min.js.map", "socket.io.msgpack.min.js"]);
    const res = await request(srv.port, "GET", `/socket.io/${name}`, ae === null ? {} : { "accept-encoding": ae });
    assert.equal(res.status, 200);
    const want = negotiated(ae, ["br", "gzip", "deflate"]);
    assert.equal(res.headers["content-encoding"] || false, want, `Accept-Encoding ${JSON.stringify(ae)}`);
    assert.ok(decode(want, res.body).equals(readFileSync(path.join(dist, name))), `${name} in ${want}`);
    etag ??= res.headers.etag;
    assert.equal(res.headers.etag, etag); // one ETag whatever the encoding, as the reference
    if (!REF) assert.equal(res.headers.vary, "Accept-Encoding"); // (the reference sends no Vary)
    const again = await request(srv.port, "GET", `/socket.io/${name}`,
      { "if-none-match": etag, ...(ae === null ? {} : { "accept-encoding": ae }) });
    assert.equal(again.status, 304);
    assert.equal(again.body.length, 0);
  }
});

test("siolua.engine endpoints take perMessageDeflate and httpCompression of their own", async () => {
  const srv = await app(); // Socket.IO's: permessage-deflate on, httpCompression the default
  assert.deepEqual(await handshake(srv.port, ["permessage-deflate"]), [101, "permessage-deflate"]);
  assert.deepEqual(await handshake(srv.port, ["permessage-deflate"], "/pmd-nct/"),
    [101, "permessage-deflate; server_no_context_takeover; client_no_context_takeover"]);
  const text = "abcdefghij".repeat(300);
  for (const [path, want] of [["/httpz-off/", undefined], ["/socket.io/", "gzip"]]) {
    const s = await pollSession(srv.port, path);
    await s.post(path === "/socket.io/" ? `421["echo","${text}"]` : `4${text}`);
    const res = await s.get({ "accept-encoding": "gzip" });
    assert.equal(res.headers["content-encoding"], want, path);
    assert.ok(decode(want, res.body).toString().includes(text), path);
  }
});
