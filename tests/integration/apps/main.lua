-- The integration tests' general app: every event the node/python clients drive.
-- Its Node twin (for checking the tests against the reference) is ref/apps.mjs `main`.

-- Mirrors a value with its leaves replaced by "<lua type>:<value>" strings, so a client can check
-- how siolua decoded what it sent (integers stay integers, null is siolua.null, binary is userdata).
local function describe(v)
  if v == siolua.null then return "null" end
  if siolua.isbinary(v) then return "binary:" .. #v end
  local t = type(v)
  if t == "number" then return math.type(v) .. ":" .. tostring(v) end
  if t == "string" or t == "boolean" then return t .. ":" .. tostring(v) end
  if t == "table" then
    local out = {}
    for k, x in pairs(v) do out[k] = describe(x) end
    return out
  end
  return t
end

io.on("connection", function(socket)
  print("connected " .. socket.id)

  -- Echoes every argument back through the client's ack (binary included, at any depth).
  socket.on("echo", function(...)
    local args = table.pack(...)
    local ack = args[args.n]
    ack(table.unpack(args, 1, args.n - 1))
  end)

  socket.on("describe", function(v, ack) ack(describe(v)) end)

  -- The colon form works too.
  socket:on("whoami", function(ack)
    local h = socket.handshake
    ack({
      id = socket.id,
      connected = socket.connected,
      auth = h.auth,
      query = h.query,
      address = h.address,
      url = h.url,
      ua = h.headers["user-agent"],
      time = type(h.time),
      issued = type(h.issued),
      secure = h.secure,
    })
  end)

  -- Server -> client ack: ask the client, report its answer with another event.
  socket.on("ask", function(question)
    socket.emit("question", question, function(...)
      socket.emit("answered", ...)
    end)
  end)

  -- Binary made on the server side, nested in objects and arrays.
  socket.on("make-binary", function(ack)
    ack({ data = siolua.binary("\0\1\2hello"), list = { siolua.binary("xyz"), 7 } }, siolua.binary("top"))
  end)

  socket.on("shout", function(msg) socket.broadcast.emit("shout", msg, socket.id) end)
  socket.on("announce", function(msg) io.emit("announcement", msg) end)

  socket.on("kick", function(close) socket.disconnect(close == true) end)

  -- n events "blob" of size bytes each, at once (the polling buffer limit, limits.test.mjs)
  socket.on("blobs", function(n, size)
    local blob = string.rep("b", size)
    for i = 1, n do socket.emit("blob", i, blob) end
  end)

  socket.on("boom", function() error("kaboom") end)

  -- Lua's own io library still works through the global io (the server).
  socket.on("luaio", function(text, ack)
    local name = os.tmpname()
    local f = assert(io.open(name, "w"))
    f:write(text)
    f:close()
    f = assert(io.open(name, "r"))
    local back = f:read("a")
    f:close()
    os.remove(name)
    ack(back, type(io.write), type(io.lines))
  end)

  -- Reports the server-side reason to every client still here (and to the log).
  socket.on("disconnect", function(reason)
    print("disconnect " .. socket.id .. " " .. reason)
    io.emit("gone", socket.id, reason)
  end)
end)
