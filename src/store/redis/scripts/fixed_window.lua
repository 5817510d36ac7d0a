-- fixed_window.lua: core/fixed_window.cc in Lua. State: hash {w = window index, c = count}.

local fixed_window = {}

function fixed_window.admit(item, now, cost, force)
  local s = hget_ints(item.key, 'w', 'c')
  local w = item.window
  local index, count = fdiv(now, w), 0
  if index <= s[1] then  -- same window, or the clock went back: stay in the newest
    index, count = s[1], s[2]
  end
  local until_end = (index + 1) * w - now
  local d = decision(item.limit)
  if cost > item.limit then
    d.allowed = false
    d.cost_exceeds_limit = true
  elseif cost <= item.limit - count then
    count = count + cost
    if cost > 0 then
      redis.call('HSET', item.key, 'w', int(index), 'c', int(count))
    end
  else
    d.allowed = false
    d.retry_after = until_end  -- the next window starts empty and cost <= limit
  end
  local charged = d.allowed
  if not d.allowed and force and cost > 0 then
    count = add_capped(count, cost, MAX_COUNT)  -- debt, until the window ends
    redis.call('HSET', item.key, 'w', int(index), 'c', int(count))
    charged = true
  end
  d.remaining = math.max(0, item.limit - count)
  if count > 0 then
    d.reset_after = until_end
  end
  if charged and cost > 0 then
    expire_at(item.key, item, now, d.reset_after)
  end
  return d
end

function fixed_window.refund(item, charged_at, cost)
  local s = hget_ints(item.key, 'w', 'c')
  if fdiv(charged_at, item.window) == s[1] then
    redis.call('HSET', item.key, 'c', int(math.max(0, s[2] - cost)))
  end
end
