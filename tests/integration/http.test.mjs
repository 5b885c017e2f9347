// Raw HTTP: every Engine.IO error code, CORS headers (app options and command line), the
// embedded client bundle with its ETag, and the static folder.
// Expected bytes were taken from the reference (socket.io 4.8.4 / engine.io 6.6.12 with the
// same options, see ref/server.mjs); comments note what it sent.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { readFileSync } from "node:fs";
import path from "node:path";
import { startServer, connect, closeAll, request, ROOT, APPS } from "./helpers.mjs";

let opt, plain, star;
before(async () => {
  [opt, plain, star] = await Promise.all([
    startServer("options"),
    startServer("main"),
    startServer("main", ["--cors-origin", "*", "--cors-methods", "GET,POST"]),
  ]);
});
after(async () => {
  closeAll();
  await Promise.all([opt?.stop(), plain?.stop(), star?.stop()]);
});

const EIO_ERRORS = [
  // [name, method, query, status, body]
  ["0 Transport unknown", "GET", "EIO=4&transport=carrier-pigeon", 400, '{"code":0,"message":"Transport unknown"}'],
  ["1 Session ID unknown", "GET", "EIO=4&transport=polling&sid=nope", 400, '{"code":1,"message":"Session ID unknown"}'],
  ["2 Bad handshake method", "POST", "EIO=4&transport=polling", 400, '{"code":2,"message":"Bad handshake method"}'],
  // a websocket handshake without the Upgrade header
  ["3 Bad request", "GET", "EIO=4&transport=websocket", 400, '{"code":3,"message":"Bad request"}'],
  // allowRequest said no: the reference answers 403, not 400
  ["4 Forbidden", "GET", "EIO=4&transport=polling&deny=1", 403, '{"code":4,"message":"Forbidden"}'],
  ["5 Unsupported protocol version", "GET", "EIO=3&transport=polling", 400, '{"code":5,"message":"Unsupported protocol version"}'],
];

for (const [name, method, query, status, body] of EIO_ERRORS) {
  test(`Engine.IO error ${name}`, async () => {
    const res = await fetch(`${opt.url}/socket.io/?${query}`, { method, body: method === "POST" ? "40" : undefined });
    assert.equal(res.status, status);
    assert.equal(res.headers.get("content-type"), "application/json");
    assert.equal(await res.text(), body);
  });
}

test("allowRequest gets the request's method and url; a refused client gets connect_error", async () => {
  const denied = await fetch(`${opt.url}/socket.io/?EIO=4&transport=polling&deny=1`);
  assert.equal(denied.status, 403);
  await denied.text();
  await opt.waitLog(/allowRequest GET \/socket\.io\/\?EIO=4&transport=polling&deny=1 false/);
  await assert.rejects(connect(opt.url, { query: { deny: "1" }, transports: ["polling"] }));
  const s = await connect(opt.url, { transports: ["polling"] });
  assert.deepEqual(await request(s, "echo", "allowed"), ["allowed"]);
  s.disconnect();
});

test("CORS from io.options: polling response headers", async () => {
  const res = await fetch(`${opt.url}/socket.io/?EIO=4&transport=polling`, { headers: { Origin: "http://allowed.test" } });
  assert.equal(res.status, 200);
  // reference: Access-Control-Allow-Origin: http://allowed.test, Vary: Origin,
  //            Access-Control-Allow-Credentials: true (and no Allow-Methods outside a preflight)
  assert.equal(res.headers.get("access-control-allow-origin"), "http://allowed.test");
  assert.equal(res.headers.get("access-control-allow-credentials"), "true");
  assert.match(res.headers.get("vary") || "", /\bOrigin\b/);
  await res.text();

  // the error responses carry them too
  const err = await fetch(`${opt.url}/socket.io/?EIO=4&transport=nope`, { headers: { Origin: "http://allowed.test" } });
  assert.equal(err.status, 400);
  assert.equal(err.headers.get("access-control-allow-origin"), "http://allowed.test");
  assert.equal(err.headers.get("access-control-allow-credentials"), "true");
  await err.text();
});

test("CORS from io.options: OPTIONS preflight", async () => {
  const res = await fetch(`${opt.url}/socket.io/?EIO=4&transport=polling`, {
    method: "OPTIONS",
    headers: {
      Origin: "http://allowed.test",
      "Access-Control-Request-Method": "POST",
      "Access-Control-Request-Headers": "content-type",
    },
  });
  // reference: 204, Access-Control-Allow-Origin: http://allowed.test,
  //   Vary: Origin, Access-Control-Request-Headers, Access-Control-Allow-Credentials: true,
  //   Access-Control-Allow-Methods: GET,POST, Access-Control-Allow-Headers: content-type,
  //   Content-Length: 0
  assert.equal(res.status, 204);
  assert.equal(res.headers.get("access-control-allow-origin"), "http://allowed.test");
  assert.equal(res.headers.get("access-control-allow-credentials"), "true");
  assert.equal(res.headers.get("access-control-allow-methods"), "GET,POST");
  assert.equal(res.headers.get("access-control-allow-headers"), "content-type");
  assert.match(res.headers.get("vary") || "", /\bOrigin\b/);
  assert.equal(await res.text(), "");
});

test("CORS from the command line (--cors-origin '*' --cors-methods GET,POST)", async () => {
  const res = await fetch(`${star.url}/socket.io/?EIO=4&transport=polling`, { headers: { Origin: "http://anywhere.test" } });
  assert.equal(res.status, 200);
  // reference: Access-Control-Allow-Origin: * and no Allow-Credentials
  assert.equal(res.headers.get("access-control-allow-origin"), "*");
  assert.equal(res.headers.get("access-control-allow-credentials"), null);
  await res.text();

  const pre = await fetch(`${star.url}/socket.io/?EIO=4&transport=polling`, {
    method: "OPTIONS",
    headers: { Origin: "http://anywhere.test", "Access-Control-Request-Method": "POST" },
  });
  // reference: 204, Access-Control-Allow-Origin: *, Access-Control-Allow-Methods: GET,POST,
  //   Vary: Access-Control-Request-Headers, Content-Length: 0
  assert.equal(pre.status, 204);
  assert.equal(pre.headers.get("access-control-allow-origin"), "*");
  assert.equal(pre.headers.get("access-control-allow-methods"), "GET,POST");
  assert.equal(await pre.text(), "");
});

test("no CORS configured: no Access-Control-* headers", async () => {
  const res = await fetch(`${plain.url}/socket.io/?EIO=4&transport=polling`, { headers: { Origin: "http://x.test" } });
  assert.equal(res.status, 200);
  for (const [k] of res.headers) assert.ok(!k.startsWith("access-control-"), `unexpected header ${k}`);
  await res.text();
});

test("GET /socket.io/socket.io.js: the embedded client with an ETag, 304 on If-None-Match", async () => {
  const dist = path.join(ROOT, "node_modules/socket.io-client/dist");
  for (const [name, type] of [
    ["socket.io.js", /^application\/javascript/],
    ["socket.io.min.js", /^application\/javascript/],
    ["socket.io.js.map", /^application\/json/],
    ["socket.io.min.js.map", /^application\/json/],
  ]) {
    const res = await fetch(`${plain.url}/socket.io/${name}`);
    assert.equal(res.status, 200, name);
    assert.match(res.headers.get("content-type") || "", type, name);
    const etag = res.headers.get("etag");
    // reference: ETag: "4.8.4" (the client's version), Cache-Control: public, max-age=0
    assert.match(etag || "", /^(W\/)?"[^"]+"$/, `${name} ETag`);
    const body = Buffer.from(await res.arrayBuffer());
    assert.ok(body.equals(readFileSync(path.join(dist, name))), `${name} is the installed socket.io-client's`);
    const again = await fetch(`${plain.url}/socket.io/${name}`, { headers: { "If-None-Match": etag } });
    assert.equal(again.status, 304, `${name} If-None-Match`);
    assert.equal((await again.arrayBuffer()).byteLength, 0);
  }
});

test("the static folder: / is index.html, files are served, missing ones 404", async () => {
  const index = readFileSync(path.join(APPS, "public/index.html"), "utf8");
  const res = await fetch(`${plain.url}/`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") || "", /^text\/html/);
  assert.equal(await res.text(), index);
  const res2 = await fetch(`${plain.url}/index.html`);
  assert.equal(res2.status, 200);
  assert.equal(await res2.text(), index);
  const css = await fetch(`${plain.url}/style.css`);
  assert.equal(css.status, 200);
  assert.match(css.headers.get("content-type") || "", /^text\/css/);
  assert.equal(await css.text(), readFileSync(path.join(APPS, "public/style.css"), "utf8"));
  const missing = await fetch(`${plain.url}/no-such-file.txt`);
  assert.equal(missing.status, 404);
  await missing.text();
});

/** One raw HTTP/1.1 request (fetch would normalise the path); resolves to the status line. */
function rawStatus(port, target) {
  return new Promise((resolve, reject) => {
    const c = net.connect(port, "127.0.0.1");
    let data = "";
    c.on("data", (d) => { data += d; if (data.includes("\r\n")) { c.destroy(); resolve(data.split("\r\n")[0]); } });
    c.on("error", reject);
    c.write(`GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
    setTimeout(() => { c.destroy(); reject(new Error("no answer to " + target)); }, 3000);
  });
}

test("the static folder does not serve files outside itself", async () => {
  for (const target of ["/../main.lua", "/%2e%2e/main.lua", "/..%2fmain.lua"]) {
    const status = await rawStatus(plain.port, target);
    assert.doesNotMatch(status, / 200 /, `${target}: ${status}`);
  }
});
