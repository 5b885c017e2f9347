-- Middlewares for tests/integration/api_middleware.test.mjs: io.use (sync and async, refusals with
-- a message and data), nsp.use, socket.use per incoming packet, onAny/prependAny/offAny and the
-- outgoing catch-all listeners. Its Node twin is ref/api_apps.mjs `api_middleware`.
local connections = 0

-- main namespace: a synchronous middleware, then one that answers from a timer
io.use(function(socket, next)
  local auth = socket.handshake.auth or {}
  if auth.refuse == "table" then
    return next({ message = "not authorized", data = { content = "retry later" } })
  elseif auth.refuse == "string" then
    return next("plain refusal")
  end
  socket.data.trail = { "sync" }
  next()
end)
io.use(function(socket, next)
  local auth = socket.handshake.auth or {}
  setTimeout(function()
    if auth.refuse == "async" then
      next({ message = "refused later", data = { from = "timer" } })
    else
      table.insert(socket.data.trail, "async")
      next()
    end
  end, 5)
end)

io.on("connection", function(socket)
  connections = connections + 1
  table.insert(socket.data.trail, "connection")
  socket.on("trail", function(ack) ack(socket.data.trail) end)
  socket.on("connections", function(ack) ack(connections) end)
end)

-- /admin: its own middleware (io.use does not apply to it)
local admin = io.of("/admin")
admin.use(function(socket, next)
  if (socket.handshake.auth or {}).token == "secret" then
    next()
  else
    next({ message = "admin only", data = { need = "token" } })
  end
end)
admin.on("connection", function(socket)
  socket.on("trail", function(ack) ack(socket.data.trail or "none") end)
end)

-- /packets: socket.use on every incoming packet ({event, args..., ack})
io.of("/packets").on("connection", function(socket)
  socket.use(function(packet, next)
    if packet[1] == "forbidden" then
      return next({ message = "forbidden event", data = { event = packet[1] } })
    elseif packet[1] == "forbidden-string" then
      return next("refused by string")
    elseif packet[1] == "rewrite" then
      packet[2] = "rewritten by middleware"
    end
    next()
  end)
  -- a second middleware that continues later
  socket.use(function(packet, next)
    setTimeout(function() next() end, 2)
  end)
  socket.on("error", function(err)
    if type(err) == "table" then
      socket.emit("mw-error", err.message, err.data or siolua.null)
    else
      socket.emit("mw-error", tostring(err), siolua.null)
    end
  end)
  socket.on("forbidden", function() socket.emit("leaked", "forbidden") end)
  socket.on("forbidden-string", function() socket.emit("leaked", "forbidden-string") end)
  socket.on("rewrite", function(v, ack) ack(v) end)
  socket.on("echo", function(v, ack) ack(v) end)
end)

-- /any: catch-all listeners, incoming and outgoing
io.of("/any").on("connection", function(socket)
  local log, out = siolua.array(), siolua.array()
  -- how a listener shows an argument: an ack function as "ack", no argument as "none"
  local function show(a)
    if type(a) == "function" then return "ack" elseif a == nil then return "none" end
    return tostring(a)
  end
  local function any1(ev) log[#log + 1] = "any1:" .. ev end
  local function out1(ev) out[#out + 1] = "out1:" .. ev end
  socket.onAny(any1)
  socket.onAny(function(ev, a) log[#log + 1] = "any2:" .. ev .. ":" .. show(a) end)
  socket.prependAny(function(ev) log[#log + 1] = "pre:" .. ev end)
  socket.onAnyOutgoing(out1)
  socket.prependAnyOutgoing(function(ev, a) out[#out + 1] = "pre:" .. ev .. ":" .. show(a) end)

  socket.on("log", function(ack) ack(log, #socket.listenersAny()) end)
  socket.on("off-any1", function(ack)
    socket.offAny(any1)
    ack(#socket.listenersAny())
  end)
  socket.on("off-any", function(ack)
    socket.offAny()
    ack(#socket.listenersAny())
  end)
  socket.on("send-two", function(ack)
    socket.emit("one", 1)
    socket.emit("two", 2)
    ack(out, #socket.listenersAnyOutgoing())
  end)
  socket.on("off-out1", function(ack)
    socket.offAnyOutgoing(out1)
    socket.emit("three", 3)
    ack(out, #socket.listenersAnyOutgoing())
  end)
  socket.on("off-out", function(ack)
    socket.offAnyOutgoing()
    socket.emit("four", 4)
    ack(out, #socket.listenersAnyOutgoing())
  end)
end)
