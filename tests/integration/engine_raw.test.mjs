// Engine.IO-only endpoints (siolua.engine, apps/engine_main.lua) driven by the npm
// engine.io-client and raw HTTP: echo over polling, websocket and upgrade (binary stays binary),
// close reasons on both sides, the connection_error table, initial_headers / headers, per-endpoint
// options (heartbeat, transports), and a raising handler.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Socket } from "engine.io-client";
import WebSocket from "ws";
import { startServer, once, withTimeout, REF, WAIT } from "./helpers.mjs";

// apps/engine_main.lua has no JavaScript twin in ref/ (siolua.engine{} endpoints are siolua's)
describe("siolua.engine endpoints", { skip: REF && "no JS twin of apps/engine_main.lua" }, () => {
  let srv;
  before(async () => { srv = await startServer("engine_main"); });
  after(async () => {
    for (const s of sockets) s.close();
    await srv?.stop();
  });

  const sockets = new Set();
  /** An engine.io-client Socket on the raw endpoint, resolved once open. */
  async function open(opts = {}) {
    const s = new Socket(srv.url, { path: "/engine.io/", ...opts });
    sockets.add(s);
    await withTimeout(
      new Promise((resolve, reject) => {
        s.once("open", resolve);
        s.once("error", reject);
      }),
      WAIT,
      `engine.io open with ${JSON.stringify(opts)}`,
    );
    return s;
  }

  /** Sends data and resolves to the next message. */
  async function roundTrip(s, data) {
    const got = once(s, "message");
    s.send(data);
    return (await got)[0];
  }

  const isBinary = (d) => Buffer.isBuffer(d) || d instanceof ArrayBuffer || ArrayBuffer.isView(d);
  const bytes = (d) => Buffer.from(d instanceof ArrayBuffer ? new Uint8Array(d) : d);
  const esc = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

  async function echoBoth(s) {
    assert.equal(await roundTrip(s, "hello"), "hello");
    assert.equal(await roundTrip(s, "héllo ✓"), "héllo ✓");
    const bin = Buffer.from([0, 1, 2, 255, 10, 30]);
    const back = await roundTrip(s, bin);
    assert.ok(isBinary(back), "binary stays binary");
    assert.deepEqual(bytes(back), bin);
    await srv.waitLog(new RegExp(`engine message ${s.id} binary:6`));
    await srv.waitLog(new RegExp(`engine packet ${s.id} text:hello`));
  }

  test("polling: echo of text and binary", async () => {
    const s = await open({ transports: ["polling"], query: { tag: "poll1" } });
    assert.equal(s.transport.name, "polling");
    await srv.waitLog(new RegExp(`engine connection ${s.id} polling poll1`));
    await echoBoth(s);
    assert.equal(await roundTrip(s, "whoami"), `${s.id} polling false 1`);
    const closed = srv.waitLog(new RegExp(`engine close ${s.id} (.*) send=false`));
    s.close();
    assert.equal((await closed)[1], "transport close");
  });

  test("websocket: echo of text and binary", async () => {
    const s = await open({ transports: ["websocket"] });
    assert.equal(s.transport.name, "websocket");
    await srv.waitLog(new RegExp(`engine connection ${s.id} websocket -`));
    await echoBoth(s);
    const closed = srv.waitLog(new RegExp(`engine close ${s.id} (.*) send=false`));
    s.close();
    assert.equal((await closed)[1], "transport close");
  });

  test("polling upgrades to websocket: upgrade on both sides, echo after", async () => {
    const s = new Socket(srv.url, { path: "/engine.io/", transports: ["polling", "websocket"] });
    sockets.add(s);
    const upgraded = once(s, "upgrade");
    await once(s, "open");
    assert.equal(s.transport.name, "polling");
    assert.equal((await upgraded)[0].name, "websocket");
    await srv.waitLog(new RegExp(`engine upgrade ${s.id} websocket`));
    assert.equal(await roundTrip(s, "whoami"), `${s.id} websocket true 1`);
    await echoBoth(s);
    s.close();
  });

  for (const transport of ["polling", "websocket"]) {
    test(`${transport}: conn.close() from the server`, async () => {
      const s = await open({ transports: [transport] });
      const clientClosed = once(s, "close");
      const serverClosed = srv.waitLog(new RegExp(`engine close ${s.id} (.*) send=false`));
      s.send("close-me");
      assert.equal((await serverClosed)[1], "forced close");
      assert.equal((await clientClosed)[0], "transport close");
    });
  }

  test("a second endpoint with its own options: heartbeat and transports", async () => {
    const res = await fetch(`${srv.url}/fast/?EIO=4&transport=polling`);
    assert.equal(res.status, 200);
    const body = await res.text();
    assert.equal(body[0], "0");
    const hs = JSON.parse(body.slice(1));
    assert.equal(hs.pingInterval, 200);
    assert.equal(hs.pingTimeout, 150);
    assert.deepEqual(hs.upgrades, []);
    // nobody polls, so the ping is never answered
    await srv.waitLog(new RegExp(`fast close ${hs.sid} ping timeout`), WAIT);
    // websocket is not among its transports
    const ws = await fetch(`${srv.url}/fast/?EIO=4&transport=websocket`);
    assert.equal(ws.status, 400);
    assert.deepEqual(await ws.json(), { code: 0, message: "Transport unknown" });
  });

  test("connection_error: every row of the error table", async () => {
    const base = `${srv.url}/engine.io/`;
    const rows = [
      ["?EIO=4&transport=bogus", {}, 400, 0, "Transport unknown", "-", "-"],
      ["?EIO=4&transport=polling&sid=nope", {}, 400, 1, "Session ID unknown", "-", "-"],
      ["?EIO=4&transport=polling", { method: "POST", body: "1:6" }, 400, 2, "Bad handshake method", "-", "-"],
      ["?EIO=4&transport=websocket", {}, 400, 3, "Bad request", "-", "TRANSPORT_HANDSHAKE_ERROR"],
      ["?EIO=4&transport=polling&deny=1", {}, 403, 4, "nope", "nope", "-"],
      ["?EIO=3&transport=polling", {}, 400, 5, "Unsupported protocol version", "-", "-"],
    ];
    for (const [query, init, status, code, message, context, name] of rows) {
      const res = await fetch(base + query, init);
      assert.equal(res.status, status, query);
      assert.deepEqual(await res.json(), { code, message }, query);
      const table = ["Transport unknown", "Session ID unknown", "Bad handshake method", "Bad request", "Forbidden",
        "Unsupported protocol version"][code];
      await srv.waitLog(new RegExp(esc(`engine connection_error ${code} ${table} ${context} ${name} /engine.io/${query}`)));
    }
  });

  test("initial_headers on the handshake only, headers on every answer", async () => {
    const hs = await fetch(`${srv.url}/engine.io/?EIO=4&transport=polling`);
    assert.equal(hs.status, 200);
    assert.equal(hs.headers.get("x-initial"), "yes");
    assert.equal(hs.headers.get("x-every"), "GET");
    assert.equal(hs.headers.get("x-bad"), null);
    assert.equal(hs.headers.get("injected"), null);
    assert.match(hs.headers.get("content-type"), /^text\/plain/);
    const { sid } = JSON.parse((await hs.text()).slice(1));
    await srv.waitLog(/engine "headers": header X-Bad refused/);
    const post = await fetch(`${srv.url}/engine.io/?EIO=4&transport=polling&sid=${sid}`, { method: "POST", body: "4abc" });
    assert.equal(post.status, 200);
    assert.equal(await post.text(), "ok");
    assert.equal(post.headers.get("x-initial"), null);
    assert.equal(post.headers.get("x-every"), "POST");
    const poll = await fetch(`${srv.url}/engine.io/?EIO=4&transport=polling&sid=${sid}`);
    assert.equal(poll.headers.get("x-initial"), null);
    assert.equal(poll.headers.get("x-every"), "GET");
    assert.equal(await poll.text(), "4abc"); // the echo
    const closed = srv.waitLog(new RegExp(`engine close ${sid} transport close`));
    await fetch(`${srv.url}/engine.io/?EIO=4&transport=polling&sid=${sid}`, { method: "POST", body: "1" });
    await closed;
  });

  test("initial_headers on a websocket handshake's 101", async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${srv.port}/engine.io/?EIO=4&transport=websocket`);
    const upgrade = once(ws, "upgrade");
    const message = once(ws, "message"); // the open packet may come with the 101
    const [res] = await upgrade;
    assert.equal(res.headers["x-initial"], "yes");
    const [first] = await message;
    assert.equal(first.toString()[0], "0");
    ws.close();
  });

  test("a raising handler is logged and the endpoint keeps serving", async () => {
    const s = new Socket(srv.url, { path: "/bad/", transports: ["websocket"] });
    sockets.add(s);
    await once(s, "open");
    s.send("boom");
    await srv.waitLog(/kaboom in a raw handler/);
    const t = await open({ transports: ["websocket"] });
    assert.equal(await roundTrip(t, "still here"), "still here");
    s.close();
    t.close();
  });

  test("Socket.IO's path and static files still route as before", async () => {
    const sio = await fetch(`${srv.url}/socket.io/?EIO=4&transport=polling`);
    assert.equal(sio.status, 200);
    const nf = await fetch(`${srv.url}/engine.iox`);
    assert.equal(nf.status, 404);
  });
});
