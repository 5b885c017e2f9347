// nginx (Debian's nginx-light) in front of siolua servers, for sticky.test.mjs (two nodes, sticky
// by a client key, and round-robin as the control) and workers.test.mjs (one --workers server
// behind a proxy that reuses its upstream connections).
import { mkdtempSync, writeFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { watch } from "./helpers.mjs";
import { freePort } from "./redis.helpers.mjs";

export const NGINX = "/usr/sbin/nginx";

/**
 * nginx in front of siolua servers (their ports), with `upstreamLines` in the upstream block
 * ("hash ... consistent;", or "" for round-robin); with `keepalive`, nginx keeps up to that many
 * idle connections to the upstream and reuses them for any client's requests (a proxy that reuses
 * its upstream connections), WebSocket upgrades still passed through. Resolves to { url, stop() }.
 */
export async function startNginx(upstreamLines, ports, { keepalive = 0 } = {}) {
  const dir = mkdtempSync(path.join(os.tmpdir(), "siolua-nginx-"));
  const port = await freePort();
  writeFileSync(path.join(dir, "nginx.conf"), `
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
worker_processes 1;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  map $http_upgrade $connection_upgrade { default upgrade; "" "${keepalive ? "" : "upgrade"}"; }
  upstream siolua {
    ${upstreamLines}
    ${keepalive ? `keepalive ${keepalive};` : ""}
    ${ports.map((p) => `server 127.0.0.1:${p};`).join("\n    ")}
  }
  server {
    listen 127.0.0.1:${port};
    location /socket.io/ {
      proxy_pass http://siolua;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header Host $host;
    }
  }
}
`);
  const p = watch(NGINX, ["-p", dir, "-c", path.join(dir, "nginx.conf")], { what: "nginx" });
  // ready once it accepts connections
  const t0 = Date.now();
  for (;;) {
    try {
      await fetch(`http://127.0.0.1:${port}/socket.io/?EIO=4&transport=polling`);
      break;
    } catch {
      if (p.exited() || Date.now() - t0 > 15000) throw new Error(`nginx did not start: ${p.log()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return {
    url: `http://127.0.0.1:${port}`,
    async stop() {
      await p.stop(); // SIGTERM: nginx's fast shutdown, status 0
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
