// The Node twin of apps/recovery.lua (connection state recovery), run by ref/server.mjs.
export const recoveryApps = {
  recovery: {
    get options() {
      return {
        connectionStateRecovery: {
          maxDisconnectionDuration: Number(process.env.REC_DURATION) || 120000,
          skipMiddlewares: process.env.REC_SKIP_MW !== "0",
        },
      };
    },
    setup(io) {
      let middlewareRuns = 0;
      io.use((socket, next) => {
        middlewareRuns++;
        next();
      });
      const connected = new Set();
      io.of("/b").on("connection", (socket) => socket.join("news"));
      io.on("connection", (socket) => {
        connected.add(socket.id);
        if (!socket.recovered) {
          socket.join("news");
          socket.data.n = 7;
        }
        socket.on("state", (ack) =>
          ack({
            id: socket.id,
            recovered: socket.recovered,
            rooms: [...socket.rooms].sort(),
            data: socket.data,
            mw: middlewareRuns,
          }),
        );
        socket.on("join", (room, ack) => {
          socket.join(room);
          ack();
        });
        socket.on("set", (k, v, ack) => {
          socket.data[k] = v;
          ack();
        });
        socket.on("connected", (id, ack) => ack(connected.has(id)));
        socket.on("send", (target, ev, args, ack) => {
          const m = /^([a-z]+):(.*)$/.exec(target);
          const a = args || [];
          if (target === "all") io.emit(ev, ...a);
          else if (m && m[1] === "room") io.to(m[2]).emit(ev, ...a);
          else if (m && m[1] === "except") io.except(m[2]).emit(ev, ...a);
          else if (m && m[1] === "volatile") io.volatile.to(m[2]).emit(ev, ...a);
          else if (m && m[1] === "nsp") io.of(m[2]).emit(ev, ...a);
          else if (m && m[1] === "ack") io.to(m[2]).timeout(50).emit(ev, ...a, () => {});
          else io.to(target).emit(ev, ...a);
          ack();
        });
        socket.on("self", (ev, args, ack) => {
          socket.emit(ev, ...(args || []));
          ack();
        });
        socket.on("disconnect", () => connected.delete(socket.id));
      });
    },
  },
};
