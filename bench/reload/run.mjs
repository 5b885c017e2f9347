// Hot-reload benchmark (issue 4): how long a reload takes with many connected sockets.
//
//   node bench/reload/run.mjs [SOCKETS] [RELOADS]     defaults: 10000 sockets, 5 reloads
//   SIOLUA_BIN=build/siolua PROCS=4 node bench/reload/run.mjs
//   NOTIFY=0 node bench/reload/run.mjs     the app's io.on("reload") does not io.emit to everyone
//
// Copies bench/reload/app.lua to a temporary folder, starts siolua on it (127.0.0.1, a free port,
// stopped by PID at the end), connects SOCKETS raw Socket.IO clients over WebSocket from PROCS
// client processes (clients.mjs), then:
//   1. sends SIGHUP RELOADS times and reads each "reloaded ...: generation G, N sockets re-bound in
//      X ms" log line (the server's own measure of the swap), and checks that every client got the
//      new code's "reloaded" event (the app emits it from io.on("reload"));
//   2. saves an edited app.lua and measures, from a probe client, the time from the write to the
//      first answer of the new handler (file watching + 100 ms debounce + reload + round trip).
// Ends with one JSON line of results. Bounded: everything is killed after 180 s.
import { fork, spawn } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, "../..");
const BIN = path.resolve(ROOT, process.env.SIOLUA_BIN || "./siolua");
const RELOADS = Number(process.argv[3] || 5);
const NOTIFY = process.env.NOTIFY !== "0";

// Every process (the server and each client process) has this many file descriptors.
const fdLimit = (() => {
  const m = readFileSync("/proc/self/limits", "utf8").match(/^Max open files\s+(\d+)/m);
  return m ? Number(m[1]) : 1024;
})();
let SOCKETS = Number(process.argv[2] || 10000);
if (SOCKETS > fdLimit - 100) {
  console.log(`fd limit ${fdLimit}: using ${fdLimit - 100} sockets instead of ${SOCKETS}`);
  SOCKETS = fdLimit - 100;
}
const PROCS = Math.max(Number(process.env.PROCS || 4), Math.ceil(SOCKETS / (fdLimit - 100)));

const children = [];
let server = null;
const dir = mkdtempSync(path.join(os.tmpdir(), "siolua-reload-bench-"));
function cleanup() {
  for (const c of children) c.kill("SIGKILL");
  if (server && server.exitCode === null) server.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
}
const deadline = setTimeout(() => {
  console.error("bench/reload: took more than 180 s, giving up");
  cleanup();
  process.exit(1);
}, 180000);
process.on("SIGINT", () => { cleanup(); process.exit(130); });
// Whatever fails, the server and the client processes are stopped by PID.
const fail = (e) => {
  console.error("bench/reload:", e?.stack || e);
  cleanup();
  process.exit(1);
};
process.on("uncaughtException", fail);
process.on("unhandledRejection", fail);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(what, cond, ms = 30000) {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

// ---- the server
const app = path.join(dir, "app.lua");
copyFileSync(path.join(HERE, "app.lua"), app);
let log = "";
let stopping = false;
server = spawn(BIN, [app, "--port", "0", "--max-connections", String(SOCKETS + 100)], { stdio: ["ignore", "pipe", "pipe"] });
server.stdout.on("data", (d) => { log += d; });
server.stderr.on("data", (d) => { log += d; });
server.on("exit", (code, sig) => { if (!stopping) { console.error(`server exited (${code ?? sig}):\n${log}`); cleanup(); process.exit(1); } });
await until("the server", () => /listening on http:\/\/[^\s]+/.test(log), 10000);
const url = log.match(/listening on (http:\/\/[^\s]+)/)[1];
const generationLine = (g) => log.match(new RegExp(`generation ${g}, (\\d+) sockets re-bound in ([\\d.]+) ms`));

// ---- the clients
const per = Math.ceil(SOCKETS / PROCS);
const t0 = Date.now();
const ready = [];
for (let i = 0; i < PROCS; i++) {
  const count = Math.min(per, SOCKETS - i * per);
  if (count <= 0) break;
  const c = fork(path.join(HERE, "clients.mjs"), [], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  children.push(c);
  ready.push(new Promise((resolve) => c.once("message", resolve)));
  c.send({ url, count, concurrency: 64 });
}
const got = await Promise.all(ready);
const connected = got.reduce((n, g) => n + g.connected, 0);
const failed = got.reduce((n, g) => n + g.failed, 0);
console.log(`${connected} sockets connected in ${Date.now() - t0} ms from ${children.length} processes (${failed} failed)`);
if (connected === 0) throw new Error("no socket connected");

const stats = () => Promise.all(children.map((c) => new Promise((resolve) => {
  c.once("message", (m) => resolve(m.stats));
  c.send("stats");
})));

// ---- the probe: one more socket, asks "version" with an ack
const probe = new WebSocket(url.replace(/^http/, "ws") + "/socket.io/?EIO=4&transport=websocket");
let ackId = 0;
const pending = new Map();
await new Promise((resolve, reject) => {
  probe.on("error", reject);
  probe.on("message", (data) => {
    const m = data.toString();
    if (m[0] === "0") probe.send("40");
    else if (m === "2") probe.send("3");
    else if (m.startsWith("40")) resolve();
    else if (m.startsWith("43")) {
      const [, id, args] = m.match(/^43(\d+)(.*)$/);
      pending.get(Number(id))?.(JSON.parse(args));
      pending.delete(Number(id));
    }
  });
});
const version = () => new Promise((resolve) => {
  const id = ackId++;
  pending.set(id, (args) => resolve(args[0]));
  probe.send(`42${id}["version"]`);
});
const total = connected + 1;

// The server's CPU time (user + system) in ms: a figure that does not depend on how busy the
// machine is, unlike the wall-clock time of the log line.
const TICK_MS = 1000 / 100; // USER_HZ is 100 on Linux
const cpuMs = () => {
  const f = readFileSync(`/proc/${server.pid}/stat`, "utf8").split(") ")[1].split(" ");
  return (Number(f[11]) + Number(f[12])) * TICK_MS; // utime, stime (fields 14 and 15)
};

// ---- 1. SIGHUP reloads
const results = { sockets: total, processes: children.length, sighup: [], save: null };
for (let r = 0; r < RELOADS; r++) {
  const gen = r + 2;
  const t = process.hrtime.bigint();
  const cpu0 = cpuMs();
  server.kill("SIGHUP");
  await until(`generation ${gen}`, () => generationLine(gen));
  const cpu = cpuMs() - cpu0;
  const m = generationLine(gen);
  // every client got the new code's "reloaded" event
  let note = "";
  const rss = readFileSync(`/proc/${server.pid}/status`, "utf8").match(/^VmRSS:\s+(\d+)/m);
  const entry = { generation: gen, rebound: Number(m[1]), server_ms: Number(m[2]), server_cpu_ms: cpu,
    server_rss_mb: rss ? Math.round(Number(rss[1]) / 1024) : null };
  if (NOTIFY) {
    await until(`"reloaded" ${gen} on every client`, async () =>
      (await stats()).reduce((n, s) => n + (s.reloaded[gen] || 0), 0) >= connected);
    const delivered = Number(process.hrtime.bigint() - t) / 1e6;
    entry.all_notified_ms = Math.round(delivered);
    note = `; every client had the new code's event after ${delivered.toFixed(0)} ms`;
  }
  results.sighup.push(entry);
  console.log(`SIGHUP ${r + 1}: generation ${gen}, ${m[1]} sockets re-bound in ${m[2]} ms (server log, ` +
    `~${cpu} ms of server CPU, RSS ${entry.server_rss_mb} MB)${note}`);
}

const sorted = results.sighup.map((e) => e.server_ms).sort((a, b) => a - b);
results.median_server_ms = sorted[Math.floor(sorted.length / 2)];
const cpus = results.sighup.map((e) => e.server_cpu_ms).sort((a, b) => a - b);
results.median_server_cpu_ms = cpus[Math.floor(cpus.length / 2)];
console.log(`median: ${total} sockets re-bound in ${results.median_server_ms} ms ` +
  `(~${results.median_server_cpu_ms} ms of server CPU; load average ${os.loadavg()[0].toFixed(1)} on ${os.cpus().length} CPUs)`);

// ---- 2. save the file: time to the first answer of the new handler
const gen = RELOADS + 2;
const before = await version();
const edited = readFileSync(app, "utf8").replace(/^local VERSION = .*$/m, "local VERSION = 2");
const ts = process.hrtime.bigint();
writeFileSync(app, edited);
let v;
do v = await version(); while (v === before && Number(process.hrtime.bigint() - ts) < 10e9);
const saveMs = Number(process.hrtime.bigint() - ts) / 1e6;
await until(`generation ${gen}`, () => generationLine(gen));
results.save = { from_write_to_new_handler_ms: Math.round(saveMs), server_ms: Number(generationLine(gen)[2]), new_version: v };
console.log(`file save: the new handler answered ${saveMs.toFixed(0)} ms after the write ` +
  `(100 ms of it is the debounce; the swap took ${generationLine(gen)[2]} ms)`);

// ---- checks: nobody was disconnected
const end = await stats();
const closed = end.reduce((n, s) => n + s.closed, 0);
results.closed = closed;
console.log(`${closed} of ${connected} client sockets were closed during the reloads`);
const rss = readFileSync(`/proc/${server.pid}/status`, "utf8").match(/^VmRSS:\s+(\d+)/m);
results.server_rss_mb = rss ? Math.round(Number(rss[1]) / 1024) : null;

stopping = true;
probe.close();
for (const c of children) c.disconnect();
server.kill("SIGTERM");
await new Promise((resolve) => { if (server.exitCode !== null) resolve(); else server.once("exit", resolve); });
clearTimeout(deadline);
cleanup();
console.log(JSON.stringify(results));
if (closed !== 0 || v !== 2) process.exit(1);
