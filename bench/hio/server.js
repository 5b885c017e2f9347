// bench/hio, Node side: the same app on the socket.io reference with node-redis (await per event).
const { Server } = require("socket.io");
const { createClient } = require("redis");
const port = Number(process.argv[process.argv.indexOf("--port") + 1] || 3000);
(async () => {
  const r = createClient({ url: process.env.BENCH_REDIS });
  await r.connect();
  const io = new Server(port, { transports: ["websocket"] });
  io.on("connection", (socket) => {
    socket.on("echo", (x, ack) => ack(x));
    socket.on("get", async (k, ack) => ack(await r.get(k)));
  });
  console.log(`siolua listening on http://127.0.0.1:${port}`);
})();
