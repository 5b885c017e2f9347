// Issue 11: a dynamic namespace's parent (io.of(pattern)) behaves as the reference's
// ParentNamespace: fetchSockets() raises "fetchSockets() is not supported on parent namespaces",
// parent.in(room).fetchSockets() and the like find nothing, socketsJoin, socketsLeave and
// disconnectSockets touch no socket (the parent has none of its own), and emit reaches every
// child. The same on two siolua nodes on Redis, where emit also reaches the other node's child.
// App: apps/wire_parent.lua (twin: ref/wire_apps.mjs); SIOLUA_REF=1 runs the first part on Node.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { REF, startServer, connect, closeAll, request, collect } from "./helpers.mjs";
import { startNode, startRedis, waitServers } from "./redis.helpers.mjs";

/** Runs every parent operation from `observer`; `children` are sockets on /dyn-N namespaces. */
async function parentOps(observer, children) {
  const [fetch] = await request(observer, "parent", "fetch");
  assert.deepEqual(fetch, { ok: false, message: "fetchSockets() is not supported on parent namespaces" });
  assert.deepEqual(await request(observer, "parent", "fetch-some"), [[0, 0, 0]]);

  for (const op of ["join", "leave", "disconnect"]) {
    assert.deepEqual(await request(observer, "parent", op), [true]);
    for (const c of children) assert.deepEqual(await request(c, "rooms"), [["r1"]], `${op}: rooms unchanged`);
  }
  for (const c of children) assert.equal(c.connected, true);

  const news = children.map((c) => collect(c, "news"));
  assert.deepEqual(await request(observer, "parent", "emit"), [true]);
  for (const c of children) await request(c, "rooms"); // what was sent before has arrived
  for (const got of news) assert.deepEqual(got, [["all"], ["r1"]]);
}

describe("a parent namespace", () => {
  let srv;
  before(async () => { srv = await startServer("wire_parent"); });
  after(async () => { closeAll(); await srv?.stop(); });

  test("socketsJoin, socketsLeave, disconnectSockets and fetchSockets as the reference's ParentNamespace", async () => {
    const observer = await connect(srv.url, { transports: ["websocket"] });
    const children = [await connect(`${srv.url}/dyn-1`), await connect(`${srv.url}/dyn-2`, { transports: ["websocket"] })];
    await parentOps(observer, children);
  });
});

describe("a parent namespace on Redis", { skip: REF && "drives two siolua nodes" }, () => {
  let redis, a, b;
  before(async () => {
    redis = await startRedis();
    a = await startNode(redis, { name: "a", app: "wire_parent" });
    b = await startNode(redis, { name: "b", app: "wire_parent" });
    await waitServers(redis.port, 2);
  });
  after(async () => {
    closeAll();
    await a?.stop();
    await b?.stop();
    await redis?.stop();
  });

  test("the same through the Redis adapter; emit reaches the other node's child", async () => {
    const observer = await connect(a.url, { transports: ["websocket"] });
    // the child namespace /dyn-1 exists on both nodes; /dyn-2 on node b only
    const onA = await connect(`${a.url}/dyn-1`, { transports: ["websocket"] });
    const onB = await connect(`${b.url}/dyn-1`, { transports: ["websocket"] });
    const onlyB = await connect(`${b.url}/dyn-2`, { transports: ["websocket"] });
    const last = collect(onlyB, "news");
    await parentOps(observer, [onA, onB]);
    // a's parent reaches the children a has: b's /dyn-2 has no twin on a
    await request(onlyB, "rooms");
    assert.deepEqual(last, []);
  });
});
