-- gcra.lua: core/gcra.cc in Lua. State: hash {t = theoretical arrival time in microseconds,
-- f = its fraction, in [0, units_per_micro) units}.
--
-- The core forms the TAT in units (tat * units_per_micro + fraction), which for an absolute
-- time passes 2^53 quickly. Here everything is relative to now: the equivalent bucket's level is
-- dt * upm + f with dt = tat - now, and each comparison is rearranged to keep its terms exact.

local gcra = {}

function gcra.admit(item, now, cost, force)
  local s = hget_ints(item.key, 't', 'f')
  local tat, frac = s[1], s[2]
  local upm, upt, cap = item.upm, item.upt, item.cap
  local dt = tat - now
  local d = decision(item.limit)
  local need = cost * upt
  if dt < 0 then
    dt, frac = 0, 0  -- the TAT is in the past: an empty bucket (level 0)
  end
  local over = dt > fdiv(cap, upm)  -- dt * upm > capacity: in debt, or a clock gone back
  local base = 0                    -- cap - dt * upm, exact when not `over`
  if not over then
    base = cap - dt * upm
  end
  if cost > item.burst then
    d.allowed = false
    d.cost_exceeds_limit = true
  elseif not over and frac <= base - need then  -- level + need <= capacity
    -- admitted
  else
    d.allowed = false
    -- ceil((level + need - cap) / upm) with level = dt * upm + frac
    d.retry_after = dt + cdiv(frac + (need - cap), upm)
  end
  local charged = cost > 0 and (d.allowed or force)
  if charged and not d.allowed then
    -- Debt: the level dt * upm + frac (exact: a stored TAT is at most MAX_LEVEL units ahead of
    -- the time it was set) grows by `need`, bounded as in the core.
    local level = dt * upm + frac
    local after = add_capped(level, need, math.max(level, MAX_LEVEL))
    local q = fdiv(after, upm)
    redis.call('HSET', item.key, 't', int(now + q), 'f', int(after - q * upm))
    d.reset_after = cdiv(after, upm)
    expire_at(item.key, item, now, d.reset_after)
    return d
  end
  local added = 0
  if d.allowed then
    added = need
  end
  if not over then
    d.remaining = math.max(0, fdiv(base - frac - added, upt))
  end
  if dt > 0 or frac + added > 0 then
    d.reset_after = dt + cdiv(frac + added, upm)
  end
  if charged then
    -- new TAT = max(tat, now) + need, in microseconds and a fraction
    local start, units = now, need
    if tat >= now then
      start, units = tat, s[2] + need
    end
    local q = fdiv(units, upm)
    redis.call('HSET', item.key, 't', int(start + q), 'f', int(units - q * upm))
    expire_at(item.key, item, now, d.reset_after)
  end
  return d
end

-- Moves the TAT back by `cost` emission intervals, never before `charged_at`.
function gcra.refund(item, charged_at, cost)
  local s = hget_ints(item.key, 't', 'f')
  local rel = (s[1] - charged_at) * item.upm + s[2] - cost * item.upt
  if rel <= 0 then
    redis.call('HSET', item.key, 't', int(charged_at), 'f', '0')
  else
    local q = fdiv(rel, item.upm)
    redis.call('HSET', item.key, 't', int(charged_at + q), 'f', int(rel - q * item.upm))
  end
end
