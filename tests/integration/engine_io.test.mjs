// io.engine: the Engine.IO server under Socket.IO (apps/engine_main.lua). Its "connection" event
// fires for every Socket.IO client's session with conn.id = the client's engine id, then
// "message" (observed), "upgrade" and "close" (reason); "connection_error" and "initial_headers" work on Socket.IO's
// path; conn.send is refused there (Socket.IO owns the messages).
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { io as ioClient } from "socket.io-client";
import { startServer, once, closeAll, request, REF } from "./helpers.mjs";

// apps/engine_main.lua has no JavaScript twin in ref/ (siolua.engine{} endpoints are siolua's)
describe("io.engine on Socket.IO's path", { skip: REF && "no JS twin of apps/engine_main.lua" }, () => {
  let srv;
  before(async () => { srv = await startServer("engine_main"); });
  after(async () => { closeAll(); await srv?.stop(); });

  test("io.engine connection, upgrade and close for a Socket.IO client", async () => {
    const s = ioClient(srv.url, { forceNew: true, reconnection: false });
    try {
      await once(s, "connect");
      const id = s.io.engine.id;
      await srv.waitLog(new RegExp(`io.engine connection ${id} polling open`));
      await srv.waitLog(new RegExp(`io.engine send allowed ${id} false`));
      await srv.waitLog(new RegExp(`io.engine upgrade ${id} websocket`));
      // the Engine.IO messages that carried Socket.IO packets, observed after Socket.IO handled them
      await srv.waitLog(new RegExp(`io.engine message ${id} text:0\\n`));
      const [count] = await request(s, "count");
      await srv.waitLog(new RegExp(`io.engine message ${id} text:2\\d*\\["count"\\]`));
      assert.ok(count >= 1);
      const closed = srv.waitLog(new RegExp(`io.engine close ${id} (.*)`));
      s.disconnect();
      assert.equal((await closed)[1], "transport close");
    } finally {
      s.disconnect();
    }
  });

  test("io.engine connection for a websocket-only client", async () => {
    const s = ioClient(srv.url, { forceNew: true, reconnection: false, transports: ["websocket"] });
    try {
      await once(s, "connect");
      await srv.waitLog(new RegExp(`io.engine connection ${s.io.engine.id} websocket open`));
    } finally {
      s.disconnect();
    }
  });

  test("io.engine connection_error and initial_headers on Socket.IO's path", async () => {
    const bad = await fetch(`${srv.url}/socket.io/?EIO=4&transport=bogus`);
    assert.equal(bad.status, 400);
    assert.deepEqual(await bad.json(), { code: 0, message: "Transport unknown" });
    await srv.waitLog(/io\.engine connection_error 0 Transport unknown \/socket\.io\/\?EIO=4&transport=bogus/);
    const denied = await fetch(`${srv.url}/socket.io/?EIO=4&transport=polling&deny=1`);
    assert.equal(denied.status, 403);
    assert.deepEqual(await denied.json(), { code: 4, message: "nope" });
    await srv.waitLog(/io\.engine connection_error 4 Forbidden \/socket\.io\/\?EIO=4&transport=polling&deny=1/);

    const hs = await fetch(`${srv.url}/socket.io/?EIO=4&transport=polling`);
    assert.equal(hs.status, 200);
    assert.equal(hs.headers.get("x-sio-initial"), "1");
    const { sid } = JSON.parse((await hs.text()).slice(1));
    const post = await fetch(`${srv.url}/socket.io/?EIO=4&transport=polling&sid=${sid}`, { method: "POST", body: "40" });
    assert.equal(post.headers.get("x-sio-initial"), null);
    const closed = srv.waitLog(new RegExp(`io.engine close ${sid} transport close`));
    await fetch(`${srv.url}/socket.io/?EIO=4&transport=polling&sid=${sid}`, { method: "POST", body: "1" });
    await closed;
  });
});
