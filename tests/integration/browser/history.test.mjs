// examples/history in headless Chromium: alice's page (?token=alice-token) joins through the
// example's auth endpoint and sends messages, bob's page joins later and shows them as history,
// then both see each other's live messages and presence; an unknown token's page says why it was
// refused. A screenshot is left in build/screenshots/history.png.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { REF, ROOT, WAIT, closeAll } from "../helpers.mjs";
import { launchChromium } from "./chat.helpers.mjs";
import { startWithEnv } from "../hio.helpers.mjs";
import { freePort } from "../redis.helpers.mjs";

const skip = REF ? "the example runs on siolua" : false;
let srv, browser, dir;

before(async () => {
  if (skip) return;
  dir = mkdtempSync(path.join(os.tmpdir(), "siolua-history-ui-"));
  const port = await freePort();
  srv = await startWithEnv("examples/history/app.lua", {
    HISTORY_DB: path.join(dir, "chat.db"), HISTORY_AUTH_URL: `http://127.0.0.1:${port}/auth/check`,
  }, ["--port", String(port)]);
  browser = await launchChromium();
});
after(async () => {
  closeAll();
  await browser?.close();
  await srv?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function open(token, ready = "#status.online") {
  const context = await browser.newContext({ viewport: { width: 640, height: 420 } });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(`${srv.url}/?token=${token}`, { timeout: WAIT });
  await page.waitForSelector(ready, { timeout: WAIT });
  return { page, errors };
}

test("history, live messages and presence in two browsers; an unknown token is refused", { skip }, async () => {
  const alice = await open("alice-token");
  for (const text of ["first", "second", "third"]) {
    await alice.page.fill("#input", text);
    await alice.page.press("#input", "Enter");
    await alice.page.waitForSelector(`#messages li.own >> text=${text}`, { timeout: WAIT });
  }
  // bob joins later: the three messages come as history, and alice sees bob online
  const bob = await open("bob-token");
  await bob.page.waitForFunction(() => document.body.dataset.history === "3", null, { timeout: WAIT });
  assert.deepEqual(await bob.page.$$eval("#messages li", (els) => els.map((e) => e.lastChild.textContent)),
    ["first", "second", "third"]);
  await alice.page.waitForSelector("#online >> text=online: alice, bob", { timeout: WAIT });

  await bob.page.fill("#input", "hello alice");
  await bob.page.click("#send");
  await alice.page.waitForSelector("#messages li:not(.own) >> text=hello alice", { timeout: WAIT });
  await bob.page.waitForSelector("#messages li.own >> text=hello alice", { timeout: WAIT });

  const mallory = await open("mallory-token", "#status.offline");
  await mallory.page.waitForSelector("#error >> text=cannot join: invalid token", { timeout: WAIT });

  assert.deepEqual([alice.errors, bob.errors, mallory.errors], [[], [], []]);
  const shots = path.join(ROOT, "build/screenshots");
  mkdirSync(shots, { recursive: true });
  await alice.page.screenshot({ path: path.join(shots, "history.png") });
});
