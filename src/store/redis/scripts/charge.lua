-- charge.lua: the entry point `charge`, and what lease.lua shares with it. Decides a batch of
-- requests in order, each checked and charged all-or-nothing exactly as MemoryStore::ChargeNow
-- does with the core, and exactly as if it had been sent alone (a batch is the checks in flight
-- for one node, coalesced into one call): admit each item in order (an item that charges when over
-- takes a rejected cost into debt); if the request is rejected (an enforced item rejects, or every
-- quota item does), refund the admitted ones whose charge is given back on rejection, newest first
-- (nothing ran in between: exact), and read their state again for the decisions reported.
--
-- A request may instead give back what a previous call charged, for a request whose items live on
-- several Redis nodes (Redis Cluster, sharding): one node admitted, another rejected.
--
-- keys: per item of every request in order, its state key; sliding_window_log items also pass
--       their sorted set's key.
-- args[1]: the time in microseconds since the epoch, or '' (the normal case) to read Redis TIME,
--          so that every Sluice server sharing this Redis agrees on the time. A given time is for
--          tests; keys then get no expiry, since that time is not Redis's clock.
-- args[2]: the number of requests. Then per request:
--   - its number of items;
--   - '' to charge; or the time a previous call charged these items (the `now` it returned), to
--     refund each item's cost as charged then and read its state;
--   - the number of quota items in the whole request (ItemRole::kQuota). When this call holds
--     fewer (a request across Redis Cluster slots), it cannot tell whether they all reject, and
--     the store decides across calls;
--   - per item, ARGS_PER_ITEM values: algorithm (index in core's kAllAlgorithms), limit, window
--     (us), burst, units per token, units per microsecond, cost, role (ItemRole: 0 enforced,
--     1 shadow, 2 quota), when (ChargeWhen: 0 request allowed, 1 allowed or over, 2 always).
--     A concurrency item (algorithm 6) sends its lease id in place of the burst: the member it
--     holds in its sorted set.
-- Returns {now, then per item of every request in order: allowed, cost_exceeds_limit, limit,
--          remaining, reset_after, retry_after, delay}.

local ARGS_PER_ITEM = 9
local ENFORCED, QUOTA = 0, 2
local CHARGE_ALWAYS = 2
local LOG = 2
local CONCURRENCY = 6
local ALGORITHMS = {
  [0] = fixed_window, [1] = sliding_window_counter, [2] = sliding_window_log,
  [3] = token_bucket, [4] = gcra, [5] = leaky_bucket, [6] = concurrency,
}

-- The call's time: Redis TIME, or the one a test gave (then keys get no expiry).
local function call_time(given)
  if given == '' then
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000000 + tonumber(t[2]), true
  end
  return tonumber(given), false
end

-- An item from the 6 limit values at args[a + 1 ..], with its keys from keys[k ..]. Returns the
-- item and the index of the next key.
local function read_item(keys, args, a, k, expire)
  -- One constructor with every field (those charge.lua adds too): a table that grows rehashes.
  local algorithm, upt = tonumber(args[a + 1]), tonumber(args[a + 5])
  local burst, lease = 0, false
  if algorithm == CONCURRENCY then
    lease = args[a + 4]
  else
    burst = tonumber(args[a + 4])
  end
  local key2 = false
  if algorithm == LOG then
    key2 = keys[k + 1]
  end
  local item = {
    algorithm = algorithm, limit = tonumber(args[a + 2]), window = tonumber(args[a + 3]),
    burst = burst, upt = upt, upm = tonumber(args[a + 6]), expire = expire, key = keys[k],
    key2 = key2, cap = burst * upt, impl = ALGORITHMS[algorithm], lease = lease,
    cost = 0, role = 0, force = false, refunded = true,
  }
  if key2 then
    return item, k + 2
  end
  return item, k + 1
end

-- Sets the expiry of an item's state after it changed, given the decision it is left in.
local function expire_item(item, now, d)
  if item.impl.expire then
    item.impl.expire(item, now, d.reset_after)
  else
    expire_at(item.key, item, now, d.reset_after)
  end
end

-- Gives back `cost` charged at `charged_at` and reads the state the item is left in.
local function give_back(item, now, charged_at, cost)
  item.impl.refund(item, charged_at, cost)
  local d = item.impl.admit(item, now, 0)
  expire_item(item, now, d)
  return d
end

-- Decides one request of `n` items (args from a + 1, keys from k); appends its decisions to
-- `reply`. Returns the next request's args and keys positions.
local function decide(keys, args, a, k, now, expire, reply)
  local n = tonumber(args[a + 1])
  local refund_at = tonumber(args[a + 2])
  local quota_total = tonumber(args[a + 3])
  a = a + 3
  local items = {}
  for i = 1, n do
    local item
    item, k = read_item(keys, args, a, k, expire)
    item.cost = tonumber(args[a + 7])
    item.role = tonumber(args[a + 8])
    local when = tonumber(args[a + 9])
    item.force = when ~= 0
    item.refunded = when ~= CHARGE_ALWAYS
    items[i] = item
    a = a + ARGS_PER_ITEM
  end

  local decisions = {}
  if refund_at then
    for i = 1, n do
      local item = items[i]
      if item.cost > 0 then
        decisions[i] = give_back(item, now, refund_at, item.cost)
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
          decisions[i] = give_back(item, now, now, item.cost)
        end
      end
    end
  end

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
  return a, k
end

local function charge(keys, args)
  local now, expire = call_time(args[1])
  local requests = tonumber(args[2])
  local reply = {now}
  local a, k = 2, 1
  for _ = 1, requests do
    a, k = decide(keys, args, a, k, now, expire, reply)
  end
  return reply
end
