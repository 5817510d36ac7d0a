-- sliding_window_log.lua: core/sliding_window_log.cc in Lua.
-- State: a sorted set (item.key2) with one member per admitted instant, scored by its time in
-- microseconds and named "<time>:<cost>" (requests admitted at the same microsecond share one
-- entry, as in the core), and a hash (item.key) {n = sum of the costs in the set}, so that a
-- decision reads the total without summing the set.

local sliding_window_log = {}

local function entry_cost(member)
  return tonumber(string.match(member, ':(%d+)$'))
end

local function entry(at, cost)
  return int(at) .. ':' .. int(cost)
end

-- The newest entry: time and member, or nil.
local function newest(zkey)
  local last = redis.call('ZRANGE', zkey, -1, -1, 'WITHSCORES')
  if #last == 0 then
    return nil, nil
  end
  return tonumber(last[2]), last[1]
end

-- Records `cost` at `at` (the newest instant): merged into the newest entry when it is at `at`.
local function record(item, at, cost, newest_at, newest_member)
  if newest_at == at then
    redis.call('ZREM', item.key2, newest_member)
    redis.call('ZADD', item.key2, int(at), entry(at, entry_cost(newest_member) + cost))
  else
    redis.call('ZADD', item.key2, int(at), entry(at, cost))
  end
end

function sliding_window_log.admit(item, now, cost, force)
  local limit, w = item.limit, item.window
  local total = hget_ints(item.key, 'n')[1]
  local newest_at, newest_member = newest(item.key2)
  -- A clock that went back is treated as standing at the newest entry.
  local at = now
  if newest_at ~= nil and newest_at > now then
    at = newest_at
  end
  local shift = at - now
  local horizon = at - w  -- entries at or before it have expired
  local expired = redis.call('ZRANGEBYSCORE', item.key2, '-inf', int(horizon))
  if #expired > 0 then
    for i = 1, #expired do
      total = total - entry_cost(expired[i])
    end
    redis.call('ZREMRANGEBYSCORE', item.key2, '-inf', int(horizon))
    if total > 0 then
      redis.call('HSET', item.key, 'n', int(total))
    else
      redis.call('DEL', item.key)
      newest_at, newest_member = nil, nil
    end
  end

  local d = decision(limit)
  if cost > limit then
    d.allowed = false
    d.cost_exceeds_limit = true
  elseif cost <= limit - total then
    if cost > 0 then
      record(item, at, cost, newest_at, newest_member)
      newest_at = at
      total = total + cost
      redis.call('HSET', item.key, 'n', int(total))
    end
  else
    d.allowed = false
    -- The oldest entries leave first; wait until enough cost has left to make room.
    local must_free = total - (limit - cost)
    local freed, offset, batch = 0, 0, 64
    while d.retry_after == 0 do
      local page = redis.call('ZRANGEBYSCORE', item.key2, '(' .. int(horizon), '+inf',
                              'WITHSCORES', 'LIMIT', offset, batch)
      if #page == 0 then
        break  -- unreachable: must_free <= total
      end
      for i = 1, #page, 2 do
        freed = freed + entry_cost(page[i])
        if freed >= must_free then
          d.retry_after = tonumber(page[i + 1]) + w - at + shift
          break
        end
      end
      offset = offset + batch
    end
  end
  local charged = d.allowed
  if not d.allowed and force then
    -- Debt: the entry is logged like an admitted one; the total stays <= MAX_COUNT.
    local add = math.min(cost, MAX_COUNT - total)
    if add > 0 then
      record(item, at, add, newest_at, newest_member)
      newest_at = at
      total = total + add
      redis.call('HSET', item.key, 'n', int(total))
      charged = true
    end
  end
  d.remaining = math.max(0, limit - total)
  if total > 0 then
    d.reset_after = newest_at + w - at + shift
  end
  if charged and cost > 0 then
    expire_at(item.key, item, now, d.reset_after)
    expire_at(item.key2, item, now, d.reset_after)
  end
  return d
end

function sliding_window_log.refund(item, charged_at, cost)
  local found = redis.call('ZRANGEBYSCORE', item.key2, int(charged_at), int(charged_at))
  if #found == 0 then
    return
  end
  local entry_total = entry_cost(found[1])
  local given_back = math.min(cost, entry_total)
  redis.call('ZREM', item.key2, found[1])
  if entry_total > given_back then
    redis.call('ZADD', item.key2, int(charged_at), entry(charged_at, entry_total - given_back))
  end
  local total = hget_ints(item.key, 'n')[1] - given_back
  redis.call('HSET', item.key, 'n', int(total))
end

-- Both keys expire together.
function sliding_window_log.expire(item, now, reset_after)
  expire_at(item.key, item, now, reset_after)
  expire_at(item.key2, item, now, reset_after)
end
