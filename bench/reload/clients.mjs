// One client process of the hot-reload benchmark (forked by run.mjs): opens `count` raw Socket.IO
// connections over WebSocket (the `ws` package: far lighter than socket.io-client at 10k), answers
// pings, counts the "reloaded" events per generation and the closes, and reports to its parent.
//   message in:  { url, count, concurrency }   then "stats"
//   message out: { connected } once all connected (or failed), { stats: {...} } on request
import WebSocket from "ws";

let stats = { connected: 0, failed: 0, closed: 0, reloaded: {} };

function open(wsUrl) {
  return new Promise((resolve) => {
    const ws = new WebSocket(wsUrl, { perMessageDeflate: false });
    let done = false;
    const finish = (ok) => {
      if (done) return;
      done = true;
      if (ok) stats.connected++;
      else stats.failed++;
      resolve();
    };
    ws.on("message", (data) => {
      const m = data.toString();
      if (m[0] === "0") ws.send("40"); // Engine.IO open -> Socket.IO CONNECT to "/"
      else if (m === "2") ws.send("3"); // ping -> pong
      else if (m.startsWith("40")) finish(true);
      else if (m.startsWith('42["reloaded",')) {
        const gen = JSON.parse(m.slice(2))[1];
        stats.reloaded[gen] = (stats.reloaded[gen] || 0) + 1;
      }
    });
    ws.on("close", () => {
      if (done) stats.closed++;
      finish(false);
    });
    ws.on("error", () => finish(false));
  });
}

process.on("message", async (msg) => {
  if (msg === "stats") {
    process.send({ stats });
    return;
  }
  const wsUrl = msg.url.replace(/^http/, "ws") + "/socket.io/?EIO=4&transport=websocket";
  let next = 0;
  const worker = async () => {
    while (next < msg.count) {
      next++;
      await open(wsUrl);
    }
  };
  await Promise.all(Array.from({ length: msg.concurrency }, worker));
  process.send({ connected: stats.connected, failed: stats.failed });
});
process.on("disconnect", () => process.exit(0));
