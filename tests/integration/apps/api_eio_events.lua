-- Not implemented yet when written (tests/integration/api_eio_events.test.mjs): an Engine.IO-only
-- endpoint on its own path beside Socket.IO, like the reference's standalone engine.io package
-- (`attach(httpServer, { path: "/engine.io/" })`): an echo server where binary stays binary.
-- In Lua: siolua.engine{ path = ... } (the server is implicit). Its Node twin is ref/api_apps.mjs
-- `api_eio_events`.
local engine = siolua.engine({ path = "/engine.io/" })

engine.on("connection", function(conn)
  conn.send("welcome " .. conn.transport.name)
  conn.on("message", function(data)
    if data == "close-me" then
      conn.close()
    else
      conn.send(data) -- text as text, binary as binary
    end
  end)
  conn.on("upgrade", function(transport) conn.send("upgraded " .. transport.name) end)
  conn.on("close", function(reason) print("eio close " .. conn.id .. " " .. reason) end)
end)

-- Socket.IO keeps working on its own path
io.on("connection", function(socket)
  socket.on("echo", function(v, ack) ack(v) end)
end)
