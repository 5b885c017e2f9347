-- The Redis adapter tests' app (tests/integration/redis*.test.mjs). Its Node twin, run on the
-- Node socket.io server with @socket.io/redis-adapter, is tests/integration/redis_peer.mjs: both
-- answer the same events, so a test can drive either kind of node the same way.
-- The URL comes from --redis, or from SIOLUA_TEST_REDIS through io.options (both are tested);
-- SIOLUA_TEST_SPECIFIC=1 turns publishOnSpecificResponseChannel on. Without either it runs in
-- memory, or over the workers' channel under --workers.
io.options{ adapter = { redis = os.getenv("SIOLUA_TEST_REDIS"), requestsTimeout = 1500,
  publishOnSpecificResponseChannel = os.getenv("SIOLUA_TEST_SPECIFIC") == "1" } }

-- under --workers (workers.test.mjs) each worker is a server of its own: "a", "b"... by its number
local worker = tonumber((os.getenv("SIOLUA_WORKER_OF") or ""):match(":(%d+)$"))
local NAME = os.getenv("SIOLUA_NODE_NAME") or (worker and string.char(97 + worker)) or "siolua"

local function describe(list)
  local out = siolua.array()
  for _, s in ipairs(list) do
    local rooms = siolua.array()
    for r in pairs(s.rooms) do rooms[#rooms + 1] = r end
    table.sort(rooms)
    out[#out + 1] = { id = s.id, remote = s.remote == true, rooms = rooms, name = s.data.name or siolua.null }
  end
  return out
end

local function target(room)
  if room == nil or room == siolua.null then return io end
  return io.to(room)
end

io.on("connection", function(socket)
  socket.data.name = socket.handshake.auth.name
  socket.on("join", function(room, ack) socket.join(room); ack(true) end)
  socket.on("whoami", function(ack) ack({ node = NAME }) end) -- which node holds this session (sticky.test.mjs)
  socket.on("leave", function(room, ack) socket.leave(room); ack(true) end)
  socket.on("rooms", function(ack)
    local rooms = siolua.array()
    for r in pairs(socket.rooms) do rooms[#rooms + 1] = r end
    table.sort(rooms)
    ack(rooms)
  end)
  socket.on("bcast", function(...) io.emit("msg", ...) end)
  socket.on("room", function(room, ...) io.to(room).emit("msg", ...) end)
  socket.on("rooms2", function(a, b, ...) io.to(a).to(b).emit("msg", ...) end)
  socket.on("except", function(room, ...) io.except(room).emit("msg", ...) end)
  socket.on("broadcast", function(...) socket.broadcast.emit("msg", ...) end)
  socket.on("local", function(...) io["local"].emit("msg", ...) end)
  socket.on("volatile", function(...) io.volatile.emit("msg", ...) end)
  socket.on("fetch", function(room, ack) ack(describe(target(room).fetchSockets())) end)
  -- fetchSockets' error, if it raises one (a node that does not answer in requestsTimeout)
  socket.on("fetch-pcall", function(ack)
    local ok, res = pcall(io.fetchSockets)
    ack(ok, ok and #res or tostring(res))
  end)
  socket.on("count", function(ack) ack(io.serverCount()) end)
  socket.on("sse", function(x, ack)
    io.serverSideEmit("ping", x, function(err, responses)
      table.sort(responses)
      ack(err and tostring(err) or siolua.null, responses)
    end)
  end)
  socket.on("ssewithack", function(x, ack)
    local ok, res = pcall(io.serverSideEmitWithAck, "ping", x)
    if ok then table.sort(res) end
    ack(ok and siolua.null or tostring(res), ok and res or siolua.null)
  end)
  socket.on("note", function(x) io.serverSideEmit("note", x) end)
  socket.on("socketsJoin", function(room, new, ack) target(room).socketsJoin(new); ack(true) end)
  socket.on("socketsLeave", function(room, old, ack) target(room).socketsLeave(old); ack(true) end)
  socket.on("disconnectSockets", function(room, ack) ack(true); target(room).disconnectSockets(true) end)
  socket.on("ackall", function(room, ack)
    target(room).timeout(1000).emit("question", function(err, replies)
      table.sort(replies)
      ack(err and tostring(err) or siolua.null, replies)
    end)
  end)
  socket.on("remoteEmit", function(id, ack)
    for _, s in ipairs(io.fetchSockets()) do
      if s.id == id then
        s.emit("msg", "direct from " .. NAME)
        s.join("picked")
        return ack(true)
      end
    end
    ack(false)
  end)
  -- the same with the Lua spelling of the (remote) socket's methods
  socket.on("remoteEmitColon", function(id, ack)
    for _, s in ipairs(io.fetchSockets()) do
      if s.id == id then
        s:emit("msg", "direct from " .. NAME)
        s:join("picked-colon")
        s:leave("picked")
        return ack(true)
      end
    end
    ack(false)
  end)
end)

-- serverSideEmit from other nodes
io.on("ping", function(x, cb) if cb then cb("pong-" .. tostring(x) .. "-" .. NAME) end end)
io.on("note", function(x) io["local"].emit("noted", x, NAME) end)

-- A second namespace: its own channels (socket.io#/admin#...), as the Node adapter has one per namespace.
local admin = io.of("/admin")
admin.on("connection", function(socket)
  socket.on("bcast", function(...) admin.emit("amsg", ...) end)
  socket.on("count", function(ack) ack(admin.serverCount()) end)
end)
