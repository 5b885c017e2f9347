-- App of api_colon.test.mjs: README "every method works both as obj.method(...) and obj:method(...)".
-- Two groups of fixtures, "dot" and "colon", each with its own sockets, namespaces and raw Engine.IO
-- connections (the clients say which in auth / the query). "run" calls every case of CASES once per
-- group, the dot group with obj.m(args) and the colon group with obj:m(args) (written obj[m](obj,
-- args), what the colon compiles to: `in` and `local` are Lua keywords), and answers what each
-- call returned and changed, described with role names so that the two groups compare equal. The
-- clients report what reached them; the test compares that too, and checks that every method the
-- README documents has a case here (the case list is sent with the results).

-- Both spellings of io.options, at the top level (the only place it may be called).
io.options{ pingInterval = 21000 }
io:options{ pingTimeout = 11000 }

local groups = { dot = {}, colon = {} } -- group -> role -> socket, conn, namespace...
local roles = {}                        -- socket id or conn id -> role name

io.on("connection", function(socket)
  local a = socket.handshake.auth
  if groups[a.group] then
    groups[a.group][a.role] = socket
    roles[socket.id] = a.role
  end
end)
for g in pairs(groups) do
  local nsp = io.of("/colon-" .. g)
  groups[g].nsp, groups[g].late = nsp, io.of("/colon-late-" .. g)
  nsp.on("connection", function(socket)
    groups[g].n = socket
    roles[socket.id] = "n"
    socket.join("r")
  end)
end
local eio = siolua.engine({ path = "/colon-eio/" })
eio.on("connection", function(conn)
  local g, role = conn.request._query.group, conn.request._query.role
  if groups[g] and role then
    groups[g][role] = conn
    roles[conn.id] = role
  end
end)

---------------------------------------------------------------- describing results

local function sorted_roles(list)
  local out = siolua.array()
  for _, id in ipairs(list) do out[#out + 1] = roles[id] or id end
  table.sort(out)
  return out
end

-- A JSON-able description of v, with sockets, namespaces and operators by role, not by id.
local function describe(v, fx)
  local t = type(v)
  if v == nil then return "nil" end
  if v == siolua.null then return "null" end
  if t ~= "table" and t ~= "userdata" then return t == "function" and "function" or v end
  if rawequal(v, io) then return "io" end
  if rawequal(v, io.engine) then return "io.engine" end
  if rawequal(v, eio) then return "the raw endpoint" end
  for role, x in pairs(fx) do
    if rawequal(v, x) then return "fixture:" .. role end
  end
  if t == "table" and rawget(v, "_nsp") ~= nil then -- a broadcast operator (_opts: its adapter options)
    local opts, flags = rawget(v, "_opts"), {}
    for k, x in pairs(opts.flags) do flags[k] = x end
    return { op = {
      nsp = describe(rawget(v, "_nsp"), fx), rooms = sorted_roles(opts.rooms),
      except = sorted_roles(opts.except), flags = flags,
      socket = rawget(v, "_socket") and describe(rawget(v, "_socket"), fx) or "none",
    } }
  end
  if fx.s and rawequal(v, fx.s.conn) then return "conn of fixture:s" end
  if t == "userdata" then -- a socket or a raw connection, else a handle of another kind
    local ok, id = pcall(function() return v.id end)
    if ok and type(id) == "string" then return "handle:" .. (roles[id] or "?") end
    return "userdata:" .. tostring(v):match("^[^:]*")
  end
  if t == "table" and type(v.name) == "string" and v.sockets ~= nil then -- a namespace
    return "namespace:" .. v.name:gsub("dot", "G"):gsub("colon", "G")
  end
  local n, count = rawget(v, "n"), 0
  for _ in pairs(v) do count = count + 1 end
  if type(n) == "number" or count == #v then -- a sequence (table.pack's, with its n)
    local out = siolua.array()
    for i = 1, type(n) == "number" and n or #v do out[i] = describe(v[i], fx) end
    return out
  end
  local out = {}
  for k, x in pairs(v) do out[tostring(k)] = describe(x, fx) end
  return out
end

local function rooms_of(socket)
  local out = siolua.array()
  for r in pairs(socket.rooms) do out[#out + 1] = roles[r] or r end
  table.sort(out)
  return out
end

---------------------------------------------------------------- the cases

-- { kind, method, function(call, fx) return what to compare end }: call(obj, "m", ...) is the
-- group's spelling. Ordered: a case may depend on an earlier one; disconnects come last.
local CASES = {}
local pack = table.pack -- several results, nil ones included
local function case(kind, method, fn) CASES[#CASES + 1] = { kind, method, fn } end

-- namespaces (io is the main one); fx.nsp has one socket "n" (in room "r"), fx.late gets its
-- sockets after the run
case("namespace", "on", function(call, fx)
  return call(fx.late, "on", "connection", function(socket) socket.emit("fx", "namespace.on") end)
end)
case("namespace", "use", function(call, fx)
  local r = call(fx.late, "use", function(socket, next) socket.data.mw = "namespace.use" next() end)
  fx.late.on("connection", function(socket) socket.emit("fx", socket.data.mw) end)
  return r
end)
case("namespace", "off", function(call, fx)
  local function never(socket) socket.emit("fx", "namespace.off failed") end
  fx.late.on("connection", never)
  return call(fx.late, "off", "connection", never)
end)
case("namespace", "emit", function(call, fx) return call(fx.nsp, "emit", "fx", "namespace.emit") end)
case("namespace", "to", function(call, fx) return call(fx.nsp, "to", "r") end)
case("namespace", "in", function(call, fx) return call(fx.nsp, "in", { "r", "s" }) end)
case("namespace", "except", function(call, fx) return call(fx.nsp, "except", "r") end)
case("namespace", "timeout", function(call, fx) return call(fx.nsp, "timeout", 1234) end)
case("namespace", "compress", function(call, fx) return call(fx.nsp, "compress", false) end)
case("namespace", "emitWithAck", function(call, fx)
  return call(fx.nsp, "emitWithAck", "question", "namespace.emitWithAck")
end)
case("namespace", "fetchSockets", function(call, fx) return call(fx.nsp, "fetchSockets") end)
case("namespace", "socketsJoin", function(call, fx)
  local r = call(fx.nsp, "socketsJoin", "joined")
  return pack(r, rooms_of(fx.n))
end)
case("namespace", "socketsLeave", function(call, fx)
  local r = call(fx.nsp, "socketsLeave", "joined")
  return pack(r, rooms_of(fx.n))
end)
case("namespace", "serverSideEmit", function(call, fx)
  local got
  local r = call(fx.nsp, "serverSideEmit", "ping", 1, function(err, responses) got = { err or "nil", responses } end)
  return pack(r, got or "no callback yet")
end)
case("namespace", "serverSideEmitWithAck", function(call, fx)
  return call(fx.nsp, "serverSideEmitWithAck", "ping", 1)
end)
case("namespace", "serverCount", function(call, fx) return call(fx.nsp, "serverCount") end)
case("namespace", "of", function(call, fx) return call(io, "of", "/colon-of-" .. fx.group) end)

-- sockets: fx.s on "/", answered by its client; fx.victim is disconnected
case("socket", "on", function(call, fx)
  return call(fx.s, "on", "probe-on", function(ack) ack("socket.on") end)
end)
case("socket", "once", function(call, fx)
  return call(fx.s, "once", "probe-once", function() fx.s.emit("fx", "socket.once") end)
end)
case("socket", "off", function(call, fx)
  local function never() fx.s.emit("fx", "socket.off failed") end
  fx.s.on("probe-off", never)
  return call(fx.s, "off", "probe-off", never)
end)
case("socket", "emit", function(call, fx) return call(fx.s, "emit", "fx", "socket.emit") end)
case("socket", "send", function(call, fx) return call(fx.s, "send", "socket.send") end)
case("socket", "write", function(call, fx) return call(fx.s, "write", "socket.write") end)
case("socket", "join", function(call, fx)
  local r = call(fx.s, "join", { "j1", "j2" })
  return pack(r, rooms_of(fx.s))
end)
case("socket", "leave", function(call, fx)
  local r = call(fx.s, "leave", "j1")
  return pack(r, rooms_of(fx.s))
end)
case("socket", "use", function(call, fx)
  fx.s.on("probe-use", function(v) fx.s.emit("fx", v) end)
  return call(fx.s, "use", function(packet, next)
    if packet[1] == "probe-use" then packet[2] = "socket.use" end
    next()
  end)
end)
local any = {}
for _, name in ipairs({ "A", "B" }) do any[name] = function() end end
local function which(list, fx)
  local out = {}
  for _, fn in ipairs(list) do out[#out + 1] = fn == any.A and "A" or fn == any.B and "B" or describe(fn, fx) end
  return out
end
case("socket", "onAny", function(call, fx) return call(fx.s, "onAny", any.A) end)
case("socket", "prependAny", function(call, fx) return call(fx.s, "prependAny", any.B) end)
case("socket", "listenersAny", function(call, fx) return which(call(fx.s, "listenersAny"), fx) end)
case("socket", "offAny", function(call, fx)
  local r = call(fx.s, "offAny", any.B)
  return pack(r, which(fx.s.listenersAny(), fx))
end)
case("socket", "onAnyOutgoing", function(call, fx)
  fx.out = {}
  local r = call(fx.s, "onAnyOutgoing", function(ev, v) fx.out[#fx.out + 1] = ev .. ":" .. tostring(v) end)
  fx.s.emit("fx", "watched")
  return pack(r, { table.unpack(fx.out) })
end)
case("socket", "prependAnyOutgoing", function(call, fx) return call(fx.s, "prependAnyOutgoing", any.A) end)
case("socket", "listenersAnyOutgoing", function(call, fx) return which(call(fx.s, "listenersAnyOutgoing"), fx) end)
case("socket", "offAnyOutgoing", function(call, fx)
  local r = call(fx.s, "offAnyOutgoing")
  fx.s.emit("fx", "unwatched")
  return pack(r, which(fx.s.listenersAnyOutgoing(), fx), { table.unpack(fx.out) })
end)
case("socket", "to", function(call, fx) return call(fx.s, "to", "r") end)
case("socket", "in", function(call, fx) return call(fx.s, "in", { "r", "s" }) end)
case("socket", "except", function(call, fx) return call(fx.s, "except", "r") end)
case("socket", "timeout", function(call, fx) return call(fx.s, "timeout", 1234) end)
case("socket", "compress", function(call, fx) return call(fx.s, "compress", false) end)
case("socket", "emitWithAck", function(call, fx) return call(fx.s, "emitWithAck", "question", "socket.emitWithAck") end)
case("socket", "disconnect", function(call, fx)
  local r = call(fx.victim, "disconnect", true)
  return pack(r, fx.victim.connected)
end)

-- broadcast operators, made with the dot spelling; the call under test is the last one
case("operator", "to", function(call, fx) return call(fx.nsp.to("r"), "to", "s") end)
case("operator", "in", function(call, fx) return call(fx.nsp.except("x"), "in", "r") end)
case("operator", "except", function(call, fx) return call(fx.nsp.to("r"), "except", { "x", "y" }) end)
case("operator", "timeout", function(call, fx) return call(fx.nsp.to("r"), "timeout", 1234) end)
case("operator", "compress", function(call, fx) return call(fx.nsp.to("r"), "compress", false) end)
case("operator", "emit", function(call, fx)
  return pack(call(fx.nsp.to("r"), "emit", "fx", "operator.emit"), call(fx.s.broadcast.to(fx.peer.id), "emit", "fx", "operator.emit (broadcast)"),
    call(io["local"].to(fx.s.id), "emit", "fx", "operator.emit (local)"))
end)
case("operator", "emitWithAck", function(call, fx)
  return call(fx.nsp.to("r").timeout(30000), "emitWithAck", "question", "operator.emitWithAck")
end)
case("operator", "fetchSockets", function(call, fx) return call(io.to(fx.peer.id), "fetchSockets") end)
case("operator", "socketsJoin", function(call, fx)
  local r = call(io.to(fx.peer.id), "socketsJoin", { "o1", "o2" })
  return pack(r, rooms_of(fx.peer))
end)
case("operator", "socketsLeave", function(call, fx)
  local r = call(io.to(fx.peer.id), "socketsLeave", "o1")
  return pack(r, rooms_of(fx.peer))
end)
case("operator", "disconnectSockets", function(call, fx)
  local r = call(io.to(fx.victim2.id), "disconnectSockets", true)
  return pack(r, fx.victim2.connected)
end)

-- Engine.IO: socket.conn (Socket.IO's session) and raw connections of the siolua.engine endpoint
case("conn", "on", function(call, fx)
  local r1 = call(fx.s.conn, "on", "upgrade", function() end)
  local r2 = call(fx.raw, "on", "message", function(data) if data == "probe" then fx.raw.send("conn.on") end end)
  return pack(r1, r2)
end)
case("conn", "send", function(call, fx) return call(fx.raw, "send", "conn.send") end)
case("conn", "close", function(call, fx) return call(fx.rawclose, "close") end)
case("engine", "on", function(call, fx)
  return pack(
    call(io.engine, "on", "headers", function(headers) headers["x-colon-" .. fx.group] = "engine.on" end),
    call(eio, "on", "connection", function(conn) conn.send("engine.on:" .. fx.group) end))
end)
-- last: it disconnects fx.nsp's socket
case("namespace", "disconnectSockets", function(call, fx)
  local n = fx.n
  return pack(call(fx.nsp, "disconnectSockets", true), n.connected)
end)

---------------------------------------------------------------- running them

local function spelling(g)
  if g == "dot" then return function(obj, m, ...) return obj[m](...) end end
  return function(obj, m, ...) return obj[m](obj, ...) end
end

io.on("connection", function(socket)
  if socket.handshake.auth.role ~= "driver" then return end
  socket.on("run", function(ack)
    local results, cases = {}, {}
    for g, fx in pairs(groups) do
      fx.group = g
      local call, out = spelling(g), {}
      for _, c in ipairs(CASES) do
        local ok, r = pcall(c[3], call, fx)
        out[#out + 1] = { c[1] .. "." .. c[2], ok and describe(r, fx) or { raised = tostring(r):gsub("^.-:%d+: ", "") } }
      end
      results[g] = out
    end
    for _, c in ipairs(CASES) do cases[#cases + 1] = c[1] .. "." .. c[2] end
    ack(results, cases)
  end)
end)
