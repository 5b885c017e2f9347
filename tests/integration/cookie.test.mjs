// The `cookie` option: the handshake answer (polling 200, WebSocket 101) sets a cookie whose value
// is the Engine.IO session id, serialized as the npm `cookie` package does; later answers don't.
import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { startServer, REF } from "./helpers.mjs";

function get(port, path, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: "127.0.0.1", port, path, headers }, (res) => {
      let body = "";
      res.on("data", (d) => (body += d));
      res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    req.on("error", reject);
    req.on("upgrade", (res, socket) => {
      socket.destroy();
      resolve({ status: res.statusCode, headers: res.headers, body: "" });
    });
  });
}

test("cookie option: Set-Cookie with the session id on the handshake only", { skip: REF && "siolua app" }, async () => {
  const srv = await startServer("cookie", ["--ping-interval", "200"]);
  try {
    const open = await get(srv.port, "/socket.io/?EIO=4&transport=polling");
    assert.equal(open.status, 200);
    const sid = JSON.parse(open.body.slice(1)).sid;
    assert.deepEqual(open.headers["set-cookie"], [`sticky=${sid}; Max-Age=60; Path=/; HttpOnly; SameSite=Strict`]);
    // a later request of the same session (answered by the first ping) gets no cookie
    const next = await get(srv.port, `/socket.io/?EIO=4&transport=polling&sid=${sid}&t=1`, {});
    assert.equal(next.headers["set-cookie"], undefined);
    // a WebSocket handshake gets one too, in its 101
    const ws = await get(srv.port, "/socket.io/?EIO=4&transport=websocket", {
      Connection: "Upgrade", Upgrade: "websocket", "Sec-WebSocket-Version": "13",
      "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    });
    assert.equal(ws.status, 101);
    assert.match(ws.headers["set-cookie"][0], /^sticky=[A-Za-z0-9_-]{20}; Max-Age=60; Path=\/; HttpOnly; SameSite=Strict$/);
  } finally {
    await srv.stop();
  }
});
