// Transports: websocket only, polling only, polling -> websocket upgrade, and the handshake's
// advertised upgrades (none with --no-upgrades).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { io as ioClient } from "socket.io-client";
import { startServer, connect, once, closeAll, request, withTimeout, WAIT } from "./helpers.mjs";

let srv;
before(async () => { srv = await startServer("main"); });
after(async () => { closeAll(); await srv?.stop(); });

test("websocket only", async () => {
  const s = await connect(srv.url, { transports: ["websocket"] });
  assert.equal(s.io.engine.transport.name, "websocket");
  assert.deepEqual(await request(s, "echo", "over ws", 1), ["over ws", 1]);
  s.disconnect();
});

test("polling only", async () => {
  const s = await connect(srv.url, { transports: ["polling"] });
  assert.equal(s.io.engine.transport.name, "polling");
  // several packets in flight at once, so some travel batched in one POST / one GET
  const replies = await Promise.all(
    Array.from({ length: 20 }, (_, i) => request(s, "echo", "p" + i, { i })),
  );
  replies.forEach((r, i) => assert.deepEqual(r, ["p" + i, { i }]));
  assert.equal(s.io.engine.transport.name, "polling");
  s.disconnect();
});

test("polling upgrades to websocket", async () => {
  const s = ioClient(srv.url, { forceNew: true, reconnection: false, transports: ["polling", "websocket"] });
  try {
    // the engine exists from the Manager's "open" on, before any upgrade probe can finish
    const upgraded = withTimeout(
      new Promise((resolve) => s.io.once("open", () => {
        assert.equal(s.io.engine.transport.name, "polling");
        s.io.engine.once("upgrade", resolve);
      })),
      WAIT,
      "the engine's upgrade event",
    );
    await once(s, "connect");
    const transport = await upgraded;
    assert.equal(transport.name, "websocket");
    assert.equal(s.io.engine.transport.name, "websocket");
    assert.deepEqual(await request(s, "echo", "after upgrade"), ["after upgrade"]);
  } finally {
    s.disconnect();
  }
});

test("a polling client and a websocket client see each other's broadcasts", async () => {
  const a = await connect(srv.url, { transports: ["polling"] });
  const b = await connect(srv.url, { transports: ["websocket"] });
  const gotB = once(b, "shout");
  a.emit("shout", "from polling");
  assert.deepEqual(await gotB, ["from polling", a.id]);
  const gotA = once(a, "shout");
  b.emit("shout", "from ws");
  assert.deepEqual(await gotA, ["from ws", b.id]);
  a.disconnect();
  b.disconnect();
});

test("--no-upgrades: the handshake advertises no upgrade and the client stays on polling", async () => {
  const s2 = await startServer("main", ["--no-upgrades"]);
  try {
    const res = await fetch(`${s2.url}/socket.io/?EIO=4&transport=polling`);
    assert.equal(res.status, 200);
    const body = await res.text();
    assert.equal(body[0], "0");
    assert.deepEqual(JSON.parse(body.slice(1)).upgrades, []);
    const s = await connect(s2.url, {});
    assert.deepEqual(await request(s, "echo", 1), [1]);
    assert.equal(s.io.engine.transport.name, "polling");
    s.disconnect();
  } finally {
    await s2.stop();
  }
});

test("--transports websocket: polling is refused with Transport unknown", async () => {
  const s2 = await startServer("main", ["--transports", "websocket"]);
  try {
    const res = await fetch(`${s2.url}/socket.io/?EIO=4&transport=polling`);
    assert.equal(res.status, 400);
    assert.equal(await res.text(), '{"code":0,"message":"Transport unknown"}');
    const s = await connect(s2.url, { transports: ["websocket"] });
    assert.deepEqual(await request(s, "echo", "ws"), ["ws"]);
    s.disconnect();
  } finally {
    await s2.stop();
  }
});

test("--path: the server answers on another path", async () => {
  const s2 = await startServer("main", ["--path", "/custom/"]);
  try {
    const s = await connect(s2.url, { path: "/custom/", transports: ["polling", "websocket"] });
    assert.deepEqual(await request(s, "echo", "custom"), ["custom"]);
    s.disconnect();
    const res = await fetch(`${s2.url}/custom/?EIO=4&transport=polling`);
    assert.equal(res.status, 200);
    assert.equal((await res.text())[0], "0");
  } finally {
    await s2.stop();
  }
});
