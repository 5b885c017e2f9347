-- A module in a subfolder, required by lib.lua: watched as well.
return { version = function() return 1 end }
