-- bench/hio: a handler doing one Redis GET per event (siolua.redis), and an echo for bystanders.
local r = siolua.redis(os.getenv("BENCH_REDIS"), { timeout = 30000 })
io.on("connection", function(socket)
  socket.on("echo", function(x, ack) ack(x) end)
  socket.on("get", function(k, ack) ack(r:call("GET", k)) end)
end)
