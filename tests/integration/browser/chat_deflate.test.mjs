// The chat example with perMessageDeflate in headless Chromium: the browser negotiates
// permessage-deflate (its 101, seen through the DevTools protocol), loads the client bundle
// compressed, and long messages (compressed both ways) go from one page to the other.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer } from "../helpers.mjs";
import { launchChromium, openChat } from "./chat.helpers.mjs";

let srv, browser;
before(async () => {
  srv = await startServer("examples/chat/app.lua", ["--per-message-deflate"]);
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
  await srv?.stop();
});

const header = (headers, name) =>
  Object.entries(headers || {}).find(([k]) => k.toLowerCase() === name)?.[1];

test("Chromium negotiates permessage-deflate; long messages cross compressed; the bundle comes gzip-encoded", async () => {
  const alice = await openChat(browser, srv.url, { record: true });
  const bob = await openChat(browser, srv.url, { record: true });
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
