-- The compression tests' app (compression.test.mjs). perMessageDeflate is the set named by
-- $SIOLUA_PMD (none: the default, off); and for every option set below an Engine.IO echo endpoint
-- takes it as its own: /pmd-NAME/ (perMessageDeflate) and /httpz-NAME/ (httpCompression), so one
-- server answers with every set. Its Node twin in ref/apps.mjs `compression` has the same.
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
local pmd = os.getenv("SIOLUA_PMD")
if pmd then io.options{ perMessageDeflate = pmd_sets[pmd] } end

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

local function echo_endpoint(path, options)
  options.path = path
  local engine = siolua.engine(options)
  engine.on("connection", function(conn)
    conn.on("message", function(data) conn.send(data) end)
  end)
end
for name, set in pairs(pmd_sets) do echo_endpoint("/pmd-" .. name .. "/", { perMessageDeflate = set }) end
for name, set in pairs(httpz_sets) do echo_endpoint("/httpz-" .. name .. "/", { httpCompression = set }) end
