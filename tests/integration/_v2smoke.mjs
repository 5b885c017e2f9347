import { spawn } from "node:child_process";
import ioc from "socket.io-client-v2";
const bin = process.env.BIN || "./siolua";
const args = bin === "ref" ? ["tests/integration/ref/server.mjs", "tests/integration/apps/main.lua"] : ["tests/integration/apps/main.lua"];
const srv = spawn(bin === "ref" ? "node" : bin, [...args, "--port", "0", "--allow-eio3", ...(process.argv.slice(2))], { stdio: ["ignore", "inherit", "pipe"] });
let url;
srv.stderr.on("data", (d) => { process.stderr.write(d); const m = /listening on (\S+)/.exec(d); if (m && !url) { url = m[1]; go(); } });
function go() {
  for (const transports of [["polling"], ["websocket"], ["polling", "websocket"]]) {
    const s = ioc(url, { transports, forceNew: true });
    s.on("connect", () => {
      console.log(transports, "connected", s.id);
      s.emit("echo", "hi", Buffer.from([1,2,3]), { a: [Buffer.from("x")] }, (...r) => {
        console.log(transports, "echo", JSON.stringify(r));
        s.emit("whoami", (w) => { console.log(transports, "whoami", w.id, JSON.stringify(w.auth)); s.close(); if (++done === 3) srv.kill(); });
      });
    });
    s.on("error", (e) => console.log("error", e));
  }
}
let done = 0;
setTimeout(() => { console.log("TIMEOUT"); srv.kill(); process.exit(1); }, 8000).unref();
