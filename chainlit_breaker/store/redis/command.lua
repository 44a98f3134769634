-- command: an operator override (core Command): force_open, force_closed, disable, reset.
-- KEYS[1]   the breaker's hash
-- ARGV[1..19] see common.lua
-- ARGV[20]  the op's value
return run(function(S) return command(S, ARGV[20]) end, true)
