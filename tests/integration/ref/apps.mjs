// Node twins of tests/integration/apps/*.lua, run by ref/server.mjs (the reference socket.io),
// so the integration tests can be checked against the reference: SIOLUA_REF=1 sh run.sh.

import { attach as engineAttach } from "engine.io";
import { instrument } from "@socket.io/admin-ui";

function describe(v) {
  if (v === null) return "null";
  if (Buffer.isBuffer(v)) return "binary:" + v.length;
  if (typeof v === "number") return (Number.isInteger(v) ? "integer:" : "float:") + v;
  if (typeof v === "string" || typeof v === "boolean") return typeof v + ":" + v;
  if (Array.isArray(v)) return v.map(describe);
  if (typeof v === "object") {
    const out = {};
    for (const k of Object.keys(v)) out[k] = describe(v[k]);
    return out;
  }
  return typeof v;
}

export const apps = {
  admin: {
    options: {},
    setup(io) {
      const hash = process.env.ADMIN_HASH;
      instrument(io, {
        auth: hash ? { type: "basic", username: "admin", password: hash } : false,
        mode: process.env.ADMIN_MODE || "development",
        readonly: process.env.ADMIN_READONLY === "1",
        serverId: process.env.ADMIN_SERVER_ID,
      });
      io.on("connection", (socket) => {
        socket.on("join", (room, ack) => { socket.join(room); ack(true); });
        socket.on("leave", (room, ack) => { socket.leave(room); ack(true); });
        socket.on("echo", (x, ack) => { socket.emit("echo", x); ack(x); });
        socket.on("set", (k, v, ack) => { socket.data[k] = v; ack(true); });
        socket.on("whoami", (ack) => ack(socket.id, socket.rooms.has("r2")));
      });
      io.of("/chat").on("connection", (socket) => socket.join("news"));
    },
  },
  main: {
    options: {},
    setup(io) {
      io.on("connection", (socket) => {
        console.error("connected " + socket.id);
        socket.on("echo", (...args) => {
          const ack = args.pop();
          ack(...args);
        });
        socket.on("describe", (v, ack) => ack(describe(v)));
        socket.on("whoami", (ack) => {
          const h = socket.handshake;
          ack({
            id: socket.id,
            connected: socket.connected,
            auth: h.auth,
            query: h.query,
            address: h.address,
            url: h.url,
            ua: h.headers["user-agent"],
            time: typeof h.time,
            issued: typeof h.issued,
            secure: h.secure,
          });
        });
        socket.on("ask", (question) => {
          socket.emit("question", question, (...answer) => socket.emit("answered", ...answer));
        });
        socket.on("make-binary", (ack) => {
          ack({ data: Buffer.from("\0\x01\x02hello", "latin1"), list: [Buffer.from("xyz"), 7] }, Buffer.from("top"));
        });
        socket.on("shout", (msg) => socket.broadcast.emit("shout", msg, socket.id));
        socket.on("announce", (msg) => io.emit("announcement", msg));
        socket.on("kick", (close) => socket.disconnect(close === true));
        socket.on("disconnect", (reason) => {
          console.error("disconnect " + socket.id + " " + reason);
          io.emit("gone", socket.id, reason);
        });
      });
    },
  },
  options: {
    options: {
      cors: { origin: "http://allowed.test", methods: ["GET", "POST"], credentials: true },
      allowRequest: (req, callback) => {
        const denied = req.url.includes("deny=1");
        console.error(`allowRequest ${req.method} ${req.url} ${!denied}`);
        callback(null, !denied);
      },
    },
    setup(io) {
      io.on("connection", (socket) => {
        socket.on("echo", (msg, ack) => ack(msg));
      });
    },
  },
  app: {
    // examples/chat/app.lua
    options: {},
    setup(io) {
      io.on("connection", (socket) => {
        console.error("user connected: " + socket.id);
        socket.on("message", (data) => {
          console.error("message received:", data);
          socket.broadcast.emit("message", data);
        });
        socket.on("disconnect", (reason) => console.error("user disconnected: " + socket.id, reason));
      });
    },
  },
  values: {
    // apps/values.lua (the reference has no hot reload: keep/kept only hold the value)
    options: {},
    setup(io) {
      const stash = {};
      io.on("connection", (socket) => {
        socket.on("echo", (...args) => {
          const ack = args.pop();
          ack(...args);
        });
        socket.on("relay", (...args) => socket.broadcast.emit("relayed", ...args));
        socket.on("keep", (k, v, ack) => {
          socket.data[k] = v;
          stash[k] = v;
          ack();
        });
        socket.on("kept", (k, ack) => ack(socket.data[k], stash[k]));
        socket.on("ask", (v, ack) => socket.emit("question", v, (reply) => ack(reply)));
      });
    },
  },
};

// apps/compression.lua: the option sets, for $SIOLUA_PMD and the echo endpoints
const pmdSets = {
  on: true,
  nct: { serverNoContextTakeover: true, clientNoContextTakeover: true },
  snct_false: { serverNoContextTakeover: false },
  sbits10: { serverMaxWindowBits: 10 },
  cbits12: { clientMaxWindowBits: 12 },
  bits_false: { serverMaxWindowBits: false, clientMaxWindowBits: false },
  t0: { threshold: 0, zlibDeflateOptions: { level: 1, memLevel: 7 }, zlibInflateOptions: { chunkSize: 10240 } },
};
const httpzSets = { off: false, t100: { threshold: 100, level: 1 } };
export { pmdSets, httpzSets };
apps.compression = {
  options: process.env.SIOLUA_PMD ? { perMessageDeflate: pmdSets[process.env.SIOLUA_PMD] } : {},
  setup(io) {
    io.on("connection", (socket) => {
      socket.on("echo", (...args) => {
        const ack = args.pop();
        ack(...args);
      });
      socket.on("big", (n, ack) => ack("abcdefghij".repeat(Math.floor(n / 10))));
      socket.on("bcast", (msg) => socket.broadcast.emit("bcast", msg));
    });
    const echoEndpoint = (path, options) => {
      const engine = engineAttach(io.httpServer, { path, ...options });
      engine.on("connection", (conn) => conn.on("message", (data) => conn.send(data)));
    };
    for (const [name, set] of Object.entries(pmdSets)) echoEndpoint(`/pmd-${name}/`, { perMessageDeflate: set });
    for (const [name, set] of Object.entries(httpzSets)) echoEndpoint(`/httpz-${name}/`, { httpCompression: set });
  },
};

// the server API tests' twins (api_*.lua) live in their own file
import { apiApps } from "./api_apps.mjs";
Object.assign(apps, apiApps);

// issue 11's twins (wire_*.lua)
import { wireApps } from "./wire_apps.mjs";
Object.assign(apps, wireApps);

// issue 15's twins (parsers.lua)
import { parserApps } from "./parser_apps.mjs";
Object.assign(apps, parserApps);

// issue 14's twin (recovery.lua)
import { recoveryApps } from "./recovery_apps.mjs";
Object.assign(apps, recoveryApps);
