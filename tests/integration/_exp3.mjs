import { createServer } from "node:http";
import { Server } from "socket.io";
import { io as ioc } from "socket.io-client";
const http = createServer();
const io = new Server(http, { pingInterval: 300, pingTimeout: 2000 });
const show = (p) => JSON.stringify(p, (k, v) => (v && v.type === "Buffer" ? "buf" : v));
io.engine.on("connection", (conn) => {
  for (const ev of ["packetCreate", "flush", "drain", "heartbeat", "upgrading", "upgrade", "packet", "data", "message", "close"]) {
    conn.on(ev, (...a) => console.log("conn", ev, a.map((x) => (x && x.name && x.constructor && x.constructor.name !== "Object" ? "transport:" + x.name : show(x))).join(" | "), "transport now", conn.transport.name));
  }
});
io.engine.on("flush", (s, b) => console.log("server flush", s.id === undefined ? "?" : "socket", b.length));
io.engine.on("drain", (s) => console.log("server drain"));
io.on("connection", (socket) => {
  console.log("sio connection; same conn:", socket.conn === io.engine.clients[socket.conn.id]);
  socket.on("hi", (a, ack) => ack("yo"));
});
await new Promise((r) => http.listen(0, "127.0.0.1", r));
const port = http.address().port;
const c = ioc(`http://127.0.0.1:${port}`, { transports: ["polling", "websocket"] });
await new Promise((r) => c.on("connect", r));
await new Promise((r) => c.io.engine.on("upgrade", r));
console.log("---- client upgraded; emit");
await c.emitWithAck("hi", 1);
await new Promise((r) => setTimeout(r, 400));
console.log("---- close");
c.disconnect();
await new Promise((r) => setTimeout(r, 200));
process.exit(0);
