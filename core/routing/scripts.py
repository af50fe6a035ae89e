"""The Lua scripts that are the only writers of live routing state in Redis.

Every script starts from the same prelude: the clock is Redis' own (`TIME`, so API and worker
clocks never disagree), expired leases are dropped and the agent's status recomputed before
anything is decided (`refresh`), and each status change bumps the agent's version and is
published on `agent:status` inside the script, so an event can never be lost or reordered
against the change. Scripts refuse to run on a Redis that lost its data (no `routing:loaded`
marker): the caller rebuilds from PostgreSQL and retries (core.routing.store).

Keys (single Redis; not cluster-sharded):
  routing:loaded                 marker set after a rebuild from PostgreSQL
  agents:all                     set of agent ids
  agent:{id}                     hash: presence status phone name team skills seq max wrap_s
                                 wrap_until last_end avail_since handled handled_day ver
                                 changed_at active
  agent:{id}:calls               hash: lease id -> "expiry_ms|r" (reserved) or "|c" (on a call)
  lease:{lease}                  agent id holding the lease (expires with it)
  rr:{scope}                     round-robin cursor: packed (sequence, id) of the last agent
  queues:all                     set of queue ids
  queue:{q}:conf                 the queue's routing config (JSON)
  queue:{q}:wait                 zset: call sid -> (100 - priority) * 1e13 + arrival_ms
  queue:{q}:arr                  zset: call sid -> arrival_ms (ageing, longest wait)
  qe:{sid}                       hash: q prio arr status agent lease kind cb caller pos0 seen
"""

from __future__ import annotations

NOT_LOADED = "IVR_ROUTING_NOT_LOADED"

PRELUDE = r"""
if redis.call('EXISTS', 'routing:loaded') == 0 then
  return redis.error_reply('IVR_ROUTING_NOT_LOADED')
end
local T = redis.call('TIME')
local NOW = tonumber(T[1]) * 1000 + math.floor(tonumber(T[2]) / 1000)
local CHANGED = {}

local function num(v, d)
  local n = tonumber(v)
  if n == nil then return d end
  return n
end

local function refresh(id)
  local key = 'agent:' .. id
  if redis.call('EXISTS', key) == 0 then return nil end
  local calls = redis.call('HGETALL', key .. ':calls')
  local reserved, oncall = 0, 0
  for i = 1, #calls, 2 do
    local v = calls[i + 1]
    local sep = string.find(v, '|', 1, true)
    local exp = num(string.sub(v, 1, (sep or 0) - 1), 0)
    local kind = sep and string.sub(v, sep + 1) or 'r'
    if exp <= NOW then
      redis.call('HDEL', key .. ':calls', calls[i])
    elseif kind == 'c' then
      oncall = oncall + 1
    else
      reserved = reserved + 1
    end
  end
  local h = redis.call('HMGET', key, 'presence', 'wrap_until', 'status', 'active')
  local presence = h[1] or 'offline'
  local wrap_until = num(h[2], 0)
  local status = presence
  if oncall > 0 then status = 'on_call'
  elseif reserved > 0 then status = 'reserved'
  elseif wrap_until > NOW and presence == 'available' then status = 'wrap_up' end
  local active = oncall + reserved
  if num(h[4], -1) ~= active then redis.call('HSET', key, 'active', active) end
  local old = h[3] or 'offline'
  if old ~= status then
    redis.call('HSET', key, 'status', status, 'changed_at', NOW)
    if status == 'available' then redis.call('HSET', key, 'avail_since', NOW) end
    local ver = redis.call('HINCRBY', key, 'ver', 1)
    redis.call('PUBLISH', 'agent:status', cjson.encode({
      agentId = tonumber(id), status = status, previous = old, at = NOW, version = ver}))
    table.insert(CHANGED, tonumber(id))
  end
  return status
end

local function touch(id)
  -- a change that is not a status change (lease moved, counters) still bumps the version
  local already = false
  for _, v in ipairs(CHANGED) do if v == tonumber(id) then already = true end end
  if not already then
    redis.call('HINCRBY', 'agent:' .. id, 'ver', 1)
    table.insert(CHANGED, tonumber(id))
  end
end

local function free(id)
  local key = 'agent:' .. id
  if refresh(id) == nil then return false end
  local h = redis.call('HMGET', key, 'presence', 'active', 'max', 'wrap_until')
  return h[1] == 'available' and num(h[2], 0) < num(h[3], 1) and num(h[4], 0) <= NOW
end

local function holder(lease)
  local id = redis.call('GET', 'lease:' .. lease)
  if id and redis.call('HEXISTS', 'agent:' .. id .. ':calls', lease) == 1 then
    return id
  end
  return nil
end

local function take(id, lease, lease_ms, kind, rr_key, rr_value)
  redis.call('HSET', 'agent:' .. id .. ':calls', lease, (NOW + lease_ms) .. '|' .. kind)
  redis.call('SET', 'lease:' .. lease, id, 'PX', lease_ms + 60000)
  if rr_key ~= '' then redis.call('SET', rr_key, rr_value) end
  refresh(id)
  touch(id)
end
"""

# ARGV: lease, lease_ms, kind (r|c), rr_key ('' for none), then pairs (agent id, cursor value)
RESERVE = (
    PRELUDE
    + r"""
local lease, lease_ms, kind, rr_key = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local have = holder(lease)
if have then return {tonumber(have), CHANGED} end
for i = 5, #ARGV, 2 do
  local id = ARGV[i]
  if free(id) then
    take(id, lease, lease_ms, kind, rr_key, ARGV[i + 1])
    return {tonumber(id), CHANGED}
  end
end
return {false, CHANGED}
"""
)

# ARGV: lease, lease_ms, kind -> the agent id, or false when the lease is gone
EXTEND = (
    PRELUDE
    + r"""
local lease, lease_ms, kind = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local id = holder(lease)
if not id then return {false, CHANGED} end
redis.call('HSET', 'agent:' .. id .. ':calls', lease, (NOW + lease_ms) .. '|' .. kind)
redis.call('PEXPIRE', 'lease:' .. lease, lease_ms + 60000)
refresh(id)
touch(id)
return {tonumber(id), CHANGED}
"""
)

# ARGV: lease, handled (1|0), day, queue id ('' none), handle_s -> agent id or false
RELEASE = (
    PRELUDE
    + r"""
local lease, handled, day, q, handle_s = ARGV[1], ARGV[2] == '1', ARGV[3], ARGV[4], ARGV[5]
local id = redis.call('GET', 'lease:' .. lease)
if not id then return {false, CHANGED} end
redis.call('DEL', 'lease:' .. lease)
local removed = redis.call('HDEL', 'agent:' .. id .. ':calls', lease)
local key = 'agent:' .. id
if handled and removed == 1 then
  local wrap_s = num(redis.call('HGET', key, 'wrap_s'), 0)
  redis.call('HSET', key, 'last_end', NOW, 'wrap_until', NOW + wrap_s * 1000)
  if redis.call('HGET', key, 'handled_day') ~= day then
    redis.call('HSET', key, 'handled_day', day, 'handled', 0)
  end
  redis.call('HINCRBY', key, 'handled', 1)
  if q ~= '' and tonumber(handle_s) then
    redis.call('LPUSH', 'queue:' .. q .. ':aht', tonumber(handle_s) + wrap_s)
    redis.call('LTRIM', 'queue:' .. q .. ':aht', 0, 49)
  end
end
refresh(id)
touch(id)
return {tonumber(id), CHANGED}
"""
)

# ARGV: agent id, presence -> {ok (1) or the refusing status, old status, new status}
SET_PRESENCE = (
    PRELUDE
    + r"""
local id, presence = ARGV[1], ARGV[2]
local key = 'agent:' .. id
local status = refresh(id)
if status == nil then return {'missing', false, false, CHANGED} end
if status == 'reserved' or status == 'on_call' then
  if presence ~= redis.call('HGET', key, 'presence') then
    return {status, status, status, CHANGED}
  end
end
if status == 'wrap_up' or presence ~= 'available' then
  redis.call('HSET', key, 'wrap_until', 0)
end
redis.call('HSET', key, 'presence', presence)
local new = refresh(id)
touch(id)
return {'ok', status, new, CHANGED}
"""
)

# ARGV: agent id, then field/value pairs of configuration (never presence or calls)
UPSERT_AGENT = (
    PRELUDE
    + r"""
local id = ARGV[1]
local key = 'agent:' .. id
local fresh = redis.call('EXISTS', key) == 0
for i = 2, #ARGV, 2 do redis.call('HSET', key, ARGV[i], ARGV[i + 1]) end
if fresh then
  redis.call('HSET', key, 'presence', 'offline', 'status', 'offline', 'ver', 0,
             'changed_at', NOW, 'active', 0)
end
redis.call('SADD', 'agents:all', id)
refresh(id)
touch(id)
return {1, CHANGED}
"""
)

# ARGV: agent id -> 1 removed, or the status that forbids it
REMOVE_AGENT = (
    PRELUDE
    + r"""
local id = ARGV[1]
local status = refresh(id)
if status == nil then return {1, CHANGED} end
if status == 'reserved' or status == 'on_call' then return {status, CHANGED} end
redis.call('DEL', 'agent:' .. id, 'agent:' .. id .. ':calls')
redis.call('SREM', 'agents:all', id)
return {1, CHANGED}
"""
)

# ARGV: agent ids -> refresh each (expired leases, ended wrap-ups)
SWEEP = (
    PRELUDE
    + r"""
for i = 1, #ARGV do refresh(ARGV[i]) end
return {1, CHANGED}
"""
)

# ARGV: q, sid, priority, score, arrival_ms, max_size, kind, caller, callback id
#   -> {position (1-based) or -1 when full, size, arrival_ms}
ENQUEUE = (
    PRELUDE
    + r"""
local q, sid = ARGV[1], ARGV[2]
local wait, arr = 'queue:' .. q .. ':wait', 'queue:' .. q .. ':arr'
local e = 'qe:' .. sid
local st = redis.call('HMGET', e, 'q', 'status', 'arr')
if st[1] == q and (st[2] == 'waiting' or st[2] == 'assigned') then
  local r = redis.call('ZRANK', wait, sid)
  return {r and (r + 1) or 0, redis.call('ZCARD', wait), tonumber(st[3]) or 0, CHANGED}
end
local size = redis.call('ZCARD', wait)
if size >= tonumber(ARGV[6]) then return {-1, size, 0, CHANGED} end
redis.call('ZADD', wait, ARGV[4], sid)
redis.call('ZADD', arr, ARGV[5], sid)
local pos = redis.call('ZRANK', wait, sid) + 1
redis.call('DEL', e)
redis.call('HSET', e, 'q', q, 'prio', ARGV[3], 'arr', ARGV[5], 'status', 'waiting',
           'kind', ARGV[7], 'caller', ARGV[8], 'cb', ARGV[9], 'pos0', pos, 'seen', NOW)
redis.call('PEXPIRE', e, 6 * 3600 * 1000)
redis.call('PUBLISH', 'queue:update', cjson.encode({queueId = tonumber(q), event = 'enqueued',
  size = size + 1, at = NOW}))
return {pos, size + 1, tonumber(ARGV[5]), CHANGED}
"""
)

# ARGV: q, sid, lease, lease_ms, rr_key, then pairs (agent id, cursor value)
#   -> agent id or false (the entry is no longer waiting, or nobody is free)
ASSIGN = (
    PRELUDE
    + r"""
local q, sid, lease, lease_ms, rr_key = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local e = 'qe:' .. sid
local st = redis.call('HMGET', e, 'q', 'status', 'agent')
if st[1] ~= q then return {false, CHANGED} end
if st[2] == 'assigned' then return {tonumber(st[3]) or false, CHANGED} end
if st[2] ~= 'waiting' then return {false, CHANGED} end
for i = 6, #ARGV, 2 do
  local id = ARGV[i]
  if free(id) then
    take(id, lease, lease_ms, 'r', rr_key, ARGV[i + 1])
    redis.call('HSET', e, 'status', 'assigned', 'agent', id, 'lease', lease, 'assigned_at', NOW)
    redis.call('ZREM', 'queue:' .. q .. ':wait', sid)
    redis.call('ZREM', 'queue:' .. q .. ':arr', sid)
    redis.call('PUBLISH', 'queue:update', cjson.encode({queueId = tonumber(q),
      event = 'assigned', size = redis.call('ZCARD', 'queue:' .. q .. ':wait'), at = NOW}))
    return {tonumber(id), CHANGED}
  end
end
return {false, CHANGED}
"""
)

# ARGV: sid, new status, release lease (1|0) -> {old status, agent, lease, arrival_ms, q}
LEAVE = (
    PRELUDE
    + r"""
local sid, status, release = ARGV[1], ARGV[2], ARGV[3] == '1'
local e = 'qe:' .. sid
local st = redis.call('HMGET', e, 'q', 'status', 'agent', 'lease', 'arr')
if not st[1] then return {false, false, false, false, false, CHANGED} end
local q = st[1]
redis.call('ZREM', 'queue:' .. q .. ':wait', sid)
redis.call('ZREM', 'queue:' .. q .. ':arr', sid)
if release and st[4] then
  local id = redis.call('GET', 'lease:' .. st[4])
  if id then
    redis.call('DEL', 'lease:' .. st[4])
    redis.call('HDEL', 'agent:' .. id .. ':calls', st[4])
    refresh(id)
    touch(id)
  end
end
if st[2] ~= status then
  redis.call('HSET', e, 'status', status, 'left_at', NOW)
  redis.call('PEXPIRE', e, 3600 * 1000)
  redis.call('PUBLISH', 'queue:update', cjson.encode({queueId = tonumber(q), event = status,
    size = redis.call('ZCARD', 'queue:' .. q .. ':wait'), at = NOW}))
end
return {st[2], st[3] or false, st[4] or false, tonumber(st[5]) or false, tonumber(q), CHANGED}
"""
)

# ARGV: sid -> {status, position (0 when not waiting), size, arrival, agent, lease, now}
POLL = (
    PRELUDE
    + r"""
local sid = ARGV[1]
local e = 'qe:' .. sid
local st = redis.call('HMGET', e, 'q', 'status', 'arr', 'agent', 'lease')
if not st[1] then return {false, 0, 0, 0, false, false, NOW, CHANGED} end
redis.call('HSET', e, 'seen', NOW)
local wait = 'queue:' .. st[1] .. ':wait'
local r = redis.call('ZRANK', wait, sid)
return {st[2], r and (r + 1) or 0, redis.call('ZCARD', wait), tonumber(st[3]) or 0,
        tonumber(st[4]) or false, st[5] or false, NOW, CHANGED}
"""
)

# ARGV: sid -> mark a waiting call as a callback request keeping its place
TO_CALLBACK = (
    PRELUDE
    + r"""
local sid, cb = ARGV[1], ARGV[2]
local e = 'qe:' .. sid
local st = redis.call('HMGET', e, 'q', 'status')
if st[2] ~= 'waiting' then return {st[2] or false, CHANGED} end
redis.call('HSET', e, 'kind', 'callback', 'cb', cb)
redis.call('PERSIST', e)
return {'waiting', CHANGED}
"""
)
