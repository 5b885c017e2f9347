// What the browser tests share: headless Chromium (Debian's /usr/bin/chromium, or $CHROMIUM) and
// a page of the chat example that has connected.
import { chromium } from "playwright-core";

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

/** Opens the chat page at url in a new context; resolves to { page, errors } once it shows "connected". */
export async function openChat(browser, url) {
  const context = await browser.newContext({ viewport: { width: 640, height: 420 } });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(url + "/", { timeout: 10000 });
  await page.waitForSelector("#status.online", { timeout: 10000 });
  return { page, errors };
}
