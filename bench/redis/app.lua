-- bench/redis: the siolua node of the cross-node broadcast benchmark (its Node twin: server.js).
--   bcast(payload)  socket.broadcast.emit("bcast", payload): this node's other clients, and through
--                   Redis every other node's clients
io.on("connection", function(socket)
  socket.on("bcast", function(payload) socket.broadcast.emit("bcast", payload) end)
end)
