-- common.lua: exact integer arithmetic on Lua numbers (IEEE doubles).
--
-- Every value a script stores or receives is an integer below 2^53, where doubles are exact.
-- Sums and differences of such values stay exact as long as they stay below 2^53; the scripts
-- arrange their comparisons so that they do (for example `cost <= limit - count` rather than
-- `count + cost <= limit`). Products that can exceed 2^53 (sliding_window_counter's
-- `previous * (window - elapsed)`) go through the wide helpers below, which split the factors
-- into 24-bit limbs. Never use Lua's `%` on values that are not powers of two: Lua 5.1 computes
-- it as a - floor(a/b)*b with a rounded quotient.

local TWO53 = 9007199254740992
-- The most a key may hold in debt after a forced charge: Limit::kMaxCount for a window's count
-- or a log's total; Limit::max_level_units() (2^52) for a bucket's level or GCRA's, for every
-- limit the store sends (capacity <= 2^51).
local MAX_COUNT = 9007199254740991
local MAX_LEVEL = 4503599627370496
local MAX_SWC_COUNT = 4294967295  -- sliding_window_counter's 32-bit counters

-- min(a + b, cap) for a <= cap and a, b, cap in [0, 2^53), without forming a sum that rounds.
local function add_capped(a, b, cap)
  if b > cap - a then
    return cap
  end
  return a + b
end
local LIMB = 16777216  -- 2^24

-- floor(a / b) for b > 0 and |a|, b below 2^53: the double quotient can be off by one near an
-- integer, so correct it with the exact remainder.
local function fdiv(a, b)
  local q = math.floor(a / b)
  local r = a - q * b
  if r < 0 then
    q = q - 1
  elseif r >= b then
    q = q + 1
  end
  return q
end

local function cdiv(a, b)
  return -fdiv(-a, b)
end

-- a = 2^48 * a2 + 2^24 * a1 + a0 (division by a power of two is exact).
local function split(a)
  local a0 = a % LIMB
  local t = (a - a0) / LIMB
  local a1 = t % LIMB
  return a0, a1, (t - a1) / LIMB
end

-- The exact product of two integers in [0, 2^53) as six little-endian base-2^24 limbs. Each limb
-- product is below 2^48 and each column sums at most three of them, so nothing rounds.
local function wide_mul(a, b)
  local a0, a1, a2 = split(a)
  local b0, b1, b2 = split(b)
  local c = {a0 * b0, a0 * b1 + a1 * b0, a0 * b2 + a1 * b1 + a2 * b0, a1 * b2 + a2 * b1, a2 * b2, 0}
  local carry = 0
  for i = 1, 6 do
    local v = c[i] + carry
    local lo = v % LIMB
    carry = (v - lo) / LIMB
    c[i] = lo
  end
  return c
end

-- Whether a * b <= c * d, for integers in [0, 2^53).
local function mul_le(a, b, c, d)
  local p, q = a * b, c * d
  if p < TWO53 and q < TWO53 then
    return p <= q  -- both exact: a product below 2^53 cannot have been rounded
  end
  local x, y = wide_mul(a, b), wide_mul(c, d)
  for i = 6, 1, -1 do
    if x[i] ~= y[i] then
      return x[i] < y[i]
    end
  end
  return true
end

-- floor(a * b / c) and the remainder, for integers a, b in [0, 2^53), c in (0, 2^53), when the
-- quotient is below 2^53 (the callers make sure it is).
local function muldiv(a, b, c)
  local p = a * b
  if p < TWO53 then
    local q = fdiv(p, c)
    return q, p - q * c
  end
  -- Binary long division of the wide product. The remainder r stays below c; `r + bit >= c - r`
  -- is `2r + bit >= c` without forming 2r, which could pass 2^53.
  local x = wide_mul(a, b)
  local q, r = 0, 0
  for i = 6, 1, -1 do
    local limb = x[i]
    local bitv = LIMB / 2
    while bitv >= 1 do
      local bit = 0
      if limb >= bitv then
        bit = 1
        limb = limb - bitv
      end
      q = q * 2
      if r + bit >= c - r then
        r = r + bit - (c - r)
        q = q + 1
      else
        r = r + r + bit
      end
      bitv = bitv / 2
    end
  end
  return q, r
end

local function muldiv_ceil(a, b, c)
  local q, r = muldiv(a, b, c)
  if r > 0 then
    q = q + 1
  end
  return q
end

-- Integers as Redis arguments: Lua's tostring() switches to exponent notation above 1e14.
local function int(v)
  return string.format('%d', v)
end

-- A fresh Decision (see core/decision.h).
local function decision(limit)
  return {allowed = true, cost_exceeds_limit = false, limit = limit, remaining = 0,
          reset_after = 0, retry_after = 0, delay = 0}
end

-- Sets when `key` becomes as good as fresh: `now + reset_after` microseconds, rounded up to a
-- millisecond so that it never expires early (PEXPIREAT: the same clock as TIME). A state that
-- is already fresh is deleted. `expire` is false when the caller supplied the time (tests), whose
-- clock is not Redis's.
local function expire_at(key, item, now, reset_after)
  if reset_after <= 0 then
    redis.call('DEL', key)
  elseif item.expire then
    redis.call('PEXPIREAT', key, int(cdiv(now + reset_after, 1000)))
  end
end

-- Reads integer hash fields; a missing key or field reads as 0 (a fresh state).
local function hget_ints(key, ...)
  local values = redis.call('HMGET', key, ...)
  for i = 1, #values do
    values[i] = tonumber(values[i]) or 0
  end
  return values
end
