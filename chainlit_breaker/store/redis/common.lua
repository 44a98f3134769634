-- Shared prelude of every chainlit_breaker script: loads one breaker's state, mirrors the
-- rules of chainlit_breaker/core/machine.py, saves, publishes and builds the reply.
-- The op scripts (acquire, record, release, command, read) are appended to this text.
--
-- KEYS[1]   the breaker's hash: <namespace>:{<encoded name>}
-- ARGV[1]   now in seconds, or "" to read the server's TIME
-- ARGV[2]   idle TTL in milliseconds (0: never expire)
-- ARGV[3]   pub/sub channel for state changes ("" : do not publish)
-- ARGV[4]   origin: the publishing store's token, echoed in the message
-- ARGV[5]   the encoded breaker name, echoed in the message
-- ARGV[6..18]  the policy: failure_threshold, failure_rate_threshold,
--              slow_call_rate_threshold ("" for None), window_kind ("count"|"time"),
--              window_size, minimum_calls, reset_timeout, backoff_multiplier,
--              max_reset_timeout ("" for None), jitter, half_open_max_calls,
--              success_threshold, trial_lease_ttl
-- ARGV[19]  rand in [0, 1) for the backoff jitter
-- ARGV[20..] op arguments (see each op script)
--
-- Hash fields: v (schema, "1"), ep (epoch: server time of the key's creation), st, cf,
-- codes, bk ("sec,calls,failures,slow;..."), oa, ou, oc, ts, ver, and "l:<permit>" = expiry.
-- Reply and message: warn, now, verdict, retry_after, reason, previous, epoch, state, cf,
-- codes, buckets, opened_at, open_until, open_count, trial_successes, version,
-- then permit, expiry pairs. Every element is a string ("" for None).

local KEY = KEYS[1]
local SCHEMA = '1'

-- Redis < 5 replicates scripts verbatim and refuses writes after TIME; effects
-- replication (the default since 5, the only mode since 7) makes TIME safe.
if redis.replicate_commands then redis.replicate_commands() end

local function num(s)
  if s == nil or s == '' then return nil end
  return tonumber(s)
end

local NOW
if ARGV[1] ~= '' then
  NOW = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  NOW = tonumber(t[1]) + tonumber(t[2]) / 1000000
end

local P = {
  ft = num(ARGV[6]), frt = num(ARGV[7]), srt = num(ARGV[8]), wk = ARGV[9],
  ws = tonumber(ARGV[10]), mc = tonumber(ARGV[11]), rt = tonumber(ARGV[12]),
  bm = tonumber(ARGV[13]), mrt = num(ARGV[14]), jit = tonumber(ARGV[15]),
  hmax = tonumber(ARGV[16]), sth = tonumber(ARGV[17]), lttl = tonumber(ARGV[18]),
}
P.uw = (P.frt ~= nil) or (P.srt ~= nil)
local RAND = tonumber(ARGV[19])

local STATES = {closed = true, open = true, half_open = true, forced_open = true, disabled = true}

local function fresh()
  return {st = 'closed', cf = 0, codes = '', bk = {}, oa = nil, ou = nil, oc = 0, ts = 0,
          leases = {}, ver = 0}
end

local function count_of(s)
  if s == nil then return nil end
  local n = tonumber(s)
  if n == nil or n < 0 or n ~= math.floor(n) then return nil end
  return n
end

-- Returns the state, its epoch and a warning ("" when the stored data was sound).
local function load()
  local kind = redis.call('TYPE', KEY)
  kind = kind.ok or kind
  if kind == 'none' then return fresh(), '', '' end
  if kind ~= 'hash' then
    redis.call('DEL', KEY)
    return fresh(), '', 'stored key had type ' .. tostring(kind)
  end
  local flat = redis.call('HGETALL', KEY)
  local h = {}
  local leases = {}
  for i = 1, #flat, 2 do
    local f = flat[i]
    if string.sub(f, 1, 2) == 'l:' then
      leases[#leases + 1] = {string.sub(f, 3), tonumber(flat[i + 1])}
    else
      h[f] = flat[i + 1]
    end
  end
  local bad = nil
  if h.v ~= SCHEMA then
    bad = 'stored schema ' .. tostring(h.v) .. ' is not ' .. SCHEMA
  end
  local S = fresh()
  if bad == nil then
    S.st = h.st
    S.cf = count_of(h.cf)
    S.oc = count_of(h.oc)
    S.ts = count_of(h.ts)
    S.ver = count_of(h.ver)
    S.codes = h.codes or ''
    S.oa = num(h.oa)
    S.ou = num(h.ou)
    if not STATES[S.st] or S.cf == nil or S.oc == nil or S.ts == nil or S.ver == nil
        or string.find(S.codes, '[^0-3]') or (h.oa and S.oa == nil)
        or (h.ou and S.ou == nil) or h.ep == nil then
      bad = 'corrupt stored state'
    end
  end
  if bad == nil and h.bk and h.bk ~= '' then
    for item in string.gmatch(h.bk, '[^;]+') do
      local a, b, c, d = string.match(item, '^(%-?%d+),(%d+),(%d+),(%d+)$')
      if a == nil then bad = 'corrupt stored window'; break end
      S.bk[#S.bk + 1] = {tonumber(a), tonumber(b), tonumber(c), tonumber(d)}
    end
  end
  if bad == nil then
    for _, l in ipairs(leases) do
      if l[2] == nil then bad = 'corrupt stored lease'; break end
    end
    table.sort(leases, function(x, y)
      if x[2] == y[2] then return x[1] < y[1] end
      return x[2] < y[2]
    end)
    S.leases = leases
  end
  if bad ~= nil then
    redis.call('DEL', KEY)
    return fresh(), '', bad
  end
  return S, h.ep, ''
end

local function fmt(x)
  if x == nil then return '' end
  if x == math.huge then return 'inf' end
  if x == -math.huge then return '-inf' end
  return string.format('%.17g', x)
end

local function int(x)
  return string.format('%d', x)
end

local function buckets_text(bk)
  local parts = {}
  for i, b in ipairs(bk) do
    parts[i] = int(b[1]) .. ',' .. int(b[2]) .. ',' .. int(b[3]) .. ',' .. int(b[4])
  end
  return table.concat(parts, ';')
end

-- The server time a key was created, or absence was observed: (epoch, version) orders
-- every reply of one breaker, so a mirror never goes back to an older state.
local function new_epoch()
  local t = redis.call('TIME')
  return string.format('%d.%06d', tonumber(t[1]), tonumber(t[2]))
end

local function save(S, epoch)
  redis.call('DEL', KEY)
  local a = {'v', SCHEMA, 'ep', epoch, 'st', S.st, 'cf', int(S.cf), 'oc', int(S.oc),
             'ts', int(S.ts), 'ver', int(S.ver)}
  if S.codes ~= '' then a[#a + 1] = 'codes'; a[#a + 1] = S.codes end
  if #S.bk > 0 then a[#a + 1] = 'bk'; a[#a + 1] = buckets_text(S.bk) end
  if S.oa ~= nil then a[#a + 1] = 'oa'; a[#a + 1] = fmt(S.oa) end
  if S.ou ~= nil then a[#a + 1] = 'ou'; a[#a + 1] = fmt(S.ou) end
  local keep = 0
  for _, l in ipairs(S.leases) do
    a[#a + 1] = 'l:' .. l[1]
    a[#a + 1] = fmt(l[2])
    if l[2] - NOW > keep then keep = l[2] - NOW end
  end
  redis.call('HSET', KEY, unpack(a))
  local idle = tonumber(ARGV[2])
  -- Overrides never expire: an operator's force_open must not lapse on its own.
  if idle > 0 and S.st ~= 'forced_open' and S.st ~= 'disabled' then
    if S.ou ~= nil and S.ou - NOW > keep then keep = S.ou - NOW end
    local ms = idle + keep * 1000
    -- A backoff of centuries would overflow PEXPIRE's integer: keep such a key instead.
    if ms > 3e12 then
      redis.call('PERSIST', KEY)
    else
      redis.call('PEXPIRE', KEY, math.floor(ms))
    end
  end
end

local function reply(S, epoch, warn, D)
  local r = {warn, fmt(NOW), D[1], fmt(D[2]), D[3] or '', D[4] or '', epoch, S.st,
             int(S.cf), S.codes, buckets_text(S.bk), fmt(S.oa), fmt(S.ou), int(S.oc),
             int(S.ts), int(S.ver)}
  for _, l in ipairs(S.leases) do
    r[#r + 1] = l[1]
    r[#r + 1] = fmt(l[2])
  end
  return r
end

-- ---- the rules (chainlit_breaker/core/machine.py) ----

local DONE = {'done', 0}

local function open_timeout(n)
  local e = n - 1
  if e < 0 then e = 0 end
  -- clamped like Policy.open_timeout (MAX_BACKOFF_EXPONENT) so it never overflows
  if e > 64 then e = 64 end
  local t = P.rt * P.bm ^ e
  if P.mrt ~= nil and P.mrt < t then t = P.mrt end
  if P.jit ~= 0 then t = t * (1.0 + P.jit * (2.0 * RAND - 1.0)) end
  if t < 0 then t = 0.0 end
  return t
end

local function live(leases)
  local out = {}
  for _, l in ipairs(leases) do
    if l[2] > NOW then out[#out + 1] = l end
  end
  return out
end

local function totals(S)
  if P.wk == 'count' then
    local _, f1 = string.gsub(S.codes, '1', '')
    local _, s2 = string.gsub(S.codes, '2', '')
    local _, b3 = string.gsub(S.codes, '3', '')
    return #S.codes, f1 + b3, s2 + b3
  end
  local horizon = math.floor(NOW) - P.ws
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
  if P.wk == 'count' then
    local n = math.min(count, P.ws)
    S.codes = string.sub(S.codes .. string.rep(tostring(failure + 2 * slow), n), -P.ws)
    return
  end
  local second = math.floor(NOW)
  local horizon = second - P.ws
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
  if P.ft ~= nil and S.cf >= P.ft then
    return string.format('%d consecutive failures', S.cf)
  end
  if not P.uw then return nil end
  local calls, failures, slow = totals(S)
  if calls < P.mc or calls == 0 then return nil end
  if P.frt ~= nil and failures / calls >= P.frt then
    return string.format('failure rate %d/%d calls', failures, calls)
  end
  if P.srt ~= nil and slow / calls >= P.srt then
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
  if #leases >= P.hmax then
    if #leases ~= #S.leases then
      S.leases = leases
      S.ver = S.ver + 1
    end
    return S, {'reject', 0, reason, prev}
  end
  leases[#leases + 1] = {permit, NOW + P.lttl}
  S.leases = leases
  S.ver = S.ver + 1
  return S, {'trial', 0, reason, prev}
end

local function record(S, failure, slow, count, permit)
  if S.st == 'closed' then
    if failure == 0 and slow == 0 and S.cf == 0 and not P.uw then return S, DONE end
    if failure == 1 then S.cf = S.cf + count else S.cf = 0 end
    S.ver = S.ver + 1
    if P.uw then push(S, failure, slow, count) end
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
  if successes >= P.sth then
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

-- Runs ``step(S)`` (which returns the next state and decision), then saves and publishes
-- when the version moved. ``always_publish`` is set for operator commands.
local function run(step, always_publish)
  local S, epoch, warn = load()
  local old_ver, old_st, old_cf = S.ver, S.st, S.cf
  local N, D = step(S)
  if epoch == '' then epoch = new_epoch() end
  if N.ver ~= old_ver then
    save(N, epoch)
    local channel = ARGV[3]
    if channel ~= '' and (always_publish or N.st ~= old_st or (N.cf == 0) ~= (old_cf == 0)) then
      local msg = reply(N, epoch, '', D)
      table.insert(msg, 1, ARGV[4])
      table.insert(msg, 1, ARGV[5])
      redis.call('PUBLISH', channel, cjson.encode(msg))
    end
  end
  return reply(N, epoch, warn, D)
end
