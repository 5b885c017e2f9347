-- A module of the reload tests' app: editing it must reload the app too.
local fmt = require("parts.fmt")
return { VERSION = 1, fmt_version = fmt.version }
