// The chat example in headless Chromium: two pages, a message typed in one appears in the other.
// Leaves a screenshot in build/screenshots/chat.png.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";
import { startServer, ROOT } from "../helpers.mjs";

const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
let srv, browser;

before(async () => {
  srv = await startServer("examples/chat/app.lua");
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

async function openChat() {
  const context = await browser.newContext({ viewport: { width: 640, height: 420 } });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(srv.url + "/", { timeout: 10000 });
  await page.waitForSelector("#status.online", { timeout: 10000 });
  return { page, errors };
}

test("a message typed in one page appears in the other", async () => {
  const alice = await openChat();
  const bob = await openChat();

  await alice.page.fill("#input", "Hello from Alice");
  await alice.page.click("#send");
  // the sender shows its own message locally, the other page gets it through the server
  await alice.page.waitForSelector("#messages li.own >> text=Hello from Alice", { timeout: 5000 });
  await bob.page.waitForSelector("#messages li:not(.own) >> text=Hello from Alice", { timeout: 5000 });

  await bob.page.fill("#input", "Hi Alice, Bob here");
  await bob.page.press("#input", "Enter");
  await alice.page.waitForSelector("#messages li:not(.own) >> text=Hi Alice, Bob here", { timeout: 5000 });

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
