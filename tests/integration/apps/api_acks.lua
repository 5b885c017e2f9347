-- Acknowledgements and time for tests/integration/api_acks.test.mjs: server -> client acks with
-- and without a timeout, broadcasts with acks, emitWithAck suspending the handler (a coroutine),
-- and the timers. Its Node twin is ref/api_apps.mjs `api_acks`.
-- The clients answer "question" (cb("re:" .. text), after delay ms when asked) and never answer
-- "silent".

-- An error as the tests see it: its message, and what tostring gives.
local function err_view(err)
  if err == nil then return siolua.null end
  return { message = err.message, str = tostring(err) }
end

local function sorted(list)
  local out = siolua.array()
  for i, v in ipairs(list) do out[i] = v end
  table.sort(out)
  return out
end

io.on("connection", function(socket)
  socket.data.name = (socket.handshake.auth or {}).name or "anonymous"
  socket.on("join", function(room, ack)
    socket.join(room)
    ack()
  end)

  -- socket.emit with an ack callback, no timeout
  socket.on("ask", function(ev, q, ack)
    socket.emit(ev, q, function(...) ack(...) end)
  end)
  -- socket.timeout(ms).emit: callback(err, reply...)
  socket.on("ask-timeout", function(ev, q, ms, ack)
    socket.timeout(ms).emit(ev, q, function(err, ...)
      ack(err_view(err), ...)
    end)
  end)

  -- broadcast with an ack: callback(err, replies), one reply per recipient
  socket.on("ask-all", function(room, ev, ms, ack)
    local op = io.timeout(ms)
    if room ~= siolua.null then op = op.to(room) end
    op.emit(ev, { text = "all" }, function(err, replies)
      ack(err_view(err), sorted(replies))
    end)
  end)
  socket.on("ask-others", function(room, ev, ms, ack)
    socket.broadcast.to(room).timeout(ms).emit(ev, { text = "others" }, function(err, replies)
      ack(err_view(err), sorted(replies))
    end)
  end)

  -- emitWithAck: the handler is suspended until the reply (or the timeout, raised)
  socket.on("ewa", function(ev, q, ms, ack)
    local ok, reply
    if ms == siolua.null then
      ok, reply = pcall(function() return socket.emitWithAck(ev, q) end)
    else
      ok, reply = pcall(function() return socket.timeout(ms).emitWithAck(ev, q) end)
    end
    if ok then ack({ reply = reply }) else ack({ err = err_view(reply) }) end
  end)
  socket.on("ewa-all", function(room, ev, ms, ack)
    local ok, replies = pcall(function() return io.to(room).timeout(ms).emitWithAck(ev, { text = "all" }) end)
    if ok then ack({ replies = sorted(replies) }) else ack({ err = err_view(replies) }) end
  end)
  -- from a timer callback, which runs in a coroutine as well
  socket.on("ewa-timer", function(q)
    setTimeout(function()
      local reply = socket.timeout(5000).emitWithAck("question", q)
      socket.emit("timer-result", reply)
    end, 1)
  end)

  -- timers
  socket.on("timeout-once", function(ms)
    setTimeout(function(a, b) socket.emit("fired", a, b) end, ms, "x", 2)
  end)
  socket.on("interval", function(n, ms)
    local count, t = 0, nil
    t = setInterval(function()
      count = count + 1
      socket.emit("tick", count)
      if count == n then
        clearInterval(t)
        -- a few more periods: no tick may come after clearInterval
        setTimeout(function() socket.emit("interval-done", count) end, ms * 4)
      end
    end, ms)
  end)
  socket.on("cleared", function()
    local t = setTimeout(function() socket.emit("should-not-fire") end, 5)
    clearTimeout(t)
    local i = setInterval(function() socket.emit("should-not-fire") end, 5)
    clearInterval(i)
    setTimeout(function() socket.emit("cleared-ok") end, 40)
  end)
  socket.on("timer-names", function(ack)
    ack(siolua.setTimeout == setTimeout and siolua.setInterval == setInterval and siolua.clearTimeout == clearTimeout
      and siolua.clearInterval == clearInterval)
  end)
end)

-- a connection listener that waits for the client's answer before going on
io.of("/hello").on("connection", function(socket)
  local reply = socket.timeout(5000).emitWithAck("question", { text = "hello" })
  socket.emit("got", reply)
end)
