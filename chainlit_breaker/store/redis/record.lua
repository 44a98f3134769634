-- record: outcomes of finished calls (core Record), applied in order in one step, so a
-- failure also applies the caller's pending batch of successes.
-- KEYS[1]   the breaker's hash
-- ARGV[1..19] see common.lua
-- ARGV[20]  number of records n
-- ARGV[21..20+4n] per record: failure ("0"|"1"), slow ("0"|"1"), count, permit ("" none)
return run(function(S)
  local D = DONE
  local n = tonumber(ARGV[20])
  for i = 0, n - 1 do
    local base = 21 + 4 * i
    local d
    S, d = record(S, tonumber(ARGV[base]), tonumber(ARGV[base + 1]),
                  tonumber(ARGV[base + 2]), ARGV[base + 3])
    if d[4] ~= nil or D[4] == nil then D = d end
  end
  return S, D
end, false)
