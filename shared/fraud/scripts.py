"""The Lua of the fraud scripts (:mod:`shared.fraud.store` says what they keep and why).

``CHECK`` screens and counts one new call, ``END`` applies a call's end,
``COUNTS`` reads figures, ``UNBLOCK`` lifts a block. They share a prelude:
the clock (Redis's ``TIME`` unless ``ARGV[1]`` gives one), the minute buckets
of a day, and ``judge``, which compares a count before and after a call with a
rule's levels and sets the block of a critical level.
"""

from __future__ import annotations

_CLOCK = """
local now = tonumber(ARGV[1])
if not now then
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end
local function minutes(key, day)
  local width = day / 24
  local current = math.floor(now / width)
  local total = 0
  local buckets = redis.call('HGETALL', key)
  for i = 1, #buckets, 2 do
    local bucket = tonumber(buckets[i])
    if bucket <= current - 24 then
      redis.call('HDEL', key, buckets[i])
    else
      total = total + tonumber(buckets[i + 1])
    end
  end
  return total, current
end
local crossings = {}
local refused = nil
-- a count from before to after: the levels it reached (both, when it jumped past both)
-- (block ids come from the caller, block_id(): not every Lua has redis.sha1hex)
local function judge(blocks, blocked, account, rule, metric, prefix, before, after, w, c, block,
                     account_id, prefix_id)
  for _, level in ipairs({{'warning', w}, {'critical', c}}) do
    local threshold = level[2]
    if threshold > 0 and before < threshold and after >= threshold then
      local id, member = '', ''
      if level[1] == 'critical' and block ~= 'none' then
        member = block == 'account' and '*' or prefix
        id = block == 'account' and account_id or prefix_id
        if redis.call('SADD', blocked, member) == 1 then
          redis.call('HSET', blocks, id, cjson.encode({
            id = id, account = account, prefix = block == 'prefix' and prefix or cjson.null,
            rule = rule, metric = metric, value = after, threshold = threshold, since = now}))
        end
        refused = refused or {id, member}
      end
      local figures = {rule, metric, level[1], tostring(after), threshold, prefix, id, member}
      for _, v in ipairs(figures) do
        crossings[#crossings + 1] = v
      end
    end
  end
end
"""

CHECK = (
    _CLOCK
    + """
-- KEYS: blocked set, blocks hash, call record, watched index, then 4 per match
-- ARGV: now, call, account, minute ms, day ms, lease ms, matches, the account's block id,
--       then 13 per match: rule, has prefix, prefix, 8 levels (warning, critical per metric),
--       block, the prefix's block id
local call, account = ARGV[2], ARGV[3]
local minute, day = tonumber(ARGV[4]), tonumber(ARGV[5])
local lease, m = tonumber(ARGV[6]), tonumber(ARGV[7])
local metrics = {'calls_per_minute', 'concurrent', 'sequential', 'minutes_per_day'}
if redis.call('SISMEMBER', KEYS[1], '*') == 1 then
  return {1, ARGV[8], '*'}
end
for i = 1, m do
  local a = 9 + (i - 1) * 13
  if ARGV[a + 1] == '1' and redis.call('SISMEMBER', KEYS[1], ARGV[a + 2]) == 1 then
    return {1, ARGV[a + 12], ARGV[a + 2]}
  end
end
local record = {}
for i = 1, m do
  local a = 9 + (i - 1) * 13
  if ARGV[a + 1] == '1' then
    local rule, prefix = ARGV[a], ARGV[a + 2]
    local k = 4 + (i - 1) * 4
    local counts = {}
    local set = {}  -- only the thresholds the rule sets are counted
    for j = 1, 4 do
      set[j] = tonumber(ARGV[a + 1 + 2 * j]) > 0 or tonumber(ARGV[a + 2 + 2 * j]) > 0
    end
    if set[1] then
      redis.call('ZREMRANGEBYSCORE', KEYS[k + 1], '-inf', now - minute)
      local seen = redis.call('ZSCORE', KEYS[k + 1], call)
      local n = redis.call('ZCARD', KEYS[k + 1])
      counts[1] = seen and {n, n} or {n, n + 1}
      redis.call('ZADD', KEYS[k + 1], seen or now, call)
      redis.call('PEXPIRE', KEYS[k + 1], minute + 60000)
    end
    if set[2] then
      redis.call('ZREMRANGEBYSCORE', KEYS[k + 2], '-inf', now)
      local seen = redis.call('ZSCORE', KEYS[k + 2], call)
      local n = redis.call('ZCARD', KEYS[k + 2])
      counts[2] = seen and {n, n} or {n, n + 1}
      redis.call('ZADD', KEYS[k + 2], now + lease, call)
      redis.call('PEXPIRE', KEYS[k + 2], lease + 60000)
    end
    if set[3] then
      local last = redis.call('HMGET', KEYS[k + 3], 'p', 'n', 'c')
      local run = tonumber(last[2]) or 0
      if last[3] == call then
        counts[3] = {run, run}
      elseif last[1] == prefix then
        counts[3] = {run, run + 1}
      else
        counts[3] = {0, 1}
      end
      redis.call('HSET', KEYS[k + 3], 'p', prefix, 'n', counts[3][2], 'c', call)
      redis.call('PEXPIRE', KEYS[k + 3], day)
    end
    if set[4] then
      local talked = minutes(KEYS[k + 4], day)
      counts[4] = {talked, talked}
    end
    for j = 1, 4 do
      if counts[j] then
        judge(KEYS[2], KEYS[1], account, rule, metrics[j], prefix, counts[j][1], counts[j][2],
              tonumber(ARGV[a + 1 + 2 * j]), tonumber(ARGV[a + 2 + 2 * j]), ARGV[a + 11],
              ARGV[8], ARGV[a + 12])
      end
    end
    if set[2] or set[4] then  -- what the call's end has to do
      record[#record + 1] = {rule, prefix, tonumber(ARGV[a + 9]), tonumber(ARGV[a + 10]),
                             ARGV[a + 11], KEYS[k + 2], KEYS[k + 4], ARGV[8], ARGV[a + 12]}
    end
    redis.call('ZADD', KEYS[4], now, rule .. ' ' .. account)
  end
end
if refused then
  for _, r in ipairs(record) do redis.call('ZREM', r[6], call) end
elseif #record > 0 then
  redis.call('SET', KEYS[3], cjson.encode({a = account, r = record}), 'PX', lease)
end
local out = {refused and 1 or 0, refused and refused[1] or '', refused and refused[2] or ''}
for _, v in ipairs(crossings) do out[#out + 1] = v end
return out
"""
)

END = (
    _CLOCK
    + """
-- KEYS: call record, blocks hash; ARGV: now, minutes talked, day ms, blocked set prefix, call
local found = redis.call('GET', KEYS[1])
if not found then return {0, '', ''} end
redis.call('DEL', KEYS[1])
local call = ARGV[5]
local record = cjson.decode(found)
local account, talked, day = record.a, tonumber(ARGV[2]), tonumber(ARGV[3])
local blocked = ARGV[4] .. account
for _, r in ipairs(record.r) do
  redis.call('ZREM', r[6], call)
  if r[3] > 0 or r[4] > 0 then
    local before, bucket = minutes(r[7], day)
    if talked > 0 then
      redis.call('HINCRBYFLOAT', r[7], bucket, talked)
      redis.call('PEXPIRE', r[7], day + 60000)
    end
    judge(KEYS[2], blocked, account, r[1], 'minutes_per_day', r[2], before, before + talked,
          r[3], r[4], r[5], r[8], r[9])
  end
end
local out = {0, '', account}
for _, v in ipairs(crossings) do out[#out + 1] = v end
return out
"""
)

COUNTS = (
    _CLOCK
    + """
-- KEYS: 4 per pair (cpm, calls, seq, minutes); ARGV: now, minute ms, day ms
local minute, day = tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {}
for k = 1, #KEYS, 4 do
  out[#out + 1] = redis.call('ZCOUNT', KEYS[k], now - minute, '+inf')
  out[#out + 1] = redis.call('ZCOUNT', KEYS[k + 1], now, '+inf')
  local last = redis.call('HMGET', KEYS[k + 2], 'p', 'n')
  out[#out + 1] = last[1] or false
  out[#out + 1] = last[2] or 0
  out[#out + 1] = tostring(minutes(KEYS[k + 3], day))
end
return out
"""
)

UNBLOCK = """
-- KEYS: blocks hash; ARGV: block id, blocked set prefix
local found = redis.call('HGET', KEYS[1], ARGV[1])
if not found then return false end
local block = cjson.decode(found)
local member = block.prefix
if member == cjson.null or member == nil then member = '*' end
redis.call('SREM', ARGV[2] .. block.account, member)
redis.call('HDEL', KEYS[1], ARGV[1])
return found
"""
