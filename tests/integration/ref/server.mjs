// The Node socket.io reference with siolua's command line, for checking the integration tests:
//   node tests/integration/ref/server.mjs APP.lua [--port N] [--ping-interval MS] ...
// It runs the JS twin (ref/apps.mjs) of the Lua app named by APP.lua's basename, and prints
// "siolua listening on http://127.0.0.1:PORT" to stderr like siolua does.
import { createServer } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { readFile } from "node:fs/promises";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { Server } from "socket.io";
import { apps } from "./apps.mjs";

const argv = process.argv.slice(2);
const appFile = argv.shift();
const app = apps[path.basename(appFile, ".lua")];
if (!app) {
  console.error(`ref: no JS twin for ${appFile}`);
  process.exit(2);
}

const opts = { ...app.options };
let host = "127.0.0.1";
let port = 3000;
let staticDir = path.join(path.dirname(appFile), "public");
const origins = [];
let tlsCert = null;
let tlsKey = null;
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  const val = () => argv[++i];
  switch (a) {
    case "--host": host = val(); break;
    case "--port": port = Number(val()); break;
    case "--path": opts.path = val(); break;
    case "--static": staticDir = val(); break;
    case "--ping-interval": opts.pingInterval = Number(val()); break;
    case "--ping-timeout": opts.pingTimeout = Number(val()); break;
    case "--upgrade-timeout": opts.upgradeTimeout = Number(val()); break;
    case "--connect-timeout": opts.connectTimeout = Number(val()); break;
    case "--max-http-buffer-size": opts.maxHttpBufferSize = Number(val()); break;
    case "--transports": opts.transports = val().split(","); break;
    case "--no-upgrades": opts.allowUpgrades = false; break;
    case "--cors-origin": origins.push(val()); break;
    case "--cors-methods": opts.cors = { ...opts.cors, methods: val().split(",") }; break;
    case "--cors-credentials": opts.cors = { ...opts.cors, credentials: true }; break;
    case "--no-serve-client": opts.serveClient = false; break;
    case "--per-message-deflate":
      opts.perMessageDeflate = typeof opts.perMessageDeflate === "object" ? opts.perMessageDeflate : true;
      break;
    case "--no-http-compression": opts.httpCompression = false; break;
    case "--allow-eio3": opts.allowEIO3 = true; break;
    case "--parser": {
      const name = val();
      if (name === "msgpack") opts.parser = (await import("socket.io-msgpack-parser")).default;
      else if (name !== "default") { console.error(`ref: unknown parser ${name}`); process.exit(2); }
      break;
    }
    case "--log-level": val(); break;
    case "--tls-cert": tlsCert = val(); break;
    case "--tls-key": tlsKey = val(); break;
    default:
      console.error(`ref: unknown flag ${a}`);
      process.exit(2);
  }
}
if (origins.length) {
  opts.cors = { ...opts.cors, origin: origins.length === 1 ? origins[0] : origins };
}

const types = { ".html": "text/html; charset=utf-8", ".js": "application/javascript", ".css": "text/css" };
const tls = () => ({ cert: readFileSync(tlsCert), key: readFileSync(tlsKey) });
const serve = async (req, res) => {
  let p = decodeURIComponent(new URL(req.url, "http://x").pathname);
  if (p.endsWith("/")) p += "index.html";
  const file = path.join(staticDir, path.normalize(p));
  if (!file.startsWith(staticDir) || !existsSync(file)) {
    res.writeHead(404).end("Not Found");
    return;
  }
  const body = await readFile(file);
  res.writeHead(200, { "Content-Type": types[path.extname(file)] || "application/octet-stream" }).end(body);
};
const http = tlsCert ? createHttpsServer(tls(), serve) : createServer(serve);
// siolua re-reads the certificate on SIGHUP (the reference has setSecureContext for that)
process.on("SIGHUP", () => {
  if (!tlsCert) return;
  try {
    http.setSecureContext(tls());
    console.error("siolua: tls: certificate reloaded (SIGHUP)");
  } catch (e) {
    console.error(`siolua: tls: ${e.message}; the loaded certificate stays in use`);
  }
});

const io = new Server(http, opts);
app.setup(io);

http.listen(port, host, () => {
  console.error(`siolua listening on ${tlsCert ? "https" : "http"}://${host}:${http.address().port}`);
});

const stop = () => {
  io.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
