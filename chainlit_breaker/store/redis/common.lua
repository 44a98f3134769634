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
-- ARGV[6]   the policy, 13 values joined by "|" (one argument: each one costs the client
--           to pack and the server to convert): failure_threshold, failure_rate_threshold,
--           slow_call_rate_threshold ("" for None), window_kind ("count"|"time"),
--           window_size, minimum_calls, reset_timeout, backoff_multiplier,
--           max_reset_timeout ("" for None), jitter, half_open_max_calls,
--           success_threshold, trial_lease_ttl; see policy()
-- ARGV[7]   rand in [0, 1) for the backoff jitter
-- ARGV[8..] op arguments (see each op script)
-- A read sends ARGV[1] only: it never saves or publishes.
--
-- Hash fields: v (schema, "1"), ep (epoch: server time of the key's creation), st, cf,
-- codes, bk ("sec,calls,failures,slow;..."), oa, ou, oc, ts, ver, and "l:<permit>" = expiry.
-- Reply: one string joining with "|" warn, now, verdict, retry_after, reason, previous,
-- epoch, state, cf, codes, buckets, opened_at, open_until, open_count, trial_successes,
-- version ("" for None); then permit, expiry pairs. A change message is the JSON array of
-- the encoded name, the origin and the reply's elements.

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

-- The policy's 13 values as strings, in ARGV[6]'s order; only ops that need them call it.
local function policy()
  return string.match(ARGV[6], '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|'
                               .. '([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)$')
end

-- Shared by every state without window buckets or leases: the steps replace these
-- tables, never change them, so one empty table spares an allocation per call.
local EMPTY = {}

local function fresh()
  return {st = 'closed', cf = 0, codes = '', bk = EMPTY, oc = 0, ts = 0, leases = EMPTY,
          ver = 0}
end

-- Stored numbers are checked, not trusted: Lua's tonumber takes "inf", "nan" and 1e400,
-- and a count past 2^53 stops moving (n + 1 == n), which would freeze the breaker.
local MAX_COUNT = 9007199254740991

local function count_of(s)
  if s == nil then return nil end
  local n = tonumber(s)
  if n == nil or n < 0 or n > MAX_COUNT or n ~= math.floor(n) then return nil end
  return n
end

local function time_of(s)
  local t = tonumber(s)
  if t == nil or t ~= t or t == math.huge or t == -math.huge then return nil end
  return t
end

-- A lease is taken for at most a day (BreakerConfig.trial_lease_ttl); one that ends later
-- than that from now was not written by these scripts.
local MAX_LEASE = 86400 * 2

local function fmt(x)
  if x == nil then return '' end
  if x == math.huge then return 'inf' end
  if x == -math.huge then return '-inf' end
  return string.format('%.17g', x)
end

-- Returns the state, its epoch ("" when the key is new), a warning ("" when the stored data
-- was sound) and whether the hash holds fields that are not ours (save() then rewrites it).
-- Missing, garbage and another schema all load as a fresh state: garbage is deleted.
local function load()
  -- HGETALL answers a missing key with an empty list (a hash is never empty) and any
  -- other type with an error: no TYPE call on the common path.
  local flat = redis.pcall('HGETALL', KEY)
  if flat.err then
    local kind = redis.call('TYPE', KEY)
    redis.call('DEL', KEY)
    return fresh(), '', 'stored key had type ' .. tostring(kind.ok or kind), false
  end
  if #flat == 0 then return fresh(), '', '', false end
  local h = {}
  for i = 1, #flat, 2 do h[flat[i]] = flat[i + 1] end
  -- Our fixed fields; any other field is a lease ("l:<permit>") or not ours.
  local known = (h.v and 1 or 0) + (h.ep and 1 or 0) + (h.st and 1 or 0) + (h.cf and 1 or 0)
                + (h.oc and 1 or 0) + (h.ts and 1 or 0) + (h.ver and 1 or 0)
                + (h.codes and 1 or 0) + (h.bk and 1 or 0) + (h.oa and 1 or 0)
                + (h.ou and 1 or 0)
  local leases = EMPTY
  local extra = false
  if #flat > 2 * known then
    leases = {}
    for i = 1, #flat, 2 do
      local f = flat[i]
      if string.sub(f, 1, 2) == 'l:' then
        leases[#leases + 1] = {string.sub(f, 3), time_of(flat[i + 1])}
        h[f] = nil
      elseif h[f] ~= nil and (f ~= 'v' and f ~= 'ep' and f ~= 'st' and f ~= 'cf' and f ~= 'oc'
          and f ~= 'ts' and f ~= 'ver' and f ~= 'codes' and f ~= 'bk' and f ~= 'oa'
          and f ~= 'ou') then
        extra = true
      end
    end
  end
  local bad = nil
  local S = nil
  if h.v ~= SCHEMA then
    bad = 'stored schema ' .. tostring(h.v) .. ' is not ' .. SCHEMA
  else
    local st = h.st
    S = {st = st, cf = count_of(h.cf), oc = count_of(h.oc), ts = count_of(h.ts),
         ver = count_of(h.ver), codes = h.codes or '', bk = EMPTY}
    if h.oa then S.oa = time_of(h.oa) end  -- "" is corrupt, as any text that is no number
    if h.ou then S.ou = time_of(h.ou) end
    if (st ~= 'closed' and st ~= 'open' and st ~= 'half_open' and st ~= 'forced_open'
        and st ~= 'disabled') or S.cf == nil or S.oc == nil or S.ts == nil
        or S.ver == nil or (S.codes ~= '' and string.find(S.codes, '[^0-3]'))
        or (h.oa and S.oa == nil) or (h.ou and S.ou == nil)
        or h.ep == nil or not string.match(h.ep, '^%d+%.%d%d%d%d%d%d$') then
      bad = 'corrupt stored state'
    end
  end
  if bad == nil and h.bk and h.bk ~= '' then
    local bk = {}
    S.bk = bk
    for item in string.gmatch(h.bk, '[^;]+') do
      local a, b, c, d = string.match(item, '^(%-?%d+),(%d+),(%d+),(%d+)$')
      if a == nil then bad = 'corrupt stored window'; break end
      local n = {tonumber(a), tonumber(b), tonumber(c), tonumber(d)}
      if math.abs(n[1]) > MAX_COUNT or n[2] > MAX_COUNT or n[3] > n[2] or n[4] > n[2] then
        bad = 'corrupt stored window'; break
      end
      bk[#bk + 1] = n
    end
  end
  if bad == nil and #leases > 0 then
    for _, l in ipairs(leases) do
      if l[2] == nil or l[2] > NOW + MAX_LEASE then bad = 'corrupt stored lease'; break end
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
    return fresh(), '', bad, false
  end
  S.leases = leases
  return S, h.ep, '', extra
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

local function int(x)
  return string.format('%d', x)
end

-- Writes the fields of N that differ from O (the state as loaded), or every field when
-- ``whole`` (a new key, or one with fields that are not ours), then sets the idle expiry.
-- Formatting numbers is a large part of a script's cost: only changed ones are formatted.
local function save(N, O, epoch, existed, whole)
  local set = {}
  local gone = {}
  if whole then
    if existed then redis.call('DEL', KEY) end
    set = {'v', SCHEMA, 'ep', epoch, 'st', N.st, 'cf', int(N.cf), 'oc', int(N.oc),
           'ts', int(N.ts), 'ver', int(N.ver)}
    O = {codes = '', bk = EMPTY, leases = EMPTY}
  else
    if N.st ~= O.st then set[#set + 1] = 'st'; set[#set + 1] = N.st end
    if N.cf ~= O.cf then set[#set + 1] = 'cf'; set[#set + 1] = int(N.cf) end
    if N.oc ~= O.oc then set[#set + 1] = 'oc'; set[#set + 1] = int(N.oc) end
    if N.ts ~= O.ts then set[#set + 1] = 'ts'; set[#set + 1] = int(N.ts) end
    set[#set + 1] = 'ver'; set[#set + 1] = int(N.ver)
    if N.oa ~= O.oa then
      if N.oa == nil then gone[#gone + 1] = 'oa' else set[#set + 1] = 'oa'; set[#set + 1] = fmt(N.oa) end
    end
    if N.ou ~= O.ou then
      if N.ou == nil then gone[#gone + 1] = 'ou' else set[#set + 1] = 'ou'; set[#set + 1] = fmt(N.ou) end
    end
  end
  if N.codes ~= O.codes then
    if N.codes == '' then gone[#gone + 1] = 'codes' else set[#set + 1] = 'codes'; set[#set + 1] = N.codes end
  end
  if N.bk ~= O.bk and (#N.bk > 0 or #O.bk > 0) then
    if #N.bk == 0 then gone[#gone + 1] = 'bk' else set[#set + 1] = 'bk'; set[#set + 1] = buckets_text(N.bk) end
  end
  if N.leases ~= O.leases then
    local keep = {}
    for _, l in ipairs(N.leases) do
      keep[l[1]] = true
      set[#set + 1] = 'l:' .. l[1]
      set[#set + 1] = fmt(l[2])
    end
    for _, l in ipairs(O.leases) do
      if not keep[l[1]] then gone[#gone + 1] = 'l:' .. l[1] end
    end
  end
  if whole then
    if N.oa ~= nil then set[#set + 1] = 'oa'; set[#set + 1] = fmt(N.oa) end
    if N.ou ~= nil then set[#set + 1] = 'ou'; set[#set + 1] = fmt(N.ou) end
  end
  if #gone > 0 then redis.call('HDEL', KEY, unpack(gone)) end
  redis.call('HSET', KEY, unpack(set))
  local idle = tonumber(ARGV[2])
  -- Overrides never expire: an operator's force_open must not lapse on its own.
  if idle > 0 and N.st ~= 'forced_open' and N.st ~= 'disabled' then
    local keep = 0
    for _, l in ipairs(N.leases) do
      if l[2] - NOW > keep then keep = l[2] - NOW end
    end
    if N.ou ~= nil and N.ou - NOW > keep then keep = N.ou - NOW end
    local ms = idle + keep * 1000
    -- A backoff of centuries would overflow PEXPIRE's integer: keep such a key instead.
    if ms > 3e12 then
      if existed then redis.call('PERSIST', KEY) end
    else
      redis.call('PEXPIRE', KEY, ms - ms % 1)
    end
  elseif existed then
    redis.call('PERSIST', KEY)  -- a key written with an idle TTL before
  end
end

-- One string for the fixed fields (a single bulk string costs the server and the client
-- far less than sixteen), then one element per lease id and expiry: ids are the callers'.
local function reply(S, epoch, warn, D)
  if warn ~= '' then warn = (string.gsub(warn, '|', '/')) end
  local retry = D[2] == 0 and '0' or fmt(D[2])
  local bk = #S.bk > 0 and buckets_text(S.bk) or ''
  local oa = S.oa ~= nil and fmt(S.oa) or ''
  local ou = S.ou ~= nil and fmt(S.ou) or ''
  local r = {string.format('%s|%.17g|%s|%s|%s|%s|%s|%s|%d|%s|%s|%s|%s|%d|%d|%d', warn, NOW,
                           D[1], retry, D[3] or '', D[4] or '', epoch, S.st, S.cf, S.codes,
                           bk, oa, ou, S.oc, S.ts, S.ver)}
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
  local S, epoch, warn, extra = load()
  -- The loaded values, for save(): the steps replace S's tables, never change them.
  local O = {st = S.st, cf = S.cf, oc = S.oc, ts = S.ts, ver = S.ver, codes = S.codes,
             bk = S.bk, oa = S.oa, ou = S.ou, leases = S.leases}
  local N, D = step(S)
  local existed = epoch ~= ''
  if not existed then epoch = new_epoch() end
  if N.ver ~= O.ver then
    save(N, O, epoch, existed, extra or not existed)
    local channel = ARGV[3]
    if channel ~= '' and (always_publish or N.st ~= O.st or (N.cf == 0) ~= (O.cf == 0)) then
      local msg = reply(N, epoch, '', D)
      table.insert(msg, 1, ARGV[4])
      table.insert(msg, 1, ARGV[5])
      redis.call('PUBLISH', channel, cjson.encode(msg))
    end
  end
  return reply(N, epoch, warn, D)
end
