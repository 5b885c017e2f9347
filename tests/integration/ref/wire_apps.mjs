// Node twins of tests/integration/apps/wire_*.lua (issue 11: the reference's wire behaviours), run
// by ref/server.mjs like the twins in apps.mjs: SIOLUA_REF=1 checks the wire_*.test.mjs files
// against the reference.
import { attach as engineAttach } from "engine.io";

let wireAsyncIo; // wire_async's allowRequest runs before setup() hands it the server

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
  wire_engine: {
    options: {},
    setup(io) {
      const logs = {};
      const conns = {};
      const show = (p) => {
        const d = p.data;
        if (d === undefined) return p.type;
        if (Buffer.isBuffer(d)) return `${p.type}:<binary ${d.length}>`;
        return `${p.type}:${d}`;
      };
      const text = (d) => (Buffer.isBuffer(d) ? `<binary ${d.length}>` : d);
      io.engine.on("connection", (conn) => {
        const log = [];
        logs[conn.id] = log;
        conns[conn.id] = conn;
        const add = (line) => log.push(line);
        conn.on("packet", (p) => add("packet " + show(p)));
        conn.on("packetCreate", (p) => add("packetCreate " + show(p) + (p.options.compress ? " compress" : "")));
        conn.on("flush", (packets) => add("flush " + packets.map(show).join(" | ")));
        conn.on("drain", () => add("drain"));
        conn.on("heartbeat", () => add("heartbeat"));
        conn.on("upgrading", (t) => add("upgrading " + t.name));
        conn.on("upgrade", (t) => add("upgrade " + t.name));
        conn.on("data", (d) => add("data " + text(d)));
        conn.on("message", (d) => add("message " + text(d)));
      });
      io.on("connection", (socket) => {
        socket.on("log", (id, ack) => ack(logs[id] ?? null));
        socket.on("hi", (x, ack) => ack("yo " + x));
        socket.on("bytes", (ack) => ack(Buffer.from("abc")));
        socket.on("burst", () => {
          for (let i = 1; i <= 3; i++) socket.emit("e" + i);
        });
        socket.on("same", (ack) => {
          const c = conns[socket.conn.id];
          const before = c.listenerCount("drain");
          const f = () => {};
          socket.conn.on("drain", f);
          const during = c.listenerCount("drain");
          c.off("drain", f);
          ack({ same: socket.conn === c, stable: socket.conn === socket.conn, before, during,
            after: socket.conn.listenerCount("drain"), id: socket.conn.id === c.id,
            transport: socket.conn.transport.name });
        });
      });
      io.of("/other").on("connection", (socket) => {
        socket.on("same", (ack) => ack(socket.conn === conns[socket.conn.id]));
      });
      const own = engineAttach(io.httpServer, {
        path: "/eio-opts/",
        pingInterval: 20000,
        pingTimeout: 10000,
        cors: { origin: "http://a.test", credentials: true },
        cookie: { name: "eio" },
        allowRequest: (req, callback) => {
          setTimeout(() => (req._query.deny ? callback("denied here", false) : callback(null, true)), 10);
        },
      });
      own.on("connection", (conn) => {
        conn.on("message", (data) => conn.send(data));
      });
    },
  },
  wire_async: {
    options: {
      allowRequest: (req, callback) => {
        const q = req._query;
        if (q.mode === "timer") {
          setTimeout(() => callback(null, true), Number(q.ms) || 30);
        } else if (q.mode === "refuse") {
          setTimeout(() => callback("not today", false), 30);
        } else if (q.mode === "ask") {
          wireAsyncIo.to("approvers").timeout(3000).emitWithAck("approve", q.who)
            .then((replies) => callback(null, replies[0] === true), () => callback(null, false));
        } else if (q.mode === "twice") {
          callback(null, true);
          callback("second answer", false);
        } else if (q.mode === "never") {
          console.error("allowRequest keeps " + req.url + " waiting");
        } else if (q.mode === "raise") {
          throw new Error("allowRequest failed on purpose");
        } else {
          callback(null, true);
        }
      },
    },
    setup(io) {
      wireAsyncIo = io;
      const late = io.of((name, auth, next) => {
        if (!name.startsWith("/late-")) return next(null, false);
        if (auth.mode === "twice") {
          next(null, true);
          next("second answer", false);
        } else if (auth.mode === "never") {
          console.error("the namespace function keeps " + name + " waiting");
        } else if (auth.mode === "ask") {
          io.to("approvers").timeout(3000).emitWithAck("approve", name)
            .then((replies) => next(null, replies[0] === true), () => next(null, false));
        } else if (auth.mode === "raise") {
          throw new Error("namespace function failed on purpose");
        } else {
          setTimeout(() => next(null, auth.ok === true), 30);
        }
      });
      late.on("connection", (socket) => {
        socket.on("where", (ack) => ack(socket.nsp.name, "late"));
      });
      io.of(/^\/pat-\d+$/).on("connection", (socket) => {
        socket.on("where", (ack) => ack(socket.nsp.name, "pattern"));
      });
      io.on("connection", (socket) => {
        socket.on("approver", (ack) => {
          socket.join("approvers");
          ack();
        });
      });
    },
  },
  wire_parent: {
    options: {},
    setup(io) {
      const dyn = io.of(/^\/dyn-\d+$/);
      dyn.on("connection", (socket) => {
        socket.join("r1");
        socket.on("rooms", (ack) => ack([...socket.rooms].filter((r) => r !== socket.id).sort()));
      });
      io.on("connection", (socket) => {
        socket.on("parent", async (op, ack) => {
          if (op === "fetch") {
            try {
              dyn.fetchSockets();
              ack({ ok: true, message: null });
            } catch (e) {
              ack({ ok: false, message: e.message });
            }
          } else if (op === "fetch-some") {
            ack([(await dyn.in("r1").fetchSockets()).length, (await dyn.except("x").fetchSockets()).length,
              (await dyn.local.fetchSockets()).length]);
          } else if (op === "join") {
            dyn.socketsJoin("r2");
            ack(true);
          } else if (op === "leave") {
            dyn.in("r1").socketsLeave("r1");
            ack(true);
          } else if (op === "disconnect") {
            dyn.disconnectSockets(true);
            ack(true);
          } else if (op === "emit") {
            dyn.emit("news", "all");
            dyn.to("r1").emit("news", "r1");
            dyn.except("r1").emit("news", "not r1");
            ack(true);
          }
        });
      });
    },
  },
};
