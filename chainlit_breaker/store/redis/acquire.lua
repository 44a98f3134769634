-- acquire: a call wants to run (core Acquire). CLOSED/DISABLED admit, OPEN rejects until
-- open_until then turns HALF_OPEN, HALF_OPEN hands out at most half_open_max_calls leases.
-- KEYS[1]   the breaker's hash
-- ARGV[1..7] see common.lua (uses half_open_max_calls and trial_lease_ttl)
-- ARGV[8]   the permit (trial lease id) the caller would hold

local function acquire(S, permit)
  if S.st == 'closed' or S.st == 'disabled' then return S, {'admit', 0} end
  if S.st == 'forced_open' then return S, {'reject', math.huge} end
  local reason, prev = nil, nil
  if S.st == 'open' then
    if S.ou ~= nil and NOW < S.ou then return S, {'reject', S.ou - NOW} end
    S.st = 'half_open'
    S.ts = 0
    S.leases = {}
    S.ver = S.ver + 1
    reason = 'reset timeout elapsed'
    prev = 'open'
  end
  local leases = live(S.leases)
  local _, _, _, _, _, _, _, _, _, _, hmax, _, lttl = policy()
  if #leases >= tonumber(hmax) then
    if #leases ~= #S.leases then
      S.leases = leases
      S.ver = S.ver + 1
    end
    return S, {'reject', 0, reason, prev}
  end
  leases[#leases + 1] = {permit, NOW + tonumber(lttl)}
  S.leases = leases
  S.ver = S.ver + 1
  return S, {'trial', 0, reason, prev}
end

return run(function(S) return acquire(S, ARGV[8]) end, false)
