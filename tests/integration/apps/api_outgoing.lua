-- Not implemented yet when written (tests/integration/api_outgoing.test.mjs):
-- socket.conn.on("upgrade") and the outgoing catch-all listeners on broadcasts (the reference's
-- adapter calls notifyOutgoingListeners for every recipient of a broadcast). Its Node twin is
-- ref/api_apps.mjs `api_outgoing`.
io.on("connection", function(socket)
  socket.on("transport", function(ack) ack(socket.conn.transport.name) end)
  socket.conn.on("upgrade", function(transport)
    socket.emit("upgraded", transport.name, socket.conn.transport.name)
  end)

  local out = siolua.array()
  socket.onAnyOutgoing(function(ev) out[#out + 1] = ev end)
  socket.on("outgoing", function(ack) ack(out) end)
  socket.on("join", function(room, ack)
    socket.join(room)
    ack()
  end)
  socket.on("broadcasts", function(room, ack)
    io.emit("b-io")
    io.to(room).emit("b-room")
    socket.broadcast.emit("b-others")
    socket.to(room).emit("b-room-others")
    socket.emit("direct")
    ack()
  end)
end)
