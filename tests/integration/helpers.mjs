// Shared helpers of the integration tests: start a siolua (or, with SIOLUA_REF=1, the Node
// reference in ref/server.mjs) on a free port, connect clients, await events with timeouts.
import { spawn } from "node:child_process";
import { appendFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { io as ioClient } from "socket.io-client";
import WebSocket from "ws";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const APPS = path.join(ROOT, "tests/integration/apps");
/** True when the suite runs against the Node reference, to check the tests themselves. */
export const REF = process.env.SIOLUA_REF === "1";
/**
 * ms: how long a test waits by default for one thing that must happen (an event, an ack, a log
 * line). Only a failing test waits that long; it is a bound for a loaded 2-core machine running
 * the ASan build, never a measure of speed.
 */
export const WAIT = 10000;
const BIN = path.resolve(ROOT, process.env.SIOLUA_BIN || "./siolua");

// A line of a sanitizer report, or of valgrind's (make valgrind runs the suite under memcheck).
const SANITIZER = /ERROR: AddressSanitizer|ERROR: LeakSanitizer|AddressSanitizer:DEADLYSIGNAL|runtime error:|SUMMARY: (Address|UndefinedBehavior|Leak)Sanitizer|==\d+== (Invalid (read|write|free)|Conditional jump|Use of uninitialised|Syscall param|Mismatched free)|definitely lost in/;
// Servers still running when this process ends are killed, also when the test runner ends it
// with a signal (a file-level timeout). run.sh also gets their PIDs through SIOLUA_PIDFILE and
// kills any left over, in case this process itself was SIGKILLed.
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

/** Rejects after ms with a message naming what was awaited (a string, or a function giving one). */
export function withTimeout(promise, ms, what) {
  let timer;
  const t = new Promise((_, reject) => {
    const name = () => (typeof what === "function" ? what() : what);
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${name()}`)), ms);
  });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}

/**
 * Spawns cmd (stdout and stderr collected into one log) and watches it. Returns
 * { proc, log(), waitLog(re, ms), exited(), ended(ms, expect), stop(grace, expect) }; `what`
 * names the process in messages. Every process started here is killed if still running when
 * this test process ends, and its PID goes to SIOLUA_PIDFILE for run.sh's clean-up.
 */
export function watch(cmd, args, { what = "server", env = process.env } = {}) {
  const proc = spawn(cmd, args, { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], env });
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
  // "exit": the process is gone; "close": it is gone AND its stdout/stderr reached their end, so
  // the log is complete (a leak report printed at exit may come after "exit").
  let exited = null;
  let closed = null;
  proc.on("exit", (code, signal) => {
    exited = { code, signal };
    running.delete(proc);
  });
  const closeP = new Promise((resolve) => {
    proc.on("close", (code, signal) => {
      closed = { code, signal };
      exited = exited || closed;
      running.delete(proc);
      for (const w of waiters) w();
      resolve(closed);
    });
  });

  const waitLog = (re, ms = WAIT) =>
    withTimeout(
      new Promise((resolve, reject) => {
        const check = () => {
          const m = log.match(re);
          if (m) {
            waiters.delete(check);
            resolve(m);
          } else if (closed) {
            waiters.delete(check);
            reject(new Error(`${what} exited (${JSON.stringify(closed)}) before logging ${re}; log:\n${log}`));
          }
        };
        waiters.add(check);
        check();
      }),
      ms,
      () => `${what} to log ${re}; log so far:\n${log}`,
    );

  /** What is wrong with a finished process: a status other than `expect`, a sanitizer report. */
  const verdict = (st, expect) => {
    const problems = [];
    if (st.code !== expect.code || st.signal !== (expect.signal ?? null))
      problems.push(`${what}: exit status ${JSON.stringify(st)}, expected ${JSON.stringify({ signal: null, ...expect })}`);
    const san = log.split("\n").filter((l) => SANITIZER.test(l));
    if (san.length) problems.push(`${what}: its log has a sanitizer report: ${san[0]}`);
    return problems;
  };
  const fail = (problems) => {
    throw new Error(`${problems.join("; ")}\n---- ${what} log ----\n${log}`);
  };
  return {
    proc,
    log: () => log,
    waitLog,
    /** null while the process runs, then its { code, signal }. */
    exited: () => exited,
    /**
     * For a process that ends by itself (io.close(), a refused command line): waits until it
     * exited and its output is complete; throws when the status is not `expect` or the log has
     * a sanitizer report. Resolves to the status.
     */
    async ended(ms = WAIT, expect = { code: 0 }) {
      const st = await withTimeout(closeP, ms, `${what} to exit`);
      const problems = verdict(st, expect);
      if (problems.length) fail(problems);
      return st;
    },
    /**
     * SIGTERM, then SIGKILL after a grace period; resolves to the exit status once the process
     * is gone and its output complete. Throws (failing the calling test or hook) when it had to
     * be killed, died on its own before, exited with a status other than `expect` (0: a clean
     * shutdown), or its log has a sanitizer report (the ASan/UBSan build runs this suite too).
     * `sig` replaces SIGTERM for a process whose clean shutdown is another signal (postgres: SIGINT).
     */
    async stop(grace = WAIT, expect = { code: 0 }, sig = "SIGTERM") {
      const diedBefore = exited;
      let killed = false;
      if (!exited) {
        proc.kill(sig);
        const t = setTimeout(() => {
          killed = true;
          proc.kill("SIGKILL");
        }, grace);
        await new Promise((resolve) => (exited ? resolve() : proc.once("exit", resolve)));
        clearTimeout(t);
      }
      const st = await closeP;
      const problems = [];
      if (diedBefore) problems.push(`${what} died during the test: ${JSON.stringify(diedBefore)}`);
      if (killed) problems.push(`${what} ignored ${sig} for ${grace} ms and was killed`);
      else problems.push(...verdict(st, expect));
      if (problems.length) fail(problems);
      return st;
    },
  };
}

/**
 * Starts the server with app (a path, or a name in apps/), extra command-line args and the
 * environment env (the Node reference with { ref: true }, whatever SIOLUA_REF says: for
 * side-by-side tests). Resolves, once it printed its "siolua listening on http://HOST:PORT" line
 * (https:// with --tls-cert: url is then https too), to watch()'s object with { port, url } added.
 */
export async function startServer(app, args = [], { timeout = 2 * WAIT, env = process.env, ref = REF } = {}) {
  const appPath = app.includes("/") ? path.resolve(ROOT, app) : path.join(APPS, app + ".lua");
  const [cmd, argv] = ref
    ? [process.execPath, [path.join(ROOT, "tests/integration/ref/server.mjs"), appPath]]
    : [BIN, [appPath]];
  // SIOLUA_WORKERS=N runs every siolua server of the tests with --workers N (run.sh's workers pass)
  const workers = !ref && process.env.SIOLUA_WORKERS && !args.includes("--workers") ? ["--workers", process.env.SIOLUA_WORKERS] : [];
  const srv = watch(cmd, [...argv, "--port", "0", ...workers, ...args], { env });
  let m;
  try {
    m = await srv.waitLog(/siolua listening on (https?):\/\/([^\s/]+):(\d+)/, timeout);
  } catch (e) {
    srv.proc.kill("SIGKILL");
    throw e;
  }
  const port = Number(m[3]);
  return Object.assign(srv, { port, url: `${m[1]}://127.0.0.1:${port}` });
}

/** Awaits one event on an emitter (socket.io-client socket, Manager, ws...), with a timeout. */
export function once(emitter, event, ms = WAIT) {
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
export async function connect(url, opts = {}, ms = WAIT) {
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

/** Resolves with the args of the first `event` whose args satisfy pred (seen from now on). */
export function waitFor(socket, event, pred, ms = WAIT) {
  return withTimeout(
    new Promise((resolve) => {
      const on = (...args) => {
        if (pred(...args)) {
          socket.off(event, on);
          resolve(args);
        }
      };
      socket.on(event, on);
    }),
    ms,
    `"${event}" matching ${pred}`,
  );
}

/** Collects the arguments of every `event` into an array (for "did not receive" checks). */
export function collect(socket, event) {
  const got = [];
  socket.on(event, (...args) => got.push(args));
  return got;
}

/** Waits until socket received a "gone" event (the main app's disconnect report) for id. */
export function waitGone(observer, id, ms = WAIT) {
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

/**
 * Calls fn (which may be async: a request to the server) every 25 ms until it returns a truthy
 * value, which it resolves to; fails after ms. For state that has no event to wait for.
 */
export async function until(fn, what, ms = WAIT) {
  const t0 = Date.now();
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() - t0 > ms) throw new Error(`timed out after ${ms} ms waiting for ${typeof what === "function" ? what() : what}`);
    await sleep(25);
  }
}

/** Emits with an ack request; resolves to ALL the ack's arguments (emitWithAck keeps only the first). */
export function request(socket, event, ...args) {
  return new Promise((resolve, reject) => {
    socket.timeout(WAIT).emit(event, ...args, (err, ...res) => (err ? reject(new Error(`no ack for "${event}": ${err.message}`)) : resolve(res)));
  });
}

/** A seeded PRNG (mulberry32): the generators of the differential tests, replayable with SEED=n. */
export function mulberry32(a) {
  return () => {
    a |= 0;
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Parses the server's frame headers from the raw bytes a ws client receives. */
export function frameTap(socket) {
  const frames = [];
  let buf = Buffer.alloc(0), skip = 0;
  socket.prependListener("data", (d) => {
    if (skip >= d.length) { skip -= d.length; return; }
    buf = Buffer.concat([buf, d.subarray(skip)]);
    skip = 0;
    for (;;) {
      if (buf.length < 2) return;
      let len = buf[1] & 0x7f, off = 2;
      if (len === 126) { if (buf.length < 4) return; len = buf.readUInt16BE(2); off = 4; }
      else if (len === 127) { if (buf.length < 10) return; len = Number(buf.readBigUInt64BE(2)); off = 10; }
      frames.push({ rsv1: (buf[0] & 0x40) !== 0, op: buf[0] & 0x0f, len });
      if (buf.length >= off + len) buf = buf.subarray(off + len);
      else { skip = off + len - buf.length; buf = Buffer.alloc(0); return; }
    }
  });
  return frames;
}

/** A raw Engine.IO/Socket.IO session over the npm ws client (wsOpts: its options, e.g.
 * perMessageDeflate), connected to "/": Engine.IO v4 (sends CONNECT), or v3 (eio: 3; the server
 * connects it). { ws, next() (the next message: a string or a Buffer), frames (frameTap), answer
 * (the server's Sec-WebSocket-Extensions), start (frames[start] comes after the CONNECT answer) }. */
export async function rawSession(srv, wsOpts, { eio = 4 } = {}) {
  const ws = new WebSocket(`ws://127.0.0.1:${srv.port}/socket.io/?EIO=${eio}&transport=websocket`, wsOpts);
  let answer = null;
  ws.on("upgrade", (res) => { answer = res.headers["sec-websocket-extensions"] ?? null; });
  const msgs = [], waiters = [];
  ws.on("message", (data, isBinary) => {
    msgs.push(isBinary ? Buffer.from(data) : data.toString());
    while (waiters.length && msgs.length) waiters.shift()(msgs.shift());
  });
  const next = () => withTimeout(new Promise((res) => (msgs.length ? res(msgs.shift()) : waiters.push(res))), WAIT, "a message");
  await once(ws, "open");
  const frames = frameTap(ws._socket);
  const open = await next();
  if (!/^0\{/.test(open)) throw new Error(`not an open packet: ${open}`);
  if (eio === 4) ws.send("40");
  const connected = await next();
  if (!(eio === 4 ? /^40\{/ : /^40$/).test(connected)) throw new Error(`not a CONNECT answer: ${connected}`);
  return { ws, next, frames, answer, start: frames.length };
}
