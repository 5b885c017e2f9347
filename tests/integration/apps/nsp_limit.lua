-- Dynamic namespaces make sockets cheap to create: one connection may join at most 100.
io.of("^/dyn%-%d+$").on("connection", function() end)
