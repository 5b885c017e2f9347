-- The tutorial's chat, with what a real one needs: its messages stored in a database (SQLite by
-- default, PostgreSQL when HISTORY_PG is set), the last 50 sent to each user who joins, a token
-- checked at join time by an auth endpoint (this app serves it too, and asks it through
-- siolua.fetch, as it would ask a separate auth service), and who is online kept in Redis when
-- HISTORY_REDIS is set (in this process otherwise). Every database, HTTP and Redis call suspends
-- only the handler that makes it: the server keeps serving everyone else meanwhile.
--
--   ./siolua examples/history/app.lua                        # SQLite: examples/history/chat.db
--   HISTORY_PG="host=127.0.0.1 dbname=chat user=me" HISTORY_REDIS=redis://127.0.0.1:6379 \
--     ./siolua examples/history/app.lua
-- then open http://127.0.0.1:3000/?token=alice-token (and ?token=bob-token in another window).
--
-- Environment (the example's own settings; siolua's flags are unchanged):
--   HISTORY_DB        the SQLite file (default: chat.db next to this file)
--   HISTORY_PG        a libpq connection string: PostgreSQL instead of SQLite
--   HISTORY_REDIS     redis://host:port[/db]: presence in Redis (shared by several nodes)
--   HISTORY_TOKENS    "token=user,token=user" (default: alice-token=alice,bob-token=bob)
--   HISTORY_AUTH_URL  where tokens are checked (default: http://127.0.0.1:3000/auth/check,
--                     this server on siolua's default port: set it when you use another --port)
local cjson = require("cjson")

local HERE = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./")
local AUTH_URL = os.getenv("HISTORY_AUTH_URL") or "http://127.0.0.1:3000/auth/check"
local HISTORY = 50

---------------------------------------------------------------------------- the auth endpoint

local tokens = {}
for token, user in (os.getenv("HISTORY_TOKENS") or "alice-token=alice,bob-token=bob"):gmatch("([^=,]+)=([^,]+)") do
  tokens[token] = user
end

-- POST /auth/check {"token": "..."} -> 200 {"user": "alice"} or 401 {"error": "..."}
siolua.route("/auth/check", function(req)
  local json = { ["content-type"] = "application/json" }
  if req.method ~= "POST" then return 405, '{"error":"POST only"}', json end
  local ok, body = pcall(cjson.decode, req.body)
  local user = ok and type(body) == "table" and tokens[body.token]
  if not user then return 401, '{"error":"invalid token"}', json end
  return 200, cjson.encode({ user = user }), json
end)

---------------------------------------------------------------------------- the message store

local store
if os.getenv("HISTORY_PG") then
  local pg = siolua.pg(os.getenv("HISTORY_PG"), { max = 4 })
  store = {
    -- the advisory lock serialises two first users' CREATE TABLE (PostgreSQL's IF NOT EXISTS
    -- races otherwise); the script runs as one implicit transaction
    init = function()
      pg:exec([[SELECT pg_advisory_xact_lock(7411);
        CREATE TABLE IF NOT EXISTS messages (id bigserial PRIMARY KEY, author text NOT NULL,
          text text NOT NULL, ts bigint NOT NULL)]])
    end,
    add = function(author, text, ts)
      return pg:query("INSERT INTO messages (author, text, ts) VALUES ($1, $2, $3) RETURNING id", author, text, ts)[1].id
    end,
    last = function(n)
      return pg:query("SELECT * FROM (SELECT id, author, text, ts FROM messages ORDER BY id DESC LIMIT $1) m ORDER BY id", n)
    end,
  }
else
  local db = siolua.sqlite(os.getenv("HISTORY_DB") or HERE .. "chat.db")
  store = {
    init = function()
      db:exec([[CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY AUTOINCREMENT,
        author TEXT NOT NULL, text TEXT NOT NULL, ts INTEGER NOT NULL)]])
    end,
    add = function(author, text, ts)
      return db:query("INSERT INTO messages (author, text, ts) VALUES (?, ?, ?) RETURNING id", author, text, ts)[1].id
    end,
    last = function(n)
      return db:query("SELECT * FROM (SELECT id, author, text, ts FROM messages ORDER BY id DESC LIMIT ?) ORDER BY id", n)
    end,
  }
end

-- The schema is made by the first handler that needs it (the top level of an app cannot wait).
local ready = false
local function init()
  if not ready then
    store.init()
    ready = true
  end
end

---------------------------------------------------------------------------- presence

local presence
if os.getenv("HISTORY_REDIS") then
  local r = siolua.redis(os.getenv("HISTORY_REDIS"))
  presence = {
    -- a hash user -> open connections, so that a second tab does not count twice
    join = function(user) r:call("HINCRBY", "history:online", user, 1) end,
    leave = function(user)
      if r:call("HINCRBY", "history:online", user, -1) <= 0 then r:call("HDEL", "history:online", user) end
    end,
    list = function() local users = r:call("HKEYS", "history:online"); table.sort(users); return users end,
  }
else
  siolua.stash.online = siolua.stash.online or {} -- kept across hot reloads
  presence = {
    join = function(user) siolua.stash.online[user] = (siolua.stash.online[user] or 0) + 1 end,
    leave = function(user)
      local n = (siolua.stash.online[user] or 1) - 1
      siolua.stash.online[user] = n > 0 and n or nil
    end,
    list = function()
      local users = siolua.array()
      for user in pairs(siolua.stash.online) do users[#users + 1] = user end
      table.sort(users)
      return users
    end,
  }
end

---------------------------------------------------------------------------- Socket.IO

-- A token is checked once, when the client joins: through HTTP, as against an auth service.
io.use(function(socket, next)
  local token = socket.handshake.auth.token
  if type(token) ~= "string" or token == "" then return next("missing token") end
  local ok, res = pcall(siolua.fetch, AUTH_URL, {
    method = "POST", body = cjson.encode({ token = token }),
    headers = { ["content-type"] = "application/json" }, timeout = 3000,
  })
  if not ok then
    print("auth service unreachable: " .. tostring(res))
    return next("auth service unavailable")
  end
  if res.status ~= 200 then return next("invalid token") end
  socket.data.user = cjson.decode(res.body).user
  next()
end)

io.on("connection", function(socket)
  local user = socket.data.user
  if not socket.reloaded then
    presence.join(user)
    io.emit("presence", presence.list())
  end
  init()
  socket.emit("history", store.last(HISTORY))

  -- "chat message": stored, then sent to everyone with its id; the ack gets the id
  socket.on("chat message", function(text, ack)
    if type(text) ~= "string" or text == "" or #text > 2000 then
      if type(ack) == "function" then ack({ error = "a message is 1 to 2000 bytes of text" }) end
      return
    end
    init()
    local ts = os.time() * 1000
    local id = store.add(user, text, ts)
    io.emit("chat message", { id = id, author = user, text = text, ts = ts })
    if type(ack) == "function" then ack({ id = id }) end
  end)

  socket.on("disconnect", function()
    presence.leave(user)
    io.emit("presence", presence.list())
  end)
end)
