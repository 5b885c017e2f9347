// HTTPS and WSS on siolua's own port (--tls-cert/--tls-key), with a test CA made by the openssl
// CLI (tls.helpers.mjs) that the clients trust explicitly: npm socket.io-client (`ca`) and Debian's
// python-socketio (a requests session whose `verify` is the CA). The chat example keeps working
// across a certificate rotation (SIGHUP): open connections stay, new ones get the new certificate,
// and files that cannot be used leave the loaded one in place. With SIOLUA_REF=1 the same tests
// run against the Node reference on https.createServer (setSecureContext on SIGHUP), except those
// of siolua's own flags and log lines.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import net from "node:net";
import tls from "node:tls";
import path from "node:path";
import { startServer, connect, request, closeAll, once, withTimeout, REF, ROOT, APPS } from "./helpers.mjs";
import { makePki, serialOf } from "./tls.helpers.mjs";

let pki, main, chat;

before(async () => {
  pki = makePki(["one", "two"]);
  const flags = ["--tls-cert", pki.cert, "--tls-key", pki.key];
  [main, chat] = await Promise.all([startServer("main", flags), startServer("examples/chat/app.lua", flags)]);
});
after(async () => {
  closeAll();
  await Promise.all([main?.stop(), chat?.stop()]);
  pki?.cleanup();
});

/** What a new TLS connection to port is given: certificate serial, ALPN, protocol version. */
function handshake(port, opts = {}) {
  return withTimeout(
    new Promise((resolve, reject) => {
      const s = tls.connect({ host: "127.0.0.1", port, ca: pki.caPem, ALPNProtocols: ["http/1.1"], ...opts }, () => {
        const got = { serial: serialOf(s.getPeerX509Certificate().raw), alpn: s.alpnProtocol, version: s.getProtocol() };
        s.end();
        resolve(got);
      });
      s.on("error", reject);
    }),
    10000,
    "a TLS handshake",
  );
}

/** Sends bytes on a plain TCP connection; resolves to what came back once the server closed it. */
function rawExchange(port, bytes) {
  return withTimeout(
    new Promise((resolve, reject) => {
      const got = [];
      const s = net.connect(port, "127.0.0.1", () => s.write(bytes));
      s.on("data", (d) => got.push(d));
      s.on("close", () => resolve(Buffer.concat(got)));
      s.on("error", (e) => (e.code === "ECONNRESET" ? resolve(Buffer.concat(got)) : reject(e)));
    }),
    15000,
    "the server to close a raw connection",
  );
}

/** Waits for the nth occurrence of re in the server's log. */
const nthLog = (srv, re, n, ms = 10000) => srv.waitLog(new RegExp(`(?:[\\s\\S]*?${re.source}){${n}}`), ms);

test("every transport over TLS: handshake.secure, 300 KB messages, binary (checked against the test CA)", async () => {
  const big = "é".repeat(150000); // 300 KB of UTF-8: many TLS records each way
  const bin = Buffer.alloc(70000, 7);
  for (const transports of [["websocket"], ["polling"], ["polling", "websocket"]]) {
    const s = await connect(main.url, { ca: pki.caPem, transports });
    if (transports.length === 2 && s.io.engine.transport.name !== "websocket") await once(s.io.engine, "upgrade", 10000);
    const [me] = await request(s, "whoami");
    assert.equal(me.secure, true, transports.join(","));
    const [back] = await request(s, "echo", big);
    assert.equal(back, big);
    const [b] = await request(s, "echo", bin);
    assert.ok(Buffer.from(b).equals(bin));
    s.disconnect();
  }
});

test("TLS 1.3 by default, TLS 1.2 accepted, ALPN http/1.1; a client that does not trust the CA is refused", async () => {
  assert.deepEqual(await handshake(main.port), { serial: pki.leaf("one").serial, alpn: "http/1.1", version: "TLSv1.3" });
  assert.equal((await handshake(main.port, { maxVersion: "TLSv1.2" })).version, "TLSv1.2");
  assert.equal((await handshake(main.port, { ALPNProtocols: undefined })).alpn, false);
  await assert.rejects(handshake(main.port, { ca: undefined }), /unable to verify the first certificate/);
  await assert.rejects(connect(main.url, { transports: ["websocket"] }), /websocket error/);
  await assert.rejects(connect(main.url, { transports: ["polling"] }), /xhr poll error/);
  // and the server goes on serving
  const s = await connect(main.url, { ca: pki.caPem, transports: ["websocket"] });
  s.disconnect();
});

test("plain HTTP on the TLS port: closed without an answer; the TLS clients are not disturbed", async () => {
  const s = await connect(main.url, { ca: pki.caPem, transports: ["websocket"] });
  const got = await rawExchange(main.port, "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n");
  assert.equal(got.length, 0, `answered: ${JSON.stringify(got.toString("latin1"))}`);
  if (!REF) await main.waitLog(/tls: 127\.0\.0\.1: handshake failed: plain HTTP request/);
  const [back] = await request(s, "echo", "still here");
  assert.equal(back, "still here");
  s.disconnect();
});

/** Debian's python-socketio clients, driven through tls_chat.py's line protocol. */
function pythonChat(url) {
  const proc = spawn("/usr/bin/python3", [path.join(ROOT, "tests/integration/tls_chat.py"), url, pki.ca], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  const lines = [];
  const waiters = new Set();
  let rest = "";
  proc.stdout.on("data", (d) => {
    rest += d.toString();
    let i;
    while ((i = rest.indexOf("\n")) >= 0) {
      lines.push(JSON.parse(rest.slice(0, i)));
      rest = rest.slice(i + 1);
    }
    for (const w of waiters) w();
  });
  const until = (pred, what, ms = 15000) =>
    withTimeout(
      new Promise((resolve) => {
        const check = () => {
          const hit = lines.find(pred);
          if (hit) {
            waiters.delete(check);
            resolve(hit);
          }
        };
        waiters.add(check);
        check();
      }),
      ms,
      `python: ${what}; got ${JSON.stringify(lines)}`,
    );
  return {
    lines,
    async connect(name, transport, noca = false) {
      proc.stdin.write(`connect ${name} ${transport}${noca ? " noca" : ""}\n`);
      return until((l) => l.connected === name || l.error === name, `connect ${name}`);
    },
    async send(name, text) {
      proc.stdin.write(`send ${name} ${text}\n`);
      await until((l) => l.sent === name && !l.done && (l.done = true), `send by ${name}`);
    },
    received: (name, text) => until((l) => l.to === name && l.message === text, `${name} to receive ${text}`),
    async quit() {
      proc.stdin.end("quit\n");
      await new Promise((r) => (proc.exitCode !== null ? r() : proc.on("exit", r)));
    },
  };
}

test("the chat example across a certificate rotation: Node and Python clients, WebSocket and polling", async () => {
  const py = pythonChat(chat.url);
  try {
    const opts = (transports) => ({ ca: pki.caPem, transports });
    const node = { A: await connect(chat.url, opts(["websocket"])), B: await connect(chat.url, opts(["polling"])) };
    assert.deepEqual(await py.connect("P", "websocket"), { connected: "P", transport: "websocket" });
    assert.deepEqual(await py.connect("Q", "polling"), { connected: "Q", transport: "polling" });
    const dropped = [];
    for (const [name, s] of Object.entries(node)) s.on("disconnect", (r) => dropped.push(`${name}: ${r}`));
    const inbox = (s) => (text) => once(s, "message", 10000).then(([m]) => assert.equal(m, text));

    // one chat round: `from` says text, everyone else hears it
    const round = async (from, text) => {
      const waits = [];
      for (const [name, s] of Object.entries(node)) if (name !== from) waits.push(inbox(s)(text));
      for (const name of ["P", "Q", "R"]) {
        if (name !== from && py.lines.some((l) => l.connected === name)) waits.push(py.received(name, text));
      }
      if (node[from]) node[from].emit("message", text);
      else await py.send(from, text);
      await Promise.all(waits);
    };

    await round("A", "before, from node over websocket");
    await round("Q", "before, from python over polling");
    assert.equal((await handshake(chat.port)).serial, pki.leaf("one").serial);

    pki.rotate("two");
    chat.proc.kill("SIGHUP");
    await nthLog(chat, /tls: certificate reloaded/, 1);
    assert.equal((await handshake(chat.port)).serial, pki.leaf("two").serial);
    // the open connections go on with the certificate they started with
    await round("B", "after, from node over polling");
    await round("P", "after, from python over websocket");
    // and new clients, of either kind, verify the new one against the same CA
    node.C = await connect(chat.url, opts(["websocket"]));
    assert.deepEqual(await py.connect("R", "polling"), { connected: "R", transport: "polling" });
    await round("C", "from a client that came after the rotation");
    await round("R", "from python, after the rotation");

    // files that cannot be used: logged, and the loaded certificate stays
    writeFileSync(pki.cert, "not a certificate\n");
    chat.proc.kill("SIGHUP");
    await nthLog(chat, /the loaded certificate stays in use/, 1);
    assert.equal((await handshake(chat.port)).serial, pki.leaf("two").serial);
    await round("A", "after a failed rotation");

    // without the CA, python is refused too (its certificate check is real)
    const refused = await py.connect("X", "websocket", true);
    assert.equal(refused.error, "X");
    assert.deepEqual(dropped, []);
    assert.deepEqual(py.lines.filter((l) => l.disconnect), []);
  } finally {
    await py.quit();
    pki.rotate("two"); // for the tests after this one
  }
});

test("a handshake that does not complete within the header timeout is closed", { skip: REF && "siolua's flag" }, async () => {
  const srv = await startServer("main", ["--tls-cert", pki.cert, "--tls-key", pki.key, "--header-timeout", "300"]);
  try {
    // a ClientHello's first bytes, then silence
    const got = await rawExchange(srv.port, Buffer.from("160301020001000001fc0303", "hex"));
    assert.equal(got.length, 0);
    await srv.waitLog(/tls: 127\.0\.0\.1: handshake failed: handshake not complete in time/);
    // a real client in time is served
    const s = await connect(srv.url, { ca: pki.caPem, transports: ["websocket"] });
    s.disconnect();
  } finally {
    await srv.stop();
  }
});

test("io.options{ tls = { cert, key } }, and the errors of a bad TLS set-up", { skip: REF && "siolua's options" }, async () => {
  process.env.SIOLUA_TEST_CERT = pki.leaf("one").cert;
  process.env.SIOLUA_TEST_KEY = pki.leaf("one").key;
  const app = path.join(pki.dir, "tls_app.lua");
  writeFileSync(app, 'io.options{ tls = { cert = os.getenv("SIOLUA_TEST_CERT"), key = os.getenv("SIOLUA_TEST_KEY") } }\n' +
    'io.on("connection", function(s) s.on("hi", function(ack) ack(s.handshake.secure) end) end)\n');
  const srv = await startServer(app);
  try {
    assert.match(srv.url, /^https:/);
    const s = await connect(srv.url, { ca: pki.caPem, transports: ["websocket"] });
    assert.deepEqual(await request(s, "hi"), [true]);
    s.disconnect();
  } finally {
    await srv.stop();
  }
  // a certificate without its key, a missing file, a key of another certificate: exit 1, said why
  const fails = async (args, re) => {
    const bad = await startServer("main", args).then(
      (x) => { x.proc.kill("SIGKILL"); return null; },
      (e) => e.message,
    );
    assert.match(bad ?? "it started", re);
    assert.match(bad, /server exited \(\{"code":1,/);
  };
  await fails(["--tls-cert", pki.cert], /a certificate needs its key/);
  await fails(["--tls-cert", path.join(pki.dir, "nope.pem"), "--tls-key", pki.key], /cannot read the certificate chain from .*nope\.pem/);
  await fails(["--tls-cert", pki.leaf("one").cert, "--tls-key", pki.leaf("two").key], /does not match the certificate/);
});
