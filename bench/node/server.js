// The benchmark's Node reference (bench/run.sh): npm socket.io from the repository's node_modules,
// the same events as bench/app.lua. Usage: node bench/node/server.js --port N
//   [--ping-interval MS] [--ping-timeout MS] [--tls-cert FILE --tls-key FILE (https.createServer)]
//   [--per-message-deflate] [--parser msgpack (socket.io-msgpack-parser)]
//   [--workers N: Node's way to use N cores, as socket.io's docs set it up: the cluster module,
//    @socket.io/sticky in the primary (sessions routed by sid), @socket.io/cluster-adapter];
//   BENCH_ROOMS=1 uses rooms for join/bcast. BENCH_RECOVERY=1 turns connectionStateRecovery on.
"use strict";
const http = require("http");
const https = require("https");
const fs = require("fs");
const cluster = require("cluster");
const { Server } = require("socket.io");

const opt = { port: 3000, pingInterval: 25000, pingTimeout: 20000, perMessageDeflate: false };
for (let i = 2; i < process.argv.length; i += 2) {
  const k = process.argv[i], v = Number(process.argv[i + 1]);
  if (k === "--tls-cert") opt.cert = process.argv[i + 1];
  else if (k === "--tls-key") opt.key = process.argv[i + 1];
  else if (k === "--port") opt.port = v;
  else if (k === "--ping-interval") opt.pingInterval = v;
  else if (k === "--ping-timeout") opt.pingTimeout = v;
  else if (k === "--per-message-deflate") { opt.perMessageDeflate = true; i--; }
  else if (k === "--parser") opt.parser = process.argv[i + 1];
  else if (k === "--workers") opt.workers = v;
  else { console.error("unknown option " + k); process.exit(2); }
}
const rooms = process.env.BENCH_ROOMS === "1";

const clustered = opt.workers > 1;
if (clustered && cluster.isPrimary) {
  // the primary: holds the port, hands each connection to a worker by its sid (least connections
  // for a new one), relays the cluster adapter's messages
  const { setupMaster } = require("@socket.io/sticky");
  const { setupPrimary } = require("@socket.io/cluster-adapter");
  const primary = http.createServer();
  setupMaster(primary, { loadBalancingMethod: "least-connection" });
  setupPrimary();
  cluster.setupPrimary({ serialization: "advanced" });
  let online = 0;
  for (let i = 0; i < opt.workers; i++) cluster.fork().on("online", () => {
    if (++online === opt.workers)
      primary.listen(opt.port, "127.0.0.1", () => {
        console.error(`node socket.io ${require("socket.io/package.json").version} cluster of ${opt.workers} listening on http://127.0.0.1:${primary.address().port}`);
      });
  });
  for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => {
    for (const w of Object.values(cluster.workers)) w.process.kill("SIGTERM");
    process.exit(0);
  });
  return;
}

const httpServer = opt.cert
  ? https.createServer({ cert: fs.readFileSync(opt.cert), key: fs.readFileSync(opt.key) })
  : http.createServer();
const io = new Server(httpServer, {
  pingInterval: opt.pingInterval,
  pingTimeout: opt.pingTimeout,
  perMessageDeflate: opt.perMessageDeflate,
  serveClient: false,
  ...(opt.parser === "msgpack" ? { parser: require("socket.io-msgpack-parser") } : {}),
  ...(process.env.BENCH_RECOVERY === "1" ? { connectionStateRecovery: {} } : {}),
});

if (clustered) {
  io.adapter(require("@socket.io/cluster-adapter").createAdapter());
  require("@socket.io/sticky").setupWorker(io);
}

io.on("connection", (socket) => {
  socket.on("echo", (x, ack) => ack(x));
  socket.on("join", (room, ack) => {
    if (rooms) socket.join(room);
    if (typeof ack === "function") ack();
  });
  socket.on("bcast", (room, payload) => {
    if (rooms) socket.to(room).emit("bcast", payload);
    else socket.broadcast.emit("bcast", payload);
  });
  socket.on("disconnect", () => {});
});

if (!clustered) httpServer.listen(opt.port, "127.0.0.1", () => {
  console.error(`node socket.io ${require("socket.io/package.json").version} listening on ${opt.cert ? "https" : "http"}://127.0.0.1:${httpServer.address().port}`);
});
for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => process.exit(0));
