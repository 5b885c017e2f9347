-- App of tests/integration/wire_parent.test.mjs (issue 11): a dynamic namespace's parent, whose
-- socket operations behave as the reference's ParentNamespace (fetchSockets refused, the others
-- finding no socket of its own) while emit reaches its children; alone, or on Redis (--redis).
-- Its Node twin (without Redis) is ref/wire_apps.mjs `wire_parent`.
local dyn = io.of("^/dyn%-%d+$")
dyn.on("connection", function(socket)
  socket.join("r1")
  socket.on("rooms", function(ack)
    local t = siolua.array()
    for r in pairs(socket.rooms) do
      if r ~= socket.id then t[#t + 1] = r end
    end
    table.sort(t)
    ack(t)
  end)
end)

io.on("connection", function(socket)
  socket.on("parent", function(op, ack)
    if op == "fetch" then
      local ok, err = pcall(dyn.fetchSockets)
      ack({ ok = ok, message = not ok and (tostring(err):gsub("^.-:%d+: ", "")) or siolua.null })
    elseif op == "fetch-some" then
      ack({ #dyn["in"]("r1").fetchSockets(), #dyn.except("x").fetchSockets(), #dyn["local"].fetchSockets() })
    elseif op == "join" then
      dyn.socketsJoin("r2")
      ack(true)
    elseif op == "leave" then
      dyn["in"]("r1").socketsLeave("r1")
      ack(true)
    elseif op == "disconnect" then
      dyn.disconnectSockets(true)
      ack(true)
    elseif op == "emit" then
      dyn.emit("news", "all")
      dyn.to("r1").emit("news", "r1")
      dyn.except("r1").emit("news", "not r1")
      ack(true)
    end
  end)
end)
