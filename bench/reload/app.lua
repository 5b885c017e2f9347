-- The hot-reload benchmark's app (bench/reload/run.mjs): each socket has some state (socket.data,
-- a room) and listeners, as a real app's do; the "reload" listener tells every socket the new
-- generation, which is how the benchmark checks that every socket runs the new code (and is part of
-- the measured swap: io.emit to every socket).
local VERSION = 1

io.on("connection", function(socket)
  if not socket.reloaded then
    socket.data.joined = os.time()
    socket.data.prefs = { theme = "dark", tags = { "a", "b" } }
    socket.join("room-" .. (#socket.id % 16))
  end
  socket.on("version", function(ack) ack(VERSION) end)
  socket.on("echo", function(x, ack) ack(x) end)
  socket.on("disconnect", function() end)
end)

-- NOTIFY=0 (run.mjs passes it on) leaves the notification out, to time the swap alone.
if os.getenv("NOTIFY") ~= "0" then
  io.on("reload", function(generation) io.emit("reloaded", generation, VERSION) end)
end
