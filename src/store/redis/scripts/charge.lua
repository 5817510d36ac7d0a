-- charge.lua: the entry point. Checks and charges every item of one request, all-or-nothing,
-- exactly as MemoryStore::ChargeNow does with the core: admit each item in order (an item that
-- charges when over takes a rejected cost into debt); if the request is rejected (an enforced
-- item rejects, or every quota item does), refund the admitted ones whose charge is given back
-- on rejection, newest first (nothing ran in between: exact), and read their state again for
-- the decisions reported.
--
-- It also gives back, in a second call, what a first call charged, for a request whose items
-- live on several Redis nodes (Redis Cluster, sharding): one node admitted, another rejected.
--
-- KEYS: per item, its state key; sliding_window_log items also pass their sorted set's key.
-- ARGV[1]: the time in microseconds since the epoch, or '' (the normal case) to read Redis TIME,
--          so that every Sluice server sharing this Redis agrees on the time. A given time is for
--          tests; keys then get no expiry, since that time is not Redis's clock.
-- ARGV[2]: the number of items.
-- ARGV[3]: '' to charge; or the time a previous call charged these items (the `now` it
--          returned), to refund each item's cost as charged then and read its state.
-- ARGV[4]: the number of quota items in the whole request (ItemRole::kQuota). When this call
--          holds fewer (a request across Redis Cluster slots), it cannot tell whether they all
--          reject, and the store decides across calls.
-- Then per item, ARGS_PER_ITEM values:
--          algorithm (index in core's kAllAlgorithms), limit, window (us), burst, units per
--          token, units per microsecond, cost, role (ItemRole: 0 enforced, 1 shadow, 2 quota),
--          when (ChargeWhen: 0 request allowed, 1 allowed or over, 2 always).
-- Returns {now, then per item: allowed, cost_exceeds_limit, limit, remaining, reset_after,
--          retry_after, delay}.

local ARGS_PER_ITEM = 9
local ENFORCED, QUOTA = 0, 2
local CHARGE_ALWAYS = 2
local LOG = 2
local ALGORITHMS = {
  [0] = fixed_window, [1] = sliding_window_counter, [2] = sliding_window_log,
  [3] = token_bucket, [4] = gcra, [5] = leaky_bucket,
}

local now
local expire = ARGV[1] == ''
if expire then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[1])
end

local n = tonumber(ARGV[2])
local refund_at = tonumber(ARGV[3])
local quota_total = tonumber(ARGV[4])
local items = {}
local k = 1
for i = 1, n do
  local a = 4 + (i - 1) * ARGS_PER_ITEM
  local when = tonumber(ARGV[a + 9])
  local item = {
    algorithm = tonumber(ARGV[a + 1]), limit = tonumber(ARGV[a + 2]),
    window = tonumber(ARGV[a + 3]), burst = tonumber(ARGV[a + 4]), upt = tonumber(ARGV[a + 5]),
    upm = tonumber(ARGV[a + 6]), cost = tonumber(ARGV[a + 7]), role = tonumber(ARGV[a + 8]),
    force = when ~= 0, refunded = when ~= CHARGE_ALWAYS, expire = expire, key = KEYS[k],
  }
  item.cap = item.burst * item.upt
  k = k + 1
  if item.algorithm == LOG then
    item.key2 = KEYS[k]
    k = k + 1
  end
  item.impl = ALGORITHMS[item.algorithm]
  items[i] = item
end

-- Gives back `cost` charged at `charged_at` and reads the state the item is left in.
local function give_back(item, charged_at, cost)
  item.impl.refund(item, charged_at, cost)
  local d = item.impl.admit(item, now, 0)
  if item.impl.expire then
    item.impl.expire(item, now, d.reset_after)
  else
    expire_at(item.key, item, now, d.reset_after)
  end
  return d
end

local decisions = {}
if refund_at then
  for i = 1, n do
    local item = items[i]
    if item.cost > 0 then
      decisions[i] = give_back(item, refund_at, item.cost)
    else
      decisions[i] = item.impl.admit(item, now, 0)
    end
  end
else
  local rejected = false
  local quota, quota_rejected = 0, 0
  for i = 1, n do
    local item = items[i]
    decisions[i] = item.impl.admit(item, now, item.cost, item.force)
    local over = not decisions[i].allowed
    if item.role == ENFORCED and over then
      rejected = true
    elseif item.role == QUOTA then
      quota = quota + 1
      if over then
        quota_rejected = quota_rejected + 1
      end
    end
  end
  if quota > 0 and quota == quota_total and quota_rejected == quota then
    rejected = true
  end
  if rejected then
    for i = n, 1, -1 do
      local item = items[i]
      if decisions[i].allowed and item.cost > 0 and item.refunded then
        decisions[i] = give_back(item, now, item.cost)
      end
    end
  end
end

local reply = {now}
for i = 1, n do
  local d = decisions[i]
  local r = #reply
  reply[r + 1] = d.allowed and 1 or 0
  reply[r + 2] = d.cost_exceeds_limit and 1 or 0
  reply[r + 3] = d.limit
  reply[r + 4] = d.remaining
  reply[r + 5] = d.reset_after
  reply[r + 6] = d.retry_after
  reply[r + 7] = d.delay
end
return reply
