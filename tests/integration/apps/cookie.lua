-- The reference's `cookie` option (sticky sessions behind a load balancer).
io.options{ cookie = { name = "sticky", maxAge = 60000, sameSite = "strict" } }
io.on("connection", function(socket)
  socket.on("ping", function(ack) ack("pong") end)
end)
