// bench/hio driver: does a handler waiting on Redis hold other clients back?
//   node bench/hio/driver.mjs URL REDIS_PORT SERVER_PID
// 1. baseline: BYSTANDERS clients each send an acked echo every 20 ms for DURATION s: latencies;
// 2. slow: Redis is paused (CLIENT PAUSE ALL), WAITERS clients send 1,000 "get" events at once
//    (1,000 handlers each waiting on a GET); the bystanders go on for DURATION s: latencies, and
//    the server's RSS while the 1,000 wait; then Redis resumes and every GET must be answered;
// 3. throughput: the waiters send GETs in a closed loop for DURATION s: GETs/s and server CPU per GET.
// Prints one JSON line.
import { readFileSync } from "node:fs";
import { io } from "socket.io-client";
import { createClient } from "redis";

const [url, redisPort, pid] = process.argv.slice(2);
const DURATION = Number(process.env.DURATION || 3) * 1000;
const BYSTANDERS = Number(process.env.BYSTANDERS || 20);
const WAITERS = Number(process.env.WAITERS || 50);
const SLOW = Number(process.env.SLOW || 1000);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const cpuMs = () => {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // utime + stime, clock ticks of 10 ms
};
const rssKb = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))[1]);
const pct = (a, p) => {
  const s = [...a].sort((x, y) => x - y);
  return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] : NaN;
};

async function clients(n) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const s = io(url, { transports: ["websocket"], forceNew: true, reconnection: false });
    await new Promise((res, rej) => { s.once("connect", res); s.once("connect_error", rej); });
    out.push(s);
  }
  return out;
}

/** The bystanders echo every 20 ms each until `until` resolves; resolves to their latencies (µs). */
function echoes(socks, until) {
  const lat = [];
  let stop = false;
  until.then(() => (stop = true));
  return Promise.all(socks.map(async (s, i) => {
    await sleep((i * 20) / socks.length);
    while (!stop) {
      const t0 = process.hrtime.bigint();
      await s.timeout(30000).emitWithAck("echo", i);
      lat.push(Number(process.hrtime.bigint() - t0) / 1000);
      await sleep(20);
    }
  })).then(() => lat);
}

const ctl = createClient({ url: `redis://127.0.0.1:${redisPort}` });
await ctl.connect();
await ctl.set("k", "v");
const by = await clients(BYSTANDERS);
const wa = await clients(WAITERS);
// warm-up
await Promise.all(wa.map((s) => s.emitWithAck("get", "k")));

const base = await echoes(by, sleep(DURATION));
const rss0 = rssKb();
await ctl.sendCommand(["CLIENT", "PAUSE", String(DURATION + 2000), "ALL"]);
let answered = 0;
const slow = Array.from({ length: SLOW }, (_, i) => wa[i % WAITERS].timeout(60000).emitWithAck("get", "k").then((v) => {
  if (v === "v") answered++;
}));
const during = await echoes(by, sleep(DURATION));
const rssWaiting = rssKb();
const answeredDuring = answered;
await Promise.all(slow);

let gets = 0;
let stop = false;
const c0 = cpuMs();
const t0 = Date.now();
setTimeout(() => (stop = true), DURATION);
await Promise.all(wa.map(async (s) => {
  while (!stop) {
    await s.emitWithAck("get", "k");
    gets++;
  }
}));
const secs = (Date.now() - t0) / 1000;
const cpu = cpuMs() - c0;

console.log(JSON.stringify({
  base_p50_us: pct(base, 50), base_p99_us: pct(base, 99), base_max_us: pct(base, 100), base_n: base.length,
  slow_p50_us: pct(during, 50), slow_p99_us: pct(during, 99), slow_max_us: pct(during, 100), slow_n: during.length,
  waiting: SLOW, answered_while_paused: answeredDuring, answered_after: answered,
  rss_growth_per_waiting_handler_bytes: Math.round(((rssWaiting - rss0) * 1024) / SLOW),
  gets_per_s: Math.round(gets / secs), cpu_us_per_get: Math.round((cpu * 1000) / gets),
}));
for (const s of [...by, ...wa]) s.disconnect();
await ctl.quit();
process.exit(0);
