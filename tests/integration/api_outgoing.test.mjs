// The server API (issue 3), written before these parts existed:
// socket.conn.on("upgrade"), onAnyOutgoing on broadcasts (notifyOutgoing), and the
// cleanupEmptyChildNamespaces option. Apps: apps/api_outgoing.lua and
// apps/api_cleanup.lua (twins: ref/api_apps.mjs).
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { io as ioClient } from "socket.io-client";
import { startServer, connect, once, closeAll, request, withTimeout, WAIT } from "./helpers.mjs";

const servers = [];
async function server(app) {
  const srv = await startServer(app);
  servers.push(srv);
  return srv;
}
after(async () => {
  closeAll();
  for (const srv of servers) await srv.stop();
});

test("socket.conn.on(\"upgrade\") fires when the client upgrades from polling to WebSocket", async () => {
  const srv = await server("api_outgoing");
  // the listener must be there before the upgrade, which may follow the connection at once
  const s = ioClient(srv.url, { forceNew: true, reconnection: false, transports: ["polling", "websocket"] });
  try {
    const upgraded = once(s, "upgraded");
    await once(s, "connect");
    assert.deepEqual(await upgraded, ["websocket", "websocket"]);
    assert.deepEqual(await request(s, "transport"), ["websocket"]);
  } finally {
    s.disconnect();
  }
});

test("onAnyOutgoing sees the broadcasts a socket receives, not the ones it is left out of", async () => {
  const srv = await server("api_outgoing");
  const a = await connect(srv.url, { transports: ["websocket"] });
  const b = await connect(srv.url, { transports: ["polling"] });
  const c = await connect(srv.url, { transports: ["websocket"] });
  await request(a, "join", "r");
  await request(b, "join", "r");
  await request(a, "broadcasts", "r");
  // a asked: it is left out of socket.broadcast and socket.to(room)
  assert.deepEqual(await request(a, "outgoing"), [["b-io", "b-room", "direct"]]);
  assert.deepEqual(await request(b, "outgoing"), [["b-io", "b-room", "b-others", "b-room-others"]]);
  assert.deepEqual(await request(c, "outgoing"), [["b-io", "b-others"]]);
});

test("cleanupEmptyChildNamespaces: an empty child of a dynamic namespace is removed, and created again on the next CONNECT", async () => {
  const srv = await server("api_cleanup");
  // one Manager for / and /room-1: its packets reach the server in order
  const main = ioClient(srv.url, { forceNew: true, reconnection: false, transports: ["websocket"] });
  try {
    await once(main, "connect");
    // Manager.socket() connects by itself (autoConnect); later connect() calls join again
    const child = main.io.socket("/room-1");
    const joined = () => withTimeout(new Promise((resolve, reject) => {
      child.once("connect", resolve);
      child.once("connect_error", reject);
    }), WAIT, "connect to /room-1");
    let p = joined();
    await p;
    assert.deepEqual(await request(child, "nsp"), ["/room-1"]);
    assert.deepEqual(await request(main, "created"), [["/room-1"]]);
    child.disconnect();
    // after the DISCONNECT (same connection, so handled first), /room-1 is gone
    assert.deepEqual(await request(main, "created"), [["/room-1"]]);
    p = joined();
    child.connect();
    await p;
    assert.deepEqual(await request(main, "created"), [["/room-1", "/room-1"]]);
    // a child that still has a socket stays
    const other = await connect(srv.url + "/room-1", { transports: ["websocket"] });
    child.disconnect();
    assert.deepEqual(await request(other, "nsp"), ["/room-1"]);
    p = joined();
    child.connect();
    await p;
    assert.deepEqual(await request(main, "created"), [["/room-1", "/room-1"]]);
  } finally {
    main.disconnect();
    main.io.engine?.close();
  }
});
