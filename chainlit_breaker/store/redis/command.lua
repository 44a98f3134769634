-- command: an operator override (core Command): force_open, force_closed, disable, reset.
-- KEYS[1]   the breaker's hash
-- ARGV[1..7] see common.lua (the policy is not used)
-- ARGV[8]   the op's value

local function command(S, op)
  local N = fresh()
  if op == 'force_open' then
    N.st = 'forced_open'
    N.oa = NOW
    N.oc = S.oc
  elseif op == 'disable' then
    N.st = 'disabled'
    N.oc = S.oc
  elseif op == 'force_closed' then
    N.oc = S.oc
  end
  N.ver = S.ver + 1
  local prev = nil
  if S.st ~= N.st then prev = S.st end
  return N, {'done', 0, 'manual ' .. op, prev}
end

return run(function(S) return command(S, ARGV[8]) end, true)
