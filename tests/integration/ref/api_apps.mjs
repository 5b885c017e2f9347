// Node twins of tests/integration/apps/api_*.lua (the server API tests, issue 3), run by
// ref/server.mjs like the twins in apps.mjs: SIOLUA_REF=1 checks the api_*.test.mjs files against
// the reference. Each twin does what its Lua app does, in the reference's own API.
import { attach as engineAttach } from "engine.io";

/** [...rooms] sorted, the socket's own id shown as "<self>" (as the Lua apps report them). */
const roomsOf = (socket) => [...socket.rooms].map((r) => (r === socket.id ? "<self>" : r)).sort();

export const apiApps = {
  api_namespaces: {
    options: {},
    setup(io) {
      const created = [];
      io.on("new_namespace", (nsp) => created.push(nsp.name));
      io.on("connection", (socket) => {
        socket.on("info", (ack) => ack({ nsp: socket.nsp.name, mainIsIo: io.of("/") === io.sockets, slashless: io.of("admin") === io.of("/admin") }));
        socket.on("create", (name, ack) => {
          io.of(name);
          ack(created);
        });
        socket.on("created", (ack) => ack(created));
        socket.on("main-news", (msg) => io.emit("news", "/", msg));
        socket.on("admin-news", (msg) => io.of("/admin").emit("news", "/admin", msg));
        socket.on("join", (room, ack) => {
          socket.join(room);
          ack();
        });
        socket.on("main-room", (room, msg) => io.to(room).emit("news", "/ room " + room, msg));
        socket.on("child-news", (name, msg) => io.of(name).emit("news", name, msg));
      });
      const admin = io.of("/admin");
      admin.on("connection", (socket) => {
        socket.on("info", async (ack) => ack({ nsp: socket.nsp.name, count: (await admin.fetchSockets()).length }));
        socket.on("join", (room, ack) => {
          socket.join(room);
          ack();
        });
        socket.on("admin-room", (room, msg) => admin.to(room).emit("news", "/admin room " + room, msg));
      });
      const dyn = io.of(/^\/dyn-\d+$/);
      dyn.use((socket, next) => {
        socket.data.parentMiddleware = true;
        next();
      });
      dyn.on("connection", (socket) => {
        socket.on("info", (ack) => ack({ nsp: socket.nsp.name, parentMiddleware: socket.data.parentMiddleware === true }));
        socket.on("child-news", (msg) => socket.nsp.emit("news", socket.nsp.name, msg));
        socket.on("parent-news", (msg) => dyn.emit("news", "parent", msg));
      });
      const fnsp = io.of((name, auth, next) => next(null, name.startsWith("/fn-") && !!auth && auth.key === "open"));
      fnsp.on("connection", (socket) => {
        socket.on("info", (ack) => ack({ nsp: socket.nsp.name }));
      });
    },
  },
  api_middleware: {
    options: {},
    setup(io) {
      let connections = 0;
      const refusal = (message, data) => Object.assign(new Error(message), data === undefined ? {} : { data });
      io.use((socket, next) => {
        const auth = socket.handshake.auth || {};
        if (auth.refuse === "table") return next(refusal("not authorized", { content: "retry later" }));
        if (auth.refuse === "string") return next(refusal("plain refusal"));
        socket.data.trail = ["sync"];
        next();
      });
      io.use((socket, next) => {
        const auth = socket.handshake.auth || {};
        setTimeout(() => {
          if (auth.refuse === "async") {
            next(refusal("refused later", { from: "timer" }));
          } else {
            socket.data.trail.push("async");
            next();
          }
        }, 5);
      });
      io.on("connection", (socket) => {
        connections++;
        socket.data.trail.push("connection");
        socket.on("trail", (ack) => ack(socket.data.trail));
        socket.on("connections", (ack) => ack(connections));
      });

      const admin = io.of("/admin");
      admin.use((socket, next) => {
        if ((socket.handshake.auth || {}).token === "secret") next();
        else next(refusal("admin only", { need: "token" }));
      });
      admin.on("connection", (socket) => {
        socket.on("trail", (ack) => ack(socket.data.trail || "none"));
      });

      io.of("/packets").on("connection", (socket) => {
        socket.use((packet, next) => {
          if (packet[0] === "forbidden") return next(refusal("forbidden event", { event: packet[0] }));
          if (packet[0] === "forbidden-string") return next(refusal("refused by string"));
          if (packet[0] === "rewrite") packet[1] = "rewritten by middleware";
          next();
        });
        socket.use((packet, next) => {
          setTimeout(() => next(), 2);
        });
        socket.on("error", (err) => socket.emit("mw-error", err.message, err.data ?? null));
        socket.on("forbidden", () => socket.emit("leaked", "forbidden"));
        socket.on("forbidden-string", () => socket.emit("leaked", "forbidden-string"));
        socket.on("rewrite", (v, ack) => ack(v));
        socket.on("echo", (v, ack) => ack(v));
      });

      io.of("/any").on("connection", (socket) => {
        const log = [];
        const out = [];
        const show = (a) => (typeof a === "function" ? "ack" : a === undefined ? "none" : String(a));
        const any1 = (ev) => log.push("any1:" + ev);
        const out1 = (ev) => out.push("out1:" + ev);
        socket.onAny(any1);
        socket.onAny((ev, a) => log.push("any2:" + ev + ":" + show(a)));
        socket.prependAny((ev) => log.push("pre:" + ev));
        socket.onAnyOutgoing(out1);
        socket.prependAnyOutgoing((ev, a) => out.push("pre:" + ev + ":" + show(a)));
        socket.on("log", (ack) => ack(log, socket.listenersAny().length));
        socket.on("off-any1", (ack) => {
          socket.offAny(any1);
          ack(socket.listenersAny().length);
        });
        socket.on("off-any", (ack) => {
          socket.offAny();
          ack(socket.listenersAny().length);
        });
        socket.on("send-two", (ack) => {
          socket.emit("one", 1);
          socket.emit("two", 2);
          ack(out, socket.listenersAnyOutgoing().length);
        });
        socket.on("off-out1", (ack) => {
          socket.offAnyOutgoing(out1);
          socket.emit("three", 3);
          ack(out, socket.listenersAnyOutgoing().length);
        });
        socket.on("off-out", (ack) => {
          socket.offAnyOutgoing();
          socket.emit("four", 4);
          ack(out, socket.listenersAnyOutgoing().length);
        });
      });
    },
  },
  api_rooms: {
    options: {},
    setup(io) {
      const describe = (s) => ({ id: s.id, rooms: roomsOf(s), name: s.data.name, auth: (s.handshake.auth || {}).name });
      const fetch = async (room) => {
        const list = room ? await io.in(room).fetchSockets() : await io.fetchSockets();
        return list.map(describe).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      };
      const reports = {};
      io.on("connection", (socket) => {
        socket.data.name = (socket.handshake.auth || {}).name || "anonymous";
        socket.on("join", (rooms, ack) => {
          socket.join(rooms);
          ack(roomsOf(socket));
        });
        socket.on("leave", (room, ack) => {
          socket.leave(room);
          ack(roomsOf(socket));
        });
        socket.on("rooms", (ack) => ack(roomsOf(socket), socket.rooms.has(socket.id)));
        socket.on("bcast", (spec) => {
          let target = spec.from === "socket" ? socket : spec.from === "io" ? io : io.of(spec.from);
          for (const [name, arg] of spec.steps) {
            if (name === "broadcast" || name === "volatile" || name === "local") target = target[name];
            else target = target[name](arg);
          }
          target.emit("hit", spec.tag);
          io.emit("done", spec.tag);
        });
        socket.on("fetch", async (room, ack) => ack(await fetch(room)));
        socket.on("fetch-emit", async (room, tag) => {
          for (const s of await io.in(room).fetchSockets()) s.emit("hit", tag + ":" + s.data.name);
          io.emit("done", tag);
        });
        socket.on("fetch-join", async (room, next, ack) => {
          for (const s of await io.in(room).fetchSockets()) s.join(next);
          ack(await fetch(next));
        });
        socket.on("fetch-leave", async (room, old, ack) => {
          for (const s of await io.in(room).fetchSockets()) s.leave(old);
          ack(await fetch(old));
        });
        socket.on("fetch-disconnect", async (room, ack) => {
          for (const s of await io.in(room).fetchSockets()) s.disconnect();
          ack(await fetch(room));
        });
        socket.on("sockets-join", async (room, next, ack) => {
          (room !== null ? io.in(room) : io).socketsJoin(next);
          ack(await fetch(next));
        });
        socket.on("sockets-leave", async (room, old, ack) => {
          (room !== null ? io.in(room) : io).socketsLeave(old);
          ack(await fetch(old));
        });
        socket.on("disconnect-sockets", (room, close) => io.in(room).disconnectSockets(close));
        socket.on("disconnecting", (reason) => {
          reports[socket.id] = { seq: ["disconnecting"], reason, roomsDuring: roomsOf(socket), connectedDuring: socket.connected };
        });
        socket.on("disconnect", (reason) => {
          const r = reports[socket.id] || { seq: [] };
          r.seq.push("disconnect:" + reason);
          r.roomsAfter = roomsOf(socket);
          r.connectedAfter = socket.connected;
          reports[socket.id] = r;
          io.emit("gone", socket.id, reason);
        });
        socket.on("report", (id, ack) => ack(reports[id] ?? null));
      });
      io.of("/other").on("connection", (socket) => {
        socket.on("join", (rooms, ack) => {
          socket.join(rooms);
          ack(roomsOf(socket));
        });
      });
    },
  },
  api_acks: {
    options: {},
    setup(io) {
      // err.message twice: the Lua app reports tostring(err), which is the message
      const errView = (err) => (err ? { message: err.message, str: err.message } : null);
      const sorted = (list) => [...list].sort();
      io.on("connection", (socket) => {
        socket.data.name = (socket.handshake.auth || {}).name || "anonymous";
        socket.on("join", (room, ack) => {
          socket.join(room);
          ack();
        });
        socket.on("ask", (ev, q, ack) => socket.emit(ev, q, (...a) => ack(...a)));
        socket.on("ask-timeout", (ev, q, ms, ack) => socket.timeout(ms).emit(ev, q, (err, ...a) => ack(errView(err), ...a)));
        socket.on("ask-all", (room, ev, ms, ack) => {
          let op = io.timeout(ms);
          if (room !== null) op = op.to(room);
          op.emit(ev, { text: "all" }, (err, replies) => ack(errView(err), sorted(replies)));
        });
        socket.on("ask-others", (room, ev, ms, ack) => {
          socket.broadcast.to(room).timeout(ms).emit(ev, { text: "others" }, (err, replies) => ack(errView(err), sorted(replies)));
        });
        socket.on("ewa", async (ev, q, ms, ack) => {
          try {
            const reply = ms === null ? await socket.emitWithAck(ev, q) : await socket.timeout(ms).emitWithAck(ev, q);
            ack({ reply });
          } catch (e) {
            ack({ err: errView(e) });
          }
        });
        socket.on("ewa-all", async (room, ev, ms, ack) => {
          try {
            ack({ replies: sorted(await io.to(room).timeout(ms).emitWithAck(ev, { text: "all" })) });
          } catch (e) {
            ack({ err: errView(e) });
          }
        });
        socket.on("ewa-timer", (q) => {
          setTimeout(async () => {
            const reply = await socket.timeout(5000).emitWithAck("question", q);
            socket.emit("timer-result", reply);
          }, 1);
        });
        socket.on("timeout-once", (ms) => setTimeout((a, b) => socket.emit("fired", a, b), ms, "x", 2));
        socket.on("interval", (n, ms) => {
          let count = 0;
          const t = setInterval(() => {
            count++;
            socket.emit("tick", count);
            if (count === n) {
              clearInterval(t);
              setTimeout(() => socket.emit("interval-done", count), ms * 4);
            }
          }, ms);
        });
        socket.on("cleared", () => {
          const t = setTimeout(() => socket.emit("should-not-fire"), 5);
          clearTimeout(t);
          const i = setInterval(() => socket.emit("should-not-fire"), 5);
          clearInterval(i);
          setTimeout(() => socket.emit("cleared-ok"), 40);
        });
        socket.on("timer-names", (ack) => ack(true));
      });
      io.of("/hello").on("connection", async (socket) => {
        const reply = await socket.timeout(5000).emitWithAck("question", { text: "hello" });
        socket.emit("got", reply);
      });
    },
  },
  api_state: {
    options: {},
    setup(io) {
      io.use((socket, next) => {
        socket.data.fromMiddleware = (socket.handshake.auth || {}).user || "nobody";
        next();
      });
      const RESERVED = ["connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"];
      const raises = (fn) => {
        try {
          fn();
          return false;
        } catch {
          return true;
        }
      };
      const states = {};
      io.on("connection", (socket) => {
        socket.on("data", (ack) => ack(socket.data));
        socket.on("set-data", (k, v, ack) => {
          socket.data[k] = v;
          ack(socket.data);
        });
        socket.on("replace-data", (t, ack) => {
          socket.data = t;
          ack(socket.data);
        });
        socket.on("set-field", (v, ack) => {
          socket.nickname = v;
          ack(socket.nickname);
        });
        socket.on("get-field", (ack) => ack(socket.nickname));
        socket.on("fetch-data", async (ack) => {
          const out = {};
          for (const s of await io.fetchSockets()) out[s.id] = s.data;
          ack(out);
        });
        socket.on("state", (ack) => {
          const h = socket.handshake;
          ack({
            connected: socket.connected,
            transport: socket.conn.transport.name,
            secure: h.secure,
            xdomain: h.xdomain,
            host: h.headers.host !== undefined,
            address: h.address,
            issued: Number.isInteger(h.issued) ? "integer" : "float",
            time: typeof h.time,
            url: h.url.slice(0, 11),
            query: h.query.q,
            auth: h.auth,
          });
        });
        socket.on("reserved", (ack) => {
          const out = {};
          for (const name of RESERVED) {
            let message = "";
            const r = {};
            r.socket = raises(() => {
              try {
                socket.emit(name, 1);
              } catch (e) {
                message = e.message;
                throw e;
              }
            }) && message.includes(`"${name}" is a reserved event name`);
            r.io = raises(() => io.emit(name, 1));
            r.room = raises(() => io.to("r").emit(name, 1));
            r.broadcast = raises(() => socket.broadcast.emit(name, 1));
            r.nsp = raises(() => io.of("/").emit(name, 1));
            r.timeout = raises(() => socket.timeout(100).emit(name, 1, () => {}));
            out[name] = r;
          }
          out.ordinary = !raises(() => socket.emit("ordinary", 1));
          ack(out);
        });
        socket.on("disconnect", (reason) => {
          states[socket.id] = { connected: socket.connected, reason };
        });
        socket.on("state-of", (id, ack) => ack(states[id] ?? null));
      });
    },
  },
  api_close: {
    options: {},
    setup(io) {
      const track = (nsp) => {
        nsp.on("connection", (socket) => {
          socket.on("disconnect", (reason) => console.error(`disconnect ${nsp.name} ${socket.id} ${reason}`));
          const close = () => {
            console.error("closing the server");
            // siolua's io.close() ends the process with status 0
            io.close(() => process.exit(0));
          };
          socket.on("close-server", close);
          socket.on("close-server-colon", close); // io:close() in Lua
        });
      };
      track(io.of("/"));
      track(io.of("/admin"));
    },
  },
  api_outgoing: {
    options: {},
    setup(io) {
      io.on("connection", (socket) => {
        socket.on("transport", (ack) => ack(socket.conn.transport.name));
        socket.conn.on("upgrade", (transport) => socket.emit("upgraded", transport.name, socket.conn.transport.name));
        const out = [];
        socket.onAnyOutgoing((ev) => out.push(ev));
        socket.on("outgoing", (ack) => ack(out));
        socket.on("join", (room, ack) => {
          socket.join(room);
          ack();
        });
        socket.on("broadcasts", (room, ack) => {
          io.emit("b-io");
          io.to(room).emit("b-room");
          socket.broadcast.emit("b-others");
          socket.to(room).emit("b-room-others");
          socket.emit("direct");
          ack();
        });
      });
    },
  },
  api_cleanup: {
    options: { cleanupEmptyChildNamespaces: true },
    setup(io) {
      const created = [];
      io.on("new_namespace", (nsp) => created.push(nsp.name));
      io.of(/^\/room-\d+$/).on("connection", (socket) => {
        socket.on("nsp", (ack) => ack(socket.nsp.name));
      });
      io.on("connection", (socket) => {
        socket.on("created", (ack) => ack(created));
      });
    },
  },
  api_engine_endpoint: {
    options: {},
    setup(io) {
      const conns = [];
      const errors = [];
      const closes = {};
      const upgrades = {};
      const messages = {};
      const packets = {};
      io.engine.on("connection", (conn) => {
        conns.push({ id: conn.id, transport: conn.transport.name });
        messages[conn.id] = [];
        packets[conn.id] = {};
        conn.on("message", (data) => messages[conn.id].push(data));
        conn.on("packet", (packet) => { packets[conn.id][packet.type] = true; });
        conn.on("upgrade", (transport) => { upgrades[conn.id] = transport.name; });
        conn.on("close", (reason) => { closes[conn.id] = reason; });
      });
      io.engine.on("connection_error", (err) => errors.push({ code: err.code, message: err.message }));
      io.engine.on("initial_headers", (headers) => { headers["x-initial"] = "yes"; });
      io.engine.on("headers", (headers) => { headers["x-every"] = "yes"; });
      io.on("connection", (socket) => {
        socket.on("hello", () => {});
        socket.on("engine", (id, ack) => ack({
          conns,
          errors,
          close: closes[id] ?? null,
          upgrade: upgrades[id] ?? null,
          messages: messages[id] ?? null,
          packets: packets[id] ?? null,
        }));
      });
    },
  },
  api_emitter: {
    options: {},
    setup(io) {
      const endpoint = engineAttach(io.httpServer, { path: "/emitter.io/" });
      const other = io.of("/other");
      const order = [];
      other.on("connection", () => order.push("on"));
      other.prependListener("connection", () => order.push("prepend"));
      other.once("connection", () => order.push("once"));
      other.prependOnceListener("connection", () => order.push("prependOnce"));
      // io's emitter methods are its main namespace's and return it (in Lua, io is that namespace)
      const self = (x) => (x === io ? io.sockets : x);
      const exercise = (x) => {
        const r = {};
        const [f1, f2, f3, f4] = [() => {}, () => {}, () => {}, () => {}];
        r.chain = x.on("e1", f1) === self(x) && x.prependListener("e1", f2) === self(x) && x.once("e1", f3) === self(x)
          && x.prependOnceListener("e1", f4) === self(x);
        r.count = x.listenerCount("e1");
        let ls = x.listeners("e1");
        r.order = ls.length === 4 && ls[0] === f4 && ls[1] === f2 && ls[2] === f1 && ls[3] === f3;
        x.on("e1", f1);
        r.off = x.off("e1", f1) === self(x);
        ls = x.listeners("e1");
        r.afterOff = ls.length === 4 && ls[2] === f1 && ls[3] === f3;
        x.removeListener("e1", f2);
        r.afterRemove = x.listenerCount("e1");
        x.addListener("e2", f1);
        const names = x.eventNames();
        r.names = names.includes("e1") && names.includes("e2");
        r.removeAll = x.removeAllListeners("e1") === self(x);
        r.afterAll = x.listenerCount("e1");
        r.u = x.listenerCount("e2");
        x.off("e2", f1);
        r.none = x.listenerCount("e2");
        return r;
      };
      io.on("connection", (socket) => {
        const log = [];
        socket.on("exercise", (ack) => ack({
          socket: exercise(socket), io: exercise(io), nsp: exercise(other), engine: exercise(io.engine),
          endpoint: exercise(endpoint), conn: exercise(socket.conn),
        }));
        socket.on("t", (x) => log.push("on" + x));
        socket.prependListener("t", (x) => log.push("prepend" + x));
        socket.once("t", (x) => log.push("once" + x));
        socket.prependOnceListener("t", (x) => log.push("prependOnce" + x));
        socket.on("log", (ack) => ack(log));
        socket.on("order", (ack) => ack(order));
      });
    },
  },
  api_eio_events: {
    options: {},
    setup(io) {
      const engine = engineAttach(io.httpServer, { path: "/engine.io/" });
      engine.on("connection", (conn) => {
        conn.send("welcome " + conn.transport.name);
        conn.on("message", (data) => {
          if (data === "close-me") conn.close();
          else conn.send(data);
        });
        conn.on("upgrade", (transport) => conn.send("upgraded " + transport.name));
        conn.on("close", (reason) => console.error(`eio close ${conn.id} ${reason}`));
      });
      io.on("connection", (socket) => {
        socket.on("echo", (v, ack) => ack(v));
      });
    },
  },
};
