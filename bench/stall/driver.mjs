// bench/stall driver: BYSTANDERS clients each run echo round trips (10 ms apart) for DURATION s
// while one attacker sends bursts of 5 `mode` events ("spin" or "stall"; "none": no attacker)
// every second, reconnecting 100 ms after each disconnection. Prints one JSON line: the
// bystanders' echo latency (p50/p99/max, ms), their count, how many bystanders were disconnected
// (and why), how many times the attacker was.
//   node bench/stall/driver.mjs URL MODE [DURATION] [BYSTANDERS]
import { io } from "socket.io-client";

const [url, mode = "spin", durS = "10", nby = "20"] = process.argv.slice(2);
const duration = Number(durS) * 1000;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const lat = [];
const drops = {};
let attackerDisconnects = 0;
let running = true;

function connect() {
  const s = io(url, { transports: ["websocket"], reconnection: false, forceNew: true });
  return new Promise((resolve, reject) => {
    s.once("connect", () => resolve(s));
    s.once("connect_error", reject);
  });
}

async function bystander() {
  const s = await connect();
  s.on("disconnect", (reason) => { if (running) drops[reason] = (drops[reason] || 0) + 1; });
  while (running && s.connected) {
    const t0 = performance.now();
    try {
      await s.timeout(60000).emitWithAck("echo", 1);
      lat.push(performance.now() - t0);
    } catch {
      break;
    }
    await sleep(10);
  }
  s.close();
}

async function attacker() {
  while (running) {
    let s;
    try {
      s = await connect();
    } catch {
      await sleep(100);
      continue;
    }
    const gone = new Promise((r) => s.once("disconnect", r));
    while (running && s.connected) {
      for (let i = 0; i < 5; i++) s.emit(mode);
      await Promise.race([sleep(1000), gone]);
    }
    if (!s.connected) attackerDisconnects++;
    s.close();
    await sleep(100);
  }
}

const by = [];
for (let i = 0; i < Number(nby); i++) by.push(bystander());
await sleep(200);
const att = mode === "none" ? null : attacker();
await sleep(duration);
running = false;
await Promise.race([Promise.all(by), sleep(65000)]);
lat.sort((a, b) => a - b);
const q = (p) => (lat.length ? Math.round(lat[Math.min(lat.length - 1, Math.floor(lat.length * p))] * 10) / 10 : null);
console.log(JSON.stringify({
  mode, echoes: lat.length, p50_ms: q(0.5), p99_ms: q(0.99), max_ms: lat.length ? Math.round(lat[lat.length - 1]) : null,
  bystanders_dropped: drops, attacker_disconnected: attackerDisconnects,
}));
process.exit(0);
