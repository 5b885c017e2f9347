-- The Socket.IO tutorial's chat server, in Lua. Run it with:
--   ./siolua examples/chat/app.lua --port 3000
-- then open http://localhost:3000 in two browser windows (public/ is served at /).

-- Only needed when the page is served from another origin than the server:
-- io.options{ cors = { origin = "http://localhost:3000", methods = { "GET", "POST" } } }

io.on("connection", function(socket)
  print("user connected: " .. socket.id)
  socket.on("message", function(data)
    print("message received:", data)
    socket.broadcast.emit("message", data)     -- everyone but the sender
  end)
  socket.on("disconnect", function(reason)
    print("user disconnected: " .. socket.id, reason)
  end)
end)
