// The parsers benchmark's load (bench/parsers/run.sh): CLIENTS raw WebSocket Socket.IO clients keep
// WINDOW acked echoes each in flight for DURATION seconds (after a second of warm-up) and report the
// server's CPU time per acked echo (utime + stime of PID from /proc) and its RSS.
//   node bench/parsers/driver.mjs URL PID json|msgpack text|binary DURATION CLIENTS WINDOW
// Packets are encoded once up front (one per ack id), so the driver spends little per message:
//   json, text:    421["echo",{...}]                          -> 431[{...}]
//   json, binary:  451-1["echo",{..."bin":<placeholder>}] + the 1 KB attachment -> 461-1[...] + it
//   msgpack:       {type:2, data:["echo",{...}], id:1, nsp:"/"} (binary inline) -> {id:1,type:3,...}
import { readFileSync } from "node:fs";
import WebSocket from "ws";
import msgpackParser from "socket.io-msgpack-parser";

// the msgpack parser's own encoding (notepack.io, as socket.io-msgpack-parser bundles it)
const encoder = new msgpackParser.Encoder();
const notepack = {
  encode: (packet) => encoder.encode(packet)[0],
  decode: (data) => {
    let out;
    const d = new msgpackParser.Decoder();
    d.on("decoded", (p) => (out = p));
    d.add(data);
    return out;
  },
};

const [url, pid, parser, payloadKind, durS, nClients, windowS] = process.argv.slice(2);
const DURATION = Number(durS), CLIENTS = Number(nClients), WINDOW = Number(windowS);
const msgpack = parser === "msgpack";
const HZ = 100; // USER_HZ on Linux

const bin = Buffer.alloc(1024, 7);
const base = { user: "alice", room: "lobby", text: "hello there, how are things going today?", n: 12345, f: 0.5, tags: ["a", "b", "c"] };
const payload = payloadKind === "binary" ? { ...base, bin } : base;

/** The frames that send echo #id (one or two), and how to tell its ack came. */
function request(id) {
  if (msgpack) return [notepack.encode({ type: 2, data: ["echo", payload], id, nsp: "/" })];
  if (payloadKind === "binary") {
    const { bin: _b, ...rest } = payload;
    const json = JSON.stringify(["echo", { ...rest, bin: { _placeholder: true, num: 0 } }]);
    return [`451-${id}${json}`, bin];
  }
  return [`42${id}${JSON.stringify(["echo", payload])}`];
}
const frames = Array.from({ length: WINDOW }, (_, i) => request(i + 1));

function cpuTicks() {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return Number(f[11]) + Number(f[12]); // utime, stime (fields 14, 15)
}
function rssKb() {
  const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) : 0;
}

let acked = 0, counting = false;
const sockets = [];

function client() {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url.replace(/^http/, "ws") + "/socket.io/?EIO=4&transport=websocket");
    sockets.push(ws);
    let connected = false, waitingAttachment = false;
    const send = (id) => { for (const f of frames[id - 1]) ws.send(f); };
    ws.on("message", (data, isBinary) => {
      if (!isBinary) {
        const t = data.toString();
        if (t === "2") return ws.send("3");
        if (t.startsWith("0{")) return ws.send(msgpack ? notepack.encode({ type: 0, nsp: "/" }) : "40");
        if (!connected && t.startsWith("40")) {
          connected = true;
          resolve();
          return;
        }
        // json acks: 43<id>[...] or 461-<id>[...] followed by its attachment
        const m = /^4(?:3|61-)(\d+)/.exec(t);
        if (!m) return;
        if (t[1] === "6") { waitingAttachment = Number(m[1]); return; }
        if (counting) acked++;
        return send(Number(m[1]));
      }
      if (waitingAttachment) {
        const id = waitingAttachment;
        waitingAttachment = false;
        if (counting) acked++;
        return send(id);
      }
      const p = notepack.decode(data);
      if (p.type === 0 && !connected) {
        connected = true;
        resolve();
        return;
      }
      if (p.type === 3) {
        if (counting) acked++;
        send(p.id);
      }
    });
    ws.on("error", reject);
    ws.on("close", () => { if (!connected) reject(new Error("closed before CONNECT")); });
    ws.once("open", () => {});
    // the window starts once connected
    const start = setInterval(() => {
      if (connected) { clearInterval(start); for (let id = 1; id <= WINDOW; id++) send(id); }
    }, 5);
  });
}

for (let i = 0; i < CLIENTS; i++) await client();
await new Promise((r) => setTimeout(r, 1000));
counting = true;
const c0 = cpuTicks(), t0 = process.hrtime.bigint();
await new Promise((r) => setTimeout(r, DURATION * 1000));
const c1 = cpuTicks(), t1 = process.hrtime.bigint();
counting = false;
const secs = Number(t1 - t0) / 1e9, cpu = (c1 - c0) / HZ;
console.log(JSON.stringify({
  parser, payload: payloadKind, clients: CLIENTS, window: WINDOW, seconds: +secs.toFixed(2),
  echoes: acked, echoes_per_s: Math.round(acked / secs), server_cpu_s: +cpu.toFixed(2),
  cpu_us_per_echo: acked ? +((cpu * 1e6) / acked).toFixed(1) : null, rss_kb: rssKb(),
  request_bytes: frames[0].reduce((n, f) => n + Buffer.byteLength(f), 0),
}));
for (const ws of sockets) ws.terminate();
process.exit(0);
