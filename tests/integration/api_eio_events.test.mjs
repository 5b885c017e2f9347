// The server API (issue 3), the raw Engine.IO layer on its own path (written before it existed):
// an echo server at /engine.io/ beside Socket.IO at /socket.io/, driven by
// the npm engine.io-client (socket.io-client's own transport layer): text stays text, binary
// stays binary, on WebSocket, polling and polling upgraded; conn.close(); conn's upgrade event.
// App: apps/api_eio_events.lua (twin: ref/api_apps.mjs).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Socket as EioSocket } from "engine.io-client";
import { startServer, connect, once, closeAll, request, withTimeout, WAIT } from "./helpers.mjs";

let srv;
const raw = new Set();
before(async () => { srv = await startServer("api_eio_events"); });
after(async () => {
  for (const s of raw) s.close();
  closeAll();
  await srv?.stop();
});

/** An engine.io-client on /engine.io/, with every message it receives in .got. */
async function eio(transports, upgrade = true) {
  const s = new EioSocket(srv.url, { path: "/engine.io/", transports, upgrade });
  raw.add(s);
  s.got = [];
  s.on("message", (d) => s.got.push(typeof d === "string" ? d : Buffer.from(d instanceof ArrayBuffer ? new Uint8Array(d) : d)));
  s.next = (pred, what) => withTimeout(new Promise((resolve) => {
    const check = () => {
      const i = s.got.findIndex(pred);
      if (i >= 0) {
        s.off("message", check);
        resolve(s.got[i]);
      }
    };
    s.on("message", check);
    check();
  }), WAIT, what);
  await withTimeout(new Promise((resolve, reject) => {
    s.once("open", resolve);
    s.once("error", reject);
  }), WAIT, `engine.io open over ${transports}`);
  return s;
}

for (const transport of ["websocket", "polling"]) {
  test(`[${transport}] echo: text stays text, binary stays binary`, async () => {
    const s = await eio([transport], false);
    assert.equal(await s.next((d) => typeof d === "string" && d.startsWith("welcome"), "welcome"), `welcome ${transport}`);
    s.send("hello engine");
    assert.equal(await s.next((d) => d === "hello engine", "text echo"), "hello engine");
    s.send(new Uint8Array([0, 1, 2, 255]));
    const bin = await s.next((d) => typeof d !== "string", "binary echo");
    assert.deepEqual([...bin], [0, 1, 2, 255]);
    s.close();
  });
}

test("polling upgraded to WebSocket: conn's upgrade event, the echo goes on", async () => {
  const s = await eio(["polling", "websocket"]);
  assert.equal(await s.next((d) => typeof d === "string" && d.startsWith("welcome"), "welcome"), "welcome polling");
  assert.equal(await s.next((d) => typeof d === "string" && d.startsWith("upgraded"), "upgraded"), "upgraded websocket");
  s.send("after upgrade");
  assert.equal(await s.next((d) => d === "after upgrade", "echo"), "after upgrade");
  s.close();
});

test("conn.close() from the server closes the client; the server's close event has a reason", async () => {
  const s = await eio(["websocket"], false);
  const id = s.id;
  const closed = once(s, "close");
  s.send("close-me");
  assert.equal((await closed)[0], "transport close");
  await srv.waitLog(new RegExp(`eio close ${id} forced close`));
});

test("Socket.IO keeps working beside the Engine.IO endpoint", async () => {
  const e = await eio(["websocket"], false);
  const sio = await connect(srv.url, { transports: ["websocket"] });
  assert.deepEqual(await request(sio, "echo", { a: [1] }), [{ a: [1] }]);
  e.send("still here");
  assert.equal(await e.next((d) => d === "still here", "echo"), "still here");
});
