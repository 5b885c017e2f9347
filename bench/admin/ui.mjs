// bench/admin's Admin UI stand-in: connects to the admin namespace of URL (no auth) and counts
// what it receives until SIGTERM, then prints the count (the server's notifications are sent to a
// UI that reads them, as a real one would).
//   node bench/admin/ui.mjs URL
import { io } from "socket.io-client";

const ui = io(process.argv[2] + "/admin", { transports: ["websocket"], forceNew: true, reconnection: false });
let events = 0;
ui.onAny(() => events++);
ui.on("connect", () => console.log("ui connected"));
ui.on("connect_error", (e) => {
  console.error("ui: " + e.message);
  process.exit(1);
});
process.on("SIGTERM", () => {
  console.log(`ui events ${events}`);
  process.exit(0);
});
