-- The Admin UI's test app (tests/integration/admin.test.mjs; its JS twin is apps.mjs's admin, with
-- @socket.io/admin-ui's instrument): the options come from the environment.
local hash = os.getenv("ADMIN_HASH")
io.instrument{
  auth = hash and { type = "basic", username = "admin", password = hash } or false,
  mode = os.getenv("ADMIN_MODE") or "development",
  readonly = os.getenv("ADMIN_READONLY") == "1",
  serverId = os.getenv("ADMIN_SERVER_ID"),
  uiPath = os.getenv("ADMIN_UI_PATH"),
}

io.on("connection", function(socket)
  socket.on("join", function(room, ack) socket.join(room) ack(true) end)
  socket.on("leave", function(room, ack) socket.leave(room) ack(true) end)
  socket.on("echo", function(x, ack) socket.emit("echo", x) ack(x) end)
  socket.on("set", function(k, v, ack) socket.data[k] = v ack(true) end)
  socket.on("whoami", function(ack) ack(socket.id, socket.rooms["r2"] == true) end)
end)

io.of("/chat").on("connection", function(socket) socket.join("news") end)
