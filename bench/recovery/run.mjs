// Connection state recovery's memory and time (bench/recovery/README in bench/notes.md):
//   node bench/recovery/run.mjs [BINARY] [CLIENTS] [MISSED]
// For recovery off and on, a siolua (BINARY, default ./siolua) on 127.0.0.1 gets CLIENTS (10000)
// raw WebSocket clients (Engine.IO v4 / Socket.IO v5 by hand: light enough for 10,000 in one Node
// process), each gets one event (its offset), then every connection is closed (transport close:
// with recovery, 10,000 sessions are kept); then MISSED (100) events are emitted while they are
// away, to everyone (io.emit: one packet kept per emit) and then to each session by its id (one
// packet kept per session and emit: CLIENTS x MISSED packets). The server's RSS after each step,
// off against on, gives the memory per kept session and per kept packet. With recovery on, the
// clients then come back with their pid and offset: how long until all of them have their 2 x
// MISSED missed events; and the state file: the time SIGTERM takes to write it, its size, the time
// a new process takes to read it. Prints a JSON line per run and a summary. (--handler-timeout 0:
// the million emits by id run in one handler.)
import { spawn } from "node:child_process";
import { readFileSync, statSync, rmSync, mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import WebSocket from "ws";

const BIN = process.argv[2] || "./siolua";
const N = Number(process.argv[3] || 10000);
const MISSED = Number(process.argv[4] || 100);
const APP = path.join(path.dirname(new URL(import.meta.url).pathname), "app.lua");

const rss = (pid) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))[1]) * 1024;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const started = new Set(); // servers still running are killed (by PID) if this process ends early
process.on("exit", () => started.forEach((p) => p.kill("SIGKILL")));
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => process.exit(1));

function start(env, args = []) {
  const p = spawn(BIN, [APP, "--port", "0", "--no-watch", "--ping-interval", "600000", "--ping-timeout", "600000",
    "--handler-timeout", "0", ...args],
    { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  started.add(p);
  p.on("exit", () => started.delete(p));
  let log = "";
  p.stdout.on("data", (d) => (log += d));
  p.stderr.on("data", (d) => (log += d));
  return new Promise((resolve, reject) => {
    const t = setInterval(() => {
      const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(log);
      if (m) {
        clearInterval(t);
        resolve({ p, port: Number(m[1]), log: () => log });
      }
    }, 20);
    p.on("exit", (c) => reject(new Error(`server exited ${c}: ${log}`)));
  });
}

// One raw client: resolves once connected to "/" with { ws, sid, pid, offset, events }.
function client(port, auth) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket`);
    const c = { ws, sid: null, pid: null, offset: null, events: 0, acks: new Map(), nextAck: 1 };
    ws.on("error", reject);
    ws.on("message", (data) => {
      const m = data.toString();
      if (m[0] === "0") ws.send("40" + (auth ? JSON.stringify(auth) : ""));
      else if (m === "2") ws.send("3");
      else if (m.startsWith("40")) {
        const d = JSON.parse(m.slice(2));
        Object.assign(c, { sid: d.sid, pid: d.pid });
        resolve(c);
      } else if (m.startsWith("42")) {
        const args = JSON.parse(m.slice(2));
        if (typeof args[args.length - 1] === "string") c.offset = args[args.length - 1];
        c.events++;
        c.onEvent?.();
      } else if (m.startsWith("43")) {
        const id = Number(/^43(\d+)/.exec(m)[1]);
        c.acks.get(id)?.(JSON.parse(m.slice(2 + String(id).length)));
      }
    });
  });
}
const call = (c, ...args) => new Promise((resolve) => {
  const id = c.nextAck++;
  c.acks.set(id, resolve);
  c.ws.send(`42${id}` + JSON.stringify(args));
});

async function connectAll(port, n, auths) {
  const out = [];
  for (let i = 0; i < n; i += 200) // 200 at a time
    out.push(...(await Promise.all(Array.from({ length: Math.min(200, n - i) }, (_, k) => client(port, auths?.[i + k])))));
  return out;
}

async function until(fn, ms = 120000) {
  const t0 = Date.now();
  while (!fn()) {
    if (Date.now() - t0 > ms) throw new Error("timed out");
    await sleep(20);
  }
}

async function run(recovery) {
  const dir = mkdtempSync(path.join(os.tmpdir(), "siolua-bench-recovery-"));
  const file = path.join(dir, "state.bin");
  const srv = await start({ BENCH_RECOVERY: recovery ? "1" : "0" }, recovery ? ["--state-file", file] : []);
  const r = { recovery, clients: N, missed: MISSED };
  await sleep(300);
  r.rss_start = rss(srv.p.pid);
  const ctl = await client(srv.port);
  const step = (what) => process.stderr.write(`recovery ${recovery ? "on" : "off"}: ${what}\n`);
  const cs = await connectAll(srv.port, N);
  step("connected");
  await call(ctl, "blast", 1, "all", 0); // everyone gets one event: its offset
  await until(() => cs.every((c) => c.events >= 1));
  step("offsets");
  await sleep(300);
  r.rss_connected = rss(srv.p.pid);
  for (const c of cs) c.ws.close();
  await until(() => cs.every((c) => c.ws.readyState === WebSocket.CLOSED));
  await call(ctl, "blast", 0, "all", 0); // a round trip: the server has handled the closes
  await sleep(500);
  r.rss_away = rss(srv.p.pid);
  step("away");
  await call(ctl, "blast", MISSED, "all", 0);
  await sleep(300);
  r.rss_missed_all = rss(srv.p.pid);
  // as many new clients: the memory the closed connections left is reused by them, so the RSS
  // now holds the connections and, with recovery, the sessions beside them
  const fresh = await connectAll(srv.port, N);
  await sleep(300);
  r.rss_fresh = rss(srv.p.pid);
  step("new clients");
  let t = Date.now();
  await call(ctl, "blast", MISSED, "each", N + 1); // (ids[1] is ctl)
  r.each_ms = Date.now() - t;
  await sleep(300);
  r.rss_missed_each = rss(srv.p.pid);
  step("emits by id");
  for (const c of fresh) c.ws.close();
  if (recovery) {
    // they come back: every one with its pid and offset
    const auths = cs.map((c) => ({ pid: c.pid, offset: c.offset }));
    t = Date.now();
    const back = await connectAll(srv.port, N, auths);
    r.recovered = back.filter((c, i) => c.sid === cs[i].sid).length;
    r.clients_back = back.length;
    step(`back: ${r.recovered} recovered`);
    await until(() => back.every((c) => c.events >= 2 * MISSED));
    r.restore_all_ms = Date.now() - t;
    r.replayed = back.reduce((n, c) => n + c.events, 0);
    for (const c of back) c.ws.close();
    await until(() => back.every((c) => c.ws.readyState === WebSocket.CLOSED));
    await call(ctl, "blast", 0, "all", 0);
    // the state file: written at SIGTERM, read by a new process
    t = Date.now();
    srv.p.kill("SIGTERM");
    await new Promise((res) => srv.p.on("exit", res));
    r.sigterm_to_exit_ms = Date.now() - t;
    r.state_file_bytes = statSync(file).size;
    r.state_written = /recovery: .* written to .*/.exec(srv.log())?.[0];
    t = Date.now();
    const again = await start({ BENCH_RECOVERY: "1" }, ["--state-file", file]);
    r.start_with_state_ms = Date.now() - t;
    r.state_read = /recovery: .* restored from .*/.exec(again.log())?.[0];
    again.p.kill("SIGTERM");
    await new Promise((res) => again.p.on("exit", res));
  } else {
    srv.p.kill("SIGTERM");
    await new Promise((res) => srv.p.on("exit", res));
  }
  ctl.ws.close();
  rmSync(dir, { recursive: true, force: true });
  console.log(JSON.stringify(r));
  return r;
}

const off = await run(false);
const on = await run(true);
const per = (a, b, n) => Math.round((a - b) / n);
console.log(`sessions: ${N}, missed per session: ${MISSED} to everyone + ${MISSED} to each`);
console.log(`kept session (with ${N} new connections beside them, RSS on - off): ${per(on.rss_fresh, off.rss_fresh, N)} bytes each`);
console.log(`${MISSED} io.emit kept (one packet each, every session shares it): ${on.rss_missed_all - on.rss_away - (off.rss_missed_all - off.rss_away)} bytes of RSS in all`);
console.log(`kept packet (${N * MISSED} emits by id, RSS on - off): ${per(on.rss_missed_each - on.rss_fresh, off.rss_missed_each - off.rss_fresh, N * MISSED)} bytes each`);
console.log(`emits by id: ${off.each_ms} ms off, ${on.each_ms} ms on; all ${N} back: ${on.recovered} recovered, ${on.replayed} events replayed in ${on.restore_all_ms} ms`);
console.log(`state file: ${on.state_file_bytes} bytes, SIGTERM to exit ${on.sigterm_to_exit_ms} ms, a start that reads it ${on.start_with_state_ms} ms`);
