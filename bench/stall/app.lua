-- bench/stall: bystanders' echo while one client sends handlers that never end.
--   echo   acks its argument back (the bystanders)
--   spin   `while true do end`: preempted every slice, aborted at --handler-timeout
--   stall  the same inside a table.sort comparator, where Lua cannot yield: only the budget stops it
io.on("connection", function(socket)
  socket.on("echo", function(x, ack) ack(x) end)
  socket.on("spin", function() while true do end end)
  socket.on("stall", function()
    local t = {}
    for i = 1, 64 do t[i] = i end
    table.sort(t, function() while true do end end)
  end)
end)
