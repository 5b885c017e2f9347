-- App of tests/integration/wire_async.test.mjs (issue 11): allowRequest and a dynamic namespace
-- function that answer later (after a timer, or after asking connected clients with emitWithAck),
-- twice, never, or raise. Its Node twin is ref/wire_apps.mjs `wire_async`.
io.options{
  allowRequest = function(req, callback)
    local q = req._query
    if q.mode == "timer" then
      setTimeout(function() callback(nil, true) end, tonumber(q.ms) or 30)
    elseif q.mode == "refuse" then
      setTimeout(function() callback("not today", false) end, 30)
    elseif q.mode == "ask" then
      local ok, replies = pcall(io.to("approvers").timeout(3000).emitWithAck, "approve", q.who)
      callback(nil, ok and replies[1] == true)
    elseif q.mode == "twice" then
      callback(nil, true)
      callback("second answer", false) -- ignored
    elseif q.mode == "never" then
      print("allowRequest keeps " .. req.url .. " waiting")
    elseif q.mode == "raise" then
      error("allowRequest failed on purpose")
    else
      callback(nil, true)
    end
  end,
}

-- a function namespace first, then a pattern: the pattern gets the names the function refuses
local late = io.of(function(name, auth, next)
  if name:sub(1, 6) ~= "/late-" then return next(nil, false) end
  if auth.mode == "twice" then
    next(nil, true)
    next("second answer", false) -- ignored
  elseif auth.mode == "never" then
    print("the namespace function keeps " .. name .. " waiting")
  elseif auth.mode == "ask" then
    local ok, replies = pcall(io.to("approvers").timeout(3000).emitWithAck, "approve", name)
    next(nil, ok and replies[1] == true)
  elseif auth.mode == "raise" then
    error("namespace function failed on purpose")
  else
    setTimeout(function() next(nil, auth.ok == true) end, 30)
  end
end)
late.on("connection", function(socket)
  socket.on("where", function(ack) ack(socket.nsp.name, "late") end)
end)
io.of("^/pat%-%d+$").on("connection", function(socket)
  socket.on("where", function(ack) ack(socket.nsp.name, "pattern") end)
end)

io.on("connection", function(socket)
  socket.on("approver", function(ack)
    socket.join("approvers")
    ack()
  end)
end)
