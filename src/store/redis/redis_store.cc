#include "store/redis/redis_store.h"

#include <algorithm>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "store/redis/scripts.h"

namespace sluice {

namespace {

constexpr int64_t kMaxScriptUnits = int64_t{1} << 52;
constexpr size_t kFieldsPerDecision = 7;  // see charge.lua's reply

int AlgorithmIndex(Algorithm a) { return static_cast<int>(a); }  // charge.lua's ALGORITHMS

absl::Status ReplyError(const redisReply& r) {
  return absl::InternalError("redis: " + std::string(r.str, r.len));
}

}  // namespace

// One Charge in flight.
struct RedisStore::Call {
  std::span<Decision> decisions;
  // What the over-limit cache needs of each item (empty when the cache is off for this call).
  struct Item {
    std::string key;
    const Limit* limit;
    int64_t cost;
    bool enforced;
  };
  std::vector<Item> items;
  TimedDone done;
  std::string evalsha;    // the command, kept for a retry after NOSCRIPT
  bool reloaded = false;  // the retry has been made
};

absl::StatusOr<std::unique_ptr<RedisStore>> RedisStore::Create(RedisStoreOptions options) {
  redis::ClientOptions client;
  auto endpoint = redis::ParseUrl(options.url, &client.user);
  if (!endpoint.ok()) return endpoint.status();
  client.endpoint = *endpoint;
  client.pool = options.pool;
  client.timeout = options.timeout;
  client.connect_timeout = options.connect_timeout;
  client.backoff_max = options.backoff_max;
  // Every connection loads the script as it connects, so a restarted Redis (empty script cache)
  // has it before the first EVALSHA; NOSCRIPT then only follows a SCRIPT FLUSH.
  client.on_connect.push_back({"SCRIPT", "LOAD", std::string(redis::kChargeScript)});
  return std::unique_ptr<RedisStore>(new RedisStore(std::move(options), std::move(client)));
}

RedisStore::RedisStore(RedisStoreOptions options, redis::ClientOptions client)
    : options_(std::move(options)), client_(std::move(client)) {}

absl::Status RedisStore::Supports(const Limit& limit) {
  if (UsesBurst(limit.algorithm()) && limit.capacity_units() > kMaxScriptUnits) {
    return absl::InvalidArgumentError(absl::StrCat(
        std::string(AlgorithmName(limit.algorithm())), " limit ", limit.limit(), " per ",
        limit.window(), "us with burst ", limit.burst(),
        " is too fine-grained for the redis store (capacity of ", limit.capacity_units(),
        " units > 2^52); use a rounder window or a smaller burst"));
  }
  return absl::OkStatus();
}

std::string RedisStore::StateKey(std::string_view key) const {
  // The braces make the counter key the Redis Cluster hash tag, so its two keys (state and log)
  // always share a slot.
  return options_.key_prefix + "{" + std::string(key) + "}";
}

std::string RedisStore::LogKey(std::string_view key) const {
  return options_.key_prefix + "{" + std::string(key) + "}:log";
}

void RedisStore::Charge(std::span<const ChargeItem> items, std::span<Decision> decisions,
                        Done done) {
  ChargeAt(items, decisions, std::nullopt,
           [done = std::move(done)](absl::StatusOr<Micros> at) mutable {
             std::move(done)(at.status());
           });
}

void RedisStore::ChargeAt(std::span<const ChargeItem> items, std::span<Decision> decisions,
                          std::optional<Micros> now, TimedDone done) {
  for (const ChargeItem& item : items) {
    if (absl::Status s = Supports(*item.limit); !s.ok()) return std::move(done)(s);
  }
  // Replays at a given time (tests) bypass the cache: it works on this process's clock.
  const bool cache = !now.has_value() && options_.over_limit_cache_keys > 0;
  if (cache && AnswerFromCache(items, decisions)) return std::move(done)(Micros{0});
  // EVALSHA sha numkeys KEYS... now n (8 per item)...
  std::vector<std::string> keys;
  std::vector<std::string> args;
  keys.reserve(items.size() + 1);
  args.reserve(2 + items.size() * 8);
  args.push_back(now.has_value() ? std::to_string(*now) : std::string());
  args.push_back(std::to_string(items.size()));
  for (const ChargeItem& item : items) {
    const Limit& l = *item.limit;
    keys.push_back(StateKey(item.key));
    if (l.algorithm() == Algorithm::kSlidingWindowLog) keys.push_back(LogKey(item.key));
    args.push_back(std::to_string(AlgorithmIndex(l.algorithm())));
    args.push_back(std::to_string(l.limit()));
    args.push_back(std::to_string(l.window()));
    args.push_back(std::to_string(l.burst()));
    args.push_back(std::to_string(l.units_per_token()));
    args.push_back(std::to_string(l.units_per_micro()));
    args.push_back(std::to_string(item.cost));
    args.push_back(item.enforced ? "1" : "0");
  }
  const std::string numkeys = std::to_string(keys.size());
  std::vector<std::string_view> command;
  command.reserve(3 + keys.size() + args.size());
  command.push_back("EVALSHA");
  command.push_back(redis::kChargeScriptSha1);
  command.push_back(numkeys);
  for (const auto& k : keys) command.push_back(k);
  for (const auto& a : args) command.push_back(a);

  auto call = std::make_unique<Call>();
  call->decisions = decisions;
  call->done = std::move(done);
  if (cache) {
    call->items.reserve(items.size());
    for (const ChargeItem& item : items) {
      call->items.push_back({std::string(item.key), item.limit, item.cost, item.enforced});
    }
  }
  redis::AppendCommand(call->evalsha, command);
  Send(std::move(call));
}

void RedisStore::Send(std::unique_ptr<Call> call) {
  std::string payload;
  size_t replies = 1;
  if (call->reloaded) {
    // After NOSCRIPT: load and call again on one connection, in one round trip.
    const std::string_view load[] = {"SCRIPT", "LOAD", redis::kChargeScript};
    redis::AppendCommand(payload, load);
    payload += call->evalsha;
    replies = 2;
  } else {
    payload = call->evalsha;
  }
  client_.Execute(
      std::move(payload), replies,
      [this, call = std::move(call)](absl::StatusOr<std::vector<redis::Reply>> replies) mutable {
        Finished(std::move(call), std::move(replies));
      });
}

void RedisStore::Finished(std::unique_ptr<Call> call,
                          absl::StatusOr<std::vector<redis::Reply>> replies) {
  if (!replies.ok()) return std::move(call->done)(replies.status());
  const redisReply& r = *replies->back();
  if (r.type == REDIS_REPLY_ERROR) {
    if (!call->reloaded && std::string_view(r.str, r.len).starts_with("NOSCRIPT")) {
      call->reloaded = true;
      return Send(std::move(call));
    }
    return std::move(call->done)(ReplyError(r));
  }
  const size_t n = call->decisions.size();
  if (r.type != REDIS_REPLY_ARRAY || r.elements != 1 + n * kFieldsPerDecision) {
    return std::move(call->done)(absl::InternalError("redis: unexpected script reply"));
  }
  for (size_t i = 0; i < r.elements; ++i) {
    if (r.element[i]->type != REDIS_REPLY_INTEGER) {
      return std::move(call->done)(absl::InternalError("redis: unexpected script reply"));
    }
  }
  auto at = [&](size_t i) -> int64_t { return r.element[i]->integer; };
  for (size_t i = 0; i < n; ++i) {
    const size_t b = 1 + i * kFieldsPerDecision;
    Decision& d = call->decisions[i];
    d.allowed = at(b) != 0;
    d.cost_exceeds_limit = at(b + 1) != 0;
    d.limit = at(b + 2);
    d.remaining = at(b + 3);
    d.reset_after = at(b + 4);
    d.retry_after = at(b + 5);
    d.delay = at(b + 6);
  }
  if (!call->items.empty()) RememberRejections(*call);
  std::move(call->done)(Micros{at(0)});
}

bool RedisStore::AnswerFromCache(std::span<const ChargeItem> items,
                                 std::span<Decision> decisions) {
  // One item only: a request with several would owe the caller the state of the items that
  // would have admitted (Store::Charge), which only Redis knows.
  if (items.size() != 1) return false;
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard lock(cache_mu_);
  if (over_limit_.empty()) return false;
  int hit = -1;
  for (size_t i = 0; i < items.size() && hit < 0; ++i) {
    const ChargeItem& item = items[i];
    if (!item.enforced || item.cost == 0) continue;
    auto it = over_limit_.find(absl::string_view(item.key.data(), item.key.size()));
    if (it == over_limit_.end()) continue;
    const OverLimit& e = it->second;
    const Limit& l = *item.limit;
    if (now >= e.until) {
      over_limit_.erase(it);
      continue;
    }
    if (item.cost >= e.cost && l.limit() == e.limit && l.burst() == e.burst &&
        l.window() == e.window && l.algorithm() == e.algorithm) {
      hit = static_cast<int>(i);
    }
  }
  if (hit < 0) return false;
  const OverLimit& e =
      over_limit_.find(absl::string_view(items[hit].key.data(), items[hit].key.size()))->second;
  const Micros elapsed =
      std::chrono::duration_cast<std::chrono::microseconds>(now - e.at).count();
  Decision& d = decisions[hit];
  d = e.decision;
  d.retry_after = std::max<Micros>(1, e.decision.retry_after - elapsed);
  d.reset_after = std::max<Micros>(0, e.decision.reset_after - elapsed);
  cached_rejections_.fetch_add(1, std::memory_order_relaxed);
  if (options_.on_cached_rejection) options_.on_cached_rejection();
  return true;
}

void RedisStore::RememberRejections(const Call& call) {
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard lock(cache_mu_);
  for (size_t i = 0; i < call.items.size(); ++i) {
    const Call::Item& item = call.items[i];
    const Decision& d = call.decisions[i];
    if (d.allowed || !item.enforced || d.cost_exceeds_limit || d.retry_after <= 0) continue;
    if (over_limit_.size() >= options_.over_limit_cache_keys) {
      // Full: drop what has expired; if that is not enough, start over (a cache, not state).
      absl::erase_if(over_limit_, [&](const auto& kv) { return now >= kv.second.until; });
      if (over_limit_.size() >= options_.over_limit_cache_keys) over_limit_.clear();
    }
    const Limit& l = *item.limit;
    // The latest rejection replaces any older entry: its retry_after is for its own cost.
    OverLimit& e = over_limit_[item.key];
    e.cost = item.cost;
    e.until = now + std::chrono::microseconds(d.retry_after);
    e.limit = l.limit();
    e.burst = l.burst();
    e.window = l.window();
    e.algorithm = l.algorithm();
    e.decision = d;
    e.at = now;
  }
}

}  // namespace sluice
