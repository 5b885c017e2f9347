// Helpers of the tests of handlers that talk to the world (issue 17): a private PostgreSQL cluster
// (initdb + postgres on a free loopback port, in a temporary folder, as the postgres user since
// postgres refuses root; run by helpers.mjs's watch(): stopped by PID, its status checked), siolua
// started with environment variables, and the app's { ok, res } answers. Redis comes from
// redis.helpers.mjs.
import { execFileSync } from "node:child_process";
import { chownSync, existsSync, mkdtempSync, readdirSync, readlinkSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { WAIT, startServer, until, watch, withTimeout } from "./helpers.mjs";
import { freePort } from "./redis.helpers.mjs";

const PGBIN = (() => {
  const base = "/usr/lib/postgresql";
  const versions = existsSync(base) ? readdirSync(base).sort((a, b) => Number(b) - Number(a)) : [];
  return versions.length ? path.join(base, versions[0], "bin") : null;
})();
export const HAVE_PG = PGBIN !== null && existsSync(path.join(PGBIN, "postgres"));

/** Runs cmd as the postgres user when we are root (postgres refuses root), else as ourselves. */
function asPostgres(cmd, args) {
  if (process.getuid() !== 0) return [cmd, args];
  return ["setpriv", ["--reuid=postgres", "--regid=postgres", "--init-groups", cmd, ...args]];
}

/**
 * Starts a PostgreSQL cluster of its own (user "siolua", trust authentication on 127.0.0.1 only,
 * fsync off). Resolves to { port, conninfo, psql(sql), stop(), start() }.
 */
export async function startPostgres() {
  const dir = mkdtempSync(path.join(os.tmpdir(), "siolua-pg-"));
  if (process.getuid() === 0) {
    const uid = Number(execFileSync("id", ["-u", "postgres"]).toString());
    const gid = Number(execFileSync("id", ["-g", "postgres"]).toString());
    chownSync(dir, uid, gid);
  }
  const [icmd, iargs] = asPostgres(path.join(PGBIN, "initdb"), [
    "-D", path.join(dir, "data"), "-A", "trust", "-U", "siolua", "--no-sync", "-E", "UTF8", "--no-instructions",
  ]);
  execFileSync(icmd, iargs, { stdio: "ignore" });
  const port = await freePort();
  let pgw = null; // watch()'s object for the running postgres
  const start = async () => {
    const [cmd, args] = asPostgres(path.join(PGBIN, "postgres"), [
      "-D", path.join(dir, "data"), "-k", dir, "-p", String(port), "-h", "127.0.0.1", "-c", "fsync=off",
      "-c", "max_connections=60", "-c", "full_page_writes=off",
    ]);
    pgw = watch(cmd, args, { what: "postgres" });
    await pgw.waitLog(/ready to accept connections/, 2 * WAIT);
  };
  // SIGINT is postgres's fast shutdown (sessions are ended); it exits 0, or the test fails
  const stop = async () => {
    if (pgw && !pgw.exited()) await pgw.stop(WAIT, { code: 0 }, "SIGINT");
  };
  await start();
  return {
    port,
    conninfo: `host=127.0.0.1 port=${port} user=siolua dbname=postgres connect_timeout=5`,
    log: () => (pgw ? pgw.log() : ""),
    start,
    stop,
    /** Runs sql through psql; resolves to its unaligned output lines. */
    psql(sql) {
      return execFileSync("psql", ["-h", "127.0.0.1", "-p", String(port), "-U", "siolua", "-d", "postgres", "-Atq", "-c", sql])
        .toString()
        .trim();
    },
    async destroy() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Starts siolua with app and the environment variables in env (set only for this spawn). */
export async function startWithEnv(app, env, args = [], opts = {}) {
  const saved = {};
  for (const k of Object.keys(env)) {
    saved[k] = process.env[k];
    if (env[k] === undefined) delete process.env[k];
    else process.env[k] = env[k];
  }
  try {
    return await startServer(app, args, opts);
  } finally {
    for (const k of Object.keys(saved)) {
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
    }
  }
}

/** Emits ev with args and resolves to the app's { ok, res } answer. */
export function call(socket, ev, ...args) {
  return withTimeout(socket.emitWithAck(ev, ...args), 15000, `the answer to ${ev} ${JSON.stringify(args)}`);
}

/**
 * The open file descriptors and threads of a process; with `file`, the descriptors of that file
 * are counted apart (`fileFds`), not in `fds`.
 */
export function fdsAndThreads(pid, file = null) {
  const dir = `/proc/${pid}/fd`;
  const links = readdirSync(dir).map((fd) => {
    try {
      return readlinkSync(`${dir}/${fd}`);
    } catch {
      return ""; // closed meanwhile
    }
  });
  const fileFds = file === null ? 0 : links.filter((l) => l === file).length;
  return { fds: links.length - fileFds, fileFds, threads: readdirSync(`/proc/${pid}/task`).length };
}

// (polling state: helpers.mjs's until(), bounded by WAIT like every wait of the suite)
export { until };
