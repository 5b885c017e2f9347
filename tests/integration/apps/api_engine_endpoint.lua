-- Not implemented yet when written (tests/integration/api_engine_endpoint.test.mjs): io.engine,
-- the Engine.IO server under Socket.IO, as the reference's: "connection" with the raw session
-- (conn.id, conn.transport.name, events message/packet/upgrade/close), "connection_error" with
-- code and message, "initial_headers" and "headers" to add response headers. Its Node twin is
-- ref/api_apps.mjs `api_engine_endpoint`.
local conns, errors = siolua.array(), siolua.array()
local closes, upgrades, messages, packets = {}, {}, {}, {}

io.engine.on("connection", function(conn)
  conns[#conns + 1] = { id = conn.id, transport = conn.transport.name }
  messages[conn.id], packets[conn.id] = siolua.array(), {}
  conn.on("message", function(data) table.insert(messages[conn.id], data) end)
  conn.on("packet", function(packet) packets[conn.id][packet.type] = true end)
  conn.on("upgrade", function(transport) upgrades[conn.id] = transport.name end)
  conn.on("close", function(reason) closes[conn.id] = reason end)
end)
io.engine.on("connection_error", function(err)
  errors[#errors + 1] = { code = err.code, message = err.message }
end)
io.engine.on("initial_headers", function(headers, req) headers["x-initial"] = "yes" end)
io.engine.on("headers", function(headers, req) headers["x-every"] = "yes" end)

io.on("connection", function(socket)
  socket.on("hello", function() end)
  socket.on("engine", function(id, ack)
    ack({
      conns = conns,
      errors = errors,
      close = closes[id] or siolua.null,
      upgrade = upgrades[id] or siolua.null,
      messages = messages[id] or siolua.null,
      packets = packets[id] or siolua.null,
    })
  end)
end)
