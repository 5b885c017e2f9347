// Shared helpers of the integration tests: start a siolua (or, with SIOLUA_REF=1, the Node
// reference in ref/server.mjs) on a free port, connect clients, await events with timeouts.
import { spawn } from "node:child_process";
import { appendFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { io as ioClient } from "socket.io-client";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const APPS = path.join(ROOT, "tests/integration/apps");
/** True when the suite runs against the Node reference, to check the tests themselves. */
export const REF = process.env.SIOLUA_REF === "1";
const BIN = path.resolve(ROOT, process.env.SIOLUA_BIN || "./siolua");

// Servers still running when this process ends are killed, also when the test runner ends it
// with a signal (a file-level timeout). run.sh also gets their PIDs through SIOLUA_PIDFILE and
// kills any left over, in case this process itself was SIGKILLed.
// sanitizer reports, and valgrind's (make valgrind runs the suite under memcheck)
const SANITIZER = /ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|SUMMARY: UndefinedBehaviorSanitizer|==\d+== (Invalid (read|write|free)|Conditional jump|Use of uninitialised|Syscall param|Mismatched free)|definitely lost in/;
const running = new Set();
const killAll = () => {
  for (const p of running) p.kill("SIGKILL");
};
process.on("exit", killAll);
for (const sig of ["SIGTERM", "SIGINT", "SIGHUP"]) {
  process.on(sig, () => {
    killAll();
    process.exit(128 + 1);
  });
}

/** Rejects after ms with a message naming what was awaited. */
export function withTimeout(promise, ms, what) {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}

/**
 * Starts the server with app (a path, or a name in apps/) and extra command-line args (the Node
 * reference with { ref: true }, whatever SIOLUA_REF says: for side-by-side tests).
 * Resolves to { port, url, proc, log(), waitLog(re, ms), stop() } once it printed its
 * "siolua listening on http://HOST:PORT" line (https:// with --tls-cert: url is then https too).
 */
export async function startServer(app, args = [], { timeout = 10000, ref = REF } = {}) {
  const appPath = app.includes("/") ? path.resolve(ROOT, app) : path.join(APPS, app + ".lua");
  const [cmd, argv] = ref
    ? [process.execPath, [path.join(ROOT, "tests/integration/ref/server.mjs"), appPath]]
    : [BIN, [appPath]];
  const proc = spawn(cmd, [...argv, "--port", "0", ...args], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
  });
  running.add(proc);
  if (process.env.SIOLUA_PIDFILE && proc.pid) appendFileSync(process.env.SIOLUA_PIDFILE, proc.pid + "\n");
  let log = "";
  const waiters = new Set();
  const onData = (chunk) => {
    log += chunk.toString();
    for (const w of waiters) w();
  };
  proc.stdout.on("data", onData);
  proc.stderr.on("data", onData);
  let exited = null;
  const exitP = new Promise((resolve) => {
    proc.on("exit", (code, signal) => {
      exited = { code, signal };
      running.delete(proc);
      for (const w of waiters) w();
      resolve(exited);
    });
  });

  const waitLog = (re, ms = 5000) =>
    withTimeout(
      new Promise((resolve, reject) => {
        const check = () => {
          const m = log.match(re);
          if (m) {
            waiters.delete(check);
            resolve(m);
          } else if (exited) {
            waiters.delete(check);
            reject(new Error(`server exited (${JSON.stringify(exited)}) before logging ${re}; log:\n${log}`));
          }
        };
        waiters.add(check);
        check();
      }),
      ms,
      `log line ${re}; log so far:\n${log}`,
    );

  let m;
  try {
    m = await waitLog(/siolua listening on (https?):\/\/([^\s/]+):(\d+)/, timeout);
  } catch (e) {
    proc.kill("SIGKILL");
    throw e;
  }
  const port = Number(m[3]);
  const server = {
    port,
    url: `${m[1]}://127.0.0.1:${port}`,
    proc,
    log: () => log,
    waitLog,
    exited: () => exited,
    /**
     * SIGTERM, then SIGKILL after a grace period; resolves to the exit status. Throws (failing
     * the calling test or hook) when the server had to be killed, died on its own, or its log
     * has a sanitizer report (the ASan/UBSan build runs this suite too).
     */
    async stop(grace = 3000) {
      const diedBefore = exited;
      let killed = false;
      if (!exited) {
        proc.kill("SIGTERM");
        const t = setTimeout(() => { killed = true; proc.kill("SIGKILL"); }, grace);
        await exitP;
        clearTimeout(t);
      }
      const problems = [];
      if (diedBefore) problems.push(`the server died during the test: ${JSON.stringify(diedBefore)}`);
      if (killed) problems.push(`the server ignored SIGTERM for ${grace} ms and was killed`);
      if (SANITIZER.test(log)) problems.push("the server log has a sanitizer report");
      if (problems.length) throw new Error(`${problems.join("; ")}\n---- server log ----\n${log}`);
      return exited;
    },
  };
  return server;
}

/** Awaits one event on an emitter (socket.io-client socket, Manager, ws...), with a timeout. */
export function once(emitter, event, ms = 5000) {
  return withTimeout(
    new Promise((resolve) => {
      const on = emitter.once ? emitter.once.bind(emitter) : emitter.on.bind(emitter);
      on(event, (...args) => resolve(args));
    }),
    ms,
    `event "${event}"`,
  );
}

/** Connects a socket.io-client and resolves once connected; every client is closed by closeAll(). */
const clients = new Set();
export async function connect(url, opts = {}, ms = 5000) {
  const socket = ioClient(url, { forceNew: true, reconnection: false, ...opts });
  clients.add(socket);
  await withTimeout(
    new Promise((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("connect_error", reject);
    }),
    ms,
    `connect to ${url} with ${JSON.stringify(opts)}`,
  );
  return socket;
}

export function closeAll() {
  for (const s of clients) s.disconnect();
  clients.clear();
}

/** Collects the arguments of every `event` into an array (for "did not receive" checks). */
export function collect(socket, event) {
  const got = [];
  socket.on(event, (...args) => got.push(args));
  return got;
}

/** Waits until socket received a "gone" event (the main app's disconnect report) for id. */
export function waitGone(observer, id, ms = 5000) {
  return withTimeout(
    new Promise((resolve) => {
      const on = (goneId, reason) => {
        if (goneId === id) {
          observer.off("gone", on);
          resolve(reason);
        }
      };
      observer.on("gone", on);
    }),
    ms,
    `"gone" for ${id}`,
  );
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Emits with an ack request; resolves to ALL the ack's arguments (emitWithAck keeps only the first). */
export function request(socket, event, ...args) {
  return new Promise((resolve, reject) => {
    socket.timeout(5000).emit(event, ...args, (err, ...res) => (err ? reject(new Error(`no ack for "${event}": ${err.message}`)) : resolve(res)));
  });
}
