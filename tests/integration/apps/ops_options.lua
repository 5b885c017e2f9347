-- ops_metrics.test.mjs: the operations options through io.options (the flags win over them).
io.options{ metrics = { path = "/internal/metrics" }, probes = false, drainDelay = 0 }
io.on("connection", function(socket)
  socket.on("echo", function(x, ack) ack(x) end)
end)
