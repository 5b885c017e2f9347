-- App of tests/integration/engine_reload.test.mjs (copied to a temporary folder, where the test
-- rewrites VERSION and reloads with SIGHUP): raw Engine.IO sessions and io.engine conns survive a
-- hot reload; "connection" runs again in the new code with conn.reloaded == true.
local VERSION = 1
local ENDPOINT = true

io.engine.on("connection", function(conn)
  print(("io.engine connection %s reloaded=%s v%d"):format(conn.id, tostring(conn.reloaded), VERSION))
end)

if ENDPOINT then
  local eio = siolua.engine({ path = "/engine.io/" })
  eio.on("connection", function(conn)
    print(("engine connection %s reloaded=%s v%d"):format(conn.id, tostring(conn.reloaded), VERSION))
    conn.on("message", function(data) conn.send("v" .. VERSION .. ":" .. tostring(data)) end)
    conn.on("close", function(reason) print(("engine close %s %s v%d"):format(conn.id, reason, VERSION)) end)
  end)
end
