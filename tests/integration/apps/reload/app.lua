-- The hot-reload tests' app (tests/integration/reload*.test.mjs). Each test copies this folder to a
-- fresh temporary folder, starts siolua on the copy and edits the copy: it rewrites the VERSION
-- line, breaks the file, fixes it... and checks which code answers. Never edited in place.
local VERSION = 1
local lib = require("lib")

-- Module-level state that must survive reloads lives in siolua.stash (JSON-able values).
siolua.stash.loads = (siolua.stash.loads or 0) + 1

-- A server-wide timer, started on demand; the flag in the stash lets every new version restart
-- it (the old version's timer is cancelled by the reload, as src/reload.h documents).
local function start_beat()
  siolua.setInterval(function() io.emit("beat", VERSION) end, 20)
end
if siolua.stash.beating then start_beat() end

-- A server -> client stream of numbered "push" events; the count lives in socket.data, so the
-- next version's connection handler continues it where the old one stopped.
local function start_push(socket)
  return siolua.setInterval(function()
    socket.data.pushed = socket.data.pushed + 1
    socket.emit("push", socket.data.pushed, VERSION)
  end, 5)
end

io.on("connection", function(socket)
  socket.data.connections = (socket.data.connections or 0) + 1
  if not socket.reloaded then socket.emit("hello", VERSION) end
  local push = socket.data.pushed and start_push(socket)

  socket.on("version", function(ack)
    ack({ app = VERSION, lib = lib.VERSION, fmt = lib.fmt_version(), reloaded = socket.reloaded == true,
      connections = socket.data.connections, loads = siolua.stash.loads })
  end)

  socket.on("join", function(room, ack) socket.join(room) ack(true) end)
  socket.on("rooms", function(ack)
    local list = siolua.array()
    for name in pairs(socket.rooms) do if name ~= socket.id then list[#list + 1] = name end end
    table.sort(list)
    ack(list)
  end)
  socket.on("to-room", function(room, msg) io.to(room).emit("room", msg, VERSION) end)

  socket.on("set", function(key, value, ack) socket.data[key] = value ack(true) end)
  socket.on("set-field", function(key, value, ack) socket[key] = value ack(true) end)
  socket.on("set-function", function(ack) socket.data.fn = function() end ack(type(socket.data.fn)) end)
  -- a table lua-cjson refuses as an array (too sparse): JSON-able, as an object
  socket.on("set-sparse", function(key, ack) socket.data[key] = { [1000] = true } ack(true) end)
  socket.on("stash-sparse", function(ack) siolua.stash.sparse = { [1000] = true } ack(true) end)
  socket.on("get", function(key, ack) ack(socket.data[key], type(socket.data[key])) end)
  socket.on("get-field", function(key, ack) ack(socket[key]) end)

  socket.on("start-beat", function(ack)
    if not siolua.stash.beating then siolua.stash.beating = true start_beat() end
    ack(true)
  end)
  socket.on("start-push", function(ack)
    if not push then socket.data.pushed = 0 push = start_push(socket) end
    ack(true)
  end)
  -- Asks the client (with an ack) and reports its answer: the callback belongs to this version.
  socket.on("ask", function()
    socket.emit("question", VERSION, function(answer) socket.emit("answered", answer, VERSION) end)
  end)
  -- The same in a handler suspended in emitWithAck: a reload abandons it (it never resumes).
  socket.on("ask-wait", function()
    local answer = socket.emitWithAck("question", VERSION)
    socket.emit("resumed", answer, VERSION)
  end)

  -- Numbered messages (the reload-under-traffic test): the server checks the sequence too.
  socket.on("seq", function(n, ack)
    local expected = (socket.data.seq or 0) + 1
    if n ~= expected then
      socket.data.bad = (socket.data.bad or 0) + 1
      print("seq: " .. socket.id .. " got " .. tostring(n) .. ", expected " .. expected)
    end
    socket.data.seq = n
    ack(n, VERSION)
  end)
  socket.on("seq-state", function(ack) ack(socket.data.seq or 0, socket.data.bad or 0) end)

  socket.on("disconnect", function(reason)
    if push then siolua.clearInterval(push) end
    print("disconnect " .. socket.id .. " " .. reason)
  end)
end)

io.of("/admin").on("connection", function(socket)
  socket.on("version", function(ack) ack(VERSION, socket.reloaded == true) end)
end)

io.on("reload", function(generation) io.emit("reloaded", generation, VERSION) end)
