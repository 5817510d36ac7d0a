-- token_bucket.lua: core/bucket.cc in Lua, with the level arithmetic leaky_bucket.lua shares.
-- State: hash {l = level in units, t = when the level was computed (never moves backwards)}.
--
-- Levels are counted in units (Limit::units_per_token per token, units_per_micro drained per
-- microsecond), exactly as in the core. The store sends only limits whose capacity in units is
-- at most 2^51, so a level (at most MAX_LEVEL in debt), a need and their sum are exact doubles.

-- internal::AdmitLevel: `level` units in use at the decision time, `shift` how far the decision
-- time is ahead of the caller's now, `force` to charge a rejected cost into debt. Returns the
-- decision, whether it charged anything, and the level after the charge.
--
-- In debt the level may reach MAX_LEVEL: `(level - cap) + need` keeps every partial sum exact
-- where `level + need - cap` would not be, and a need that is not exact (cost * upt above 2^53,
-- only for a cost above the burst) only meets the cap below, where rounding keeps the order.
local function admit_level(item, level, cost, shift, force)
  local d = decision(item.limit)
  local need = cost * item.upt
  if cost > item.burst then
    d.allowed = false
    d.cost_exceeds_limit = true
  elseif need <= item.cap - level then
    level = level + need
  else
    d.allowed = false
    d.retry_after = cdiv((level - item.cap) + need, item.upm) + shift
  end
  local charged = cost > 0 and (d.allowed or force)
  if charged and not d.allowed then
    -- Debt, bounded: a level already past the bound (a clock gone back) is never lowered.
    level = add_capped(level, need, math.max(level, MAX_LEVEL))
  end
  d.remaining = math.max(0, fdiv(item.cap - level, item.upt))
  if level > 0 then
    d.reset_after = cdiv(level, item.upm) + shift
  end
  return d, charged, level
end

local function admit_bucket(item, now, cost, shaping, force)
  local s = hget_ints(item.key, 'l', 't')
  local at = math.max(now, s[2])
  -- max(0, level - (at - last) * units_per_micro), without forming a product that could pass
  -- 2^53: once (at - last) reaches ceil(level / upm) the bucket has fully drained.
  local level = 0
  local elapsed = at - s[2]
  if s[1] > 0 and elapsed < cdiv(s[1], item.upm) then
    level = s[1] - elapsed * item.upm
  end
  local d, charged, after = admit_level(item, level, cost, at - now, force)
  if d.allowed and shaping and level > 0 then
    d.delay = cdiv(level, item.upm) + (at - now)  -- hold until what is queued ahead drained
  end
  if charged then
    redis.call('HSET', item.key, 'l', int(after), 't', int(at))
    expire_at(item.key, item, now, d.reset_after)
  end
  return d
end

local function refund_bucket(item, cost)
  local s = hget_ints(item.key, 'l')
  redis.call('HSET', item.key, 'l', int(math.max(0, s[1] - cost * item.upt)))
end

local token_bucket = {}

function token_bucket.admit(item, now, cost, force)
  return admit_bucket(item, now, cost, false, force)
end

function token_bucket.refund(item, charged_at, cost)
  refund_bucket(item, cost)
end
