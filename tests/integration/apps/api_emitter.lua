-- The one event emitter (src/lemitter.c) for tests/integration/api_emitter.test.mjs: a socket, io,
-- a namespace, io.engine, a siolua.engine endpoint and a conn have the reference's EventEmitter
-- methods, with its semantics. Its Node twin is ref/api_apps.mjs `api_emitter`.
local endpoint = siolua.engine{ path = "/emitter.io/" }
local other = io.of("/other")
local order = {} -- what /other's "connection" listeners saw, in order
other.on("connection", function() order[#order + 1] = "on" end)
other.prependListener("connection", function() order[#order + 1] = "prepend" end)
other.once("connection", function() order[#order + 1] = "once" end)
other.prependOnceListener("connection", function() order[#order + 1] = "prependOnce" end)

-- Every method on event "e1" (and "e2") of x; what each step saw.
local function exercise(x)
  local r = {}
  local function f() return function() end end
  local f1, f2, f3, f4 = f(), f(), f(), f()
  r.chain = rawequal(x.on("e1", f1), x) and rawequal(x:prependListener("e1", f2), x) and rawequal(x.once("e1", f3), x)
    and rawequal(x:prependOnceListener("e1", f4), x)
  r.count = x.listenerCount("e1")
  local ls = x.listeners("e1")
  r.order = #ls == 4 and ls[1] == f4 and ls[2] == f2 and ls[3] == f1 and ls[4] == f3
  x.on("e1", f1) -- a second instance of f1: off removes one, the last added
  r.off = rawequal(x.off("e1", f1), x)
  ls = x.listeners("e1")
  r.afterOff = #ls == 4 and ls[3] == f1 and ls[4] == f3
  x.removeListener("e1", f2)
  r.afterRemove = x.listenerCount("e1")
  x.addListener("e2", f1)
  local names = {}
  for _, n in ipairs(x.eventNames()) do names[n] = true end
  r.names = names.e1 == true and names.e2 == true
  r.removeAll = rawequal(x.removeAllListeners("e1"), x)
  r.afterAll = x.listenerCount("e1")
  r.u = x.listenerCount("e2")
  x.off("e2", f1)
  r.none = x.listenerCount("e2")
  return r
end

io.on("connection", function(socket)
  local log = {}
  socket.on("exercise", function(ack)
    ack({ socket = exercise(socket), io = exercise(io), nsp = exercise(other), engine = exercise(io.engine),
      endpoint = exercise(endpoint), conn = exercise(socket.conn) })
  end)
  -- listeners of a client's event fire in order; a one-shot one once
  socket.on("t", function(x) log[#log + 1] = "on" .. x end)
  socket.prependListener("t", function(x) log[#log + 1] = "prepend" .. x end)
  socket.once("t", function(x) log[#log + 1] = "once" .. x end)
  socket.prependOnceListener("t", function(x) log[#log + 1] = "prependOnce" .. x end)
  socket.on("log", function(ack) ack(log) end)
  socket.on("order", function(ack) ack(order) end)
end)
