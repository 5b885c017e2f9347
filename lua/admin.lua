-- admin.lua: the Admin UI's server side, io.instrument{...}: the reference's instrument(io, opts)
-- of @socket.io/admin-ui 0.5 (its dist/index.js), on the public API and the adapter interface,
-- so that the official UI connects to siolua unchanged. The admin namespace ("/admin") with its
-- basic-auth middleware (bcrypt through libxcrypt, on a thread: ladmin.h), "config" and
-- "all_sockets" to each UI that connects, "server_stats" every 2 s, the notifications of
-- development mode (socket_connected, socket_updated, socket_disconnected, room_joined, room_left,
-- event_received, event_sent), the UI's commands (emit, join, leave, _disconnect) unless readonly,
-- and the aggregated event counts. Everything goes through the namespaces' adapters: with
-- --redis every node reports to every UI (broadcasts on the admin namespace, fetchSockets across
-- the cluster), as in the reference.
-- What it costs: nothing until io.instrument{} (or --admin-ui) turns it on. Then, in production
-- mode, a listener per Engine.IO connection (its open and close) and a 1 s timer that samples C's
-- counters (core.admin_counters): nothing per message. Development mode adds, per socket, the
-- onAny / onAnyOutgoing listeners and a broadcast on the admin namespace per event, as the
-- reference does.
-- Started by hooks.loaded (lapp.c, once the app's top level ran): the command line's options
-- (--admin-ui..., core.admin_cli) win over io.instrument{}'s, key by key.
local core, hooks, lib = ...
local siolua = siolua
local null = siolua.null
local pack = table.pack

local MAX_SESSIONS = 1000 -- sessions remembered (the oldest is forgotten first)
local BASE_FEATURES = { "EMIT", "JOIN", "LEAVE", "DISCONNECT", "MJOIN", "MLEAVE", "MDISCONNECT" }

local requested     -- io.instrument{}'s options, checked (nil: not called)
local loaded = false -- the app's top level ran (hooks.loaded)
local running       -- the instrumentation in force (nil: off)

---------------------------------------------------------------------------- values

-- A JS Date as JSON writes it: "2026-12-06T05:50:35.397Z" (the seconds formatted once a second).
local date_sec, date_prefix = -1, ""
local function date()
  local ms = core.admin_now()
  local sec = ms // 1000
  if sec ~= date_sec then date_sec, date_prefix = sec, os.date("!%Y-%m-%dT%H:%M:%S", sec) end
  return string.format("%s.%03dZ", date_prefix, ms % 1000)
end

local function given(v) return v ~= nil and v ~= null end

-- socket.data without the Admin UI's own _admin field (the reference's serializeData).
local function data_of(socket)
  local data = socket.data
  local out = {}
  if type(data) == "table" then
    for k, v in pairs(data) do
      if k ~= "_admin" then out[k] = v end
    end
  end
  return out
end

-- The reference's serialize(socket, nsp): a local socket handle or a remote socket (fetchSockets).
local function serialize(socket, nsp_name)
  local data = socket.data
  if type(data) ~= "table" then data = {} end
  local admin = type(data._admin) == "table" and data._admin or {}
  local out_data = data_of(socket)
  local hs = socket.handshake or {}
  local headers = hs.headers or {}
  local rooms = siolua.array()
  for room in pairs(socket.rooms or {}) do rooms[#rooms + 1] = room end
  table.sort(rooms, function(a, b)
    if a == socket.id then return b ~= socket.id end -- its own room first, as the reference's Set
    if b == socket.id then return false end
    return a < b
  end)
  return {
    id = socket.id,
    clientId = admin.clientId,
    transport = admin.transport,
    nsp = nsp_name,
    data = out_data,
    handshake = {
      address = headers["cf-connecting-ip"] or headers["x-forwarded-for"] or hs.address,
      headers = headers,
      query = hs.query,
      issued = hs.issued,
      secure = hs.secure,
      time = hs.time,
      url = hs.url,
      xdomain = hs.xdomain,
    },
    rooms = rooms,
  }
end

-- Every socket of every namespace, of every server (suspends the handler while others answer).
local function all_sockets()
  local out = siolua.array()
  for _, entry in ipairs(core.namespaces()) do
    local nsp = entry[1]
    local ok, sockets = pcall(nsp.fetchSockets) -- (another node may time out: this one's still)
    if not ok then
      print("siolua: admin ui: all_sockets: " .. nsp.name .. ": " .. tostring(sockets))
      sockets = {}
    end
    for _, s in ipairs(sockets) do out[#out + 1] = serialize(s, nsp.name) end
  end
  return out
end

---------------------------------------------------------------------------- aggregated events

-- The reference's EventBuffer: counts per (second, type, subType), taken by each server_stats.
local function new_buffer()
  local b = { list = siolua.array(), index = {} }
  function b.push(kind, sub, count)
    local ts = core.admin_now() // 1000 * 1000
    local key = ts .. ";" .. kind .. ";" .. tostring(sub)
    local e = b.index[key]
    if e then
      e.count = e.count + (count or 1)
    else
      e = { timestamp = ts, type = kind, subType = sub, count = count or 1 }
      b.index[key] = e
      b.list[#b.list + 1] = e
    end
  end
  function b.take()
    local l = b.list
    b.list, b.index = siolua.array(), {}
    return l
  end
  return b
end

---------------------------------------------------------------------------- the admin namespace

local function check_options(opts, who)
  if type(opts) ~= "table" then error(who .. ": the options must be a table", 3) end
  local auth = opts.auth
  if auth == nil then error(who .. ": the `auth` option must be specified or explicitly set to `false`", 3) end
  if auth ~= false then
    if type(auth) ~= "table" or auth.type ~= "basic" then
      error(who .. ": invalid `auth` option (false, or { type = \"basic\", username = ..., password = <bcrypt hash> })", 3)
    end
    if type(auth.username) ~= "string" then error(who .. ": auth.username must be a string", 3) end
    if type(auth.password) ~= "string" or not core.admin_bcrypt_valid(auth.password) then
      error(who .. ": the `password` field must be a valid bcrypt hash", 3)
    end
  end
  if opts.mode ~= nil and opts.mode ~= "development" and opts.mode ~= "production" then
    error(who .. ': mode must be "development" or "production"', 3)
  end
  if opts.namespaceName ~= nil and (type(opts.namespaceName) ~= "string" or opts.namespaceName:sub(1, 1) == "^") then
    error(who .. ": namespaceName must be a namespace name (\"/admin\")", 3)
  end
  if opts.uiPath ~= nil and opts.uiPath ~= false and type(opts.uiPath) ~= "string" then
    error(who .. ": uiPath must be a path (\"/admin/\") or false", 3)
  end
  for k in pairs(opts) do
    if not ({ auth = 1, namespaceName = 1, readonly = 1, serverId = 1, mode = 1, uiPath = 1 })[k] then
      error(who .. ": unknown option \"" .. tostring(k) .. "\" (auth, namespaceName, readonly, serverId, mode, uiPath)", 3)
    end
  end
end

-- The basic-auth middleware: a session id the UI got earlier, or the username and the password
-- whose bcrypt hash is the configured one (checked on a thread, in constant time); a new session
-- id is sent to the UI ("session") once it is connected.
local function basic_auth(state, username, hash)
  local sessions, order = {}, {}
  return function(socket, next)
    local auth = socket.handshake.auth or {}
    local sid = auth.sessionId
    if type(sid) == "string" and sessions[sid] then return next() end
    if auth.username == username and type(auth.password) == "string"
      and core.admin_bcrypt_check(auth.password, hash) then
      sid = core.admin_session_id()
      sessions[sid] = true
      order[#order + 1] = sid
      if #order > MAX_SESSIONS then sessions[table.remove(order, 1)] = nil end
      state.new_session[socket] = sid
      return next()
    end
    next("invalid credentials")
  end
end

-- The session id basic_auth made for socket, sent to it once (when its connection is handled).
local function send_session(state, socket)
  local sid = state.new_session[socket]
  if sid then
    state.new_session[socket] = nil
    socket.emit("session", sid)
  end
end

-- The UI's commands (the reference's registerFeatureHandlers, Socket.IO v4's flavour).
local function target(nsp, filter)
  if type(nsp) ~= "string" or nsp:sub(1, 1) ~= "/" then error("admin ui: not a namespace: " .. tostring(nsp), 2) end
  local t = io.of(nsp)
  if given(filter) then t = t["in"](filter) end
  return t
end

local function register_commands(socket)
  socket.on("emit", function(nsp, filter, ev, ...) target(nsp, filter).emit(ev, ...) end)
  socket.on("join", function(nsp, room, filter) target(nsp, filter).socketsJoin(room) end)
  socket.on("leave", function(nsp, room, filter) target(nsp, filter).socketsLeave(room) end)
  socket.on("_disconnect", function(nsp, close, filter) target(nsp, filter).disconnectSockets(close == true) end)
end

---------------------------------------------------------------------------- development mode

-- Changes of socket.data: the reference wraps socket.data in a Proxy and reports each write
-- (socket_updated with data); a Lua table cannot be wrapped without changing what the app stores
-- (and what fetchSockets and a hot reload carry), so in development mode, while a UI can be told,
-- each socket's data is compared with what was last seen at every server_stats (2 s).
local function data_json(socket)
  local ok, json = pcall(core.json_encode, data_of(socket), true)
  return ok and json or nil
end

local function check_data(state)
  for _, entry in ipairs(core.namespaces()) do
    local nsp = entry[1]
    if state.watched[nsp] then
      for _, s in ipairs(core.select(nsp)) do
        local json, last = data_json(s), state.data[s]
        if json ~= nil and json ~= last then
          state.data[s] = json
          if last ~= nil then state.admin.emit("socket_updated", { id = s.id, nsp = nsp.name, data = data_of(s) }) end
        end
      end
    end
  end
end

-- No UI can be told: none is connected here and there is no other node (the in-memory adapter).
-- The notifications are then not even built (the reference builds and broadcasts them to nobody).
local function quiet(state)
  return state.uis == 0 and getmetatable(lib.adapter_of(state.admin)) == lib.adapters.memory
end

-- An event's arguments as the UI shows them (nil: null), up to args.n.
local function args_list(args)
  local list = siolua.array()
  for i = 1, args.n do list[i] = args[i] == nil and null or args[i] end
  return list
end

-- The listeners of one socket of a watched namespace (the reference's, set on "connection").
local function attach(state, nsp, socket)
  local admin, conn = state.admin, socket.conn
  conn.on("upgrade", function(transport)
    local d = socket.data
    if type(d) == "table" and type(d._admin) == "table" then d._admin.transport = transport.name end
    if quiet(state) then return end
    admin.emit("socket_updated", { id = socket.id, nsp = nsp.name, transport = transport.name })
  end)
  if not rawequal(nsp, admin) then
    socket.onAny(function(...)
      if quiet(state) then return end
      local args = pack(...)
      if type(args[args.n]) == "function" then args.n = args.n - 1 end -- the ack
      admin.emit("event_received", nsp.name, socket.id, args_list(args), date())
    end)
    socket.onAnyOutgoing(function(...)
      if quiet(state) then return end
      admin.emit("event_sent", nsp.name, socket.id, args_list(pack(...)), date())
    end)
  end
  local rooms
  socket.on("disconnecting", function() rooms = socket.rooms end)
  socket.on("disconnect", function(reason)
    if quiet(state) then return end
    admin.emit("socket_disconnected", nsp.name, socket.id, reason, date())
    -- then its rooms, its own first (the reference emits them on the next tick)
    if rooms then
      admin.emit("room_left", nsp.name, socket.id, socket.id, date())
      local names = {}
      for r in pairs(rooms) do if r ~= socket.id then names[#names + 1] = r end end
      table.sort(names)
      for _, r in ipairs(names) do admin.emit("room_left", nsp.name, r, socket.id, date()) end
    end
  end)
end

-- The reference's registerVerboseListeners, for one namespace. A socket that connects while no UI
-- can be told gets its listeners only when the first UI connects (state.pending), so that its
-- events cost nothing until then.
local function watch_namespace(state, nsp)
  if state.watched[nsp] then return end
  state.watched[nsp] = true
  local admin = state.admin
  nsp.prependListener("connection", function(socket)
    send_session(state, socket)
    local conn = socket.conn
    socket.data._admin = { clientId = conn.id:sub(1, 12), transport = conn.transport.name }
    if quiet(state) then
      state.pending[socket] = nsp
      return
    end
    attach(state, nsp, socket)
    state.data[socket] = data_json(socket)
    admin.emit("room_joined", nsp.name, socket.id, socket.id, date()) -- its own room, joined at connect
    admin.emit("socket_connected", serialize(socket, nsp.name), date())
  end)
end

-- A socket joined or left a room (lsocket.c, while core.admin_watch_rooms is on): a leave is
-- reported after what the handler does next, as the reference's next tick.
function hooks.room(socket, room, joined)
  local state = running
  if not state or not state.dev then return end
  local nsp = socket.nsp
  if not nsp or not state.watched[nsp] or quiet(state) then return end
  local id, name = socket.id, nsp.name
  if joined then
    state.admin.emit("room_joined", name, room, id, date())
  else
    siolua.setTimeout(function() state.admin.emit("room_left", name, room, id, date()) end, 0)
  end
end

---------------------------------------------------------------------------- instrument

local function start(opts)
  local auth = opts.auth
  local mode = opts.mode or os.getenv("NODE_ENV") or "development"
  local host, pid = core.admin_process()
  local state = {
    dev = mode == "development",
    watched = setmetatable({}, { __mode = "k" }),
    new_session = setmetatable({}, { __mode = "k" }),
    buffer = new_buffer(),
    polling = 0,
    uis = 0, -- admin sockets connected here
    data = setmetatable({}, { __mode = "k" }), -- socket -> its data's JSON, as last reported
    pending = setmetatable({}, { __mode = "k" }), -- socket -> namespace: listeners not set yet
  }
  running = state
  local admin = io.of(opts.namespaceName or "/admin")
  state.admin = admin
  if auth then admin.use(basic_auth(state, auth.username, auth.password)) end

  local features = siolua.array()
  if not opts.readonly then
    for _, f in ipairs(BASE_FEATURES) do features[#features + 1] = f end
  end
  features[#features + 1] = "AGGREGATED_EVENTS"
  if state.dev then features[#features + 1] = "ALL_EVENTS" end

  admin.on("connection", function(socket)
    if not state.dev then send_session(state, socket) end -- (in development mode, by the verbose listener)
    if not opts.readonly then register_commands(socket) end
    socket.emit("config", { supportedFeatures = features })
    if state.dev then socket.emit("all_sockets", all_sockets()) end
  end)

  -- the reference's registerEngineListeners: connections, polling clients, closes by reason
  local buffer = state.buffer
  io.engine.on("connection", function(conn)
    buffer.push("rawConnection")
    if conn.transport.name == "polling" then
      state.polling = state.polling + 1
      local counted = true
      local function uncount()
        if counted then
          counted = false
          state.polling = state.polling - 1
        end
      end
      conn.once("upgrade", uncount)
      conn.once("close", uncount)
    end
    conn.once("close", function(reason) buffer.push("rawDisconnection", reason) end)
  end)
  -- packets and bytes: C's counters, sampled (nothing per message)
  local last = pack(core.admin_counters())
  local function sample()
    local now = pack(core.admin_counters())
    local names = { "packetsIn", "packetsOut", "bytesIn", "bytesOut" }
    for i = 1, 4 do
      if now[i] > last[i] then buffer.push(names[i], nil, now[i] - last[i]) end
    end
    last = now
  end

  if state.dev then
    core.admin_watch_rooms(true)
    for _, entry in ipairs(core.namespaces()) do watch_namespace(state, entry[1]) end
    io.on("new_namespace", function(nsp) watch_namespace(state, nsp) end)
  end
  admin.prependListener("connection", function(socket) -- (before the notifications of its own arrival)
    state.uis = state.uis + 1
    socket.on("disconnect", function() state.uis = state.uis - 1 end)
    local pending = state.pending
    state.pending = setmetatable({}, { __mode = "k" })
    for s, nsp in pairs(pending) do
      if s.connected then
        attach(state, nsp, s)
        state.data[s] = data_json(s)
      end
    end
  end)

  local server_id = opts.serverId or host
  local function emit_stats()
    sample()
    if state.dev and not quiet(state) then check_data(state) end
    local namespaces = siolua.array()
    for _, entry in ipairs(core.namespaces()) do
      namespaces[#namespaces + 1] = { name = entry[1].name, socketsCount = entry[2] }
    end
    local _, _, uptime = core.admin_process()
    admin.emit("server_stats", {
      serverId = server_id,
      hostname = host,
      pid = pid,
      uptime = uptime,
      clientsCount = io.engine.clientsCount,
      pollingClientsCount = state.polling,
      aggregatedEvents = buffer.take(),
      namespaces = namespaces,
    })
  end
  local ticks = 0
  siolua.setInterval(function()
    ticks = ticks + 1
    if ticks % 2 == 0 then emit_stats() else sample() end
  end, 1000)
  emit_stats()
end

-- The options in force: io.instrument{}'s, with the command line's over them.
local function merged(app, cli)
  local o = {}
  for k, v in pairs(app or {}) do o[k] = v end
  if cli.given.auth then
    if cli.auth == false then
      o.auth = false
    else
      local user, hash = cli.auth:match("^([^:]+):(.*)$")
      o.auth = { type = "basic", username = user, password = hash }
    end
  end
  for _, k in ipairs({ "readonly", "mode", "serverId", "namespaceName", "uiPath" }) do
    if cli.given[k] then o[k] = cli[k] end
  end
  return o
end

-- io.instrument{ auth = false | { type = "basic", username, password = <bcrypt hash> },
-- namespaceName = "/admin", readonly = false, serverId = <host name>, mode = "development" |
-- "production", uiPath = "/admin/" }: checked at once; in force once the app's top level ran.
function lib.nsp_methods.instrument(self, opts)
  if not rawequal(self, io) then error("instrument is io's: io.instrument{...}", 2) end
  if requested ~= nil then error("io.instrument: already called", 2) end
  check_options(opts, "io.instrument")
  requested = opts
  if loaded and running == nil then
    local cli = core.admin_cli()
    local o = merged(opts, cli)
    check_options(o, "--admin-ui")
    start(o)
    core.admin_ui(o.uiPath or nil)
  end
end

-- Called by C once the app's top level ran (a hot reload's new code: before it takes the sockets).
function hooks.loaded()
  loaded = true
  local cli = core.admin_cli()
  if requested == nil and not cli.given.auth then
    core.admin_ui(nil)
    return
  end
  local o = merged(requested, cli)
  check_options(o, "--admin-ui")
  start(o)
  core.admin_ui(o.uiPath or nil)
end

return nil
