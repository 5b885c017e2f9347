// Two siolua nodes on one Redis, behind nginx (Debian's nginx-light), the way issue 7 and the
// README's recipe deploy them. HTTP long-polling needs sticky sessions: every request of a session
// must reach the node that holds it. With `hash ... consistent` on a client key (the ip_hash
// recipe, keyed here on a header so one machine can play two clients) polling clients connect
// and broadcasts cross the nodes through Redis; with round-robin (the control) polling fails.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { io } from "socket.io-client";
import { withTimeout, REF, WAIT } from "./helpers.mjs";
import { NGINX, startNginx } from "./nginx.helpers.mjs";
import { startRedis, startNode, waitServers } from "./redis.helpers.mjs";

const client = (url, key, name) =>
  io(url, { transports: ["polling"], forceNew: true, reconnection: false, extraHeaders: { "x-sticky": key }, auth: { name } });

test("two nodes behind nginx: sticky polling sessions work, broadcasts cross; round-robin breaks polling",
  { skip: (REF && "siolua cluster") || (!existsSync(NGINX) && "nginx is not installed") }, async () => {
    const redis = await startRedis();
    const a = await startNode(redis, { name: "a" }), b = await startNode(redis, { name: "b" });
    await waitServers(redis.port, 2);
    const clients = [];
    try {
      // sticky: a client key (in the README's recipe, the client's IP) always maps to one node
      const sticky = await startNginx("hash $http_x_sticky consistent;", [a.port, b.port]);
      try {
        // client keys until both nodes hold some (where a key lands depends on the nodes' ports,
        // which change from run to run: keep adding keys, up to 64)
        const names = {};
        for (let i = 1; i <= 64; i++) {
          const key = `k${i}`;
          const c = client(sticky.url, key, key);
          clients.push(c);
          await withTimeout(new Promise((r, j) => { c.once("connect", r); c.once("connect_error", j); }), WAIT, `sticky connect ${key}`);
          names[key] = await c.emitWithAck("whoami");
          // the session really is sticky: a few more round trips stay on its node
          for (let k = 0; k < 3; k++) assert.deepEqual(await c.emitWithAck("whoami"), names[key]);
          if (i >= 4 && new Set(Object.values(names).map((w) => w.node)).size === 2) break;
        }
        const nodes = new Set(Object.values(names).map((w) => w.node));
        assert.deepEqual([...nodes].sort(), ["a", "b"], "the clients are spread over both nodes");
        // a broadcast from a client on one node reaches a client on the other, through Redis
        const [k1, k2] = Object.keys(names).filter((k, i, all) => names[k].node !== names[all[0]].node || i === 0);
        const from = clients[Object.keys(names).indexOf(k1)], to = clients[Object.keys(names).indexOf(k2)];
        const got = withTimeout(new Promise((r) => to.once("msg", (...args) => r(args))), WAIT, "cross-node broadcast");
        from.emit("bcast", "over redis");
        assert.deepEqual(await got, ["over redis"]);
      } finally {
        for (const c of clients.splice(0)) c.close();
        await sticky.stop();
      }
      // the control: without stickiness, the session's next request reaches the other node
      const rr = await startNginx("", [a.port, b.port]);
      try {
        let failures = 0;
        for (let i = 0; i < 3; i++) {
          const c = client(rr.url, "any", "rr");
          clients.push(c);
          const outcome = await withTimeout(new Promise((r) => {
            c.once("connect", () => r("connect"));
            c.once("connect_error", () => r("error"));
          }), WAIT, "round-robin outcome");
          if (outcome === "error") failures++;
        }
        assert.ok(failures >= 2, `polling through round-robin should fail (failed ${failures} of 3)`);
      } finally {
        for (const c of clients.splice(0)) c.close();
        await rr.stop();
      }
    } finally {
      await a.stop();
      await b.stop();
      await redis.stop();
    }
  });
