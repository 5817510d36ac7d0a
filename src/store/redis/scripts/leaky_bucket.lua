-- leaky_bucket.lua: a queue of capacity `burst` draining at limit/window (core/bucket.cc
-- LeakyBucket). The same level as token_bucket.lua; an admitted request also carries `delay`,
-- the time for what is queued ahead of it to drain.

local leaky_bucket = {}

function leaky_bucket.admit(item, now, cost, force)
  return admit_bucket(item, now, cost, true, force)
end

function leaky_bucket.refund(item, charged_at, cost)
  refund_bucket(item, cost)
end
