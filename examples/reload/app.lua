-- Hot reload, by example. Run it, open http://127.0.0.1:3000 in a tab or two, then edit this file
-- (or style.lua) and save: the tabs stay connected and the next message runs the code you saved.
--   ./siolua examples/reload/app.lua --port 3000
local GREETING = "says"            -- change me, save, send a message
local style = require("style")     -- modules of this folder are watched too: edit style.lua

-- Module-level state does not survive a reload (the new code runs in a fresh Lua VM), except
-- what is kept in siolua.stash (JSON-able values: tables, strings, numbers, booleans).
local stash = siolua.stash
-- siolua.array(t): sent as a JSON array even while empty (an empty table is sent as {}).
stash.history = siolua.array(stash.history or {})
stash.guests = stash.guests or 0

local function say(line)
  table.insert(stash.history, line)
  if #stash.history > 20 then table.remove(stash.history, 1) end
  io.emit("line", line)
end

-- Runs for every new client, and again for every connected client after each reload (with
-- socket.reloaded == true). The socket keeps its id, rooms and socket.data; its listeners are the
-- ones this new code registers below.
io.on("connection", function(socket)
  if not socket.reloaded then
    stash.guests = stash.guests + 1
    socket.data.name = "guest" .. stash.guests
    socket.emit("history", stash.history)
    say(socket.data.name .. " joined")
  end

  socket.on("name", function(name)
    if type(name) == "string" and #name > 0 then socket.data.name = name:sub(1, 20) end
  end)

  socket.on("message", function(text)
    if type(text) ~= "string" then return end
    say(socket.data.name .. " " .. GREETING .. ": " .. style(text))
  end)

  socket.on("disconnect", function() say(socket.data.name .. " left") end)
end)

-- Each successful reload: a generation number (the log says the same, with the time it took).
io.on("reload", function(generation)
  io.emit("reloaded", generation)
end)

-- The old code's timers stop at a reload; this line starts the current code's clock.
setInterval(function() io.emit("clock", os.date("%H:%M:%S")) end, 1000)
