// What the browser tests share: headless Chromium (Debian's /usr/bin/chromium, or $CHROMIUM) and
// a page of the chat example that has connected.
import { chromium } from "playwright-core";
import { WAIT } from "../helpers.mjs";

const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

/** Launches Chromium; env (optional) replaces its environment (e.g. a HOME with an NSS database). */
export function launchChromium(env = undefined) {
  return chromium.launch({
    executablePath: CHROMIUM,
    timeout: 30000,
    env,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}

/** Opens the chat page at url in a new context; resolves to { page, errors, seen } once it shows
 * "connected". With { record: true }, seen.ws and seen.bundle get the WebSocket's 101 and the client
 * bundle's response (headers included) through the DevTools protocol. */
export async function openChat(browser, url, { record = false } = {}) {
  const context = await browser.newContext({ viewport: { width: 640, height: 420 } });
  const page = await context.newPage();
  const errors = [];
  const seen = { ws: null, bundle: null };
  if (record) {
    const cdp = await context.newCDPSession(page);
    await cdp.send("Network.enable");
    cdp.on("Network.webSocketHandshakeResponseReceived", (e) => { seen.ws = e.response; });
    cdp.on("Network.responseReceived", (e) => {
      if (e.response.url.endsWith("/socket.io/socket.io.js")) seen.bundle = e.response;
    });
  }
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(url + "/", { timeout: WAIT });
  await page.waitForSelector("#status.online", { timeout: WAIT });
  return { page, errors, seen };
}
