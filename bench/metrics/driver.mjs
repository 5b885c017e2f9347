// bench/metrics' load: CLIENTS WebSocket clients send acked "echo"s to the server of pid PID
// (under callgrind). After a warm-up, callgrind's counters are zeroed (callgrind_control -z), then
// exactly MESSAGES echoes are sent (CLIENTS in flight), then the counters are dumped
// (callgrind_control -d): the dump holds what those messages cost the server, nothing else.
//   node bench/metrics/driver.mjs URL PID MESSAGES [CLIENTS]
import { execFileSync } from "node:child_process";
import { io } from "socket.io-client";

const [url, pid, total, nclients = "10"] = process.argv.slice(2);
const clients = await Promise.all(
  Array.from({ length: Number(nclients) }, () =>
    new Promise((resolve, reject) => {
      const s = io(url, { transports: ["websocket"], forceNew: true, reconnection: false });
      s.once("connect", () => resolve(s));
      s.once("connect_error", reject);
    }),
  ),
);
const payload = "x".repeat(32);
async function run(n) {
  let next = 0;
  await Promise.all(
    clients.map(async (s) => {
      while (next < n) {
        next++;
        await s.timeout(60000).emitWithAck("echo", payload);
      }
    }),
  );
}
await run(500); // warm-up: the handler compiled, buffers grown
execFileSync("callgrind_control", ["-z", pid], { stdio: "ignore" });
await run(Number(total));
execFileSync("callgrind_control", ["-d", "measured", pid], { stdio: "ignore" });
for (const s of clients) s.disconnect();
