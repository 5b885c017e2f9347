-- The compression tests' app (compression.test.mjs). perMessageDeflate is the set named by
-- $SIOLUA_PMD and httpCompression the one named by $SIOLUA_HTTPZ (none: the defaults), and an
-- Engine.IO endpoint at /engine.io/ has options of its own; its Node twin in ref/apps.mjs
-- `compression` has the same.
local pmd_sets = {
  on = true,
  nct = { serverNoContextTakeover = true, clientNoContextTakeover = true },
  snct_false = { serverNoContextTakeover = false },
  sbits10 = { serverMaxWindowBits = 10 },
  cbits12 = { clientMaxWindowBits = 12 },
  bits_false = { serverMaxWindowBits = false, clientMaxWindowBits = false },
  t0 = { threshold = 0, zlibDeflateOptions = { level = 1, memLevel = 7 }, zlibInflateOptions = { chunkSize = 10240 } },
}
local httpz_sets = {
  off = false,
  t100 = { threshold = 100, level = 1 },
}
local pmd, httpz = os.getenv("SIOLUA_PMD"), os.getenv("SIOLUA_HTTPZ")
if pmd then io.options{ perMessageDeflate = pmd_sets[pmd] } end
if httpz then io.options{ httpCompression = httpz_sets[httpz] } end

io.on("connection", function(socket)
  -- every argument back through the client's ack
  socket.on("echo", function(...)
    local args = table.pack(...)
    local ack = args[args.n]
    ack(table.unpack(args, 1, args.n - 1))
  end)
  -- n bytes of text made here ("abcdefghij" repeated), through the ack
  socket.on("big", function(n, ack) ack(string.rep("abcdefghij", n // 10)) end)
  socket.on("bcast", function(msg) socket.broadcast.emit("bcast", msg) end)
end)

-- an Engine.IO-only echo with compression options of its own
local engine = siolua.engine{ path = "/engine.io/", perMessageDeflate = { serverNoContextTakeover = true },
  httpCompression = false }
engine.on("connection", function(conn)
  conn.on("message", function(data) conn.send(data) end)
end)
