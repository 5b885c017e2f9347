-- The recovery benchmark's app (bench/recovery/run.mjs): connection state recovery on or off
-- (BENCH_RECOVERY=1), no byte bound and an hour to come back (the benchmark measures what is kept,
-- on a machine that may be slow). "blast"(n, mode) emits n
-- events: to every socket (mode "all": io.emit, one packet kept per emit whatever the number of
-- sessions) or to each of the first `limit` sockets that connected, by its id (mode "each": one packet
-- kept per socket and emit); then acks.
if os.getenv("BENCH_RECOVERY") == "1" then
  io.options{ connectionStateRecovery = { maxBytes = 0, maxDisconnectionDuration = 3600000 } }
end

local ids = {}
io.on("connection", function(socket)
  ids[#ids + 1] = socket.id
  socket.on("blast", function(n, mode, limit, ack)
    for i = 1, n do
      if mode == "all" then
        io.emit("b", i)
      else
        for k = 1, math.min(limit, #ids) do io.to(ids[k]).emit("d", i) end
      end
    end
    ack(#ids)
  end)
end)
