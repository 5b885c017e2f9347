-- adapter_redis.lua: the Redis adapter, an implementation of the adapter interface (adapter.lua),
-- wire-compatible with the Node @socket.io/redis-adapter (8.x) and @socket.io/redis-emitter, so
-- siolua nodes and Node servers can share one cluster. Each namespace's adapter holds an in-memory
-- adapter (self.here) and delegates this server's part of every operation to it explicitly, then
-- does the other servers' part over Redis, as the Node adapter extends the in-memory one. The C
-- half (src/adapter_redis.c) owns the connections and the subscriptions; C starts this adapter
-- (hooks.adapter_start("redis")) when the server has one.
--
-- Channels, for a namespace NSP and the prefix KEY ("socket.io"), as the Node adapter names them:
--   KEY#NSP#            broadcasts: msgpack [uid, packet, {rooms, except, flags}]
--   KEY#NSP#ROOM#       the same, when exactly one room is targeted (PSUBSCRIBE KEY#NSP#*)
--   KEY-request#NSP#    requests: JSON, or msgpack for BROADCAST (the one with acks);
--                       its subscriber count (PUBSUB NUMSUB) is the server count
--   KEY-response#NSP#   responses (and KEY-response#NSP#UID# with publishOnSpecificResponseChannel)
local core, hooks, lib = ...
local siolua = siolua
local op_methods, new_op, bind = lib.op_methods, lib.new_op, lib.bind
local strlist, reserved, nsp_reserved = lib.strlist, lib.reserved, lib.nsp_reserved
local Memory = lib.adapters.memory
local null = siolua.null
local unpack = table.unpack
local json_encode, json_decode = core.json_encode, core.json_decode
local mp_encode, mp_decode = core.msgpack_encode, core.msgpack_decode
local io_ = io

-- The request types of the Node adapter (lib/index.ts RequestType).
local SOCKETS, ALL_ROOMS, REMOTE_JOIN, REMOTE_LEAVE, REMOTE_DISCONNECT, REMOTE_FETCH, SERVER_SIDE_EMIT,
  BROADCAST, BROADCAST_CLIENT_COUNT, BROADCAST_ACK = 0, 1, 2, 3, 4, 5, 6, 7, 8, 9

local enabled = false      -- the server runs this adapter (its connection may be down)
local cfg, uid             -- core.redis_config(), this node's uid
local requests = {}        -- requestId -> pending request of ours (fetchSockets, serverSideEmit)
local ack_requests = {}    -- requestId -> {client_count, ack} of our broadcasts with acks
local pending = {}         -- core.redis_command id -> function(reply, err)

---------------------------------------------------------------------------- helpers

local function val(v) if v == null then return nil end return v end

local function nonempty(t) if #t == 0 then return nil end return t end

-- {ev, args...} of a packet ({ev, args..., n}), nil arguments as null (an array keeps its length on
-- the wire).
local function event_data(packet)
  local data = {}
  for i = 1, packet.n do
    local v = packet[i]
    if v == nil then v = null end
    data[i] = v
  end
  return data
end

-- What JSON carries of a value (handshake, socket.data in fetchSockets answers): the prelude's.
local jsonable = lib.jsonable

local pre_broadcast, pre_request, pre_response, own_prefix -- channel prefixes, our messages' first bytes

local function setup()
  cfg = core.redis_config()
  uid = core.redis_uid()
  pre_broadcast, pre_request, pre_response = cfg.key .. "#", cfg.key .. "-request#", cfg.key .. "-response#"
  -- a broadcast of ours starts with msgpack fixarray(3), fixstr(6) uid: skipped without decoding
  own_prefix = "\x93\xa6" .. uid
end

local function ch_broadcast(nsp) return cfg.key .. "#" .. nsp .. "#" end
local function ch_request(nsp) return cfg.key .. "-request#" .. nsp .. "#" end
local function ch_response(nsp) return cfg.key .. "-response#" .. nsp .. "#" end

local function publish(channel, bytes) return core.redis_publish(channel, bytes) end

local function publish_response(nspname, req, body)
  local channel = ch_response(nspname)
  if cfg.publishOnSpecificResponseChannel and type(req.uid) == "string" then
    channel = channel .. req.uid .. "#"
  end
  publish(channel, body)
end

local nsp_cache = {}
local function nsp_obj(name)
  local o = nsp_cache[name]
  if o == nil then
    o = io_.of(name)
    nsp_cache[name] = o
  end
  return o
end

-- The number of servers of the cluster (subscribers of the namespace's request channel, this one
-- included), given to cb; 1 when Redis cannot tell (down): the operation is then local only.
local function server_count(nspname, cb)
  local workers = core.redis_local_count() -- over the workers' channel (no Redis): the workers running
  if workers then return cb(workers) end
  local id = core.redis_command({ "PUBSUB", "NUMSUB", ch_request(nspname) })
  if not id then return cb(1) end
  pending[id] = function(reply)
    local n = type(reply) == "table" and math.tointeger(reply[2]) or 1
    cb(n > 0 and n or 1)
  end
end

function hooks.redis_reply(id, reply, err)
  local f = pending[id]
  if f == nil then return end
  pending[id] = nil
  f(reply, err)
end

local function wire_flags(flags)
  local f = {}
  if flags.volatile then f.volatile = true end
  if flags.compress ~= nil then f.compress = flags.compress end
  if flags.timeout ~= nil then f.timeout = flags.timeout end
  return f
end

local function finish_request(rid, ...)
  local r = requests[rid]
  if r == nil then return end
  requests[rid] = nil
  if r.timer then siolua.clearTimeout(r.timer) end
  r.resolve(...)
end

---------------------------------------------------------------------------- remote sockets

-- What fetchSockets gives for a socket of another node: id, handshake, rooms (a set, like a local
-- socket's), data, and emit/join/leave/disconnect/timeout that go through the cluster.
local Remote = { __name = "siolua.remote_socket" }
local remote_methods = {}
Remote.__index = function(self, k)
  local m = remote_methods[k]
  if m then return bind(self, m) end
end
Remote.__tostring = function(self) return "siolua.remote_socket(" .. self.id .. ")" end

local function to_self(self) return new_op(self._nsp, { self.id }) end
function remote_methods.emit(self, ev, ...) return op_methods.emit(to_self(self), ev, ...) end
function remote_methods.join(self, room) return op_methods.socketsJoin(to_self(self), room) end
function remote_methods.leave(self, room) return op_methods.socketsLeave(to_self(self), room) end
function remote_methods.disconnect(self, close) return op_methods.disconnectSockets(to_self(self), close) end
function remote_methods.timeout(self, ms) return new_op(self._nsp, { self.id }, nil, { timeout = ms }) end

local function remote_socket(nsp, s)
  local rooms = {}
  if type(s.rooms) == "table" then
    for _, r in ipairs(s.rooms) do rooms[tostring(r)] = true end
  end
  local data = val(s.data)
  if data == nil then data = {} end
  return setmetatable({ id = s.id, handshake = type(s.handshake) == "table" and s.handshake or {},
    rooms = rooms, data = data, remote = true, _nsp = nsp }, Remote)
end

local function describe_socket(s)
  local rooms = siolua.array()
  for r in pairs(s.rooms) do rooms[#rooms + 1] = r end
  return { id = s.id, handshake = jsonable(s.handshake) or {}, rooms = rooms, data = jsonable(s.data) or {} }
end

---------------------------------------------------------------------------- the adapter

local Redis = { __name = "siolua.adapter.redis" }
Redis.__index = Redis

function Redis.new(nsp)
  if not enabled then -- the first one: the server runs this adapter from now on
    enabled = true
    setup()
  end
  return setmetatable({ nsp = nsp, name = rawget(nsp, "name"), here = Memory.new(nsp) }, Redis)
end

-- Subscribes the namespace's channels (idempotent in C, kept across reconnections and reloads).
function Redis:init()
  local name = self.name
  core.redis_psubscribe(ch_broadcast(name) .. "*")
  core.redis_subscribe(ch_request(name))
  core.redis_subscribe(ch_response(name))
  core.redis_subscribe(ch_response(name) .. uid .. "#")
end

function Redis:close() end

function Redis:broadcast(packet, opts)
  self.here:broadcast(packet, opts)
  if opts.flags["local"] then return end
  local rooms, except = strlist(opts.rooms), strlist(opts.except)
  local msg = mp_encode({ uid, { type = 2, data = event_data(packet), nsp = self.name },
    { rooms = rooms, except = except, flags = wire_flags(opts.flags) } })
  local channel = ch_broadcast(self.name)
  if #rooms == 1 then channel = channel .. rooms[1] .. "#" end
  publish(channel, msg)
end

-- The other servers report their client counts and their clients' acks on the response channel.
function Redis:broadcastWithAck(packet, opts, client_count, ack)
  if opts.flags["local"] then return self.here:broadcastWithAck(packet, opts, client_count, ack) end
  local rid = core.redis_id()
  ack_requests[rid] = { client_count = client_count, ack = ack }
  publish(ch_request(self.name), mp_encode({ uid = uid, requestId = rid, type = BROADCAST,
    packet = { type = 2, data = event_data(packet), nsp = self.name },
    opts = { rooms = strlist(opts.rooms), except = strlist(opts.except), flags = wire_flags(opts.flags) } }))
  siolua.setTimeout(function() ack_requests[rid] = nil end, opts.flags.timeout or cfg.requestsTimeout)
  self.here:broadcastWithAck(packet, opts, client_count, ack)
end

function Redis:serverCount(cb) server_count(self.name, cb) end

function Redis:fetchSockets(opts, cb)
  self.here:fetchSockets(opts, function(_, sockets)
    if opts.flags["local"] then return cb(nil, sockets) end
    local nspname, nsp = self.name, self.nsp
    server_count(nspname, function(n)
      if n <= 1 then return cb(nil, sockets) end
      local rid = core.redis_id()
      requests[rid] = {
        type = REMOTE_FETCH, numSub = n, msgCount = 1, resolve = cb, result = sockets,
        add = function(s)
          if type(s) == "table" and type(s.id) == "string" then sockets[#sockets + 1] = remote_socket(nsp, s) end
        end,
        timer = siolua.setTimeout(function()
          finish_request(rid, siolua.Error("timeout reached while waiting for fetchSockets response"))
        end, cfg.requestsTimeout),
      }
      if not publish(ch_request(nspname), json_encode({ uid = uid, requestId = rid, type = REMOTE_FETCH,
        opts = { rooms = strlist(opts.rooms), except = strlist(opts.except) } })) then
        finish_request(rid, nil, sockets) -- Redis just went down: what this node has
      end
    end)
  end)
end

-- socketsJoin / socketsLeave / disconnectSockets: applied here at once, and published for the
-- other nodes (which apply them to their own sockets; we ignore our own request when it comes back).
local function remote_apply(self, opts, rtype, extra)
  if opts.flags["local"] then return end
  local req = { uid = uid, type = rtype, opts = { rooms = strlist(opts.rooms), except = strlist(opts.except) } }
  for k, v in pairs(extra) do req[k] = v end
  publish(ch_request(self.name), json_encode(req))
end

function Redis:addSockets(opts, rooms)
  self.here:addSockets(opts, rooms)
  remote_apply(self, opts, REMOTE_JOIN, { rooms = rooms })
end

function Redis:delSockets(opts, rooms)
  self.here:delSockets(opts, rooms)
  remote_apply(self, opts, REMOTE_LEAVE, { rooms = rooms })
end

function Redis:disconnectSockets(opts, close)
  self.here:disconnectSockets(opts, close)
  remote_apply(self, opts, REMOTE_DISCONNECT, { close = close })
end

function Redis:serverSideEmit(packet, cb)
  local nspname, data = self.name, event_data(packet)
  if not cb then
    publish(ch_request(nspname), json_encode({ uid = uid, type = SERVER_SIDE_EMIT, data = data }))
    return
  end
  json_encode(data) -- raises here, in the caller, for what JSON cannot carry
  server_count(nspname, function(n)
    local numSub = n - 1 -- ignore self
    if numSub <= 0 then return cb(nil, siolua.array()) end
    local rid = core.redis_id()
    local req = { type = SERVER_SIDE_EMIT, numSub = numSub, responses = siolua.array(), resolve = cb }
    req.timer = siolua.setTimeout(function()
      finish_request(rid, siolua.Error(("timeout reached: only %d responses received out of %d")
        :format(#req.responses, numSub)), req.responses)
    end, cfg.requestsTimeout)
    requests[rid] = req
    if not publish(ch_request(nspname), json_encode({ uid = uid, requestId = rid, type = SERVER_SIDE_EMIT,
      data = data })) then
      finish_request(rid, siolua.Error("not connected to Redis"), req.responses)
    end
  end)
end

-- this server's room index: the in-memory adapter's
function Redis:addAll(id, rooms) return self.here:addAll(id, rooms) end
function Redis:del(id, room) return self.here:del(id, room) end
function Redis:delAll(id) return self.here:delAll(id) end
function Redis:sockets(rooms) return self.here:sockets(rooms) end
function Redis:socketRooms(id) return self.here:socketRooms(id) end
function Redis:persistSession(session) return self.here:persistSession(session) end
function Redis:restoreSession(pid, offset) return self.here:restoreSession(pid, offset) end

-- C starts it (hooks.adapter_start("redis"), adapter.lua) when the server has a Redis adapter:
-- once the app's top level ran, or in each VM made by a hot reload.
lib.adapters.redis = Redis

---------------------------------------------------------------------------- messages of others

local function on_broadcast(nspname, payload)
  if payload:sub(1, 8) == own_prefix then return end -- our own, back from Redis
  local msg = mp_decode(payload)
  if type(msg) ~= "table" then return end
  local from, packet, opts = msg[1], msg[2], msg[3]
  if from == uid or type(packet) ~= "table" then return end
  local pn = val(packet.nsp) or "/"
  if pn ~= nspname or (packet.type ~= 2 and packet.type ~= 5) then return end
  local data = packet.data
  if type(data) ~= "table" or type(data[1]) ~= "string" or reserved[data[1]] then return end
  if type(opts) ~= "table" then opts = {} end
  local flags = type(opts.flags) == "table" and opts.flags or {}
  core.broadcast(nsp_obj(nspname), nonempty(strlist(opts.rooms)), nonempty(strlist(opts.except)),
    flags.volatile == true, nil, unpack(data, 1, #data))
end

local function decode_any(payload)
  if payload:byte(1) == 123 then -- "{": JSON, as the Node adapter tells them apart
    local ok, v = pcall(json_decode, payload)
    if ok then return v end
    return nil
  end
  return (mp_decode(payload))
end

local function select_opts(nsp, opts)
  if type(opts) ~= "table" then opts = {} end
  return core.select(nsp, nonempty(strlist(opts.rooms)), nonempty(strlist(opts.except)))
end

local function on_request(nspname, payload)
  local req = decode_any(payload)
  if type(req) ~= "table" then return end
  local t, rid = req.type, val(req.requestId)
  local nsp = nsp_obj(nspname)
  if t == REMOTE_JOIN or t == REMOTE_LEAVE or t == REMOTE_DISCONNECT then
    if req.uid == uid then return end -- ours: applied when sent
    local opts = val(req.opts)
    local sel
    if type(opts) == "table" then
      sel = select_opts(nsp, opts)
    elseif type(req.sid) == "string" then
      sel = core.select(nsp, { req.sid }) -- the older one-socket form, answered below
    else
      return
    end
    local rooms = strlist(val(req.rooms) or val(req.room))
    for _, s in ipairs(sel) do
      if t == REMOTE_JOIN then
        s.join(rooms)
      elseif t == REMOTE_LEAVE then
        for _, r in ipairs(rooms) do s.leave(r) end
      else
        s.disconnect(req.close == true)
      end
    end
    if opts == nil and #sel > 0 and rid ~= nil then publish_response(nspname, req, json_encode({ requestId = rid })) end
  elseif t == REMOTE_FETCH then
    if rid == nil or requests[rid] then return end
    local out = siolua.array()
    for _, s in ipairs(select_opts(nsp, val(req.opts))) do out[#out + 1] = describe_socket(s) end
    publish_response(nspname, req, json_encode({ requestId = rid, sockets = out }))
  elseif t == SERVER_SIDE_EMIT then
    if req.uid == uid then return end
    local data = val(req.data)
    if type(data) ~= "table" or type(data[1]) ~= "string" or nsp_reserved[data[1]] then return end
    local n = #data
    if rid ~= nil then
      local called = false
      n = n + 1
      data[n] = function(arg)
        if called then return end
        called = true
        publish(ch_response(nspname), json_encode({ type = SERVER_SIDE_EMIT, requestId = rid, data = arg }))
      end
    end
    lib.fire(nsp, unpack(data, 1, n))
  elseif t == BROADCAST then
    if rid == nil or ack_requests[rid] or req.uid == uid then return end
    local packet, opts = val(req.packet), val(req.opts)
    if type(packet) ~= "table" or type(packet.data) ~= "table" then return end
    local data = packet.data
    if type(data[1]) ~= "string" or reserved[data[1]] then return end
    if type(opts) ~= "table" then opts = {} end
    local flags = type(opts.flags) == "table" and opts.flags or {}
    local count = core.broadcast(nsp, nonempty(strlist(opts.rooms)), nonempty(strlist(opts.except)),
      flags.volatile == true, function(first)
        if first == nil then first = null end
        publish_response(nspname, req, mp_encode({ type = BROADCAST_ACK, requestId = rid, packet = first }))
      end, unpack(data, 1, #data))
    publish_response(nspname, req, json_encode({ type = BROADCAST_CLIENT_COUNT, requestId = rid, clientCount = count }))
  elseif t == SOCKETS then
    if rid == nil or requests[rid] then return end
    local ids = siolua.array()
    for _, s in ipairs(core.select(nsp, nonempty(strlist(val(req.rooms))))) do ids[#ids + 1] = s.id end
    publish_response(nspname, req, json_encode({ requestId = rid, sockets = ids }))
  elseif t == ALL_ROOMS then
    if rid == nil or requests[rid] then return end
    local set, rooms = {}, siolua.array()
    for _, s in ipairs(core.select(nsp)) do
      for r in pairs(s.rooms) do
        if not set[r] then
          set[r] = true
          rooms[#rooms + 1] = r
        end
      end
    end
    publish_response(nspname, req, json_encode({ requestId = rid, rooms = rooms }))
  end
end

local function on_response(payload)
  local res = decode_any(payload)
  if type(res) ~= "table" then return end
  local rid = val(res.requestId)
  if rid == nil then return end
  local ar = ack_requests[rid]
  if ar then
    if res.type == BROADCAST_CLIENT_COUNT then
      ar.client_count(math.tointeger(res.clientCount) or 0)
    elseif res.type == BROADCAST_ACK then
      ar.ack(res.packet)
    end
    return
  end
  local r = requests[rid]
  if r == nil then return end
  if r.type == REMOTE_FETCH then
    r.msgCount = r.msgCount + 1
    if type(res.sockets) == "table" then
      for _, s in ipairs(res.sockets) do r.add(s) end
    end
    if r.msgCount >= r.numSub then finish_request(rid, nil, r.result) end
  elseif r.type == SERVER_SIDE_EMIT then
    local d = res.data
    if d == nil then d = null end
    r.responses[#r.responses + 1] = d
    if #r.responses >= r.numSub then finish_request(rid, nil, r.responses) end
  end
end

-- Which namespace and kind a message is for, from its channel (or the pattern that matched).
local function classify(channel, pattern)
  if pattern then
    local pre = pre_broadcast
    if pattern:sub(1, #pre) == pre and pattern:sub(-2) == "#*" then return "broadcast", pattern:sub(#pre + 1, -3) end
    return nil
  end
  local req = pre_request
  if channel:sub(1, #req) == req then return "request", channel:sub(#req + 1, -2) end
  local res = pre_response
  if channel:sub(1, #res) == res then
    local rest, tail = channel:sub(#res + 1), "#" .. uid .. "#"
    if #rest > #tail and rest:sub(-#tail) == tail then return "response", rest:sub(1, -#tail - 1) end
    return "response", rest:sub(1, -2)
  end
end

-- Called by C for every message of a subscribed channel.
function hooks.redis_message(channel, payload, pattern)
  if not enabled then return end
  local kind, nspname = classify(channel, pattern)
  if kind == "broadcast" then
    on_broadcast(nspname, payload)
  elseif kind == "request" then
    on_request(nspname, payload)
  elseif kind == "response" then
    on_response(payload)
  end
end

return nil
