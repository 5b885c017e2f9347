// The Node twin of apps/redis.lua: a socket.io server with @socket.io/redis-adapter, for the
// interop tests. Usage: node tests/integration/redis_peer.mjs --siolua-peer --port N --redis URL
// [--name NAME]. Prints "siolua listening on http://127.0.0.1:PORT" (stderr) once it listens and
// the adapter's connections are up, and exits 0 on SIGTERM. --specific turns the adapter's
// publishOnSpecificResponseChannel on.
import { createServer } from "node:http";
import { Server } from "socket.io";
import { createAdapter } from "@socket.io/redis-adapter";
import { createClient } from "redis";

const arg = (name, def) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : def;
};
const url = arg("--redis");
const NAME = arg("--name", "node");

const pub = createClient({ url, socket: { reconnectStrategy: () => 200 } });
const sub = pub.duplicate();
pub.on("error", () => {});
sub.on("error", () => {});
await Promise.all([pub.connect(), sub.connect()]);

const httpServer = createServer();
const io = new Server(httpServer, {
  adapter: createAdapter(pub, sub, { requestsTimeout: 1500, publishOnSpecificResponseChannel: process.argv.includes("--specific") }),
});

const describe = (list) =>
  list.map((s) => ({
    id: s.id,
    remote: !io.of("/").sockets.has(s.id),
    rooms: [...s.rooms].sort(),
    name: s.data?.name ?? null,
  }));
const target = (room) => (room == null ? io : io.to(room));

io.on("connection", (socket) => {
  socket.data.name = socket.handshake.auth.name;
  socket.on("join", (room, ack) => { socket.join(room); ack(true); });
  socket.on("leave", (room, ack) => { socket.leave(room); ack(true); });
  socket.on("rooms", (ack) => ack([...socket.rooms].sort()));
  socket.on("bcast", (...a) => io.emit("msg", ...a));
  socket.on("room", (room, ...a) => io.to(room).emit("msg", ...a));
  socket.on("rooms2", (a, b, ...x) => io.to(a).to(b).emit("msg", ...x));
  socket.on("except", (room, ...a) => io.except(room).emit("msg", ...a));
  socket.on("broadcast", (...a) => socket.broadcast.emit("msg", ...a));
  socket.on("local", (...a) => io.local.emit("msg", ...a));
  socket.on("volatile", (...a) => io.volatile.emit("msg", ...a));
  socket.on("fetch", async (room, ack) => ack(describe(await target(room).fetchSockets())));
  socket.on("fetch-pcall", async (ack) => {
    try {
      ack(true, (await io.fetchSockets()).length);
    } catch (e) {
      ack(false, e.message);
    }
  });
  socket.on("count", async (ack) => ack(await io.of("/").adapter.serverCount()));
  socket.on("sse", (x, ack) => {
    io.serverSideEmit("ping", x, (err, responses) => ack(err ? err.message : null, [...responses].sort()));
  });
  socket.on("ssewithack", async (x, ack) => {
    try {
      ack(null, [...(await io.serverSideEmitWithAck("ping", x))].sort());
    } catch (e) {
      ack(e.message, null);
    }
  });
  socket.on("note", (x) => io.serverSideEmit("note", x));
  socket.on("socketsJoin", (room, n, ack) => { target(room).socketsJoin(n); ack(true); });
  socket.on("socketsLeave", (room, o, ack) => { target(room).socketsLeave(o); ack(true); });
  socket.on("disconnectSockets", (room, ack) => { ack(true); target(room).disconnectSockets(true); });
  socket.on("ackall", (room, ack) => {
    target(room).timeout(1000).emit("question", (err, replies) => ack(err ? err.message : null, [...replies].sort()));
  });
  socket.on("remoteEmit", async (id, ack) => {
    for (const s of await io.fetchSockets()) {
      if (s.id === id) {
        s.emit("msg", "direct from " + NAME);
        s.join("picked");
        return ack(true);
      }
    }
    ack(false);
  });
  socket.on("remoteEmitColon", async (id, ack) => { // s:emit(...) in Lua
    for (const s of await io.fetchSockets()) {
      if (s.id === id) {
        s.emit("msg", "direct from " + NAME);
        s.join("picked-colon");
        s.leave("picked");
        return ack(true);
      }
    }
    ack(false);
  });
});
const admin = io.of("/admin");
admin.on("connection", (socket) => {
  socket.on("bcast", (...a) => admin.emit("amsg", ...a));
  socket.on("count", async (ack) => ack(await admin.adapter.serverCount()));
});
io.on("ping", (x, cb) => cb && cb(`pong-${x}-${NAME}`));
io.on("note", (x) => io.local.emit("noted", x, NAME));

httpServer.listen(Number(arg("--port", "0")), "127.0.0.1", () => {
  console.error(`siolua listening on http://127.0.0.1:${httpServer.address().port}`);
});
process.on("SIGTERM", async () => {
  io.close();
  await Promise.allSettled([pub.quit(), sub.quit()]);
  process.exit(0);
});
