-- Shared prelude of every chainlit_breaker script: loads one breaker's state, saves what
-- changed, publishes and builds the reply. Each op script (acquire, record, release,
-- command, read) is appended to this text and brings the rules of
-- chainlit_breaker/core/machine.py it needs, so a call builds only the functions it runs.
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

local NOW, CLOCK
if ARGV[1] ~= '' then
  NOW = tonumber(ARGV[1])
else
  CLOCK = redis.call('TIME')
  NOW = tonumber(CLOCK[1]) + tonumber(CLOCK[2]) / 1000000
end

local function num(s)
  if s == nil or s == '' then return nil end
  return tonumber(s)
end

local function fresh()
  return {st = 'closed', cf = 0, codes = '', bk = {}, oc = 0, ts = 0, leases = {}, ver = 0}
end

local function count_of(s)
  if s == nil then return nil end
  local n = tonumber(s)
  if n == nil or n < 0 or n ~= math.floor(n) then return nil end
  return n
end

local function fmt(x)
  if x == nil then return '' end
  if x == math.huge then return 'inf' end
  if x == -math.huge then return '-inf' end
  return string.format('%.17g', x)
end

-- Returns the state, its epoch, a warning ("" when the stored data was sound) and the
-- stored fields (what save() compares against). Missing, garbage and another schema all
-- load as a fresh state: garbage is deleted first.
local function load()
  -- HGETALL answers a missing key with an empty list (a hash is never empty) and any
  -- other type with an error: no TYPE call on the common path.
  local flat = redis.pcall('HGETALL', KEY)
  if flat.err then
    local kind = redis.call('TYPE', KEY)
    redis.call('DEL', KEY)
    return fresh(), '', 'stored key had type ' .. tostring(kind.ok or kind), {}
  end
  if #flat == 0 then return fresh(), '', '', {} end
  local h = {}
  local leases = {}
  for i = 1, #flat, 2 do
    local f, x = flat[i], flat[i + 1]
    h[f] = x
    if string.byte(f, 2) == 58 and string.byte(f, 1) == 108 then  -- "l:"
      leases[#leases + 1] = {string.sub(f, 3), tonumber(x)}
    end
  end
  local bad = nil
  local S = nil
  if h.v ~= SCHEMA then
    bad = 'stored schema ' .. tostring(h.v) .. ' is not ' .. SCHEMA
  else
    local st = h.st
    S = {st = st, cf = count_of(h.cf), oc = count_of(h.oc), ts = count_of(h.ts),
         ver = count_of(h.ver), codes = h.codes or '', oa = num(h.oa), ou = num(h.ou),
         bk = {}}
    if (st ~= 'closed' and st ~= 'open' and st ~= 'half_open' and st ~= 'forced_open'
        and st ~= 'disabled') or S.cf == nil or S.oc == nil or S.ts == nil
        or S.ver == nil or string.find(S.codes, '[^0-3]') or (h.oa and S.oa == nil)
        or (h.ou and S.ou == nil) or h.ep == nil then
      bad = 'corrupt stored state'
    end
  end
  if bad == nil and h.bk and h.bk ~= '' then
    local bk = S.bk
    for item in string.gmatch(h.bk, '[^;]+') do
      local a, b, c, d = string.match(item, '^(%-?%d+),(%d+),(%d+),(%d+)$')
      if a == nil then bad = 'corrupt stored window'; break end
      bk[#bk + 1] = {tonumber(a), tonumber(b), tonumber(c), tonumber(d)}
    end
  end
  if bad == nil and #leases > 0 then
    for _, l in ipairs(leases) do
      if l[2] == nil then bad = 'corrupt stored lease'; break end
    end
    if bad == nil and #leases > 1 then
      table.sort(leases, function(x, y)
        if x[2] == y[2] then return x[1] < y[1] end
        return x[2] < y[2]
      end)
    end
  end
  if bad ~= nil then
    redis.call('DEL', KEY)
    return fresh(), '', bad, {}
  end
  S.leases = leases
  return S, h.ep, '', h
end

local function buckets_text(bk)
  if #bk == 0 then return '' end
  local parts = {}
  for i, b in ipairs(bk) do
    parts[i] = string.format('%d,%d,%d,%d', b[1], b[2], b[3], b[4])
  end
  return table.concat(parts, ';')
end

-- The server time a key was created, or absence was observed: (epoch, version) orders
-- every reply of one breaker, so a mirror never goes back to an older state.
local function new_epoch()
  local t = CLOCK or redis.call('TIME')
  return string.format('%d.%06d', tonumber(t[1]), tonumber(t[2]))
end

-- The hash as S should store it; the reply reuses these texts.
local function fields(S, epoch)
  local w = {v = SCHEMA, ep = epoch, st = S.st, cf = string.format('%d', S.cf),
             oc = string.format('%d', S.oc), ts = string.format('%d', S.ts),
             ver = string.format('%d', S.ver)}
  if S.codes ~= '' then w.codes = S.codes end
  if #S.bk > 0 then w.bk = buckets_text(S.bk) end
  if S.oa ~= nil then w.oa = fmt(S.oa) end
  if S.ou ~= nil then w.ou = fmt(S.ou) end
  for _, l in ipairs(S.leases) do w['l:' .. l[1]] = fmt(l[2]) end
  return w
end

-- Writes only what differs from the stored fields ``old`` (HSET changed, HDEL gone), then
-- sets the idle expiry.
local function save(S, w, old, existed)
  local set, gone = {}, {}
  for f, x in pairs(w) do
    if old[f] ~= x then set[#set + 1] = f; set[#set + 1] = x end
  end
  for f in pairs(old) do
    if w[f] == nil then gone[#gone + 1] = f end
  end
  if #gone > 0 then redis.call('HDEL', KEY, unpack(gone)) end
  if #set > 0 then redis.call('HSET', KEY, unpack(set)) end
  local idle = tonumber(ARGV[2])
  -- Overrides never expire: an operator's force_open must not lapse on its own.
  if idle > 0 and S.st ~= 'forced_open' and S.st ~= 'disabled' then
    local keep = 0
    for _, l in ipairs(S.leases) do
      if l[2] - NOW > keep then keep = l[2] - NOW end
    end
    if S.ou ~= nil and S.ou - NOW > keep then keep = S.ou - NOW end
    local ms = idle + keep * 1000
    -- A backoff of centuries would overflow PEXPIRE's integer: keep such a key instead.
    if ms > 3e12 then
      if existed then redis.call('PERSIST', KEY) end
    else
      redis.call('PEXPIRE', KEY, math.floor(ms))
    end
  elseif existed then
    redis.call('PERSIST', KEY)  -- a key written with an idle TTL before
  end
end

local function reply(S, w, epoch, warn, D)
  local r = {warn, fmt(NOW), D[1], fmt(D[2]), D[3] or '', D[4] or '', epoch, S.st, w.cf,
             S.codes, w.bk or '', w.oa or '', w.ou or '', w.oc, w.ts, w.ver}
  for _, l in ipairs(S.leases) do
    r[#r + 1] = l[1]
    r[#r + 1] = fmt(l[2])
  end
  return r
end

local DONE = {'done', 0}

-- The leases that have not expired.
local function live(leases)
  local out = {}
  for _, l in ipairs(leases) do
    if l[2] > NOW then out[#out + 1] = l end
  end
  return out
end

-- Runs ``step(S)`` (which returns the next state and decision), then saves and publishes
-- when the version moved. ``always_publish`` is set for operator commands.
local function run(step, always_publish)
  local S, epoch, warn, old = load()
  local old_ver, old_st, old_cf = S.ver, S.st, S.cf
  local N, D = step(S)
  local existed = epoch ~= ''
  if not existed then epoch = new_epoch() end
  local w = fields(N, epoch)
  if N.ver ~= old_ver then
    save(N, w, old, existed)
    local channel = ARGV[3]
    if channel ~= '' and (always_publish or N.st ~= old_st or (N.cf == 0) ~= (old_cf == 0)) then
      local msg = reply(N, w, epoch, '', D)
      table.insert(msg, 1, ARGV[4])
      table.insert(msg, 1, ARGV[5])
      redis.call('PUBLISH', channel, cjson.encode(msg))
    end
  end
  return reply(N, w, epoch, warn, D)
end
