-- The tutorial's diagram, server -> namespaces "/" and "/admin" -> rooms -> users:
--   ./siolua examples/rooms/app.lua --port 3000   then open http://localhost:3000
-- Users pick a name and a room and chat in it; "/admin" (token "letmein") sees every room's
-- activity and can send an announcement to one room or to everyone.

local admin = io.of("/admin")

-- Only clients that bring the admin token may join /admin (connect_error otherwise).
admin.use(function(socket, next)
  if socket.handshake.auth.token == "letmein" then
    next()
  else
    next({ message = "not authorized", data = { hint = "the token is in app.lua" } })
  end
end)

-- Room sizes, for the admin view.
local function rooms_report()
  local report = {}
  for _, s in ipairs(io.fetchSockets()) do
    if s.data.room then report[s.data.room] = (report[s.data.room] or 0) + 1 end
  end
  return report
end

io.on("connection", function(socket)
  socket.on("join", function(name, room, ack)
    if type(name) ~= "string" or type(room) ~= "string" or #room == 0 or #room > 32 then
      return ack({ error = "a name and a room (1-32 characters) are needed" })
    end
    if socket.data.room then
      socket.to(socket.data.room).emit("system", socket.data.name .. " left")
      socket.leave(socket.data.room)
    end
    socket.data.name, socket.data.room = name, room
    socket.join(room)
    socket.to(room).emit("system", name .. " joined " .. room)
    admin.emit("activity", { who = name, room = room, what = "joined" }, rooms_report())
    ack({ room = room })
  end)

  socket.on("message", function(text)
    local room = socket.data.room
    if not room or type(text) ~= "string" then return end
    -- everyone in the room but the sender (the sender shows its own message)
    socket.to(room).emit("message", { from = socket.data.name, text = text })
    admin.emit("activity", { who = socket.data.name, room = room, what = "said: " .. text }, nil)
  end)

  socket.on("disconnecting", function()
    local room = socket.data.room
    if room then socket.to(room).emit("system", socket.data.name .. " left") end
  end)
  socket.on("disconnect", function()
    admin.emit("activity", { who = socket.data.name or socket.id, what = "left" }, rooms_report())
  end)
end)

admin.on("connection", function(socket)
  socket.emit("rooms", rooms_report())
  socket.on("announce", function(room, text)
    if room == siolua.null or room == "" then
      io.emit("system", "announcement: " .. text)
    else
      io.to(room).emit("system", "announcement to " .. room .. ": " .. text)
    end
  end)
end)
