-- scheduler.test.mjs: long handlers are preempted (other clients' handlers run in the middle of
-- them), the time budget spans slices and pcall cannot catch its abort, the top level is never
-- preempted.

-- The top level runs ~200 ms of CPU (two slices at least) before it sets its options: were it
-- preempted, the server would read io.options before this line and start with the default
-- pingInterval. (The budget, --handler-timeout, is wall-clock time: on a loaded machine 200 ms of
-- CPU can take seconds, hence the test's 8000 ms budget.)
local c0 = os.clock()
while os.clock() - c0 < 0.2 do end
io.options{ pingInterval = 12345 }

local marks = 0 -- "mark" events handled so far, by any client
local order = {} -- socket id -> the events "first" and "second" in the order they were handled

io.on("connection", function(socket)
  socket.on("echo", function(x, ack) ack(x) end)
  socket.on("mark", function() marks = marks + 1 end)

  -- Runs until a "mark" is handled meanwhile (true), or for 3 s of CPU (false): it can see one
  -- only if it is preempted and the mark's handler runs in the middle of it.
  socket.on("long", function(ack)
    local start, t0 = marks, os.clock()
    while marks == start and os.clock() - t0 < 3 do end
    ack(marks ~= start)
  end)

  -- A long computation (preempted several times) and then an emitWithAck: both go on as usual.
  socket.on("long-then-ask", function(ack)
    local t0, n = os.clock(), 0
    while os.clock() - t0 < 0.4 do n = n + 1 end
    local reply = socket.emitWithAck("question", n > 0)
    ack(reply)
  end)

  -- A client's events keep their order: "second" waits while "first" is preempted.
  socket.on("first", function()
    local t0 = os.clock()
    while os.clock() - t0 < 0.3 do end
    order[socket.id] = (order[socket.id] or "") .. "first "
  end)
  socket.on("second", function() order[socket.id] = (order[socket.id] or "") .. "second" end)
  socket.on("order", function(ack) ack(order[socket.id]) end)

  -- pcall cannot keep a handler past its budget: "after-pcall" is never sent.
  socket.on("pcall-spin", function()
    local ok = pcall(function() while true do end end)
    socket.emit("after-pcall", ok)
  end)
end)
