-- The operations tests' app (ops_*.test.mjs): logs, probes and metrics under a scripted load.
-- Every client joins the room "all"; "echo" acks its arguments, "fanout" broadcasts to the room,
-- "boom" raises (a handler error with a traceback), "ask" emits to the client with an ack,
-- "ask_unanswered" the same with a 200 ms timeout, for a client that does not answer, "spin" never
-- ends (the watchdog aborts it).
io.on("connection", function(socket)
  print("connected " .. socket.id)
  socket.join("all")
  socket.on("echo", function(...)
    local args = table.pack(...)
    args[args.n](table.unpack(args, 1, args.n - 1))
  end)
  socket.on("fanout", function(msg) io.to("all").emit("fan", msg) end)
  socket.on("spin", function() while true do end end) -- aborted by --handler-timeout
  socket.on("boom", function()
    local t = nil
    return t.field -- attempt to index a nil value
  end)
  socket.on("ask", function(ack)
    socket.emit("question", 42, function(answer) ack(answer) end)
  end)
  socket.on("ask_unanswered", function(ack)
    socket.timeout(200).emit("silent", function(err) ack(err and err.message) end)
  end)
  socket.on("disconnect", function(reason) print("disconnected " .. socket.id .. " " .. reason) end)
end)

io.of("/other").on("connection", function(socket)
  socket.on("boom", function() error("other boom") end)
end)
