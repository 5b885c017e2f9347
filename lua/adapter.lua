-- adapter.lua: the adapter interface and the in-memory adapter. Every namespace holds an adapter
-- (lib.adapter_of), made from the server's adapter class when the namespace is; the operators
-- (prelude.lua) resolve their target namespaces (a parent's children) and call these operations,
-- the reference's Adapter (socket.io-adapter), in Lua: they are asynchronous (other servers answer
-- later), which the prelude's handlers can wait on, and the protocols that implement them are Lua.
-- The in-memory adapter calls C's fan-out (core.broadcast: one encoding, every recipient) at once,
-- so a broadcast costs one Lua call more than calling C directly.
--
-- An adapter class is a table with new(nsp) -> adapter, registered in lib.adapters[name]; C starts
-- one by name (hooks.adapter_start). An adapter's operations (a:op(...)):
--   init(), close()                          made / replaced (a hot reload does not close them)
--   broadcast(packet, opts)                  packet: {event, args..., n = count}; opts: {rooms,
--                                            except (sequences of names, empty: none), flags =
--                                            {volatile, compress, timeout, local}}
--   broadcastWithAck(packet, opts, clientCount, ack)
--                                            clientCount(n) once per server with how many clients
--                                            it sent to; ack(reply) per client's reply
--   serverCount(cb)                          cb(n): the servers of the cluster, this one included
--   fetchSockets(opts, cb)                   cb(err, sockets): local handles, then remote sockets
--   addSockets(opts, rooms), delSockets(opts, rooms), disconnectSockets(opts, close)
--   serverSideEmit(packet, cb|nil)           to the other servers' namespace listeners; cb(err,
--                                            responses) when they answered (packet: as broadcast's)
--   addAll(id, rooms), del(id, room), delAll(id), sockets(rooms) -> {id = true},
--   socketRooms(id) -> {room = true} | nil   the room index (rooms.c; socket.join and leave change
--                                            it in C directly, without a Lua call)
--   persistSession(session)                  connection state recovery: keeps session {sid, pid,
--                                            rooms, data (JSON text)} of a socket that left
--   restoreSession(pid, offset) -> session | nil
--                                            takes it back when the packets after its client's
--                                            offset are all held: {sid, pid, rooms, data, missed}
--                                            (missed: replayed by core.accept); nil otherwise.
--                                            Both over the server's store (C: rstore.h), which
--                                            outlives reloads and the process (--state-file)
-- Callbacks may run at once (this server's answer) or later (other servers'); none is called
-- twice. opts and packet belong to the caller: an adapter that keeps them copies them.
local core, hooks, lib = ...
local siolua = siolua
local unpack = table.unpack

local function rooms_arg(t) if #t == 0 then return nil end return t end

local function select_opts(nsp, opts)
  return core.select(nsp, rooms_arg(opts.rooms), rooms_arg(opts.except))
end

-- The one socket of this server with id in nsp, or nil.
local function by_id(nsp, id) return core.select(nsp, { id })[1] end

local Memory = { __name = "siolua.adapter.memory" }
Memory.__index = Memory

function Memory.new(nsp) return setmetatable({ nsp = nsp }, Memory) end
function Memory:init() end
function Memory:close() end

function Memory:broadcast(packet, opts)
  core.broadcast(self.nsp, rooms_arg(opts.rooms), rooms_arg(opts.except), opts.flags.volatile or false, nil,
    unpack(packet, 1, packet.n))
end

function Memory:broadcastWithAck(packet, opts, client_count, ack)
  client_count(core.broadcast(self.nsp, rooms_arg(opts.rooms), rooms_arg(opts.except), opts.flags.volatile or false,
    function(first) ack(first) end, unpack(packet, 1, packet.n)))
end

function Memory:serverCount(cb) cb(1) end
function Memory:fetchSockets(opts, cb) cb(nil, select_opts(self.nsp, opts)) end

function Memory:addSockets(opts, rooms)
  for _, s in ipairs(select_opts(self.nsp, opts)) do s.join(rooms) end
end

function Memory:delSockets(opts, rooms)
  for _, s in ipairs(select_opts(self.nsp, opts)) do
    for _, r in ipairs(rooms) do s.leave(r) end
  end
end

function Memory:disconnectSockets(opts, close)
  for _, s in ipairs(select_opts(self.nsp, opts)) do s.disconnect(close) end
end

-- No other server: no response, at once (the reference's in-memory adapter raises instead).
function Memory:serverSideEmit(packet, cb)
  if cb then cb(nil, siolua.array()) end
end

function Memory:addAll(id, rooms)
  local s = by_id(self.nsp, id)
  if s then s.join(rooms) end
end

function Memory:del(id, room)
  local s = by_id(self.nsp, id)
  if s then s.leave(room) end
end

function Memory:delAll(id)
  local s = by_id(self.nsp, id)
  if s then
    for r in pairs(s.rooms) do
      if r ~= id then s.leave(r) end
    end
  end
end

function Memory:sockets(rooms)
  local out = {}
  for _, s in ipairs(core.select(self.nsp, rooms_arg(rooms or {}))) do out[s.id] = true end
  return out
end

function Memory:socketRooms(id)
  local s = by_id(self.nsp, id)
  return s and s.rooms or nil
end

function Memory:persistSession(session)
  core.persist(self.nsp, session.sid, session.pid, session.rooms, session.data)
end
function Memory:restoreSession(pid, offset) return core.restore_session(self.nsp, pid, offset) end

lib.adapters = { memory = Memory }

---------------------------------------------------------------------------- namespaces' adapters

local class = Memory
local of = setmetatable({}, { __mode = "k" }) -- namespace object -> its adapter

-- The adapter of namespace nsp, made on first use (a dynamic namespace's parent, which has no
-- sockets and no channels of its own, keeps the in-memory one).
function lib.adapter_of(nsp)
  local a = of[nsp]
  if a == nil then
    a = (lib.is_parent(nsp) and Memory or class).new(nsp)
    of[nsp] = a
    a:init()
  end
  return a
end

-- Called by C when the server's adapter is started: at start-up once the app's top level ran, or
-- in a VM made by a hot reload of a server that has one. Every namespace's adapter is made again
-- from that class, as the reference's io.adapter(...) does.
function hooks.adapter_start(name)
  class = assert(lib.adapters[name], "no such adapter")
  local nsps = {}
  for nsp, a in pairs(of) do
    a:close()
    nsps[#nsps + 1] = nsp
  end
  for _, nsp in ipairs(nsps) do of[nsp] = nil end
  for _, nsp in ipairs(nsps) do lib.adapter_of(nsp) end
end

lib.adapter_of(io)

return nil
