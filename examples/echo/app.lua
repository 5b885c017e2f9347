-- An Engine.IO echo server (the transport layer alone, like Node's `engine.io` package): every
-- message goes back as it came, text as text and binary as binary.
--   ./siolua examples/echo/app.lua --port 3000
-- Connect an engine.io-client to http://127.0.0.1:3000 with path "/engine.io/".
local engine = siolua.engine({ path = "/engine.io/" })

engine.on("connection", function(conn)
  print("echo: " .. conn.id .. " connected over " .. conn.transport.name)
  conn.on("message", function(data) conn.send(data) end)
  conn.on("close", function(reason) print("echo: " .. conn.id .. " closed: " .. reason) end)
end)
