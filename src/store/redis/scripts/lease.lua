-- lease.lua: the entry point `lease` of leased counting (CONTRACT §11, src/store/leased/). A
-- server takes a slice of a key's quota by charging it to the key's state like one request of that
-- cost, decides from memory with it, and gives back in a later call what it did not use. The state
-- is the exact mode's, so exact and leased servers (or a rule switched between the two) share it.
--
-- keys[1]: the key's state; keys[2]: its overshoot pool, a hash {p = period index, c = credit
--          handed out in that period}.
-- args[1]: the time, as charge.lua takes it ('' for Redis TIME).
-- args[2..7]: algorithm, limit, window, burst, units per token, units per microsecond.
-- args[8]: want: the slice the server would like.
-- args[9]: need: the least grant worth having (the cost of a check waiting for it; 0 for a slice
--          taken ahead of need).
-- args[10]: debt: credit the server used since its last call; charged into debt (as an
--           over-limit charge is), so that the next slices pay it back.
-- args[11], args[12]: give back this many tokens, charged at that time (the `now` of the lease
--           that took them).
-- args[13]: credit wanted; args[14]: the rule's max_overshoot as a count. Credit (windowed
--           algorithms only) lets a server admit while its next slice is on the way; the pool
--           hands out at most max_overshoot per window, all servers together. For buckets the
--           overshoot instead bounds how long a slice may be used (valid_for).
-- args[15]: batch: when nothing worth having is left, retry_after is when this many (at least
--           `need`) will be: a server whose counter trickles back (sliding window counter,
--           buckets) then asks again for a handful at a time, not for each token as it frees.
-- Returns {now, granted, credit, cost_exceeds_limit, remaining, reset_after, retry_after,
--          valid_for}: remaining is what the store has left after the grant; retry_after, when
--          nothing was granted, is when `need` would be; valid_for is how long the slice may be
--          used, in microseconds from the lease.

local WINDOWED = {[0] = true, [1] = true}

local function lease(keys, args)
  local now, expire = call_time(args[1])
  local item = read_item(keys, args, 1, 1, expire)
  local want, need = tonumber(args[8]), tonumber(args[9])
  local debt, back, back_at = tonumber(args[10]), tonumber(args[11]), tonumber(args[12])
  local credit_want, overshoot = tonumber(args[13]), tonumber(args[14])
  local batch = tonumber(args[15])
  local w = item.window

  if back > 0 then
    item.impl.refund(item, back_at, back)
  end
  if debt > 0 then
    item.impl.admit(item, now, debt, true)
  end

  -- Grant what the state admits now, at most half of it unless a waiting check needs more: the
  -- last slices of a window get smaller, so little is left stranded on a server that goes quiet.
  local d = item.impl.admit(item, now, 0)
  local granted = math.min(want, d.remaining)
  local half = cdiv(d.remaining, 2)
  if granted > half then
    granted = math.max(half, math.min(need, granted))
  end
  if granted > 0 and granted >= need then
    d = item.impl.admit(item, now, granted)
    if not d.allowed then
      granted = 0
    end
  else
    granted = 0
  end
  if granted == 0 and want > 0 then
    -- Not enough for `need` (or nothing at all): the rejection says when there will be.
    local ask = math.max(need, 1)
    -- When `ask` is rejected, so is more: the retry is for the batch, within what can ever be.
    local later = math.max(ask, math.min(batch, item.limit))
    d = item.impl.admit(item, now, ask)  -- rejected (ask > remaining): charges nothing
    if d.allowed then  -- cannot happen; keep the books right if it does
      granted = ask
    elseif later > ask and not d.cost_exceeds_limit then
      local b = item.impl.admit(item, now, later)
      if not b.allowed and not b.cost_exceeds_limit then
        d.retry_after = b.retry_after
      end
    end
  end
  if back > 0 and granted == 0 and debt == 0 then
    local fresh = item.impl.admit(item, now, 0)
    expire_item(item, now, fresh)
  end

  local credit = 0
  if credit_want > 0 and overshoot > 0 then
    local period = fdiv(now, w)
    local p = hget_ints(keys[2], 'p', 'c')
    local used = 0
    if p[1] == period then
      used = p[2]
    end
    credit = math.max(0, math.min(credit_want, overshoot - used))
    if credit > 0 then
      redis.call('HSET', keys[2], 'p', int(period), 'c', int(used + credit))
      expire_at(keys[2], item, now, (period + 1) * w - now)
      -- Checks admitted on credit report this reply's reset_after, which describes the state
      -- without them: one admitted now keeps a fixed window busy to the end of this window and
      -- a sliding window counter to the end of the next (its count still weighs there). Without
      -- this, credit taken while this window's count is still 0 (the quota spent, the
      -- previous window's count weighing alone) reported the end of this window.
      local busy_until = (period + (item.algorithm == 1 and 2 or 1)) * w
      d.reset_after = math.max(d.reset_after, busy_until - now)
    end
  end

  -- How long the slice may be used. Windowed: to the end of its window. Buckets: a token
  -- charged at `now` drains out of the level at the limit's rate, so one used later than it was
  -- charged lets the state admit it again; used within overshoot / rate of its charge, what a
  -- bucket admits over any interval grows by at most max_overshoot (docs/algorithms.md).
  local valid_for
  if WINDOWED[item.algorithm] then
    valid_for = (fdiv(now, w) + 1) * w - now
  else
    valid_for = muldiv(overshoot, w, item.limit)
  end
  return {now, granted, credit, d.cost_exceeds_limit and 1 or 0, d.remaining, d.reset_after,
          d.retry_after, valid_for}
end
