-- token_bucket.lua: core/bucket.cc in Lua, with the level arithmetic leaky_bucket.lua shares.
-- State: hash {l = level in units, t = when the level was computed (never moves backwards)}.
--
-- Levels are counted in units (Limit::units_per_token per token, units_per_micro drained per
-- microsecond), exactly as in the core. The store sends only limits whose capacity in units is
-- at most 2^52, so a level, a need and their sum are exact doubles.

-- internal::AdmitLevel: `level` units in use at the decision time, `shift` how far the decision
-- time is ahead of the caller's now. Returns the decision and whether it admits; d carries the
-- level after the charge in `level` for the caller.
local function admit_level(item, level, cost, shift)
  local d = decision(item.limit)
  local admit = false
  if cost > item.burst then
    d.allowed = false
    d.cost_exceeds_limit = true
  else
    local need = cost * item.upt  -- <= capacity
    if need <= item.cap - level then
      admit = true
      level = level + need
    else
      d.allowed = false
      d.retry_after = cdiv(level + need - item.cap, item.upm) + shift
    end
  end
  d.remaining = math.max(0, fdiv(item.cap - level, item.upt))
  if level > 0 then
    d.reset_after = cdiv(level, item.upm) + shift
  end
  return d, admit, level
end

local function admit_bucket(item, now, cost, shaping)
  local s = hget_ints(item.key, 'l', 't')
  local at = math.max(now, s[2])
  -- max(0, level - (at - last) * units_per_micro), without forming a product that could pass
  -- 2^53: once (at - last) reaches ceil(level / upm) the bucket has fully drained.
  local level = 0
  local elapsed = at - s[2]
  if s[1] > 0 and elapsed < cdiv(s[1], item.upm) then
    level = s[1] - elapsed * item.upm
  end
  local d, admit, after = admit_level(item, level, cost, at - now)
  if admit then
    if shaping and level > 0 then
      d.delay = cdiv(level, item.upm) + (at - now)  -- hold until what is queued ahead drained
    end
    if cost > 0 then
      redis.call('HSET', item.key, 'l', int(after), 't', int(at))
      expire_at(item.key, item, now, d.reset_after)
    end
  end
  return d
end

local function refund_bucket(item, cost)
  local s = hget_ints(item.key, 'l')
  redis.call('HSET', item.key, 'l', int(math.max(0, s[1] - cost * item.upt)))
end

local token_bucket = {}

function token_bucket.admit(item, now, cost)
  return admit_bucket(item, now, cost, false)
end

function token_bucket.refund(item, charged_at, cost)
  refund_bucket(item, cost)
end
