// bench/redis: the Node node of the cross-node broadcast benchmark (its siolua twin: app.lua):
// socket.io with @socket.io/redis-adapter. Usage: node bench/redis/server.js --port N --redis URL
"use strict";
const http = require("http");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createClient } = require("redis");

const arg = (k, d) => (process.argv.indexOf(k) >= 0 ? process.argv[process.argv.indexOf(k) + 1] : d);
(async () => {
  const pub = createClient({ url: arg("--redis") });
  const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);
  const httpServer = http.createServer();
  const io = new Server(httpServer, { serveClient: false, adapter: createAdapter(pub, sub) });
  io.on("connection", (socket) => {
    socket.on("bcast", (payload) => socket.broadcast.emit("bcast", payload));
  });
  httpServer.listen(Number(arg("--port", "0")), "127.0.0.1", () => {
    console.error(`node listening on http://127.0.0.1:${httpServer.address().port}`);
  });
  for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => process.exit(0));
})();
