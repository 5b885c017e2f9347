-- The hot-reload test of io.options (reload.test.mjs): every version sets options that show in a
-- handshake (pingInterval, pingTimeout, maxHttpBufferSize -> maxPayload, cors) and an allowRequest
-- that refuses "?deny=<VERSION>". After a reload the options stay those of the first version,
-- except allowRequest, which is the new code's (src/reload.h).
local VERSION = 1
io.options{
  pingInterval = 20000 + VERSION,
  pingTimeout = 10000 + VERSION,
  maxHttpBufferSize = 100000 + VERSION,
  cors = { origin = "http://v" .. VERSION .. ".example" },
  allowRequest = function(req, callback)
    if req.url:find("deny=" .. VERSION, 1, true) then return callback("refused by version " .. VERSION, false) end
    callback(nil, true)
  end,
}

io.on("connection", function(socket)
  socket.on("version", function(ack) ack(VERSION) end)
end)
