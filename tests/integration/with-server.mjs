// Runs a command against a server started like the node tests do (siolua, or the reference with
// SIOLUA_REF=1), then stops the server. "{url}" in the command is replaced with the server's URL.
//   node with-server.mjs APP [server flags...] -- CMD [ARGS...]
// Exits with the command's status; prints the server log when the command failed.
import { spawn } from "node:child_process";
import { startServer } from "./helpers.mjs";

const argv = process.argv.slice(2);
const sep = argv.indexOf("--");
if (sep < 1 || sep === argv.length - 1) {
  console.error("usage: node with-server.mjs APP [server flags...] -- CMD [ARGS...]");
  process.exit(2);
}
const [app, ...flags] = argv.slice(0, sep);
const [cmd, ...args] = argv.slice(sep + 1);

const srv = await startServer(app, flags);
const child = spawn(cmd, args.map((a) => a.replaceAll("{url}", srv.url)), { stdio: "inherit" });
const status = await new Promise((resolve) => {
  child.on("error", (e) => { console.error(`with-server: ${cmd}: ${e.message}`); resolve(127); });
  child.on("exit", (code, signal) => resolve(code ?? (signal ? 128 : 1)));
});
let stopError = null;
try {
  await srv.stop();
} catch (e) {
  stopError = e; // its message carries the server log
}
if (stopError) console.error(`with-server: ${stopError.message}`);
else if (status !== 0) console.error("---- server log ----\n" + srv.log());
process.exit(status || (stopError ? 1 : 0));
