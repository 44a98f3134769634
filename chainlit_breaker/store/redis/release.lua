-- release: a trial call ended without an outcome (core Release): give its lease back.
-- KEYS[1]   the breaker's hash
-- ARGV[1..19] see common.lua
-- ARGV[20]  the permit to release
return run(function(S) return release(S, ARGV[20]) end, false)
