-- Connection state recovery: the app of recovery.test.mjs (its Node twin is ref/apps.mjs
-- `recovery`). REC_DURATION (maxDisconnectionDuration, ms) and REC_SKIP_MW=0 (skipMiddlewares
-- false) come from the environment; the test drives the emits of a scenario through "send".
local env = os.getenv
io.options{
  connectionStateRecovery = {
    maxDisconnectionDuration = tonumber(env("REC_DURATION") or "") or 120000,
    skipMiddlewares = env("REC_SKIP_MW") ~= "0",
  },
}

local middleware_runs = 0
io.use(function(socket, next)
  middleware_runs = middleware_runs + 1
  next()
end)

local connected = {} -- id -> true
local nsp_b = io.of("/b") -- a second namespace: its packets are not replayed in "/"
nsp_b.on("connection", function(socket) socket.join("news") end)

io.on("connection", function(socket)
  connected[socket.id] = true
  if not socket.recovered then
    socket.join("news")
    socket.data.n = 7
  end

  -- What the socket is now: id, recovered, rooms (sorted), data, how many middleware runs so far.
  socket.on("state", function(ack)
    local rooms = {}
    for r in pairs(socket.rooms) do rooms[#rooms + 1] = r end
    table.sort(rooms)
    ack({ id = socket.id, recovered = socket.recovered, rooms = rooms, data = socket.data, mw = middleware_runs })
  end)
  socket.on("join", function(room, ack) socket.join(room) ack() end)
  socket.on("set", function(k, v, ack) socket.data[k] = v ack() end)
  socket.on("connected", function(id, ack) ack(connected[id] == true) end)

  -- send(target, event, args): one emit of a scenario. target: "all", "room:R", "except:R",
  -- "volatile:R", "nsp:/b", "ack:ID" (with an ack: not kept), or a socket id.
  socket.on("send", function(target, ev, args, ack)
    local kind, arg = target:match("^(%a+):(.*)$")
    local a = args or {}
    if target == "all" then
      io.emit(ev, table.unpack(a))
    elseif kind == "room" then
      io.to(arg).emit(ev, table.unpack(a))
    elseif kind == "except" then
      io.except(arg).emit(ev, table.unpack(a))
    elseif kind == "volatile" then
      io.volatile.to(arg).emit(ev, table.unpack(a))
    elseif kind == "nsp" then
      io.of(arg).emit(ev, table.unpack(a))
    elseif kind == "ack" then
      io.to(arg).timeout(50).emit(ev, table.unpack(a), function() end)
    else
      io.to(target).emit(ev, table.unpack(a))
    end
    ack()
  end)

  -- The socket's own emit (kept with an offset, as the reference's socket.emit).
  socket.on("self", function(ev, args, ack)
    socket.emit(ev, table.unpack(args or {}))
    ack()
  end)

  socket.on("disconnect", function() connected[socket.id] = nil end)
end)
