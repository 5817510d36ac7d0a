-- sliding_window_counter.lua: core/sliding_window_counter.cc in Lua.
-- State: hash {w = current window index, c = current count, p = previous count}.
--
-- The core compares previous * (window - elapsed) + (current + cost) * window <= limit * window
-- in 128 bits; with limit up to 2^32 and window up to 10 years those products reach 2^81, so
-- here they go through mul_le/muldiv (common.lua), rearranged so that every other value stays a
-- small exact integer.

local sliding_window_counter = {}

function sliding_window_counter.admit(item, now, cost, force)
  local s = hget_ints(item.key, 'w', 'c', 'p')
  local w, limit = item.window, item.limit
  local index = fdiv(now, w)
  local elapsed = now - index * w
  local shift = 0  -- how far the clock went back behind the newest window seen
  if index < s[1] then
    -- Evaluate at the start of the newest window seen (see the core).
    shift = s[1] * w - now
    index = s[1]
    elapsed = 0
  end
  local current, previous = 0, 0
  if index == s[1] then
    current, previous = s[2], s[3]
  elseif index == s[1] + 1 then
    previous = s[2]
  end

  local d = decision(limit)
  if cost > limit then
    d.allowed = false
    d.cost_exceeds_limit = true
  else
    -- used + cost * window <= limit * window  <=>  previous * (window - elapsed) <= room * window
    local room = limit - current - cost
    if room >= 0 and mul_le(previous, w - elapsed, room, w) then
      current = current + cost
      if cost > 0 then
        redis.call('HSET', item.key, 'w', int(index), 'c', int(current), 'p', int(previous))
      end
    else
      d.allowed = false
      local wait
      if room >= 0 then
        -- Here room < previous, so floor(room * window / previous) < window.
        wait = w - muldiv(room, w, previous) - elapsed
      else
        -- Not this window: in the next one `current` becomes the previous count, decaying.
        local e_next = 0
        local left = limit - cost
        if current > 0 and left < current then  -- otherwise window - floor(...) <= 0
          e_next = math.max(0, w - muldiv(left, w, current))
        end
        wait = (w - elapsed) + e_next
      end
      d.retry_after = wait + shift
    end
  end
  local charged = d.allowed
  if not d.allowed and force and cost > 0 then
    -- Debt: the current window's count above the limit, weighing on the next window too.
    current = add_capped(current, cost, MAX_SWC_COUNT)
    redis.call('HSET', item.key, 'w', int(index), 'c', int(current), 'p', int(previous))
    charged = true
  end
  -- floor(((limit - current) * window - previous * (window - elapsed)) / window)
  d.remaining = math.max(0, limit - current - muldiv_ceil(previous, w - elapsed, w))
  if current > 0 then
    d.reset_after = 2 * w - elapsed + shift
  elseif previous > 0 then
    d.reset_after = w - elapsed + shift
  end
  if charged and cost > 0 then
    expire_at(item.key, item, now, d.reset_after)
  end
  return d
end

function sliding_window_counter.refund(item, charged_at, cost)
  local s = hget_ints(item.key, 'w', 'c', 'p')
  local index = fdiv(charged_at, item.window)
  if index == s[1] then
    redis.call('HSET', item.key, 'c', int(math.max(0, s[2] - cost)))
  elseif index + 1 == s[1] then
    redis.call('HSET', item.key, 'p', int(math.max(0, s[3] - cost)))
  end
end
