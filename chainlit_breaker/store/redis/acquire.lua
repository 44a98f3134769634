-- acquire: a call wants to run (core Acquire). CLOSED/DISABLED admit, OPEN rejects until
-- open_until then turns HALF_OPEN, HALF_OPEN hands out at most half_open_max_calls leases.
-- KEYS[1]   the breaker's hash
-- ARGV[1..19] see common.lua
-- ARGV[20]  the permit (trial lease id) the caller would hold
return run(function(S) return acquire(S, ARGV[20]) end, false)
