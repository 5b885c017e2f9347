-- The values test's app (tests/integration/values.test.mjs): what a client sends comes back from
-- an ack, a relay to the other sockets, socket.data and siolua.stash (kept across a hot reload).
-- Its Node twin is "values" in ref/apps.mjs.
io.on("connection", function(socket)
  socket.on("echo", function(...)
    local a = table.pack(...)
    a[a.n](table.unpack(a, 1, a.n - 1))
  end)
  socket.on("relay", function(...) socket.broadcast.emit("relayed", ...) end)
  socket.on("keep", function(k, v, ack)
    socket.data[k] = v
    siolua.stash[k] = v
    ack()
  end)
  socket.on("kept", function(k, ack) ack(socket.data[k], siolua.stash[k]) end)
  -- the server asks: the client's ack reply comes back to the server, which echoes it
  socket.on("ask", function(v, ack)
    socket.emit("question", v, function(reply) ack(reply) end)
  end)
end)
