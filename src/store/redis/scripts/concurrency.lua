-- concurrency.lua: core/concurrency.cc in Lua (algorithm: concurrency).
-- State: a sorted set (item.key) with one member per slot held, named by the request's lease id
-- (item.lease) and scored by the time in microseconds at which it expires. Expired members are
-- dropped on every decision; Store::Release is a plain ZREM of the member.

local concurrency = {}
local CONCURRENCY_MAX_RETRY = 1000000  -- Concurrency::kMaxRetryAfter

local function concurrency_decide(item, now, allowed)
  local d = decision(item.limit)
  d.allowed = allowed
  local held = redis.call('ZCARD', item.key)
  if item.limit > held then
    d.remaining = item.limit - held
  end
  if held > 0 then
    local first = redis.call('ZRANGE', item.key, 0, 0, 'WITHSCORES')
    local last = redis.call('ZRANGE', item.key, -1, -1, 'WITHSCORES')
    d.reset_after = tonumber(last[2]) - now
    if not allowed then
      d.retry_after = math.min(tonumber(first[2]) - now, CONCURRENCY_MAX_RETRY)
    end
  end
  return d
end

-- `force` is ignored: a slot is never held over the limit (see core/concurrency.h).
function concurrency.admit(item, now, cost)
  redis.call('ZREMRANGEBYSCORE', item.key, '-inf', int(now))
  local held = redis.call('ZCARD', item.key)
  local renew = cost > 0 and redis.call('ZSCORE', item.key, item.lease)
  local wanted = 0
  if cost > 0 and not renew then
    wanted = 1
  end
  local allowed = wanted <= item.limit - held
  if cost > 0 and allowed then
    redis.call('ZADD', item.key, int(now + item.window), item.lease)
  end
  return concurrency_decide(item, now, allowed)
end

-- A rejection gives the slot back (`charged_at` and `cost` do not matter: the slot is the lease's).
function concurrency.refund(item, charged_at, cost)
  redis.call('ZREM', item.key, item.lease)
end

-- The set lives until its last slot expires.
function concurrency.expire(item, now, reset_after)
  expire_at(item.key, item, now, reset_after)
end
