// The server API (issue 3), namespaces: io.of("/admin") with its own listeners, emit, rooms and
// sockets; io.of("/") is io; dynamic namespaces from a Lua pattern and from a function (children,
// socket.nsp, the parent's middleware and emit); "Invalid namespace"; io.on("new_namespace").
// App: apps/api_namespaces.lua (twin: ref/api_apps.mjs).
import { test, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { startServer, connect, closeAll, request, collect, waitFor } from "./helpers.mjs";

let srv;
before(async () => { srv = await startServer("api_namespaces"); });
afterEach(() => closeAll());
after(async () => { closeAll(); await srv?.stop(); });

const WS = { transports: ["websocket"] };
const news = (socket, from, msg) => waitFor(socket, "news", (f, m) => f === from && m === msg);

function invalid(p) {
  return assert.rejects(p, (err) => {
    assert.equal(err.message, "Invalid namespace");
    return true;
  });
}

test("io.of('/admin') has its own connection listener and sockets; io.of('/') is io", async () => {
  // first test of the file: the only /admin socket is this one
  const m = await connect(srv.url, WS);
  const a = await connect(srv.url + "/admin", WS);
  assert.deepEqual(await request(m, "info"), [{ nsp: "/", mainIsIo: true, slashless: true }]);
  assert.deepEqual(await request(a, "info"), [{ nsp: "/admin", count: 1 }]);
  const a2 = await connect(srv.url + "/admin", { transports: ["polling"] });
  assert.deepEqual(await request(a2, "info"), [{ nsp: "/admin", count: 2 }]);
});

test("a namespace's emit reaches its own sockets only; the same room name in two namespaces is two rooms", async () => {
  const m = await connect(srv.url, WS);
  const a = await connect(srv.url + "/admin", { transports: ["polling"] });
  const gotM = collect(m, "news");
  const gotA = collect(a, "news");
  await request(m, "join", "r");
  await request(a, "join", "r");

  // every driving event comes from m, in order: each client receives in that order
  const waits = [news(a, "/admin", "for admins"), news(m, "/", "sync"), news(a, "/admin", "sync")];
  m.emit("admin-news", "for admins");
  m.emit("main-room", "r", "room r of /");
  m.emit("main-news", "sync");
  m.emit("admin-news", "sync");
  await Promise.all(waits);
  assert.deepEqual(gotM, [["/ room r", "room r of /"], ["/", "sync"]]);
  assert.deepEqual(gotA, [["/admin", "for admins"], ["/admin", "sync"]]);
});

test("a dynamic namespace from a Lua pattern: children by name, socket.nsp, the parent's middleware and emit", async () => {
  const m = await connect(srv.url, WS);
  const d1 = await connect(srv.url + "/dyn-1", WS);
  const d1b = await connect(srv.url + "/dyn-1", { transports: ["polling"] });
  const d2 = await connect(srv.url + "/dyn-22", WS);
  assert.deepEqual(await request(d1, "info"), [{ nsp: "/dyn-1", parentMiddleware: true }]);
  assert.deepEqual(await request(d2, "info"), [{ nsp: "/dyn-22", parentMiddleware: true }]);
  const got = [d1, d1b, d2].map((s) => collect(s, "news"));

  // the child is a namespace of its own: io.of("/dyn-1").emit reaches its sockets only
  const waits = [news(d1, "/dyn-1", "one"), news(d1b, "/dyn-1", "one"), news(d2, "/dyn-22", "sync")];
  m.emit("child-news", "/dyn-1", "one");
  m.emit("child-news", "/dyn-22", "sync");
  await Promise.all(waits);
  assert.deepEqual(got[2], [["/dyn-22", "sync"]]);

  // socket.nsp is the child
  const p = [news(d1, "/dyn-1", "via socket.nsp"), news(d1b, "/dyn-1", "via socket.nsp")];
  d1.emit("child-news", "via socket.nsp");
  await Promise.all(p);

  // the parent's emit reaches every child
  const all = [d1, d1b, d2].map((s) => news(s, "parent", "everyone"));
  d2.emit("parent-news", "everyone");
  await Promise.all(all);
  assert.deepEqual(got[0], [["/dyn-1", "one"], ["/dyn-1", "via socket.nsp"], ["parent", "everyone"]]);

  // names the pattern does not match
  await invalid(connect(srv.url + "/dyn-x", WS));
  await invalid(connect(srv.url + "/dyn-", WS));
  await invalid(connect(srv.url + "/dyn-1/x", WS));
});

test("a dynamic namespace from a function: next(nil, true) accepts, next(nil, false) is \"Invalid namespace\"", async () => {
  const f = await connect(srv.url + "/fn-a", { ...WS, auth: { key: "open" } });
  assert.deepEqual(await request(f, "info"), [{ nsp: "/fn-a" }]);
  const f2 = await connect(srv.url + "/fn-a", { transports: ["polling"], auth: { key: "open" } });
  assert.deepEqual(await request(f2, "info"), [{ nsp: "/fn-a" }]);
  await invalid(connect(srv.url + "/fn-b", { ...WS, auth: { key: "shut" } }));
  await invalid(connect(srv.url + "/fn-c", WS)); // no auth at all
  await invalid(connect(srv.url + "/other", { ...WS, auth: { key: "open" } }));
});

test("a CONNECT to a namespace that does not exist: connect_error \"Invalid namespace\"; / still works", async () => {
  await invalid(connect(srv.url + "/nope", WS));
  await invalid(connect(srv.url + "/nope", { transports: ["polling"] }));
  const m = await connect(srv.url, WS);
  assert.deepEqual(await request(m, "info"), [{ nsp: "/", mainIsIo: true, slashless: true }]);
});

test("io.on('new_namespace') fires once per namespace: io.of(name) and dynamic children", async () => {
  const m = await connect(srv.url, WS);
  await connect(srv.url + "/dyn-3", WS);
  await connect(srv.url + "/dyn-3", WS);
  const [first] = await request(m, "create", "/late");
  const [created] = await request(m, "create", "/late");
  assert.deepEqual(first, created);
  const count = (n) => created.filter((x) => x === n).length;
  assert.equal(created[0], "/admin");
  assert.equal(count("/admin"), 1);
  assert.equal(count("/late"), 1);
  assert.equal(count("/dyn-3"), 1);
  assert.equal(created.includes("/"), false);
  assert.equal(created.includes("/nope"), false);
  assert.equal(created.includes("/dyn-x"), false);
  // a namespace the app created with io.of (and no listener) can be joined
  const late = await connect(srv.url + "/late", WS);
  assert.equal(late.connected, true);
});
