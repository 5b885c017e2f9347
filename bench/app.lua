-- The benchmark's siolua app (bench/run.sh). Its Node twin is bench/node/server.js: keep them equal.
--   echo            acks its argument back
--   join(room)      acked; joins the room when BENCH_ROOMS=1 (siolua has no rooms yet: socket.join)
--   bcast(room, p)  sends "bcast" p to the room (BENCH_ROOMS=1) or to everyone but the sender
--   disconnect      a no-op listener, as a real app has one
-- BENCH_RECOVERY=1 turns connection state recovery on.
local rooms = os.getenv("BENCH_ROOMS") == "1"
if os.getenv("BENCH_RECOVERY") == "1" then -- connection state recovery on (bench/callgrind.sh's "on" figures)
  io.options{ connectionStateRecovery = true }
end

io.on("connection", function(socket)
  socket.on("echo", function(x, ack) ack(x) end)
  socket.on("join", function(room, ack)
    if rooms then socket.join(room) end
    if ack then ack() end
  end)
  socket.on("bcast", function(room, payload)
    if rooms then
      socket.to(room).emit("bcast", payload)
    else
      socket.broadcast.emit("bcast", payload)
    end
  end)
  socket.on("disconnect", function() end)
end)
