-- App of tests/integration/engine_*.test.mjs: io.engine's events on the Socket.IO endpoint's
-- sessions, and Engine.IO-only endpoints (siolua.engine). Events are printed to the log, where
-- the tests wait for them.
io.options{
  allowRequest = function(req, callback)
    if req.url:find("deny=1", 1, true) then return callback("nope", false) end
    callback(nil, true)
  end,
}

local function describe(data)
  if siolua.isbinary(data) then return "binary:" .. #data end
  return "text:" .. data
end

---------------------------------------------------------------- io.engine (Socket.IO's sessions)

io.engine.on("connection", function(conn)
  print("io.engine connection " .. conn.id .. " " .. conn.transport.name .. " " .. conn.readyState)
  local ok = pcall(conn.send, "x")
  print("io.engine send allowed " .. conn.id .. " " .. tostring(ok))
  conn.on("message", function(data) print("io.engine message " .. conn.id .. " " .. describe(data)) end)
  conn.on("upgrade", function(t) print("io.engine upgrade " .. conn.id .. " " .. t.name) end)
  conn.on("close", function(reason) print("io.engine close " .. conn.id .. " " .. reason) end)
end)
io.engine.on("connection_error", function(err)
  print(("io.engine connection_error %d %s %s"):format(err.code, err.message, err.req.url))
end)
io.engine.on("initial_headers", function(headers, req) headers["X-Sio-Initial"] = "1" end)

io.on("connection", function(socket)
  socket.on("count", function(ack) ack(io.engine.clientsCount) end)
end)

---------------------------------------------------------------- an Engine.IO-only endpoint

local eio = siolua.engine({ path = "/engine.io/" })
eio.on("connection", function(conn)
  print(("engine connection %s %s %s"):format(conn.id, conn.transport.name, conn.request._query.tag or "-"))
  conn.on("message", function(data)
    print("engine message " .. conn.id .. " " .. describe(data))
    if data == "close-me" then
      conn.close()
    elseif data == "whoami" then
      conn.send(("%s %s %s %d"):format(conn.id, conn.transport.name, tostring(conn.upgraded), eio.clientsCount))
    else
      conn.send(data)
    end
  end)
  conn.on("packet", function(p)
    if p.type == "message" then print("engine packet " .. conn.id .. " " .. describe(p.data)) end
  end)
  conn.once("upgrade", function(t) print("engine upgrade " .. conn.id .. " " .. t.name) end)
  conn.on("close", function(reason)
    print("engine close " .. conn.id .. " " .. reason .. " send=" .. tostring(conn.send("late")))
  end)
end)
eio.on("connection_error", function(err)
  print(("engine connection_error %d %s %s %s %s"):format(err.code, err.message, err.context.message or "-",
    err.context.name or "-", err.req.url))
end)
eio.on("initial_headers", function(headers, req)
  headers["X-Initial"] = "yes"
  headers["X-Bad"] = "a\r\nInjected: 1" -- refused: a header value cannot hold CR/LF
end)
eio.on("headers", function(headers, req) headers["X-Every"] = req.method end)

-- a second endpoint with its own heartbeat, polling only
local fast = siolua.engine({ path = "/fast", pingInterval = 200, pingTimeout = 150, transports = { "polling" } })
fast.on("connection", function(conn)
  print("fast connection " .. conn.id)
  conn.on("close", function(reason) print("fast close " .. conn.id .. " " .. reason) end)
end)

-- a third one that throws in its handlers: logged, the server keeps running
local bad = siolua.engine({ path = "/bad/" })
bad.on("connection", function(conn)
  conn.on("message", function() error("kaboom in a raw handler") end)
end)

print("engine paths " .. eio.path .. " " .. fast.path .. " " .. tostring(io.engine))
