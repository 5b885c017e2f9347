-- io.options from the app: CORS with credentials and an allowRequest hook that refuses any
-- handshake whose URL carries deny=1 (Engine.IO error 4 "Forbidden").
io.options{
  cors = { origin = "http://allowed.test", methods = { "GET", "POST" }, credentials = true },
  allowRequest = function(req, callback)
    local denied = string.find(req.url, "deny=1", 1, true) ~= nil
    print("allowRequest " .. req.method .. " " .. req.url .. " " .. tostring(not denied))
    callback(nil, not denied)
  end,
}

io.on("connection", function(socket)
  socket.on("echo", function(msg, ack) ack(msg) end)
end)
