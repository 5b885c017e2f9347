// The chat example with perMessageDeflate in headless Chromium: the browser negotiates
// permessage-deflate (seen in the 101 through the DevTools protocol), loads the client bundle
// compressed, and long messages (compressed both ways) go from one page to the other.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import { startServer } from "../helpers.mjs";

const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
let srv, browser;

before(async () => {
  srv = await startServer("examples/chat/app.lua", ["--per-message-deflate"]);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    timeout: 30000,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
});
after(async () => {
  await browser?.close();
  await srv?.stop();
});

/** Opens the chat page; records the WebSocket 101 headers and the bundle's response headers. */
async function openChat() {
  const context = await browser.newContext({ viewport: { width: 640, height: 420 } });
  const page = await context.newPage();
  const cdp = await context.newCDPSession(page);
  const seen = { ws: null, bundle: null };
  await cdp.send("Network.enable");
  cdp.on("Network.webSocketHandshakeResponseReceived", (e) => { seen.ws = e.response; });
  cdp.on("Network.responseReceived", (e) => {
    if (e.response.url.endsWith("/socket.io/socket.io.js")) seen.bundle = e.response;
  });
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(srv.url + "/", { timeout: 10000 });
  await page.waitForSelector("#status.online", { timeout: 10000 });
  return { page, errors, seen };
}

const header = (headers, name) =>
  Object.entries(headers || {}).find(([k]) => k.toLowerCase() === name)?.[1];

test("Chromium negotiates permessage-deflate; long messages cross compressed; the bundle comes gzip-encoded", async () => {
  const alice = await openChat();
  const bob = await openChat();
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
    .some((li) => li.textContent === t), long, { timeout: 5000 });
  const reply = "Bob: " + "ok ".repeat(600);
  await bob.page.fill("#input", reply);
  await bob.page.press("#input", "Enter");
  await alice.page.waitForFunction((t) => [...document.querySelectorAll("#messages li:not(.own)")]
    .some((li) => li.textContent === t.trim() || li.textContent === t), reply, { timeout: 5000 });
  assert.deepEqual(alice.errors, []);
  assert.deepEqual(bob.errors, []);
  await srv.waitLog(/message received:\s+Alice says: word0/);
});
