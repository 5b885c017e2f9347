-- The hostile suite's app (tests/hostile/hostile.py): an echo with ack for the health check, the
-- counts the suite compares with its baseline, and handlers that misbehave on purpose.
local count = 0        -- sockets connected, kept by the connection/disconnect handlers
local gone = {}        -- sockets that disconnected, kept to emit on them later
local reasons = {}     -- socket id -> the reason its disconnect handler got (the last 200)
local nreasons = 0

io.on("connection", function(socket)
  count = count + 1

  socket.on("echo", function(...)
    local args = table.pack(...)
    local ack = args[args.n]
    if type(ack) == "function" then ack(table.unpack(args, 1, args.n - 1)) end
  end)

  -- The counts: both must be 1 (the health checker itself) once an attacker is gone.
  socket.on("stats", function(ack)
    ack({ sockets = count, fetched = #io.fetchSockets(), gone = #gone })
  end)

  socket.on("boom", function() error("kaboom") end)
  -- "spinning" goes out at the end of the loop turn: once the spin lets the loop go on
  socket.on("spin", function() socket.emit("spinning") while true do end end)
  -- where Lua cannot yield (a table.sort comparator), only the time budget stops it
  socket.on("stall", function()
    socket.emit("spinning")
    local t = {}
    for i = 1, 64 do t[i] = i end
    table.sort(t, function() while true do end end)
  end)
  -- a large ack (a client that asks and never reads makes the server hold it)
  socket.on("big", function(n, ack) ack(string.rep("x", n)) end)
  -- the Lua heap (KiB) and the reason a given socket's disconnect handler got
  socket.on("mem", function(ack) ack(collectgarbage("count")) end)
  socket.on("reason", function(id, ack) ack(reasons[id] or siolua.null) end)
  socket.on("bomb", function()
    local t, s = {}, string.rep("x", 1 << 20)
    for i = 1, 1 << 20 do t[i] = s .. i end
  end)
  socket.on("bytecode", function(ack)
    local f, err = load(string.dump(function() return 1 end))
    ack(f == nil, tostring(err))
  end)
  -- API misuse: emitting on a socket this handler has just closed, acking after it.
  socket.on("emit-after-close", function(ack)
    socket.disconnect(true)
    local ok = socket.emit("late", 1)
    if ack then ack(ok) end
  end)
  socket.on("self-disconnect", function(ack)
    socket.disconnect()
    socket.disconnect()
    if ack then ack("after") end
  end)
  socket.on("reserved", function() socket.emit("disconnect", "x") end)
  -- values: a relay to the sockets that listen, and what a binary packet decoded to
  socket.on("listen", function(ack) socket.join("listeners") ack() end)
  socket.on("relay", function(...) socket.to("listeners").emit("relayed", ...) end)
  socket.on("bins", function(list, ack)
    local shared = true
    for i = 2, #list do shared = shared and rawequal(list[i], list[1]) end
    ack(#list, shared, siolua.isbinary(list[1]) and #list[1] or -1)
  end)
  socket.on("bad-arg", function() socket.emit(nil) end)

  socket.on("disconnect", function(reason)
    count = count - 1
    if reasons[socket.id] == nil then nreasons = nreasons + 1 end
    reasons[socket.id] = reason
    if nreasons > 200 then reasons, nreasons = {}, 0 end
    gone[#gone + 1] = socket
    if #gone > 50 then table.remove(gone, 1) end
    -- emit on a dead socket from a timer too
    setTimeout(function() socket.emit("late", "timer") end, 10)
  end)
end)

io.of("/admin").on("connection", function(socket)
  socket.on("echo", function(x, ack) if type(ack) == "function" then ack(x) end end)
end)
