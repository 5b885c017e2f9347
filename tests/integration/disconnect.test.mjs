// Disconnections, with the reason seen on both sides. The app reports its server-side reason
// with io.emit("gone", id, reason) to the clients still connected (an observer here) and print().
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { startServer, connect, once, closeAll, waitGone, request, withTimeout, WAIT } from "./helpers.mjs";

let srv, observer;
before(async () => {
  srv = await startServer("main");
  observer = await connect(srv.url, { transports: ["websocket"] });
});
after(async () => { closeAll(); await srv?.stop(); });

for (const transport of ["websocket", "polling"]) {
  test(`[${transport}] client disconnect: "io client disconnect" / "client namespace disconnect"`, async () => {
    const s = await connect(srv.url, { transports: [transport] });
    const id = s.id;
    const server = waitGone(observer, id);
    const client = once(s, "disconnect");
    s.disconnect();
    assert.deepEqual((await client)[0], "io client disconnect");
    assert.equal(await server, "client namespace disconnect");
    await srv.waitLog(new RegExp(`disconnect ${id} client namespace disconnect`));
  });

  test(`[${transport}] socket.disconnect(): "io server disconnect" / "server namespace disconnect"`, async () => {
    const s = await connect(srv.url, { transports: [transport] });
    const server = waitGone(observer, s.id);
    const client = once(s, "disconnect");
    s.emit("kick", false);
    assert.equal((await client)[0], "io server disconnect");
    assert.equal(await server, "server namespace disconnect");
  });

  test(`[${transport}] socket.disconnect(true): the same reasons (the closed connection is checked with a raw client below)`, async () => {
    const s = await connect(srv.url, { transports: [transport] });
    const server = waitGone(observer, s.id);
    const client = once(s, "disconnect");
    s.emit("kick", true);
    assert.equal((await client)[0], "io server disconnect");
    assert.equal(await server, "server namespace disconnect");
  });

  test(`[${transport}] the client closes its transport: "forced close" / "transport close"`, async () => {
    const s = await connect(srv.url, { transports: [transport] });
    const server = waitGone(observer, s.id);
    const client = once(s, "disconnect");
    s.io.engine.close();
    assert.equal((await client)[0], "forced close");
    assert.equal(await server, "transport close");
  });
}

/** A raw Engine.IO/Socket.IO client over a WebSocket; resolves once connected to "/". */
async function rawWs(url) {
  const ws = new WebSocket(url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket");
  const frames = [];
  ws.on("message", (d) => frames.push(d.toString()));
  const sid = await withTimeout(new Promise((resolve, reject) => {
    ws.on("error", reject);
    ws.on("message", (d) => {
      d = d.toString();
      if (d[0] === "0") ws.send("40");
      else if (d.startsWith("40")) resolve(JSON.parse(d.slice(2)).sid);
    });
  }), WAIT, "raw websocket connect");
  const closed = new Promise((resolve) => ws.on("close", (code) => resolve(code)));
  // resolves with the first frame (already received or to come) that pred accepts
  const frame = (pred, what) => withTimeout(new Promise((resolve) => {
    const seen = frames.find(pred);
    if (seen !== undefined) return resolve(seen);
    const on = (d) => {
      d = d.toString();
      if (pred(d)) { ws.off("message", on); resolve(d); }
    };
    ws.on("message", on);
  }), WAIT, what);
  return { ws, sid, frames, closed, frame };
}

test("raw websocket: disconnect() keeps the connection (the client may join again), disconnect(true) closes it", async () => {
  const r = await rawWs(srv.url);
  let gone = waitGone(observer, r.sid);
  r.ws.send('42["kick",false]');
  assert.equal(await gone, "server namespace disconnect");
  await r.frame((d) => d === "41", "the DISCONNECT packet");
  // same Engine.IO session: join "/" again and get a new socket id
  r.frames.length = 0;
  r.ws.send("40");
  const sid2 = JSON.parse((await r.frame((d) => d.startsWith("40{"), "a second CONNECT")).slice(2)).sid;
  assert.notEqual(sid2, r.sid);

  gone = waitGone(observer, sid2);
  r.ws.send('42["kick",true]');
  assert.equal(await gone, "server namespace disconnect");
  await withTimeout(r.closed, WAIT, "the websocket to be closed by disconnect(true)");
});

test("a raw client that drops its TCP connection: server reason \"transport close\"", async () => {
  const r = await rawWs(srv.url);
  const server = waitGone(observer, r.sid);
  r.ws.terminate();
  assert.equal(await server, "transport close");
});

test("an invalid Engine.IO packet: \"parse error\"", async () => {
  const r = await rawWs(srv.url);
  const server = waitGone(observer, r.sid);
  r.ws.send("9"); // no such Engine.IO packet type
  assert.equal(await server, "parse error");
  await withTimeout(r.closed, WAIT, "the raw websocket to be closed");
});

test("an invalid Socket.IO packet closes the connection: \"forced close\"", async () => {
  // reference (socket.io 4.8.4): the decoder throws, Client.onerror() closes the Engine.IO socket
  const r = await rawWs(srv.url);
  const server = waitGone(observer, r.sid);
  r.ws.send('42["unterminated"');
  assert.equal(await server, "forced close");
  await withTimeout(r.closed, WAIT, "the raw websocket to be closed");
});

test("the observer still works after all that", async () => {
  assert.deepEqual(await request(observer, "echo", "alive"), ["alive"]);
});

// reference: io.close() runs each socket's _onclose("server shutting down") without sending a
// DISCONNECT packet, then closes every Engine.IO connection: the clients see "transport close".
test("server shutdown (SIGTERM): the app sees \"server shutting down\", clients \"transport close\"", async () => {
  const s2 = await startServer("main");
  const a = await connect(s2.url, { transports: ["websocket"] });
  const b = await connect(s2.url, { transports: ["polling"] });
  const ids = [a.id, b.id];
  const da = once(a, "disconnect");
  const db = once(b, "disconnect");
  const st = await s2.stop();
  assert.equal((await da)[0], "transport close");
  // polling: the reference answers the pending GET with a close packet or drops it, depending on
  // timing; the client then says "transport close" or "transport error" ("xhr poll error")
  assert.ok(["transport close", "transport error"].includes((await db)[0]), (await db)[0]);
  for (const id of ids) assert.match(s2.log(), new RegExp(`disconnect ${id} server shutting down`));
  assert.equal(st.code, 0, `exit status ${JSON.stringify(st)}`);
});
