// Node twins of tests/integration/apps/wire_*.lua (issue 11: the reference's wire behaviours), run
// by ref/server.mjs like the twins in apps.mjs: SIOLUA_REF=1 checks the wire_*.test.mjs files
// against the reference.
import { attach as engineAttach } from "engine.io";

export const wireApps = {
  wire_polling: {
    options: {},
    setup(io) {
      const engine = engineAttach(io.httpServer, { path: "/engine.io/" });
      engine.on("connection", (conn) => {
        conn.on("message", (data) => conn.send(data));
      });
      io.on("connection", (socket) => {
        socket.on("bin", (data, ack) => ack(data, data.length));
      });
    },
  },
};
