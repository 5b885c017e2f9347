-- Namespaces for tests/integration/api_namespaces.test.mjs: io.of("/admin") with its own
-- listeners and broadcasts, io.of("/") == io, dynamic namespaces (a Lua pattern and a function),
-- io.on("new_namespace"). Its Node twin is ref/api_apps.mjs `api_namespaces`.

-- every namespace created after this line, in order (children of dynamic namespaces included)
local created = siolua.array()
io.on("new_namespace", function(nsp) created[#created + 1] = nsp.name end)

io.on("connection", function(socket)
  socket.on("info", function(ack)
    ack({ nsp = socket.nsp.name, mainIsIo = io.of("/") == io, slashless = io.of("admin") == io.of("/admin") })
  end)
  -- io.of(name) creates the namespace (once): new_namespace fires for it
  socket.on("create", function(name, ack)
    io.of(name)
    ack(created)
  end)
  socket.on("created", function(ack) ack(created) end)
  socket.on("main-news", function(msg) io.emit("news", "/", msg) end)
  socket.on("admin-news", function(msg) io.of("/admin").emit("news", "/admin", msg) end)
  -- the same room name in two namespaces is two rooms
  socket.on("join", function(room, ack)
    socket.join(room)
    ack()
  end)
  socket.on("main-room", function(room, msg) io.to(room).emit("news", "/ room " .. room, msg) end)
  -- a child of a dynamic namespace, reached by its name
  socket.on("child-news", function(name, msg) io.of(name).emit("news", name, msg) end)
end)

local admin = io.of("/admin")
admin.on("connection", function(socket)
  socket.on("info", function(ack) ack({ nsp = socket.nsp.name, count = #admin.fetchSockets() }) end)
  socket.on("join", function(room, ack)
    socket.join(room)
    ack()
  end)
  socket.on("admin-room", function(room, msg) admin.to(room).emit("news", "/admin room " .. room, msg) end)
end)

-- a Lua pattern: /dyn-<digits>; the parent's middleware and listeners apply to every child
local dyn = io.of("^/dyn%-%d+$")
dyn.use(function(socket, next)
  socket.data.parentMiddleware = true
  next()
end)
dyn.on("connection", function(socket)
  socket.on("info", function(ack)
    ack({ nsp = socket.nsp.name, parentMiddleware = socket.data.parentMiddleware == true })
  end)
  -- socket.nsp is the child: its emit reaches that child's sockets only
  socket.on("child-news", function(msg) socket.nsp.emit("news", socket.nsp.name, msg) end)
  -- the parent's emit reaches every child
  socket.on("parent-news", function(msg) dyn.emit("news", "parent", msg) end)
end)

-- a function: names starting with /fn- when the client's auth carries key = "open"
local fnsp = io.of(function(name, auth, next)
  next(nil, name:sub(1, 4) == "/fn-" and type(auth) == "table" and auth.key == "open")
end)
fnsp.on("connection", function(socket)
  socket.on("info", function(ack) ack({ nsp = socket.nsp.name }) end)
end)
