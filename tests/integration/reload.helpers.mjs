// Shared helpers of the hot-reload tests (reload*.test.mjs): every test copies apps/reload/ to a
// fresh temporary folder, runs siolua on the copy and edits the copy (never the repo's files).
import { cpSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import assert from "node:assert/strict";
import { io as ioClient } from "socket.io-client";
import { APPS, REF, WAIT, startServer, once, withTimeout } from "./helpers.mjs";

/** The Node reference has no hot reload: the reload tests are skipped against it. */
export const SKIP = REF ? "the Node reference has no hot reload" : false;

/**
 * Copies apps/<name>/ to a temporary folder. Returns { dir, app, read(f), write(f, text),
 * edit(f, fn), remove() }; file names are relative to the copy.
 */
export function copyApp(name = "reload") {
  const dir = mkdtempSync(path.join(os.tmpdir(), "siolua-reload-"));
  cpSync(path.join(APPS, name), dir, { recursive: true });
  const at = (f) => path.join(dir, f);
  const copy = {
    dir,
    app: at("app.lua"),
    read: (f) => readFileSync(at(f), "utf8"),
    /** Writes in place (truncate + write), as most editors do. */
    write: (f, text) => writeFileSync(at(f), text),
    /** Writes a temporary file and renames it over f, as vim and atomic-save editors do. */
    writeByRename: (f, text) => {
      writeFileSync(at(f) + ".swp~", text);
      renameSync(at(f) + ".swp~", at(f));
    },
    /** Rewrites f with fn(text); fails if fn changed nothing (a test that edits nothing proves nothing). */
    edit: (f, fn) => {
      const before = copy.read(f);
      const after = fn(before);
      assert.notEqual(after, before, `the edit of ${f} changed nothing`);
      copy.write(f, after);
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
  return copy;
}

/** app.lua's text with VERSION set to v. */
export const withVersion = (text, v) => text.replace(/^local VERSION = .*$/m, `local VERSION = ${v}`);

/** Starts siolua on the copy's app.lua (extra flags in args). */
export function startCopy(copy, args = []) {
  return startServer(copy.app, args);
}

const RELOADED = (gen) => new RegExp(`siolua: reloaded [^\\n]*: generation ${gen}, (\\d+) sockets re-bound in ([\\d.]+) ms`);

/** Waits for the log line of the reload that makes generation gen; resolves to { sockets, ms }. */
export async function waitReloaded(srv, gen, ms = WAIT) {
  const m = await srv.waitLog(RELOADED(gen), ms);
  return { sockets: Number(m[1]), ms: Number(m[2]) };
}

/** True when the log has the line of generation gen (for "no reload happened" checks). */
export const hasGeneration = (srv, gen) => RELOADED(gen).test(srv.log());

/** Waits until the log holds n "reload failed" lines. */
export function waitFailures(srv, n, ms = WAIT) {
  return srv.waitLog(new RegExp(`(?:[\\s\\S]*?siolua: reload failed){${n}}`), ms);
}

/**
 * Connects a socket.io-client that records, in order, every event it receives (from the first
 * one: the app greets in its "connection" handler) in socket.events, and its disconnect reasons
 * in socket.disconnects. closeRecorded() closes them all.
 */
const recorded = new Set();
export async function connectRecorded(url, opts = {}) {
  const socket = ioClient(url, { forceNew: true, reconnection: false, ...opts });
  recorded.add(socket);
  socket.events = [];
  socket.disconnects = [];
  socket.onAny((ev, ...args) => socket.events.push([ev, ...args.filter((a) => typeof a !== "function")]));
  socket.on("disconnect", (reason) => socket.disconnects.push(reason));
  await withTimeout(
    new Promise((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("connect_error", reject);
    }),
    WAIT,
    `connect to ${url} with ${JSON.stringify(opts)}`,
  );
  return socket;
}

export function closeRecorded() {
  for (const s of recorded) s.disconnect();
  recorded.clear();
}

/** Emits with an ack; resolves to the ack's first argument. */
export function ask(socket, event, ...args) {
  return withTimeout(socket.emitWithAck(event, ...args), WAIT, `the ack of "${event}"`);
}

/** Awaits an event whose arguments satisfy pred (events received before the call count too). */
export function eventually(socket, event, pred = () => true, ms = WAIT) {
  const found = () => socket.events.find(([ev, ...args]) => ev === event && pred(...args));
  if (found()) return Promise.resolve(found().slice(1));
  return withTimeout(
    new Promise((resolve) => {
      const on = (ev) => {
        if (ev !== event) return;
        const f = found();
        if (f) {
          socket.offAny(on);
          resolve(f.slice(1));
        }
      };
      socket.onAny(on);
    }),
    ms,
    `event "${event}" matching ${pred}`,
  );
}

export { once };
