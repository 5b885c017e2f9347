// The chat example over HTTPS and WSS in headless Chromium, across a certificate rotation.
// Chromium trusts the test CA the way a user's machine would: it is added to an NSS database
// (Debian's certutil) in a HOME of its own, where Chromium on Linux reads locally trusted roots;
// no certificate error is ignored, so a wrong chain, name or key fails the page load. Leaves a
// screenshot in build/screenshots/chat_tls.png.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { startServer, ROOT, WAIT } from "../helpers.mjs";
import { makePki } from "../tls.helpers.mjs";
import { launchChromium, openChat as open } from "./chat.helpers.mjs";

let srv, browser, pki;

before(async () => {
  pki = makePki(["one", "two"]);
  const home = path.join(pki.dir, "home");
  const db = "sql:" + path.join(home, ".pki/nssdb");
  mkdirSync(path.join(home, ".pki/nssdb"), { recursive: true });
  execFileSync("certutil", ["-d", db, "-N", "--empty-password"]);
  execFileSync("certutil", ["-d", db, "-A", "-t", "C,,", "-n", "siolua test CA", "-i", pki.ca]);
  srv = await startServer("examples/chat/app.lua", ["--tls-cert", pki.cert, "--tls-key", pki.key]);
  browser = await launchChromium({ ...process.env, HOME: home });
});
after(async () => {
  await browser?.close();
  await srv?.stop();
  pki?.cleanup();
});

async function openChat() {
  const { page, errors } = await open(browser, srv.url);
  // the page upgrades from HTTPS long-polling to WSS
  await page.waitForFunction(() => socket.io.engine.transport.name === "websocket", null, { timeout: WAIT });
  return { page, errors, id: await page.evaluate(() => socket.id) };
}

async function say(from, to, text) {
  await from.page.fill("#input", text);
  await from.page.click("#send");
  for (const p of to) await p.page.waitForSelector(`#messages li:not(.own) >> text=${text}`, { timeout: WAIT });
}

test("two pages chat over HTTPS/WSS; after a rotation they go on, and a new page gets the new certificate", async () => {
  assert.match(srv.url, /^https:\/\/127\.0\.0\.1:/);
  const alice = await openChat();
  const bob = await openChat();
  await say(alice, [bob], "Hello over TLS");
  await say(bob, [alice], "Hi Alice, encrypted");

  pki.rotate("two");
  srv.proc.kill("SIGHUP");
  await srv.waitLog(/tls: certificate reloaded \(SIGHUP\)/);

  await say(alice, [bob], "Still here after the rotation");
  const carol = await openChat(); // a new TLS connection: the new certificate, from the same CA
  await say(carol, [alice, bob], "Carol joined after it");
  await say(bob, [alice, carol], "Welcome Carol");

  // nobody reconnected: the same sockets, still over WebSocket
  for (const p of [alice, bob]) {
    assert.equal(await p.page.evaluate(() => socket.id), p.id);
    assert.equal(await p.page.evaluate(() => socket.io.engine.transport.name), "websocket");
  }
  assert.deepEqual([...alice.errors, ...bob.errors, ...carol.errors], []);
  const dir = path.join(ROOT, "build/screenshots");
  mkdirSync(dir, { recursive: true });
  await alice.page.screenshot({ path: path.join(dir, "chat_tls.png") });
});
