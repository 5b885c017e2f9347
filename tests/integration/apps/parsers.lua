-- The app of parsers.test.mjs and v2_clients.test.mjs (issue 15: the msgpack parser and Socket.IO
-- v2 clients). Its Node twin is ref/parser_apps.mjs `parsers`.
local admin = io.of("/admin")

-- /admin: a token in the auth (a v2 client puts it in the namespace's query)
admin.use(function(socket, next)
  local token = socket.handshake.auth.token
  if token == "ok" then return next() end
  if token == "plain" then return next("plain refusal") end
  next({ message = "not authorized", data = { code = 42 } })
end)

local function common(socket)
  socket.on("echo", function(...)
    local args = table.pack(...)
    local ack = args[args.n]
    ack(table.unpack(args, 1, args.n - 1))
  end)
  socket.on("whoami", function(ack)
    ack({ id = socket.id, auth = socket.handshake.auth, nsp = socket.nsp.name })
  end)
  -- server -> client ack: ask the client, report its answer with another event
  socket.on("ask", function(...)
    local args = table.pack(...)
    args[args.n + 1] = function(...) socket.emit("answered", ...) end
    socket.emit("question", table.unpack(args, 1, args.n + 1))
  end)
  socket.on("join", function(room, ack)
    socket.join(room)
    ack(room)
  end)
  socket.on("say", function(room, ...) socket.to(room).emit("said", ...) end)
  socket.on("tell", function(id, ...) socket.nsp.to(id).emit("told", ...) end)
  socket.on("everyone", function(...) socket.nsp.emit("heard", ...) end)
  socket.on("bye", function() socket.disconnect() end)
end

io.on("connection", common)
admin.on("connection", common)

-- an Engine.IO echo endpoint that takes v3 clients whatever the server's allowEIO3
local eio3 = siolua.engine{ path = "/eio3/", allowEIO3 = true }
eio3.on("connection", function(conn)
  conn.on("message", function(data) conn.send(data) end)
end)
