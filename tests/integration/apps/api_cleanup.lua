-- Not implemented yet when written (tests/integration/api_outgoing.test.mjs): the
-- cleanupEmptyChildNamespaces option: a child of a dynamic namespace is removed when its last
-- socket leaves, so the next CONNECT creates it again (new_namespace fires again). Its Node twin
-- is ref/api_apps.mjs `api_cleanup`.
io.options{ cleanupEmptyChildNamespaces = true }

local created = siolua.array()
io.on("new_namespace", function(nsp) created[#created + 1] = nsp.name end)

io.of("^/room%-%d+$").on("connection", function(socket)
  socket.on("nsp", function(ack) ack(socket.nsp.name) end)
end)

io.on("connection", function(socket)
  socket.on("created", function(ack) ack(created) end)
end)
