-- Rooms and broadcasting for tests/integration/api_rooms.test.mjs: join/leave/rooms, every
-- broadcast operator driven by the client (a list of steps applied to io, a namespace or the
-- socket, then emit), fetchSockets and its handles, socketsJoin/Leave, disconnectSockets, and the
-- disconnecting/disconnect sequence. Its Node twin is ref/api_apps.mjs `api_rooms`.

-- The socket's rooms, sorted, its own id shown as "<self>".
local function rooms_of(socket)
  local out = siolua.array()
  for room in pairs(socket.rooms) do out[#out + 1] = room == socket.id and "<self>" or room end
  table.sort(out)
  return out
end

-- What the tests see of a fetchSockets() handle.
local function describe(s)
  return { id = s.id, rooms = rooms_of(s), name = s.data.name, auth = (s.handshake.auth or {}).name }
end

local function fetch(room)
  local list = (room ~= nil and room ~= siolua.null) and io["in"](room).fetchSockets() or io.fetchSockets()
  local out = siolua.array()
  for i, s in ipairs(list) do out[i] = describe(s) end
  table.sort(out, function(a, b) return a.name < b.name end)
  return out
end

-- id -> what the disconnecting and disconnect listeners saw
local reports = {}

io.on("connection", function(socket)
  socket.data.name = (socket.handshake.auth or {}).name or "anonymous"

  socket.on("join", function(rooms, ack)
    socket.join(rooms)
    ack(rooms_of(socket))
  end)
  socket.on("leave", function(room, ack)
    socket.leave(room)
    ack(rooms_of(socket))
  end)
  socket.on("rooms", function(ack) ack(rooms_of(socket), socket.rooms[socket.id] == true) end)

  -- spec = { from = "io" | "socket" | namespace name, steps = { {"to", x}, {"except", x},
  -- {"broadcast"}, {"volatile"}, {"local"}, {"compress", false}, ... }, tag = "..." }: applies the
  -- steps to the origin, emits "hit" with the tag, then tells every socket of / "done".
  socket.on("bcast", function(spec)
    local target = spec.from == "socket" and socket or spec.from == "io" and io or io.of(spec.from)
    for _, step in ipairs(spec.steps) do
      local name, arg = step[1], step[2]
      if name == "broadcast" or name == "volatile" or name == "local" then
        target = target[name]
      else
        target = target[name](arg)
      end
    end
    target.emit("hit", spec.tag)
    io.emit("done", spec.tag)
  end)

  socket.on("fetch", function(room, ack) ack(fetch(room)) end)
  -- through the handles fetchSockets returns
  socket.on("fetch-emit", function(room, tag)
    for _, s in ipairs(io["in"](room).fetchSockets()) do s.emit("hit", tag .. ":" .. s.data.name) end
    io.emit("done", tag)
  end)
  socket.on("fetch-join", function(room, new, ack)
    for _, s in ipairs(io["in"](room).fetchSockets()) do s.join(new) end
    ack(fetch(new))
  end)
  socket.on("fetch-leave", function(room, old, ack)
    for _, s in ipairs(io["in"](room).fetchSockets()) do s.leave(old) end
    ack(fetch(old))
  end)
  socket.on("fetch-disconnect", function(room, ack)
    for _, s in ipairs(io["in"](room).fetchSockets()) do s.disconnect() end
    ack(fetch(room))
  end)

  socket.on("sockets-join", function(room, new, ack)
    if room ~= siolua.null then io["in"](room).socketsJoin(new) else io.socketsJoin(new) end
    ack(fetch(new))
  end)
  socket.on("sockets-leave", function(room, old, ack)
    if room ~= siolua.null then io["in"](room).socketsLeave(old) else io.socketsLeave(old) end
    ack(fetch(old))
  end)
  socket.on("disconnect-sockets", function(room, close)
    io["in"](room).disconnectSockets(close)
  end)

  socket.on("disconnecting", function(reason)
    reports[socket.id] = {
      seq = { "disconnecting" }, reason = reason, roomsDuring = rooms_of(socket), connectedDuring = socket.connected,
    }
  end)
  socket.on("disconnect", function(reason)
    local r = reports[socket.id] or { seq = {} }
    r.seq[#r.seq + 1] = "disconnect:" .. reason
    r.roomsAfter = rooms_of(socket)
    r.connectedAfter = socket.connected
    reports[socket.id] = r
    io.emit("gone", socket.id, reason)
  end)
  socket.on("report", function(id, ack) ack(reports[id] or siolua.null) end)
end)

io.of("/other").on("connection", function(socket)
  socket.on("join", function(rooms, ack)
    socket.join(rooms)
    ack(rooms_of(socket))
  end)
end)
