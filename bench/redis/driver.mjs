// bench/redis: the client side of the cross-node broadcast benchmark. One sender on node A emits
// "bcast" with a 100-byte payload; R receivers on node B count what arrives (through Redis). The
// sender keeps at most W broadcasts that receiver 0 has not seen yet (closed loop, so Redis never
// has to buffer a backlog). After a warm-up, it measures for D seconds: broadcasts/s crossing,
// deliveries/s on B, and the CPU time (utime+stime from /proc) of node A, node B and redis-server.
// Raw Engine.IO/Socket.IO text frames over `ws` keep the client cheap.
// Usage: node driver.mjs --a PORT --b PORT --pids A,B,REDIS [--receivers R] [--window W]
//        [--warmup S] [--duration S] [--label NAME]; prints one JSON line.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
const require = createRequire(new URL("../../package.json", import.meta.url));
const WebSocket = require("ws");

const arg = (k, d) => (process.argv.indexOf(k) >= 0 ? process.argv[process.argv.indexOf(k) + 1] : d);
const A = Number(arg("--a")), B = Number(arg("--b"));
const pids = String(arg("--pids", "")).split(",").filter(Boolean).map(Number);
const R = Number(arg("--receivers", "4")), W = Number(arg("--window", "200"));
const WARMUP = Number(arg("--warmup", "1")), DUR = Number(arg("--duration", "5"));
const label = arg("--label", "?");
const PAYLOAD = "x".repeat(100);
const FRAME = `42["bcast","${PAYLOAD}"]`;

const ticks = () => {
  const hz = 100; // USER_HZ on Linux
  return pids.map((p) => {
    const f = readFileSync(`/proc/${p}/stat`, "utf8");
    const rest = f.slice(f.lastIndexOf(")") + 2).split(" ");
    return ((Number(rest[11]) + Number(rest[12])) * 1000) / hz; // utime + stime, ms
  });
};

function open(port, onEvent) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket`, { perMessageDeflate: false });
    ws.on("error", reject);
    ws.on("message", (data) => {
      const s = data.toString();
      if (s[0] === "0") ws.send("40");
      else if (s === "2") ws.send("3");
      else if (s.startsWith("40")) resolve(ws);
      else if (s.startsWith("42")) onEvent(s);
    });
  });
}

let sent = 0, seen0 = 0, deliveries = 0;
let sender;
const pump = () => {
  while (sent - seen0 < W) {
    sender.send(FRAME);
    sent++;
  }
};
const receivers = [];
for (let i = 0; i < R; i++) {
  receivers.push(
    await open(B, () => {
      deliveries++;
      if (i === 0) {
        seen0++;
        if (sender) pump();
      }
    }),
  );
}
sender = await open(A, () => {});
const t0 = Date.now();
pump();
await new Promise((r) => setTimeout(r, WARMUP * 1000));
const c0 = ticks(), s0 = seen0, d0 = deliveries, u0 = process.cpuUsage(), m0 = process.hrtime.bigint();
await new Promise((r) => setTimeout(r, DUR * 1000));
const c1 = ticks(), s1 = seen0, d1 = deliveries, u1 = process.cpuUsage(u0), m1 = process.hrtime.bigint();
const secs = Number(m1 - m0) / 1e9;
const bc = s1 - s0;
const cpu = c1.map((v, i) => v - c0[i]);
console.log(JSON.stringify({
  label, receivers: R, window: W, seconds: +secs.toFixed(2),
  broadcasts_per_s: Math.round(bc / secs),
  deliveries_per_s: Math.round((d1 - d0) / secs),
  cpu_ms: { a: cpu[0], b: cpu[1], redis: cpu[2] },
  cpu_us_per_broadcast: { a: +((cpu[0] * 1000) / bc).toFixed(1), b: +((cpu[1] * 1000) / bc).toFixed(1), redis: +((cpu[2] * 1000) / bc).toFixed(1) },
  client_cpu_ms: Math.round((u1.user + u1.system) / 1000),
  startup_s: +((Date.now() - t0) / 1000 - WARMUP - DUR).toFixed(2),
}));
for (const ws of [sender, ...receivers]) ws.terminate();
process.exit(0);
