-- Socket state for tests/integration/api_state.test.mjs: socket.data (set by a middleware, kept,
-- replaced, returned by fetchSockets), other fields, socket.handshake, socket.connected,
-- socket.conn.transport.name, and the reserved event names. Its Node twin is ref/api_apps.mjs
-- `api_state`.
io.use(function(socket, next)
  socket.data.fromMiddleware = (socket.handshake.auth or {}).user or "nobody"
  next()
end)

local RESERVED = { "connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener" }

-- states[id]: what the disconnect listener saw
local states = {}

io.on("connection", function(socket)
  socket.on("data", function(ack) ack(socket.data) end)
  socket.on("set-data", function(k, v, ack)
    socket.data[k] = v
    ack(socket.data)
  end)
  socket.on("replace-data", function(t, ack)
    socket.data = t
    ack(socket.data)
  end)
  socket.on("set-field", function(v, ack)
    socket.nickname = v
    ack(socket.nickname)
  end)
  socket.on("get-field", function(ack) ack(socket.nickname) end)
  socket.on("fetch-data", function(ack)
    local out = {}
    for _, s in ipairs(io.fetchSockets()) do out[s.id] = s.data end
    ack(out)
  end)

  socket.on("state", function(ack)
    local h = socket.handshake
    ack({
      connected = socket.connected,
      transport = socket.conn.transport.name,
      secure = h.secure,
      xdomain = h.xdomain,
      host = h.headers.host ~= nil,
      address = h.address,
      issued = math.type(h.issued),
      time = type(h.time),
      url = h.url:sub(1, 11),
      query = h.query.q,
      auth = h.auth,
    })
  end)

  -- for every reserved name: does each way of emitting it raise, and with which message?
  socket.on("reserved", function(ack)
    local out = {}
    for _, name in ipairs(RESERVED) do
      local r = {}
      local ok, err = pcall(socket.emit, name, 1)
      r.socket = not ok and string.find(tostring(err), '"' .. name .. '" is a reserved event name', 1, true) ~= nil
      r.io = not pcall(io.emit, name, 1)
      r.room = not pcall(function() io.to("r").emit(name, 1) end)
      r.broadcast = not pcall(function() socket.broadcast.emit(name, 1) end)
      r.nsp = not pcall(function() io.of("/").emit(name, 1) end)
      r.timeout = not pcall(function() socket.timeout(100).emit(name, 1, function() end) end)
      out[name] = r
    end
    -- an ordinary name does not raise, and the socket still works after all that
    out.ordinary = pcall(socket.emit, "ordinary", 1)
    ack(out)
  end)

  socket.on("disconnect", function(reason)
    states[socket.id] = { connected = socket.connected, reason = reason }
  end)
  socket.on("state-of", function(id, ack) ack(states[id] or siolua.null) end)
end)
