-- App of tests/integration/wire_engine.test.mjs (issue 11): io.engine's connection events as the
-- reference emits them (packet, packetCreate, flush, drain, heartbeat, upgrading, upgrade, data,
-- message), logged per connection (read by another client, so the reading is not logged), and
-- socket.conn being the conn io.engine gave. Its Node twin is ref/wire_apps.mjs `wire_engine`.
local logs, conns = {}, {}

local function show(p)
  local d = p.data
  if d == nil then return p.type end
  if siolua.isbinary(d) then return p.type .. ":<binary " .. #d .. ">" end
  return p.type .. ":" .. d
end
local function text(d)
  if siolua.isbinary(d) then return "<binary " .. #d .. ">" end
  return d
end

io.engine.on("connection", function(conn)
  local log = siolua.array()
  logs[conn.id], conns[conn.id] = log, conn
  local function add(line) log[#log + 1] = line end
  conn.on("packet", function(p) add("packet " .. show(p)) end)
  conn.on("packetCreate", function(p) add("packetCreate " .. show(p) .. (p.options.compress and " compress" or "")) end)
  conn.on("flush", function(packets)
    local t = {}
    for i, p in ipairs(packets) do t[i] = show(p) end
    add("flush " .. table.concat(t, " | "))
  end)
  conn.on("drain", function() add("drain") end)
  conn.on("heartbeat", function() add("heartbeat") end)
  conn.on("upgrading", function(t) add("upgrading " .. t.name) end)
  conn.on("upgrade", function(t) add("upgrade " .. t.name) end)
  conn.on("data", function(d) add("data " .. text(d)) end)
  conn.on("message", function(d) add("message " .. text(d)) end)
end)

io.on("connection", function(socket)
  socket.on("log", function(id, ack) ack(logs[id] or siolua.null) end)
  socket.on("hi", function(x, ack) ack("yo " .. x) end)
  socket.on("bytes", function(ack) ack(siolua.binary("abc")) end)
  socket.on("burst", function()
    for i = 1, 3 do socket.emit("e" .. i) end
  end)
  socket.on("same", function(ack)
    local c = conns[socket.conn.id]
    local before = c.listenerCount("drain")
    local f = function() end
    socket.conn.on("drain", f)
    local during = c.listenerCount("drain")
    c.off("drain", f)
    ack({ same = socket.conn == c, stable = socket.conn == socket.conn, before = before, during = during,
      after = socket.conn.listenerCount("drain"), id = socket.conn.id == c.id,
      transport = socket.conn.transport.name })
  end)
end)

io.of("/other").on("connection", function(socket)
  socket.on("same", function(ack) ack(socket.conn == conns[socket.conn.id]) end)
end)

-- an Engine.IO-only endpoint with its own options, as engine.io's attach(httpServer, options)
local own = siolua.engine({
  path = "/eio-opts/",
  pingInterval = 20000,
  pingTimeout = 10000,
  cors = { origin = "http://a.test", credentials = true },
  cookie = { name = "eio" },
  allowRequest = function(req, callback)
    setTimeout(function()
      if req._query.deny then callback("denied here", false) else callback(nil, true) end
    end, 10)
  end,
})
own.on("connection", function(conn)
  conn.on("message", function(data) conn.send(data) end)
end)
