// Node twin of tests/integration/apps/parsers.lua (issue 15), run by ref/server.mjs.
import { attach as engineAttach } from "engine.io";
function common(socket) {
  socket.on("echo", (...args) => {
    const ack = args.pop();
    ack(...args);
  });
  socket.on("whoami", (ack) => ack({ id: socket.id, auth: socket.handshake.auth, nsp: socket.nsp.name }));
  socket.on("ask", (...args) => socket.emit("question", ...args, (...answer) => socket.emit("answered", ...answer)));
  socket.on("join", (room, ack) => {
    socket.join(room);
    ack(room);
  });
  socket.on("say", (room, ...args) => socket.to(room).emit("said", ...args));
  socket.on("tell", (id, ...args) => socket.nsp.to(id).emit("told", ...args));
  socket.on("everyone", (...args) => socket.nsp.emit("heard", ...args));
  socket.on("bye", () => socket.disconnect());
}

export const parserApps = {
  parsers: {
    options: {},
    setup(io) {
      const admin = io.of("/admin");
      admin.use((socket, next) => {
        const token = socket.handshake.auth.token;
        if (token === "ok") return next();
        if (token === "plain") return next(new Error("plain refusal"));
        const err = new Error("not authorized");
        err.data = { code: 42 };
        next(err);
      });
      io.on("connection", common);
      admin.on("connection", common);
      const eio3 = engineAttach(io.httpServer, { path: "/eio3/", allowEIO3: true });
      eio3.on("connection", (conn) => conn.on("message", (data) => conn.send(data)));
    },
  },
};
