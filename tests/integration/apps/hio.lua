-- The app of the hio tests (handlers that talk to the world, issue 17): every event runs one call
-- of siolua.redis / sqlite / pg / fetch under pcall and acknowledges { ok =, res = }. The clients
-- it opens come from the environment:
--   HIO_REDIS (URL), HIO_PG (conninfo), HIO_SQLITE (path, default ":memory:"), HIO_TIMEOUT (ms)
--   HIO_WARM (URL): each VM (start and every hot reload) uses every client once, from a timer, and
--   prints "hio warm <generation marker>" - the fd test reloads this 100 times.
local timeout = tonumber(os.getenv("HIO_TIMEOUT") or "3000")
local r = os.getenv("HIO_REDIS") and siolua.redis(os.getenv("HIO_REDIS"), { timeout = timeout })
local db = siolua.sqlite(os.getenv("HIO_SQLITE") or ":memory:", { timeout = timeout, maxResultBytes = 100000 })
local pg = os.getenv("HIO_PG") and siolua.pg(os.getenv("HIO_PG"), { max = 3, timeout = timeout, maxResultBytes = 100000 })
local VERSION = "v1"

local function run(fn, ...)
  local ok, res = pcall(fn, ...)
  return { ok = ok, res = res }
end

local function unpack_params(p) return table.unpack(p or {}, 1, p and #p or 0) end

if os.getenv("HIO_WARM") then
  setTimeout(function()
    local ok, err = pcall(function()
      if r then r:call("PING") end
      db:query("SELECT 1")
      if pg then pg:query("SELECT 1") end
      siolua.fetch(os.getenv("HIO_WARM"))
    end)
    print("hio warm " .. VERSION .. " " .. tostring(ok) .. " " .. tostring(err))
  end, 0)
end

-- a top-level call cannot wait: the error says so
local ok, err = pcall(db.query, db, "SELECT 1")
print("hio top level: " .. tostring(ok) .. " " .. tostring(err))

siolua.route("/hio/route", function(req)
  if req.query.fail then error("route failure") end
  if req.query.fetch then -- a route handler may wait too
    local res = siolua.fetch(req.query.fetch)
    return 200, "fetched " .. res.status .. " " .. res.body
  end
  return tonumber(req.query.status or "200"), req.method .. " " .. req.body, { ["x-hio"] = req.headers["x-in"] or "none" }
end)

io.on("connection", function(socket)
  socket.on("version", function(ack) ack(VERSION) end)
  socket.on("echo", function(x, ack) ack(x) end)

  socket.on("redis", function(args, ack) ack(run(r.call, r, table.unpack(args))) end)
  socket.on("redis_batch", function(cmds, multi, ack)
    local p = multi and r:multi() or r:pipeline()
    for _, c in ipairs(cmds) do p:call(table.unpack(c)) end
    ack(run(p.exec, p))
  end)
  socket.on("redis_connected", function(ack) ack(r.connected) end)
  socket.on("subscribe", function(channel, pattern, ack)
    local fn = function(message, ch, pat) socket.emit("message", message, ch, pat) end
    if pattern then r:psubscribe(channel, fn) else r:subscribe(channel, fn) end
    ack(true)
  end)
  socket.on("unsubscribe", function(channel, ack) r:unsubscribe(channel) ack(true) end)

  socket.on("sql", function(kind, sql, params, ack) ack(run(db[kind], db, sql, unpack_params(params))) end)
  socket.on("pg", function(kind, sql, params, ack) ack(run(pg[kind], pg, sql, unpack_params(params))) end)
  socket.on("fetch", function(url, opts, ack) ack(run(siolua.fetch, url, opts)) end)

  -- spends `ms` of CPU, waits for `call`, spends `ms` again: the budget counts the two spins only
  socket.on("spin_wait_spin", function(ms, call, ack)
    local function spin() local t = os.clock() + ms / 1000 while os.clock() < t do end end
    spin()
    local res = run(call.kind == "redis" and function() return r:call(table.unpack(call.args)) end
      or function() return pg:query(call.sql) end)
    spin()
    ack(res)
  end)

  -- an ack callback (the client's answer to the server's "ask") waits like any handler
  socket.on("query_in_ack", function(ack)
    socket.emit("ask", function(answer) ack(run(db.query, db, "SELECT ? AS answer", answer)) end)
  end)

  -- a call inside a coroutine of the app's own cannot wait: the error says so
  socket.on("own_coroutine", function(ack)
    local co = coroutine.create(function() return db:query("SELECT 1") end)
    local _, e = coroutine.resume(co)
    ack(e)
  end)

  -- a handler closes the clients that have just answered it (from inside their completion, for
  -- the bindings); with `stop`, the server then (io.close())
  socket.on("use_then_close", function(stop, ack)
    local out = {}
    local d = siolua.sqlite(":memory:")
    out.sqlite = d:query("SELECT 1 AS one")[1].one
    d:close()
    if os.getenv("HIO_PG") then
      local p = siolua.pg(os.getenv("HIO_PG"), { max = 1 })
      out.pg = p:query("SELECT 2 AS two")[1].two
      p:close()
    end
    if os.getenv("HIO_REDIS") then
      local c = siolua.redis(os.getenv("HIO_REDIS"))
      out.redis = c:call("ECHO", "three")
      c:close()
    end
    ack(out)
    if stop then
      pg:query("SELECT 4")
      io.close()
    end
  end)

  socket.on("closed_use", function(ack)
    local d = siolua.sqlite(":memory:")
    d:close()
    ack(run(d.query, d, "SELECT 1"))
  end)
end)
