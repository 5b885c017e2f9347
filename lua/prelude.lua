-- siolua's Lua-side prelude: the parts of the server API that are sugar over the C primitives in
-- `core` (broadcast operators, middlewares, catch-all listeners, namespaces' listeners, dynamic
-- namespaces, acknowledgements with timeouts, emitWithAck). It runs once per Lua VM, before app.lua
-- (src/lapp.c runs the prelude files in their order). The hot paths (packet decoding, listener
-- calls, encoding, fan-out) stay in C.
-- Its arguments, out of the app's reach (the registry): core, C's primitives (lapp.c's list);
-- hooks, the entry points C calls; lib, what the prelude files share.
local core, hooks, lib = ...
local siolua = siolua

local null = siolua.null
local pack, unpack = table.pack, table.unpack
local TIMEOUT = "operation has timed out"
local run_chain -- defined with the connection code below
local restore, jsonable -- connection state recovery (below), the JSON-able copy (hot reload)

-- Objects whose methods work both as obj.m(x) and obj:m(x): the method is returned bound.
local function bind(self, m)
  return function(first, ...)
    if rawequal(first, self) then return m(self, ...) end
    return m(self, first, ...)
  end
end

lib.bind = bind
hooks.bind = bind

local function list(v)
  if v == nil then return {} end
  if type(v) == "table" then
    local out = {}
    for i = 1, #v do out[i] = tostring(v[i]) end
    return out
  end
  return { tostring(v) }
end

local function concat(a, b)
  local out = {}
  for i = 1, #a do out[#out + 1] = a[i] end
  for i = 1, #b do out[#out + 1] = b[i] end
  return out
end

local function check_event(ev)
  if type(ev) ~= "string" then error("event name must be a string", 3) end
  if lib.reserved[ev] then error('"' .. ev .. '" is a reserved event name', 3) end
end

-- An error value the app can test: a table with .message, printed as its message.
local Error = { __tostring = function(e) return e.message end }
local function new_error(message, data)
  return setmetatable({ message = message, data = data }, Error)
end
siolua.Error = new_error

---------------------------------------------------------------------------- timers used below

local function after(ms, fn)
  return siolua.setTimeout(fn, ms)
end

---------------------------------------------------------------------------- acknowledgements

-- Runs fn(done) and returns what done(...) got, packed: at once when done was called during fn (an
-- in-memory adapter's answer), else after suspending the calling handler until it is (another
-- node's); what names the operation when that cannot be, at the top level.
local function wait(what, fn)
  local co, main = coroutine.running()
  local result, ready, waiting = nil, false, false
  fn(function(...)
    if ready then return end
    ready = true
    result = pack(...)
    if waiting then core.resume(co) end
  end)
  if not ready then
    if main then error(what .. " must be called from a handler (a coroutine), not at the top level", 3) end
    waiting = true
    coroutine.yield()
  end
  return result
end
lib.wait = wait

-- Runs fn(callback) and suspends the calling handler until callback fires; returns what it got.
-- A reply of the form (err, ...) where err is set raises err, as the reference's promise rejects.
local function await(fn, raise_first)
  local co, main = coroutine.running()
  if main then error("emitWithAck must be called from a handler (a coroutine), not at the top level", 3) end
  local result, ready = nil, false
  fn(function(...)
    if ready then return end
    ready = true
    result = pack(...)
    if coroutine.status(co) == "suspended" then core.resume(co) end
  end)
  if not ready then coroutine.yield() end
  if raise_first then
    if result[1] ~= nil then error(result[1], 2) end
    return unpack(result, 2, result.n)
  end
  return unpack(result, 1, result.n)
end

---------------------------------------------------------------------------- broadcast operators

-- An operator is immutable, as the reference's BroadcastOperator: every modifier returns a new one.
-- Its _opts are the adapter's BroadcastOptions: rooms and except (sequences of room names, empty
-- for none) and flags (volatile, compress, timeout, local).
local Operator = {}
local op_methods, op_props = {}, {}
local NONE = {} -- an empty room list (never changed: with and concat make new ones)

local function new_op(nsp, rooms, except, flags, socket)
  return setmetatable({ _nsp = nsp, _socket = socket,
    _opts = { rooms = rooms or NONE, except = except or NONE, flags = flags or {} } }, Operator)
end

local function with(op, changes)
  local flags = {}
  local opts = op._opts
  for k, v in pairs(opts.flags) do flags[k] = v end
  for k, v in pairs(changes.flags or {}) do flags[k] = v end
  local socket, except = op._socket, changes.except or opts.except
  if socket and (changes.rooms or changes.except) then
    -- socket.volatile.to(room): a broadcast from the socket, which excludes itself
    except = concat({ socket.id }, except)
    socket = nil
  end
  return new_op(op._nsp, changes.rooms or opts.rooms, except, flags, socket)
end

Operator.__index = function(self, k)
  local p = op_props[k]
  if p then return p(self) end
  local m = op_methods[k]
  if m then return bind(self, m) end
end
Operator.__name = "siolua.operator"

function op_methods.to(self, room) return with(self, { rooms = concat(self._opts.rooms, list(room)) }) end
op_methods["in"] = op_methods.to
function op_methods.except(self, room) return with(self, { except = concat(self._opts.except, list(room)) }) end
function op_methods.compress(self, on) return with(self, { flags = { compress = on ~= false } }) end
function op_methods.timeout(self, ms) return with(self, { flags = { timeout = ms } }) end
function op_props.volatile(self) return with(self, { flags = { volatile = true } }) end
op_props["local"] = function(self) return with(self, { flags = { ["local"] = true } }) end
function op_props.broadcast(self) return self end

-- A dynamic namespace's parent (io.of(pattern or function)) has no sockets of its own: emit reaches
-- its children, and the socket operations find nothing, as the reference's ParentNamespace.
local nsp_state_of -- set below
local function is_parent(nsp)
  local st = nsp_state_of(nsp)
  return st ~= nil and st.children ~= nil
end
lib.is_parent = is_parent

-- The namespaces an emit reaches: a parent's children, or the namespace itself.
local function targets(nsp)
  if is_parent(nsp) then
    local out = {}
    for _, child in pairs(nsp_state_of(nsp).children) do out[#out + 1] = child end
    return out
  end
  return { nsp }
end

-- The adapter of a namespace (adapter.lua).
local function adapter(nsp) return lib.adapter_of(nsp) end

-- A broadcast with an ack, as the reference's BroadcastOperator.emit: each target namespace's
-- adapter reports how many clients it sent to per server (clientCount) and every client's ack;
-- callback(err, replies) once every server counted and every client replied, or at the timeout
-- with the replies so far.
local function broadcast_with_ack(self, nsps, packet, cb)
  local opts, timeout = self._opts, self._opts.flags.timeout
  local replies, done, timer = siolua.array(), false, nil
  local counts, expected_servers, actual_servers, expected_clients = #nsps, 0, 0, 0
  local function finish(err)
    if done then return end
    done = true
    if timer then siolua.clearTimeout(timer) end
    core.call(cb, "broadcast ack callback", err, replies)
  end
  local function check()
    if counts == 0 and expected_servers == actual_servers and #replies == expected_clients then finish(nil) end
  end
  local function client_count(n)
    expected_clients = expected_clients + n
    actual_servers = actual_servers + 1
    check()
  end
  local function on_reply(first) -- the reference collects the first argument of each reply
    if done then return end
    if first == nil then first = null end
    replies[#replies + 1] = first
    check()
  end
  if timeout then timer = after(timeout, function() finish(new_error(TIMEOUT)) end) end
  for _, nsp in ipairs(nsps) do
    local a = adapter(nsp)
    a:broadcastWithAck(packet, opts, client_count, on_reply)
    a:serverCount(function(n)
      expected_servers = expected_servers + n
      counts = counts - 1
      check()
    end)
  end
  check() -- no target namespace (a parent without children): at once
  return true
end

function op_methods.emit(self, ev, ...)
  check_event(ev)
  local packet = pack(ev, ...) -- the adapter's packet: the event and its arguments
  local cb = packet.n > 1 and type(packet[packet.n]) == "function" and packet[packet.n] or nil
  if cb then
    packet[packet.n] = nil
    packet.n = packet.n - 1
  end
  if self._socket then
    -- socket-level: socket.timeout(ms).emit / socket.volatile.emit
    local socket, flags = self._socket, self._opts.flags
    if cb and flags.timeout then
      local id, done, timer
      local user = cb
      timer = after(flags.timeout, function()
        if done then return end
        done = true
        core.cancel_ack(socket, id)
        user(new_error(TIMEOUT))
      end)
      cb = function(...)
        if done then return end
        done = true
        siolua.clearTimeout(timer)
        user(nil, ...)
      end
      local sent
      sent, id = core.emit(socket, flags.volatile or false, ev, cb, unpack(packet, 2, packet.n))
      return sent
    end
    return (core.emit(socket, flags.volatile or false, ev, cb, unpack(packet, 2, packet.n)))
  end
  local nsps = targets(self._nsp)
  if cb then return broadcast_with_ack(self, nsps, packet, cb) end
  for i = 1, #nsps do adapter(nsps[i]):broadcast(packet, self._opts) end
  return true
end

-- Suspends the calling handler until the ack comes: returns the reply (a socket) or the list of
-- replies (a broadcast); raises "operation has timed out" at the timeout, as the promise rejects.
function op_methods.emitWithAck(self, ev, ...)
  local args = pack(...)
  -- broadcasts and timed emits answer (err, ...); a plain socket emit answers (...)
  local err_first = self._opts.flags.timeout ~= nil or self._socket == nil
  return await(function(done)
    args[args.n + 1] = err_first and done or function(...) done(nil, ...) end
    op_methods.emit(self, ev, unpack(args, 1, args.n + 1))
  end, true)
end

function op_methods.send(self, ...) return op_methods.emit(self, "message", ...) end

-- The sockets the operator selects, of every server (suspends the handler while other servers
-- answer; raises what the adapter reports, e.g. a timeout).
function op_methods.fetchSockets(self)
  if is_parent(self._nsp) then return {} end
  local r = wait("fetchSockets", function(done) adapter(self._nsp):fetchSockets(self._opts, done) end)
  if r[1] ~= nil then error(r[1], 2) end
  return r[2]
end

-- A list of room names (strings, deduplicated) as an array, from a table, a value or nil.
local function strlist(t)
  local out = siolua.array()
  if t == nil or t == null then return out end
  if type(t) ~= "table" then t = { t } end
  local seen = {}
  for i = 1, #t do
    local v = t[i]
    if v ~= nil and v ~= null then
      v = tostring(v)
      if not seen[v] then
        seen[v] = true
        out[#out + 1] = v
      end
    end
  end
  return out
end
lib.strlist = strlist

function op_methods.socketsJoin(self, room)
  if not is_parent(self._nsp) then adapter(self._nsp):addSockets(self._opts, strlist(room)) end
end

function op_methods.socketsLeave(self, room)
  if not is_parent(self._nsp) then adapter(self._nsp):delSockets(self._opts, strlist(room)) end
end

function op_methods.disconnectSockets(self, close)
  if not is_parent(self._nsp) then adapter(self._nsp):disconnectSockets(self._opts, close == true) end
end

lib.new_op = new_op
lib.op_methods, lib.op_props = op_methods, op_props

---------------------------------------------------------------------------- namespaces

-- Per-namespace state of the Lua side: middlewares, children of a parent namespace (listeners are C's).
local nsp_state = setmetatable({}, { __mode = "k" })
local function state(nsp)
  local st = nsp_state[nsp]
  if not st then
    st = { middlewares = {} }
    nsp_state[nsp] = st
  end
  return st
end
nsp_state_of = function(nsp) return nsp_state[nsp] end

local nsp_methods, nsp_props = {}, {}
lib.nsp_methods = nsp_methods
hooks.nsp_methods, hooks.nsp_props = nsp_methods, nsp_props -- for the namespace objects (lnsp.c)

function nsp_methods.use(self, fn)
  if type(fn) ~= "function" then error("middleware must be a function", 2) end
  table.insert(state(self).middlewares, fn)
  return self
end

-- Calls the namespace's listeners for ev (and its parent's, for a child of a dynamic namespace).
local function fire(nsp, ev, ...)
  core.fire(nsp, ev, ...)
  local st = nsp_state[nsp]
  if st and st.parent then fire(st.parent, ev, ...) end
end
lib.fire = fire

for _, name in ipairs({ "to", "in", "except", "compress", "timeout", "emit", "emitWithAck", "send",
  "fetchSockets", "socketsJoin", "socketsLeave", "disconnectSockets" }) do
  nsp_methods[name] = function(self, ...) return op_methods[name](new_op(self), ...) end
end
-- the reference's ParentNamespace refuses this one (a child may exist on one server and not on
-- another); io.of(pattern).to(room).fetchSockets() finds nothing, as its own sockets
function nsp_methods.fetchSockets(self)
  if is_parent(self) then error("fetchSockets() is not supported on parent namespaces", 2) end
  return op_methods.fetchSockets(new_op(self))
end
-- The reference's namespace events that serverSideEmit may not use.
local nsp_reserved = { connect = true, connection = true, new_namespace = true }
lib.nsp_reserved = nsp_reserved

-- io.serverSideEmit(ev, args...[, function(err, responses) end]): the other servers' namespace
-- listeners io.on(ev, function(args...[, callback]) end) get it (never this server's).
function nsp_methods.serverSideEmit(self, ev, ...)
  if type(ev) ~= "string" then error("event name must be a string", 2) end
  if nsp_reserved[ev] then error('"' .. ev .. '" is a reserved event name', 2) end
  local packet = pack(ev, ...)
  local cb = packet.n > 1 and type(packet[packet.n]) == "function" and packet[packet.n] or nil
  if cb then
    packet[packet.n] = nil
    packet.n = packet.n - 1
  end
  adapter(self):serverSideEmit(packet, cb and function(err, responses)
    core.call(cb, "serverSideEmit callback", err, responses)
  end)
  return true
end

-- Suspends the handler until every other server answered: returns the responses, raises on timeout.
function nsp_methods.serverSideEmitWithAck(self, ev, ...)
  local args = pack(...)
  local r = wait("serverSideEmitWithAck", function(done)
    args.n = args.n + 1
    args[args.n] = done
    nsp_methods.serverSideEmit(self, ev, unpack(args, 1, args.n))
  end)
  if r[1] ~= nil then error(r[1], 2) end
  return r[2]
end

-- io.serverCount(): how many servers the cluster has (1 without Redis); may suspend the handler.
function nsp_methods.serverCount(self)
  return wait("serverCount", function(done) adapter(self):serverCount(done) end)[1]
end

function nsp_props.volatile(self) return new_op(self, nil, nil, { volatile = true }) end
nsp_props["local"] = function(self) return new_op(self, nil, nil, { ["local"] = true }) end
function nsp_props.sockets(self)
  if rawequal(self, io) then return self end -- io.sockets is the main namespace, as in the reference
  local out = {}
  for _, s in ipairs(core.select(self)) do out[s.id] = s end
  return out
end

-- Called by C when io.of(name) made a namespace: its adapter (adapter.lua), then io.on(
-- "new_namespace", fn) listeners.
function hooks.new_namespace(nsp)
  adapter(nsp)
  fire(io, "new_namespace", nsp)
end

-- Dynamic namespaces: io.of(pattern or function). A pattern is a Lua pattern string starting with
-- "^" (a namespace name always starts with "/", so it cannot be mistaken for one).
local dynamic = {}
-- Called by C for io.of(pattern or function).
function hooks.of_dynamic(spec)
  local parent = setmetatable({ name = type(spec) == "string" and spec or "<function>" }, getmetatable(io))
  nsp_state[parent] = { middlewares = {}, children = {}, matcher = spec }
  table.insert(dynamic, parent)
  return parent
end

-- The child `name` of dynamic namespace `parent` (created by the first CONNECT its matcher accepts).
local function make_child(parent, name)
  local child = io.of(name)
  state(child).parent = parent
  nsp_state[parent].children[name] = child
  core.mark_child(child)
  return child
end

-- Asks the dynamic namespaces, in the order they were made, whether `name` is one of their
-- children: a pattern answers at once, a function calls its next(err, allow) now or later (after a
-- timer, an emitWithAck), once (a second call is ignored; raising refuses). done(child) gets the
-- child namespace, or nil when none accepts; alive() tells whether the answer is still wanted.
local function find_parent(name, auth, done, alive)
  local i = 0
  local function try_next()
    i = i + 1
    local parent = dynamic[i]
    if parent == nil then return done(nil) end
    local st = nsp_state[parent]
    if type(st.matcher) == "string" then
      if string.find(name, st.matcher) ~= nil then return done(make_child(parent, name)) end
      return try_next()
    end
    local called = false
    local function answer(err, allow)
      if called or not alive() then return end
      called = true
      if err == nil and allow == true then return done(make_child(parent, name)) end
      try_next()
    end
    core.call(function()
      local ok, err = pcall(st.matcher, name, auth, answer)
      if not ok then
        answer(err, false) -- a function that raises refuses (unless it answered first)
        error(err, 0)      -- and is logged
      end
    end, "dynamic namespace")
  end
  try_next()
end

-- Called by C when a client CONNECTs to a namespace that does not exist: the dynamic namespaces
-- decide, and core.resolved(token, child | nil) answers (nil: "Invalid namespace").
function hooks.resolve(name, auth, token)
  find_parent(name, auth, function(child) core.resolved(token, child) end,
    function() return core.resolving(token) end)
end

-- Called by C when an empty child namespace is removed (cleanupEmptyChildNamespaces).
function hooks.nsp_free(nsp)
  local st = nsp_state[nsp]
  if st and st.parent then
    local pst = nsp_state[st.parent]
    if pst and pst.children then pst.children[nsp.name] = nil end
  end
  nsp_state[nsp] = nil
end

---------------------------------------------------------------------------- connection

-- Runs middlewares one after the other: each gets (arg, next) and calls next() to go on or
-- next(err) to stop, now or later (from a timer, another callback); a second call of the same
-- next is ignored. done() runs after the last one, refuse(err) at the first error.
run_chain = function(chain, what, arg, done, refuse)
  local i = 0
  local function step(err)
    if err ~= nil then return refuse(err) end
    i = i + 1
    local m = chain[i]
    if m == nil then return done() end
    local called = false
    core.call(m, what, arg, function(e)
      if called then return end
      called = true
      step(e)
    end)
  end
  step(nil)
end

-- Connection state recovery (the reference's Namespace._createSocket): a CONNECT whose auth
-- carries the pid and offset the client got gets the socket back from the adapter's
-- restoreSession: its id, data (socket.recovered), then in core.accept the packets it missed and
-- its rooms. true when restored.
restore = function(nsp, socket)
  local auth = core.uv(socket) and core.uv(socket).auth
  if type(auth) ~= "table" or type(auth.pid) ~= "string" or type(auth.offset) ~= "string" then return false end
  local session = adapter(nsp):restoreSession(auth.pid, auth.offset)
  if session == nil or not core.recover(socket, session) then return false end
  local ok, data = pcall(core.json_decode, session.data)
  if ok and data ~= nil then core.uv(socket, true).data = data end
  return true
end

-- Called by C when a socket with a pid leaves for a recoverable reason (after "disconnecting"):
-- the adapter keeps its session, as the reference's Socket._onclose.
function hooks.persist(socket)
  local rooms = {}
  for r in pairs(socket.rooms) do rooms[#rooms + 1] = r end
  table.sort(rooms)
  local uv = core.uv(socket)
  local data = uv and uv.data
  adapter(core.nsp(socket)):persistSession({ sid = socket.id, pid = core.pid(socket), rooms = rooms,
    data = data ~= nil and core.json_encode(jsonable(data) or {}, true) or "{}" })
end

-- Called by C for every CONNECT to an existing namespace: runs the middlewares (parent's first),
-- each of which calls next() or next(err), now or later; then accepts and fires "connection".
function hooks.connect(nsp, socket)
  local st = state(nsp)
  local rec = core.recovery()
  -- a restored socket skips the middlewares (connectionStateRecovery.skipMiddlewares); with no
  -- middleware (the common case): no chain, no closures left behind per connection
  if (rec and restore(nsp, socket) and rec.skipMiddlewares)
      or (#st.middlewares == 0 and not (st.parent and #state(st.parent).middlewares > 0)) then
    if core.accept(socket) then fire(nsp, "connection", socket) end
    return
  end
  local chain = {}
  if st.parent then
    for _, m in ipairs(state(st.parent).middlewares) do chain[#chain + 1] = m end
  end
  for _, m in ipairs(st.middlewares) do chain[#chain + 1] = m end
  run_chain(chain, "middleware", socket, function()
    if core.accept(socket) then fire(nsp, "connection", socket) end
  end, function(err)
    local message, data
    if type(err) == "table" then
      message, data = err.message, err.data
    else
      message = tostring(err)
    end
    core.refuse(socket, tostring(message or "error"), data)
  end)
end

---------------------------------------------------------------------------- sockets

local socket_methods, socket_props = {}, {}
hooks.socket_methods, hooks.socket_props = socket_methods, socket_props -- for the handles (lsocket.c)

function socket_props.broadcast(self) return new_op(core.nsp(self), nil, { self.id }) end
function socket_methods.to(self, room) return new_op(core.nsp(self), list(room), { self.id }) end
socket_methods["in"] = socket_methods.to
function socket_methods.except(self, room)
  return new_op(core.nsp(self), nil, concat({ self.id }, list(room)))
end
function socket_props.volatile(self) return new_op(core.nsp(self), nil, nil, { volatile = true }, self) end
socket_props["local"] = function(self) return new_op(core.nsp(self), nil, { self.id }, { ["local"] = true }) end
function socket_methods.timeout(self, ms) return new_op(core.nsp(self), nil, nil, { timeout = ms }, self) end
function socket_methods.compress(self, on) return new_op(core.nsp(self), nil, nil, { compress = on ~= false }, self) end

function socket_methods.emitWithAck(self, ev, ...)
  return op_methods.emitWithAck(new_op(core.nsp(self), nil, nil, {}, self), ev, ...)
end

function socket_methods.send(self, ...) return self.emit("message", ...) end
function socket_methods.write(self, ...) return self.emit("message", ...) end

-- socket.use(function(packet, next) ... end): packet is { event, args... } (as the reference's
-- array); next(err) drops the packet and emits "error" on the socket with err.
function socket_methods.use(self, fn)
  local uv = core.uv(self, true)
  uv.mw = uv.mw or {}
  table.insert(uv.mw, fn)
  return self
end

local function any_list(self, key)
  local uv = core.uv(self, true)
  uv[key] = uv[key] or {}
  return uv[key]
end
function socket_methods.onAny(self, fn) table.insert(any_list(self, "any"), fn) return self end
function socket_methods.prependAny(self, fn) table.insert(any_list(self, "any"), 1, fn) return self end
function socket_methods.offAny(self, fn)
  local l = any_list(self, "any")
  for i = #l, 1, -1 do if fn == nil or l[i] == fn then table.remove(l, i) end end
  if #l == 0 then core.uv(self).any = nil end
  return self
end
function socket_methods.listenersAny(self) return { table.unpack((core.uv(self) or {}).any or {}) } end
function socket_methods.onAnyOutgoing(self, fn)
  table.insert(any_list(self, "anyout"), fn)
  core.watch_outgoing(self, true)
  return self
end
function socket_methods.prependAnyOutgoing(self, fn)
  table.insert(any_list(self, "anyout"), 1, fn)
  core.watch_outgoing(self, true)
  return self
end
function socket_methods.offAnyOutgoing(self, fn)
  local l = any_list(self, "anyout")
  for i = #l, 1, -1 do if fn == nil or l[i] == fn then table.remove(l, i) end end
  if #l == 0 then
    core.uv(self).anyout = nil
    core.watch_outgoing(self, false)
  end
  return self
end
function socket_methods.listenersAnyOutgoing(self) return { table.unpack((core.uv(self) or {}).anyout or {}) } end

-- Called by C for an incoming event when the socket has middlewares or catch-all listeners.
function hooks.dispatch(socket, ev, ...)
  local uv = core.uv(socket, true)
  local args = pack(ev, ...)
  local function deliver()
    for _, fn in ipairs({ table.unpack(uv.any or {}) }) do core.call(fn, "onAny", unpack(args, 1, args.n)) end
    core.fire(socket, unpack(args, 1, args.n))
  end
  local mw = uv.mw
  if not mw or #mw == 0 then return deliver() end
  run_chain(mw, "socket middleware", args, deliver, function(err) core.fire(socket, "error", err) end)
end

-- Called by C before an outgoing event when the socket has onAnyOutgoing listeners.
function hooks.outgoing(socket, ...)
  for _, fn in ipairs({ table.unpack((core.uv(socket) or {}).anyout or {}) }) do core.call(fn, "onAnyOutgoing", ...) end
end

---------------------------------------------------------------------------- hot reload

-- siolua.stash survives reloads (its JSON-able values): keep module-level state there.
siolua.stash = {}

-- A copy of v with only what JSON carries (nil for the rest): what survives a reload, and what
-- cluster.lua sends of a socket to other nodes. A sparse array (integer keys with large holes,
-- which JSON cannot carry) becomes an object whose keys are the numbers as strings; a cycle, or
-- nesting past 64 levels (the JSON encoder's limit), ends in nil.
jsonable = function(v, seen, depth)
  local t = type(v)
  if t == "string" or t == "boolean" or v == null then return v end
  if t == "number" then return v end -- NaN and infinities are written null, as JSON.stringify does
  local mt = getmetatable(v)
  if t ~= "table" or mt ~= nil and not core.value_mark(mt) then return nil end
  seen, depth = seen or {}, depth or 1
  if seen[v] or depth > 64 then return nil end
  seen[v] = true
  local out, n, max, ints = {}, 0, 0, true
  for k, x in pairs(v) do
    if math.type(k) == "integer" and k > 0 then
      n = n + 1
      if k > max then max = k end
    else
      ints = false
    end
    if type(k) == "string" or math.type(k) == "integer" then out[k] = jsonable(x, seen, depth + 1) end
  end
  seen[v] = nil
  if ints and max > 10 and max > 2 * n then
    local obj = {}
    for k, x in pairs(out) do obj[tostring(k)] = x end
    out = obj
  elseif mt ~= nil then
    setmetatable(out, mt) -- an array stays one when empty, a decoded object keeps its key order
  end
  return out
end
lib.jsonable = jsonable

-- Reload, old VM: what each socket keeps (nil when it has nothing, the common case).
function hooks.export_all(sockets)
  local out = {}
  for i, socket in ipairs(sockets) do
    local uv = core.uv(socket) or {}
    if uv.data ~= nil and next(uv.data) ~= nil or uv.props ~= nil and next(uv.props) ~= nil or uv.auth ~= nil then
      local props = jsonable(uv.props) or {}
      props.reloaded = nil
      local ok, json = pcall(core.json_encode, { data = jsonable(uv.data) or {}, props = props, auth = jsonable(uv.auth) }, true)
      if ok then
        out[i] = json
      else
        print("siolua: reload: socket " .. socket.id .. "'s data could not be kept: " .. tostring(json))
      end
    end
  end
  return out
end

-- Reload, new VM: the socket's new handle gets what it kept; reloaded is true for the sockets the
-- old code had admitted (not for those still in the middlewares).
function hooks.adopt(socket, json, admitted)
  if not json and not admitted then return end
  local uv = core.uv(socket, true)
  if json then
    local t = core.json_decode(json)
    uv.data, uv.props, uv.auth = t.data, t.props, t.auth
  end
  if admitted then
    uv.props = uv.props or {}
    uv.props.reloaded = true
  end
end

function hooks.export_stash()
  return core.json_encode(jsonable(siolua.stash) or {}, true)
end

function hooks.import_stash(json)
  siolua.stash = core.json_decode(json)
end

-- A re-bound socket: its namespace's "connection" listeners (and a dynamic parent's) run again.
function hooks.reconnect(nsp, socket)
  local st = state(nsp)
  if not st.parent and nsp.name ~= "/" and #dynamic > 0 and #nsp.eventNames() == 0 then
    -- a child of a dynamic namespace: find its parent in the new code (its answer may come later)
    find_parent(nsp.name, socket.handshake.auth or {}, function(child)
      if child ~= nil and socket.connected then fire(nsp, "connection", socket) end
    end, function() return socket.connected end)
    return
  end
  fire(nsp, "connection", socket)
end

function hooks.reload(generation)
  fire(io, "reload", generation)
end

return nil
