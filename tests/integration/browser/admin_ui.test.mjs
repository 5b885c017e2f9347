// The official Admin UI (npm's @socket.io/admin-ui 0.5.1 page, built into siolua) served by
// siolua at --admin-ui-path, driven in headless Chromium against the rooms example with
// --admin-ui: it logs in (basic auth, the admin namespace given in its advanced options), lists
// the example's sockets and their rooms (screenshots in build/screenshots/admin-ui-*.png), and
// disconnects one of them, which that client sees.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { ROOT, REF, WAIT, startServer, connect, closeAll, once } from "../helpers.mjs";
import { launchChromium } from "./chat.helpers.mjs";

// bcrypt (libxcrypt's $2b$, cost 4: the test's logins stay cheap) of "s3cret!"
const HASH = "$2b$04$2fmODLVbZ0267zS3pDvmYOLDPjqVtbyw5IeZvYCyj6fIxgvWLWorO";
const SHOTS = path.join(ROOT, "build/screenshots");

let srv, browser;
before(async () => {
  if (REF) return;
  srv = await startServer("examples/rooms/app.lua", ["--admin-ui", `admin:${HASH}`, "--admin-ui-namespace", "/ops",
    "--admin-ui-path", "/ops/", "--no-watch"]);
  browser = await launchChromium();
  mkdirSync(SHOTS, { recursive: true });
});
after(async () => {
  closeAll();
  if (browser) await browser.close();
  if (srv) await srv.stop();
});

test("the Admin UI served by siolua logs in, shows the example's sockets and rooms, disconnects one", { skip: REF && "siolua's flag" }, async () => {
  const users = {};
  for (const [name, room] of [["alice", "lobby"], ["bob", "lobby"], ["carol", "games"]]) {
    const s = await connect(srv.url, { transports: ["websocket"] });
    const [reply] = await new Promise((resolve) => s.emit("join", name, room, (...r) => resolve(r)));
    assert.deepEqual(reply, { room });
    users[name] = s;
  }
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(srv.url + "/ops", { timeout: WAIT }); // redirected to /ops/
  assert.equal(new URL(page.url()).pathname, "/ops/");
  await page.getByLabel("Server URL").fill(srv.url, { timeout: WAIT });
  await page.getByLabel("Username").fill("admin");
  await page.getByLabel("Password").fill("s3cret!");
  await page.getByText("Advanced options").click();
  await page.getByLabel("Admin namespace").fill("/ops");
  await page.getByRole("button", { name: "Connect" }).click();
  await page.getByText(/^\s*connected\s*$/i).first().waitFor({ timeout: WAIT });
  assert.equal(await srv.waitLog(/admin ui: the page at http:\/\/127\.0\.0\.1:\d+\/ops\//).then(() => true), true);

  // the sockets, then the rooms with their sizes
  await page.getByText("Sockets", { exact: true }).first().click();
  for (const s of Object.values(users)) await page.getByText(s.id, { exact: true }).waitFor({ timeout: WAIT });
  await page.getByText("Rooms", { exact: true }).first().click();
  const row = (room) => page.locator("main tr", { hasText: room });
  await row("lobby").filter({ hasText: "2" }).waitFor({ timeout: WAIT });
  await row("games").filter({ hasText: "1" }).waitFor({ timeout: WAIT });
  await page.screenshot({ path: path.join(SHOTS, "admin-ui-rooms.png") });

  // carol's page: her data and rooms; its socket's disconnect button (the second logout icon:
  // the first is her whole client's)
  await page.getByText("Sockets", { exact: true }).first().click();
  await page.getByText(users.carol.id, { exact: true }).click();
  await page.locator("main", { hasText: '"name": "carol"' }).waitFor({ timeout: WAIT });
  await page.locator("main tr", { hasText: "games" }).first().waitFor({ timeout: WAIT });
  await page.screenshot({ path: path.join(SHOTS, "admin-ui-socket.png") });
  const gone = once(users.carol, "disconnect");
  await page.locator("main button:has(i.mdi-logout)").nth(1).click();
  assert.equal((await gone)[0], "io server disconnect");
  // the UI sees it leave; the others stay
  await page.locator("main").getByText(/^\s*disconnected\s*$/i).first().waitFor({ timeout: WAIT });
  assert.ok(users.alice.connected && users.bob.connected);
  assert.deepEqual(errors, []);
  await context.close();
});
