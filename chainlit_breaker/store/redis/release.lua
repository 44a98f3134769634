-- release: a trial call ended without an outcome (core Release): give its lease back.
-- KEYS[1]   the breaker's hash
-- ARGV[1..7] see common.lua (the policy is not used)
-- ARGV[8]   the permit to release

local function release(S, permit)
  if S.st ~= 'half_open' then return S, DONE end
  local remaining = {}
  for _, l in ipairs(S.leases) do
    if l[1] ~= permit then remaining[#remaining + 1] = l end
  end
  if #remaining == #S.leases then return S, DONE end
  S.leases = remaining
  S.ver = S.ver + 1
  return S, DONE
end

return run(function(S) return release(S, ARGV[8]) end, false)
