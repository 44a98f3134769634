-- read: the current state, for refreshes and resyncs. Changes nothing, except that
-- garbage in the key is deleted (a reset, reported in the reply's warning).
-- KEYS[1]   the breaker's hash
-- ARGV[1]   see common.lua (the only argument a read sends)
return run(function(S) return S, DONE end, false)
