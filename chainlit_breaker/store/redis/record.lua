-- record: outcomes of finished calls (core Record), applied in order in one step, so a
-- failure also applies the caller's pending batch of successes.
-- KEYS[1]   the breaker's hash
-- ARGV[1..7] see common.lua
-- ARGV[8]   number of records n
-- ARGV[9..8+4n] per record: failure ("0"|"1"), slow ("0"|"1"), count, permit ("" none)

-- Every record needs the thresholds; the rest of the policy only a window or a trip does.
local ft, frt, srt = string.match(ARGV[6], '^([^|]*)|([^|]*)|([^|]*)|')
local FT, FRT, SRT = num(ft), num(frt), num(srt)
local UW = (FRT ~= nil) or (SRT ~= nil)  -- the policy uses a window
local WK, WS, MC, RT, BM, MRT, JIT, STH
local function rest_of_policy()
  if WK ~= nil then return end
  local _
  _, _, _, WK, WS, MC, RT, BM, MRT, JIT, _, STH = policy()
end

-- Policy.open_timeout for the n-th opening.
local function open_timeout(n)
  rest_of_policy()
  local rt, bm, mrt, jit = tonumber(RT), tonumber(BM), num(MRT), tonumber(JIT)
  local e = n - 1
  if e < 0 then e = 0 end
  -- clamped like Policy.open_timeout (MAX_BACKOFF_EXPONENT) so it never overflows
  if e > 64 then e = 64 end
  local t = rt * bm ^ e
  if mrt ~= nil and mrt < t then t = mrt end
  if jit ~= 0 then t = t * (1.0 + jit * (2.0 * tonumber(ARGV[7]) - 1.0)) end
  if t < 0 then t = 0.0 end
  return t
end

local function totals(S)
  rest_of_policy()
  if WK == 'count' then
    local _, f1 = string.gsub(S.codes, '1', '')
    local _, s2 = string.gsub(S.codes, '2', '')
    local _, b3 = string.gsub(S.codes, '3', '')
    return #S.codes, f1 + b3, s2 + b3
  end
  local horizon = math.floor(NOW) - tonumber(WS)
  local calls, failures, slow = 0, 0, 0
  for _, b in ipairs(S.bk) do
    if b[1] > horizon then
      calls = calls + b[2]
      failures = failures + b[3]
      slow = slow + b[4]
    end
  end
  return calls, failures, slow
end

local function push(S, failure, slow, count)
  rest_of_policy()
  local ws = tonumber(WS)
  if WK == 'count' then
    local n = math.min(count, ws)
    S.codes = string.sub(S.codes .. string.rep(tostring(failure + 2 * slow), n), -ws)
    return
  end
  local second = math.floor(NOW)
  local horizon = second - ws
  local kept = {}
  local cur = nil
  for _, b in ipairs(S.bk) do
    if b[1] == second then
      if cur == nil then cur = b end
    elseif b[1] > horizon then
      kept[#kept + 1] = b
    end
  end
  if cur == nil then cur = {second, 0, 0, 0} end
  kept[#kept + 1] = {second, cur[2] + count, cur[3] + failure * count, cur[4] + slow * count}
  S.bk = kept
end

local function trip_reason(S)
  if FT ~= nil and S.cf >= FT then
    return string.format('%d consecutive failures', S.cf)
  end
  if not UW then return nil end
  local calls, failures, slow = totals(S)
  rest_of_policy()
  if calls < tonumber(MC) or calls == 0 then return nil end
  if FRT ~= nil and failures / calls >= FRT then
    return string.format('failure rate %d/%d calls', failures, calls)
  end
  if SRT ~= nil and slow / calls >= SRT then
    return string.format('slow-call rate %d/%d calls', slow, calls)
  end
  return nil
end

local function open_(S, reason)
  local oc = S.oc + 1
  local t = open_timeout(oc)
  local N = fresh()
  N.st = 'open'
  N.oa = NOW
  N.ou = NOW + t
  N.oc = oc
  N.ver = S.ver + 1
  return N, {'done', t, reason, S.st}
end

local function record(S, failure, slow, count, permit)
  if S.st == 'closed' then
    if failure == 0 and S.cf == 0 and not UW then return S, DONE end  -- slow counts in a window only
    if failure == 1 then S.cf = S.cf + count else S.cf = 0 end
    S.ver = S.ver + 1
    if UW then push(S, failure, slow, count) end
    local reason = trip_reason(S)
    if reason ~= nil then return open_(S, reason) end
    return S, DONE
  end
  if S.st ~= 'half_open' or permit == '' then return S, DONE end
  local leases = live(S.leases)
  local held = false
  for _, l in ipairs(leases) do
    if l[1] == permit then held = true end
  end
  if not held then return S, DONE end
  if failure == 1 then return open_(S, 'trial call failed') end
  local successes = S.ts + 1
  rest_of_policy()
  if successes >= tonumber(STH) then
    local N = fresh()
    N.ver = S.ver + 1
    return N, {'done', 0, 'trial calls succeeded', 'half_open'}
  end
  local remaining = {}
  for _, l in ipairs(leases) do
    if l[1] ~= permit then remaining[#remaining + 1] = l end
  end
  S.leases = remaining
  S.ts = successes
  S.ver = S.ver + 1
  return S, DONE
end

return run(function(S)
  local D = DONE
  local n = tonumber(ARGV[8])
  for i = 0, n - 1 do
    local base = 9 + 4 * i
    local d
    S, d = record(S, tonumber(ARGV[base]), tonumber(ARGV[base + 1]),
                  tonumber(ARGV[base + 2]), ARGV[base + 3])
    if d[4] ~= nil or D[4] == nil then D = d end
  end
  return S, D
end, false)
