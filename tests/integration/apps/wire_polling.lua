-- App of tests/integration/wire_polling.test.mjs (issue 11, the reference's wire behaviours): an
-- Engine.IO-only echo (binary stays binary) for the base64 decoding of polling bodies, and a
-- Socket.IO event that acks the binary it got. Its Node twin is ref/wire_apps.mjs `wire_polling`.
local engine = siolua.engine({ path = "/engine.io/" })
engine.on("connection", function(conn)
  conn.on("message", function(data) conn.send(data) end)
end)

io.on("connection", function(socket)
  socket.on("bin", function(data, ack) ack(data, #data) end)
end)
