// --log-format json: every line of a run's log is one JSON object with time, level and msg, and
// the events carry their fields (socket id, namespace, event, reason); a handler error's traceback
// is a field of its own. The same run in text format has the same events, one formatting of each.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startServer, connect, closeAll, once, request, REF } from "./helpers.mjs";

const SKIP = REF && "siolua's own log formats";

// A scripted run: two clients (websocket and polling), an ack, a handler error in two namespaces,
// a malformed packet (debug), disconnects; resolves to the server's whole log.
async function run(format) {
  const srv = await startServer("ops", ["--log-format", format, "--log-level", "debug"]);
  const a = await connect(srv.url, { transports: ["websocket"] });
  const b = await connect(srv.url, { transports: ["polling"] });
  const other = await connect(srv.url + "/other", { transports: ["websocket"] });
  assert.deepEqual(await request(a, "echo", "é\u0001\"x"), ["é\u0001\"x"]);
  a.emit("boom");
  other.emit("boom");
  await srv.waitLog(/other boom/, 10000);
  await srv.waitLog(/attempt to index a nil value/, 10000);
  const ids = { a: a.id, b: b.id };
  b.disconnect();
  await srv.waitLog(new RegExp(`disconnected ${ids.b} client namespace disconnect`), 10000);
  a.io.engine.write("9"); // an invalid Socket.IO packet type: the session is closed
  await once(a, "disconnect", 10000);
  closeAll();
  // the three sessions closed before the shutdown (so that two runs log the same reasons)
  await srv.waitLog(/(eio: session \S+ closed[\s\S]*){3}/, 10000);
  await srv.stop();
  return { log: srv.log(), ids };
}

test("every line of a JSON log parses, with its fields; a handler error carries its traceback", { skip: SKIP, timeout: 60000 }, async () => {
  const { log, ids } = await run("json");
  const lines = log.split("\n");
  assert.equal(lines.pop(), "", "the log ends with a newline");
  const events = lines.map((l, i) => {
    let o;
    assert.doesNotThrow(() => (o = JSON.parse(l)), `line ${i + 1} is not JSON: ${l}`);
    assert.equal(typeof o, "object");
    assert.match(o.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, l);
    assert.ok(Math.abs(Date.parse(o.time) - Date.now()) < 600000, l);
    assert.ok(["error", "warn", "info", "debug"].includes(o.level), l);
    assert.equal(typeof o.msg, "string", l);
    return o;
  });
  const listening = events.find((e) => e.msg.startsWith("siolua listening on"));
  assert.equal(listening.scheme, "http");
  assert.equal(typeof listening.port, "number");
  assert.ok(events.some((e) => e.msg === `connected ${ids.a}` && e.source === "print" && e.level === "info"));

  const err = events.find((e) => e.level === "error" && e.event === "boom" && e.nsp === "/");
  assert.ok(err, "the handler error of / is logged with its event and namespace");
  assert.equal(err.sid.length, 20);
  assert.match(err.error, /attempt to index a nil value/);
  assert.match(err.msg, /^error in handler for "boom" of socket \S+: .*attempt to index a nil value/);
  assert.doesNotMatch(err.msg, /stack traceback/, "the traceback is a field, not part of the message");
  assert.match(err.traceback, /^stack traceback:\n/);
  assert.match(err.traceback, /ops\.lua:\d+/);
  const err2 = events.find((e) => e.level === "error" && e.nsp === "/other");
  assert.match(err2.error, /other boom/);
  assert.match(err2.traceback, /ops\.lua:\d+/);

  const closed = events.filter((e) => e.level === "debug" && e.msg.startsWith("eio: session") && e.reason);
  assert.ok(closed.length >= 2, "session closes are logged with their reason");
  assert.ok(closed.every((e) => typeof e.sid === "string" && e.msg.includes(e.reason)));
  const bad = events.find((e) => e.msg.startsWith("sio: invalid packet"));
  assert.ok(bad && bad.reason && bad.sid, "the invalid packet is logged with the session and the reason");
  assert.ok(events.some((e) => e.signal === "SIGTERM"));
});

test("the text log has the same events as the JSON log: the message, and the traceback on the lines after it", { skip: SKIP, timeout: 60000 }, async () => {
  const [{ log: text }, { log: json }] = [await run("text"), await run("json")];
  // the text form of each JSON event, ids and ports masked (two runs)
  const mask = (s) => s.replace(/[A-Za-z0-9_-]{20}/g, "ID").replace(/:\d{2,5}\b/g, ":PORT");
  const fromJson = json
    .trimEnd()
    .split("\n")
    .map((l) => JSON.parse(l))
    .map((e) => (e.level === "info" ? "" : `[${e.level}] `) + e.msg + (e.traceback ? "\n" + e.traceback : ""));
  // order across clients may differ between two runs: compare the sorted events
  assert.deepEqual(mask(text.trimEnd()).split("\n").sort(), mask(fromJson.join("\n")).split("\n").sort());
});
