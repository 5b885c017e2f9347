-- io.close() for tests/integration/api_close.test.mjs: a client asks the app to close the server;
-- every socket of every namespace gets "server shutting down", the process exits 0. Its Node twin
-- is ref/api_apps.mjs `api_close`.
local function track(nsp)
  nsp.on("connection", function(socket)
    socket.on("disconnect", function(reason)
      print("disconnect " .. nsp.name .. " " .. socket.id .. " " .. reason)
    end)
    socket.on("close-server", function()
      print("closing the server")
      io.close()
    end)
    socket.on("close-server-colon", function() -- the Lua spelling of the same call
      print("closing the server")
      io:close()
    end)
  end)
end
track(io)
track(io.of("/admin"))
