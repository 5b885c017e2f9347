// The chat example in headless Chromium: two pages, a message typed in one appears in the other
// (a screenshot is left in build/screenshots/chat.png); and the chat relays every value of issue
// 11's table unchanged between a browser (the page's own socket), a Node socket.io-client and
// Debian's python-socketio: each one sends every value, the two others must receive exactly what
// was sent (compared as JSON.stringify writes it: key order, number digits, lone surrogates).
// Then the chat with perMessageDeflate: Chromium negotiates permessage-deflate (its 101, seen through
// the DevTools protocol), loads the client bundle compressed, and long messages (compressed both
// ways) cross. One browser for all of it.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { startServer, connect, closeAll, withTimeout, ROOT, WAIT } from "../helpers.mjs";
import { launchChromium, openChat as open } from "./chat.helpers.mjs";

// issue 11's table, and a key order a signature depends on
const TEXTS = ['{"items":[],"meta":{}}', "[[],{},[[]]]", "0.30000000000000004", "3.141592653589793",
  "9007199254740994", "1.0000000000000002", '"a\\ud800b"', '{"a":1,"b":2,"c":3,"d":4}', '{"1":"a","2":"b"}',
  '{"d":[1e21,1e-7,5e-324,123456789012345680000],"c":"\\ud83d\\ude00é","b":{"z":null,"y":true}}'];
const WANT = TEXTS.map((t) => JSON.stringify(JSON.parse(t)));
let srv, zsrv, browser, py;

before(async () => {
  srv = await startServer("examples/chat/app.lua");
  zsrv = await startServer("examples/chat/app.lua", ["--per-message-deflate"]);
  browser = await launchChromium();
});
after(async () => {
  closeAll();
  py?.kill("SIGKILL");
  await browser?.close();
  await srv?.stop();
  await zsrv?.stop();
});

const openChat = () => open(browser, srv.url);

test("a message typed in one page appears in the other", async () => {
  const alice = await openChat();
  const bob = await openChat();

  await alice.page.fill("#input", "Hello from Alice");
  await alice.page.click("#send");
  // the sender shows its own message locally, the other page gets it through the server
  await alice.page.waitForSelector("#messages li.own >> text=Hello from Alice", { timeout: WAIT });
  await bob.page.waitForSelector("#messages li:not(.own) >> text=Hello from Alice", { timeout: WAIT });

  await bob.page.fill("#input", "Hi Alice, Bob here");
  await bob.page.press("#input", "Enter");
  await alice.page.waitForSelector("#messages li:not(.own) >> text=Hi Alice, Bob here", { timeout: WAIT });

  // the server broadcast to everyone but the sender: no echo of one's own message
  assert.deepEqual(await alice.page.$$eval("#messages li", (els) => els.map((e) => [e.className, e.textContent])),
    [["own", "Hello from Alice"], ["", "Hi Alice, Bob here"]]);
  assert.deepEqual(await bob.page.$$eval("#messages li", (els) => els.map((e) => [e.className, e.textContent])),
    [["", "Hello from Alice"], ["own", "Hi Alice, Bob here"]]);

  // the page loaded the embedded client bundle and no script failed
  assert.deepEqual(alice.errors, []);
  assert.deepEqual(bob.errors, []);

  const dir = path.join(ROOT, "build/screenshots");
  mkdirSync(dir, { recursive: true });
  await alice.page.screenshot({ path: path.join(dir, "chat.png") });

  await srv.waitLog(/message received:\s+Hello from Alice/);
});

/** Resolves once the Python client's output has a line matching re. */
function pyLine(re) {
  return withTimeout(new Promise((resolve) => {
    const check = () => {
      const m = py.out.match(re);
      if (m) resolve(m);
      else py.waiters.push(check);
    };
    check();
  }), 30000, `python: ${re}`);
}

test("the chat example relays issue 11's values unchanged between a browser, a Node client and a Python client", async () => {
  const N = TEXTS.length;
  // the browser: the chat page's socket, with a listener that keeps JSON.stringify of each value
  const { page, errors } = await openChat();
  await page.evaluate(() => {
    window.got = [];
    socket.on("message", (v) => window.got.push(JSON.stringify(v))); // eslint-disable-line no-undef
  });
  // Node
  const node = await connect(srv.url, { transports: ["websocket"] });
  const nodeGot = [];
  node.on("message", (v) => nodeGot.push(JSON.stringify(v)));
  // Python
  py = spawn("/usr/bin/python3", [path.join(ROOT, "tests/integration/chat_values.py"), srv.url, String(N),
    "[" + TEXTS.join(",") + "]"], { stdio: ["pipe", "pipe", "inherit"] });
  py.out = "";
  py.waiters = [];
  py.stdout.on("data", (c) => {
    py.out += c.toString();
    for (const w of py.waiters.splice(0)) w();
  });
  await pyLine(/^connected$/m);

  const until = (what, pred) => withTimeout((async () => {
    while (!(await pred())) await new Promise((r) => setTimeout(r, 20));
  })(), WAIT, what);
  const browserGot = () => page.evaluate(() => window.got);

  // Node sends, then the browser, then Python: each time the two others get all of it
  for (const t of TEXTS) node.emit("message", JSON.parse(t));
  await until("the browser to get Node's values", async () => (await browserGot()).length >= N);
  await page.evaluate((texts) => texts.forEach((t) => socket.emit("message", JSON.parse(t))), TEXTS); // eslint-disable-line no-undef
  await until("Node to get the browser's values", () => nodeGot.length >= N);
  py.stdin.write("go\n");
  const m = await pyLine(/^got (.*)$/m);
  await until("Node and the browser to get Python's values", async () => nodeGot.length >= 2 * N && (await browserGot()).length >= 2 * N);

  const pyGot = JSON.parse(m[1]).map((v) => JSON.stringify(v));
  assert.deepEqual(nodeGot, [...WANT, ...WANT], "Node got the browser's, then Python's values");
  assert.deepEqual(await browserGot(), [...WANT, ...WANT], "the browser got Node's, then Python's values");
  // python-engineio hands each message to its handler on a thread of its own (client.py:
  // _trigger_event('message', ..., run_async=True)), so the order of pyGot is the threads', not
  // the wire's: the values and their counts are compared, not their order
  assert.deepEqual([...pyGot].sort(), [...WANT, ...WANT].sort(), "Python got Node's and the browser's values");
  assert.deepEqual(errors, []);
  node.disconnect();
  py.stdin.end(); // Python disconnects now, its messages delivered
});

const header = (headers, name) =>
  Object.entries(headers || {}).find(([k]) => k.toLowerCase() === name)?.[1];

test("Chromium negotiates permessage-deflate; long messages cross compressed; the bundle comes gzip-encoded", async () => {
  const alice = await open(browser, zsrv.url, { record: true });
  const bob = await open(browser, zsrv.url, { record: true });
  for (const who of [alice, bob]) {
    assert.equal(who.seen.ws?.status, 101);
    assert.equal(header(who.seen.ws.headers, "sec-websocket-extensions"), "permessage-deflate");
    // Chromium sends "gzip, deflate, br, zstd": the reference's negotiator picks gzip (first listed)
    assert.equal(header(who.seen.bundle?.headers, "content-encoding"), "gzip");
  }
  const long = "Alice says: " + Array.from({ length: 400 }, (_, i) => `word${i % 37}`).join(" ");
  await alice.page.fill("#input", long);
  await alice.page.click("#send");
  await bob.page.waitForFunction((t) => [...document.querySelectorAll("#messages li:not(.own)")]
    .some((li) => li.textContent === t), long, { timeout: WAIT });
  const reply = "Bob: " + "ok ".repeat(600);
  await bob.page.fill("#input", reply);
  await bob.page.press("#input", "Enter");
  await alice.page.waitForFunction((t) => [...document.querySelectorAll("#messages li:not(.own)")]
    .some((li) => li.textContent === t.trim() || li.textContent === t), reply, { timeout: WAIT });
  assert.deepEqual(alice.errors, []);
  assert.deepEqual(bob.errors, []);
  await zsrv.waitLog(/message received:\s+Alice says: word0/);
});
