-- workers.test.mjs: --workers from the script (io.options{workers = 2}).
io.options{ workers = 2 }
io.on("connection", function(socket)
  socket.on("worker", function(ack) ack(tonumber((os.getenv("SIOLUA_WORKER_OF") or ""):match(":(%d+)$"))) end)
end)
