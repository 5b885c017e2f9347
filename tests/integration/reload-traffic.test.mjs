// Hot reload under traffic: while clients send numbered messages continuously (each acked by the
// server) and the server streams numbered events to them, two reloads lose and duplicate nothing,
// checked on both sides.
import { test, afterEach } from "node:test";
import assert from "node:assert/strict";
import { WAIT, until, withTimeout } from "./helpers.mjs";
import {
  SKIP, closeRecorded, copyApp, withVersion, startCopy, waitReloaded, connectRecorded, ask,
} from "./reload.helpers.mjs";

let srv, copy;
afterEach(async () => {
  closeRecorded();
  try {
    await srv?.stop();
  } finally {
    copy?.remove();
    srv = copy = undefined;
  }
});

const WINDOW = 8; // messages in flight per client
const STEP = 100; // acks each client gets in each phase (before, between and after the reloads)

/** Sends "seq" 1, 2, 3... with up to WINDOW unacknowledged, until stop(); records the acks. */
function sender(socket) {
  const st = { sent: 0, inflight: 0, acks: [], versions: [], errors: [], stopped: false };
  let finish;
  const done = new Promise((resolve) => { finish = resolve; });
  const pump = () => {
    while (!st.stopped && st.inflight < WINDOW) {
      const n = ++st.sent;
      st.inflight++;
      socket.timeout(WAIT).emit("seq", n, (err, got, version) => {
        st.inflight--;
        if (err) st.errors.push(`${n}: ${err.message}`);
        else {
          st.acks.push(got);
          st.versions.push(version);
        }
        if (st.stopped && st.inflight === 0) finish();
        pump();
      });
    }
  };
  st.stop = () => {
    st.stopped = true;
    if (st.inflight === 0) finish();
    return withTimeout(done, WAIT, "the last acks");
  };
  pump();
  return st;
}

test("a reload under traffic loses and duplicates no message, in either direction", { skip: SKIP }, async () => {
  copy = copyApp();
  srv = await startCopy(copy);
  const clients = [];
  for (const transports of [["websocket"], ["polling"], ["websocket"], ["polling"]]) {
    clients.push(await connectRecorded(srv.url, { transports }));
  }
  for (const c of clients) assert.equal(await ask(c, "start-push"), true);
  const senders = clients.map(sender);
  const acked = () => Math.min(...senders.map((s) => s.acks.length));

  await until(() => acked() >= STEP, "traffic before the reloads", 2 * WAIT);
  for (const gen of [2, 3]) {
    const mark = acked();
    copy.edit("app.lua", (t) => withVersion(t, gen));
    await waitReloaded(srv, gen);
    await until(() => acked() >= mark + STEP, `traffic after reload ${gen}`, 2 * WAIT);
  }
  await Promise.all(senders.map((s) => s.stop()));

  for (const [i, c] of clients.entries()) {
    const s = senders[i];
    const name = `client ${i} (${c.io.engine.transport.name})`;
    assert.deepEqual(s.errors, [], name);
    // client side: every message acked exactly once, in order
    assert.deepEqual(s.acks, Array.from({ length: s.sent }, (_, k) => k + 1), name);
    // the acks came from version 1, then 2, then 3
    assert.deepEqual([...new Set(s.versions)], [1, 2, 3], name);
    // server side: the same sequence, no gap, no duplicate (the check lives in socket.data)
    assert.deepEqual(await new Promise((resolve) => c.emit("seq-state", (...r) => resolve(r))), [s.sent, 0], name);
    // server -> client: the numbered stream went on across both reloads
    const pushes = c.events.filter(([ev]) => ev === "push");
    assert.deepEqual(pushes.map(([, n]) => n), pushes.map((_, k) => k + 1), name);
    assert.deepEqual([...new Set(pushes.map(([, , v]) => v))], [1, 2, 3], name);
    assert.deepEqual(c.disconnects, [], name);
  }
  assert.doesNotMatch(srv.log(), /^seq: /m);
  assert.doesNotMatch(srv.log(), /^disconnect /m);
});
