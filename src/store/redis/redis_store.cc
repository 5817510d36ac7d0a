#include "store/redis/redis_store.h"

#include <algorithm>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "obs/log.h"
#include "store/redis/cluster.h"
#include "store/redis/scripts.h"

namespace sluice {

namespace {

constexpr int64_t kMaxScriptUnits = Limit::kMaxScriptCapacityUnits;
constexpr size_t kFieldsPerDecision = 7;  // see charge.lua's reply

int AlgorithmIndex(Algorithm a) { return static_cast<int>(a); }  // charge.lua's ALGORITHMS

absl::Status ReplyError(const redisReply& r) {
  return absl::InternalError("redis: " + std::string(r.str, r.len));
}

// Whether `r` is a script's reply: an array of `n` integers.
bool IntegerArray(const redisReply& r, size_t n) {
  if (r.type != REDIS_REPLY_ARRAY || r.elements != n) return false;
  for (size_t i = 0; i < n; ++i) {
    if (r.element[i]->type != REDIS_REPLY_INTEGER) return false;
  }
  return true;
}

// A limit as the scripts take it (charge.lua, lease.lua): algorithm, limit, window, burst, units
// per token, units per microsecond.
void WriteLimit(redis::CommandWriter& w, const Limit& l) {
  w.Arg(static_cast<int64_t>(AlgorithmIndex(l.algorithm())));
  w.Arg(l.limit());
  w.Arg(l.window());
  w.Arg(l.burst());
  w.Arg(l.units_per_token());
  w.Arg(l.units_per_micro());
}

}  // namespace

// The items of one Charge that live in one group (one node; for Redis Cluster, one slot).
struct RedisStore::Part {
  uint64_t group = 0;
  std::vector<size_t> items;  // positions in Call::items
  // The part as one request of charge.lua's batch, in RESP: its keys and its arguments.
  std::string keys;
  std::string args;
  size_t key_count = 0;
  size_t arg_count = 0;
  absl::Status status;
  Micros at = 0;                    // Redis's time of the charge
  std::vector<Decision> decisions;  // per item of this part
  // The script saw the request rejected (an enforced item, or every quota item of the request,
  // rejected) and gave back the rest itself.
  bool rejected = false;
  bool charged = false;  // some item was charged in a way a rejection gives back
};

// One Charge in flight.
struct RedisStore::Call {
  std::span<Decision> decisions;
  struct Item {
    std::string key;  // the state key: key_prefix{counter key}
    const Limit* limit;
    int64_t cost;
    ItemRole role;
    ChargeWhen when;
    std::string lease;  // algorithm: concurrency — the slot's member (ChargeItem::lease)
    // Whether `decision` (of this item's charge) is a charge a rejection gives back.
    bool Refundable(const Decision& decision) const {
      return decision.allowed && cost > 0 && when != ChargeWhen::kAlways;
    }
    absl::string_view counter_key(std::string_view prefix) const {
      return absl::string_view(key).substr(prefix.size() + 1, key.size() - prefix.size() - 2);
    }
  };
  std::vector<Item> items;
  size_t quota_items = 0;     // items with ItemRole::kQuota, in all parts
  std::optional<Micros> now;  // tests: the script's time instead of Redis TIME
  bool cache = false;         // remember rejections in the over-limit cache
  uint64_t reset_epoch = 0;   // RedisStore::reset_epoch_ when the call started
  TimedDone done;
  std::vector<Part> parts;
  std::atomic<size_t> outstanding{0};
  bool refunding = false;
  // One deadline per check, whatever the hops (redirections, a script reload): the charge must
  // be answered within `timeout` of the check's start, and the refunds that follow a rejection
  // within twice that (CONTRACT §7: "twice `timeout` in all").
  redis::Deadline charge_deadline;
  redis::Deadline refund_deadline;
};

// Parts of one group sent as one call.
struct RedisStore::Batch {
  uint64_t group = 0;
  bool lane = false;  // holds a place in its group's lane (see Lane)
  std::vector<std::pair<std::shared_ptr<Call>, size_t>> parts;
};

absl::StatusOr<std::unique_ptr<RedisStore>> RedisStore::Create(RedisStoreOptions options) {
  redis::ClientOptions client;
  client.pool = options.pool;
  client.timeout = options.timeout;
  client.connect_timeout = options.connect_timeout;
  client.backoff_max = options.backoff_max;
  // Every connection loads the scripts as it connects, so a restarted Redis (empty script cache,
  // no functions) has them before the first call, and so does every node of a Redis Cluster
  // before a slot migration sends a call there (ASK): NOSCRIPT and "Function not found" then only
  // follow a SCRIPT FLUSH or FUNCTION FLUSH. FUNCTION LOAD may fail: "already exists" (another
  // server, or connection, loaded it), or a Redis 6, which RunScript then finds out.
  client.on_connect.push_back({"SCRIPT", "LOAD", std::string(redis::kChargeScript)});
  client.on_connect.push_back({"SCRIPT", "LOAD", std::string(redis::kLeaseScript)});
  if (options.functions) {
    client.on_connect_optional.push_back(
        {"FUNCTION", "LOAD", std::string(redis::kFunctionLibrary)});
  }
  std::unique_ptr<redis::Topology> topology;
  if (!options.cluster_nodes.empty()) {
    std::vector<redis::NodeAddress> seeds;
    for (const std::string& node : options.cluster_nodes) {
      auto address = redis::ParseNodeAddress(node);
      if (!address.ok()) return address.status();
      if (node.starts_with("redis://")) {
        auto endpoint = redis::ParseUrl(node, &client.user);
        if (!endpoint.ok()) return endpoint.status();
        client.endpoint.password = endpoint->password;
      }
      seeds.push_back(*address);
    }
    topology = std::make_unique<redis::Cluster>(std::move(seeds), std::move(client));
  } else if (!options.shards.empty()) {
    auto sharded = redis::Sharded::Create(options.shards, std::move(client));
    if (!sharded.ok()) return sharded.status();
    topology = std::move(*sharded);
  } else {
    auto endpoint = redis::ParseUrl(options.url, &client.user);
    if (!endpoint.ok()) return endpoint.status();
    client.endpoint = *endpoint;
    topology = std::make_unique<redis::SingleNode>(std::move(client));
  }
  return std::unique_ptr<RedisStore>(new RedisStore(std::move(options), std::move(topology)));
}

RedisStore::RedisStore(RedisStoreOptions options, std::unique_ptr<redis::Topology> topology)
    : options_(std::move(options)),
      functions_(options_.functions),
      topology_(std::move(topology)) {}

absl::Status RedisStore::Supports(const Limit& limit) {
  if (UsesBurst(limit.algorithm()) && limit.capacity_units() > kMaxScriptUnits) {
    return absl::InvalidArgumentError(absl::StrCat(
        std::string(AlgorithmName(limit.algorithm())), " limit ", limit.limit(), " per ",
        limit.window(), "us with burst ", limit.burst(),
        " is too fine-grained for the redis store (capacity of ", limit.capacity_units(),
        " units > 2^51); use a rounder window or a smaller burst"));
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
  const auto start = std::chrono::steady_clock::now();
  if (cache && AnswerFromCache(items, decisions, start)) return std::move(done)(Micros{0});

  auto call = std::make_shared<Call>();
  call->charge_deadline = start + options_.timeout;
  call->refund_deadline = start + 2 * options_.timeout;
  call->decisions = decisions;
  call->now = now;
  call->cache = cache;
  // Relaxed: a stale (smaller) value only keeps this call's rejections out of the cache.
  call->reset_epoch = reset_epoch_.load(std::memory_order_relaxed);
  call->done = std::move(done);
  call->items.reserve(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    const ChargeItem& item = items[i];
    call->items.push_back(
        {StateKey(item.key), item.limit, item.cost, item.role, item.when, std::string(item.lease)});
    if (item.role == ItemRole::kQuota) ++call->quota_items;
    const uint64_t group = topology_->GroupOf(call->items.back().key);
    auto part = std::find_if(call->parts.begin(), call->parts.end(),
                             [&](const Part& p) { return p.group == group; });
    if (part == call->parts.end()) {
      call->parts.emplace_back().group = group;
      part = call->parts.end() - 1;
    }
    part->items.push_back(i);
  }
  for (Part& part : call->parts) Encode(*call, part, std::nullopt);
  call->outstanding.store(call->parts.size(), std::memory_order_relaxed);
  for (size_t p = 0; p < call->parts.size(); ++p) Send(call, p);
}

void RedisStore::Reset(std::string_view key, const Limit& /*limit*/, Done done) {
  ForgetReset(key);
  const std::string state_key = StateKey(key);
  const std::string log_key = LogKey(key);
  const std::string pool_key = state_key + ":lease";
  // Every key whatever the algorithm: DEL ignores a missing key, and a state written under
  // another algorithm (the rule changed) is forgotten too, as is leased counting's credit pool.
  // One command: they share a slot.
  const std::string_view del[] = {"DEL", state_key, log_key, pool_key};
  std::string payload;
  redis::AppendCommand(payload, del);
  const redis::Deadline deadline = std::chrono::steady_clock::now() + options_.timeout;
  topology_->Execute(topology_->GroupOf(state_key), std::move(payload), 1, deadline,
                     [this, key = std::string(key), done = std::move(done)](
                         absl::StatusOr<std::vector<redis::Reply>> replies) mutable {
                       // Again once Redis answered (or not): a charge decided before the DEL may
                       // have cached its rejection meanwhile.
                       ForgetReset(key);
                       if (!replies.ok()) return std::move(done)(replies.status());
                       const redisReply& r = *replies->back();
                       if (r.type == REDIS_REPLY_ERROR) return std::move(done)(ReplyError(r));
                       std::move(done)(absl::OkStatus());
                     });
}

void RedisStore::Release(std::string_view key, std::string_view lease, Done done) {
  // One command, atomic by itself: no script needed.
  const std::string state_key = StateKey(key);
  const std::string_view zrem[] = {"ZREM", state_key, lease};
  std::string payload;
  redis::AppendCommand(payload, zrem);
  const redis::Deadline deadline = std::chrono::steady_clock::now() + options_.timeout;
  topology_->Execute(
      topology_->GroupOf(state_key), std::move(payload), 1, deadline,
      [done = std::move(done)](absl::StatusOr<std::vector<redis::Reply>> replies) mutable {
        if (!replies.ok()) return std::move(done)(replies.status());
        const redisReply& r = *replies->back();
        // WRONGTYPE: the key holds another algorithm's state (the rule changed):
        // no slot of this lease is held there.
        if (r.type == REDIS_REPLY_ERROR &&
            std::string_view(r.str, r.len).substr(0, 9) != "WRONGTYPE") {
          return std::move(done)(ReplyError(r));
        }
        std::move(done)(absl::OkStatus());
      });
}

void RedisStore::Encode(const Call& call, Part& part, std::optional<Micros> refund_at) const {
  constexpr std::string_view kLogSuffix = ":log";
  part.keys.clear();
  part.args.clear();
  part.key_count = 0;
  redis::CommandWriter keys(part.keys);
  std::string log_key;
  for (size_t i : part.items) {
    const Call::Item& item = call.items[i];
    keys.Arg(item.key);
    ++part.key_count;
    if (item.limit->algorithm() == Algorithm::kSlidingWindowLog) {
      log_key.assign(item.key).append(kLogSuffix);
      keys.Arg(log_key);
      ++part.key_count;
    }
  }
  // n, refund_at, quota items, then 9 per item (charge.lua).
  redis::CommandWriter w(part.args);
  part.arg_count = 3 + part.items.size() * 9;
  w.Arg(static_cast<int64_t>(part.items.size()));
  if (refund_at.has_value()) {
    w.Arg(*refund_at);
  } else {
    w.Arg(std::string_view());
  }
  w.Arg(static_cast<int64_t>(call.quota_items));
  for (size_t j = 0; j < part.items.size(); ++j) {
    const Call::Item& item = call.items[part.items[j]];
    const Limit& l = *item.limit;
    // A refund gives back only what a rejection gives back: charges the items admitted, unless
    // they charge always.
    const int64_t cost =
        !refund_at.has_value() || item.Refundable(part.decisions[j]) ? item.cost : int64_t{0};
    if (l.algorithm() == Algorithm::kConcurrency) {
      // The lease id takes the burst's place (charge.lua); a read (no lease) names no member.
      w.Arg(static_cast<int64_t>(AlgorithmIndex(l.algorithm())));
      w.Arg(l.limit());
      w.Arg(l.window());
      w.Arg(item.lease.empty() ? std::string_view("-") : std::string_view(item.lease));
      w.Arg(int64_t{1});
      w.Arg(int64_t{1});
    } else {
      WriteLimit(w, l);
    }
    w.Arg(cost);
    w.Arg(static_cast<int64_t>(item.role));
    w.Arg(static_cast<int64_t>(item.when));
  }
}

void RedisStore::Send(std::shared_ptr<Call> call, size_t p) {
  auto batch = std::make_shared<Batch>();
  batch->group = call->parts[p].group;
  // A replay at a given time (tests) is never coalesced: the batch has one time for all.
  if (options_.coalesce && !call->now.has_value()) {
    MutexLock lock(lanes_mu_);
    Lane& lane = lanes_[batch->group];
    if (lane.in_flight >= std::max(1, options_.pool)) {
      lane.waiting.emplace_back(std::move(call), p);
      return;
    }
    ++lane.in_flight;
    batch->lane = true;
  }
  batch->parts.emplace_back(std::move(call), p);
  SendBatch(std::move(batch));
}

void RedisStore::BatchDone(uint64_t group) {
  // Up to this many parts per call: a bound on the call's size and on how long it holds Redis.
  constexpr size_t kMaxBatch = 128;
  auto batch = std::make_shared<Batch>();
  batch->group = group;
  batch->lane = true;
  {
    MutexLock lock(lanes_mu_);
    auto it = lanes_.find(group);
    Lane& lane = it->second;
    if (lane.waiting.empty()) {
      // Idle lanes go, so that a Redis Cluster's 16384 slots do not each keep one.
      if (--lane.in_flight == 0) lanes_.erase(it);
      return;
    }
    const size_t n = std::min(kMaxBatch, lane.waiting.size());
    batch->parts.assign(std::make_move_iterator(lane.waiting.begin()),
                        std::make_move_iterator(lane.waiting.begin() + n));
    lane.waiting.erase(lane.waiting.begin(), lane.waiting.begin() + n);
  }
  SendBatch(std::move(batch));
}

void RedisStore::SendBatch(std::shared_ptr<Batch> batch) {
  // A part that waited past its deadline in the lane fails alone; the call's deadline is the
  // earliest of the rest (no check waits longer than its own).
  const auto now = std::chrono::steady_clock::now();
  std::optional<redis::Deadline> deadline;
  std::erase_if(batch->parts, [&](auto& entry) {
    const Call& call = *entry.first;
    const redis::Deadline d = call.refunding ? call.refund_deadline : call.charge_deadline;
    if (d <= now) {
      PartDone(entry.first, entry.second,
               absl::DeadlineExceededError("redis: deadline passed before the call was sent"),
               nullptr, 0);
      return true;
    }
    if (!deadline.has_value() || d < *deadline) deadline = d;
    return false;
  });
  if (batch->parts.empty()) {
    if (batch->lane) BatchDone(batch->group);
    return;
  }
  auto build = [batch](bool functions) {
    size_t key_count = 0;
    size_t arg_count = 0;
    size_t bytes = 64;
    for (const auto& [call, p] : batch->parts) {
      const Part& part = call->parts[p];
      key_count += part.key_count;
      arg_count += part.arg_count;
      bytes += part.keys.size() + part.args.size();
    }
    std::string out;
    out.reserve(bytes);
    redis::CommandWriter w(out);
    w.Begin(3 + key_count + 2 + arg_count);
    w.Arg(functions ? std::string_view("FCALL") : std::string_view("EVALSHA"));
    w.Arg(functions ? redis::kChargeFunction : redis::kChargeScriptSha1);
    w.Arg(static_cast<int64_t>(key_count));
    for (const auto& [call, p] : batch->parts) out += call->parts[p].keys;
    const Call& first = *batch->parts.front().first;
    if (first.now.has_value()) {
      w.Arg(*first.now);
    } else {
      w.Arg(std::string_view());
    }
    w.Arg(static_cast<int64_t>(batch->parts.size()));
    for (const auto& [call, p] : batch->parts) out += call->parts[p].args;
    return out;
  };
  RunScript(batch->group, std::move(build), *deadline,
            [this, batch](absl::StatusOr<redis::Reply> reply) mutable {
              // The next call of the lane goes first: it need not wait for the callbacks.
              if (batch->lane) BatchDone(batch->group);
              absl::Status status;
              const redisReply* r = nullptr;
              if (!reply.ok()) {
                status = reply.status();
              } else {
                r = reply->get();
                if (r->type == REDIS_REPLY_ERROR) {
                  status = ReplyError(*r);
                } else {
                  size_t fields = 1;
                  for (const auto& [call, p] : batch->parts)
                    fields += call->parts[p].items.size() * kFieldsPerDecision;
                  if (!IntegerArray(*r, fields)) {
                    status = absl::InternalError("redis: unexpected script reply");
                  }
                }
              }
              size_t offset = 1;
              for (auto& [call, p] : batch->parts) {
                const size_t n = call->parts[p].items.size();
                PartDone(std::move(call), p, status, status.ok() ? r : nullptr, offset);
                offset += n * kFieldsPerDecision;
              }
            });
}

void RedisStore::RunScript(uint64_t group, std::function<std::string(bool functions)> build,
                           redis::Deadline deadline, ScriptDone done, bool reload) {
  const bool functions = functions_.load(std::memory_order_relaxed);
  std::string payload;
  size_t replies = 1;
  if (reload) {
    // After NOSCRIPT: load and call again on one connection, in one round trip.
    if (functions) {
      const std::string_view load[] = {"FUNCTION", "LOAD", redis::kFunctionLibrary};
      redis::AppendCommand(payload, load);
      replies = 2;
    } else {
      for (std::string_view script : {redis::kChargeScript, redis::kLeaseScript}) {
        const std::string_view load[] = {"SCRIPT", "LOAD", script};
        redis::AppendCommand(payload, load);
      }
      replies = 3;
    }
  }
  payload += build(functions);
  if (options_.on_script_call) options_.on_script_call();
  topology_->Execute(
      group, std::move(payload), replies, deadline,
      [this, group, functions, reload, build = std::move(build), deadline,
       done = std::move(done)](absl::StatusOr<std::vector<redis::Reply>> replies) mutable {
        if (!replies.ok()) return std::move(done)(replies.status());
        redis::Reply reply = std::move(replies->back());
        if (reply->type == REDIS_REPLY_ERROR) {
          const std::string_view error(reply->str, reply->len);
          if (functions && error.find("unknown command") != std::string_view::npos) {
            // A Redis without Functions (before 7.0): EVALSHA from now on.
            if (functions_.exchange(false)) {
              obs::LogEvent(spdlog::level::warn, "redis_functions_unavailable",
                            {{"error", std::string(error)}, {"using", "EVALSHA"}});
            }
            return RunScript(group, std::move(build), deadline, std::move(done), false);
          }
          const bool missing = error.starts_with("NOSCRIPT") ||
                               error.find("Function not found") != std::string_view::npos;
          if (missing && !reload) {
            return RunScript(group, std::move(build), deadline, std::move(done), true);
          }
        }
        std::move(done)(std::move(reply));
      });
}

void RedisStore::PartDone(std::shared_ptr<Call> call, size_t p, absl::Status status,
                          const redisReply* reply, size_t offset) {
  Part& part = call->parts[p];
  auto parse = [&]() -> absl::Status {
    if (!status.ok()) return status;
    const redisReply& r = *reply;
    const size_t n = part.items.size();
    auto at = [&](size_t i) -> int64_t { return r.element[i]->integer; };
    part.decisions.resize(n);
    for (size_t j = 0; j < n; ++j) {
      // A refund's reply replaces the decisions of the items it gave back, and only those.
      if (call->refunding && !call->items[part.items[j]].Refundable(part.decisions[j])) continue;
      const size_t b = offset + j * kFieldsPerDecision;
      Decision& d = part.decisions[j];
      d.allowed = at(b) != 0;
      d.cost_exceeds_limit = at(b + 1) != 0;
      d.limit = at(b + 2);
      d.remaining = at(b + 3);
      d.reset_after = at(b + 4);
      d.retry_after = at(b + 5);
      d.delay = at(b + 6);
    }
    if (!call->refunding) {
      part.at = at(0);
      size_t quota = 0;
      size_t quota_rejected = 0;
      for (size_t j = 0; j < n; ++j) {
        const Call::Item& item = call->items[part.items[j]];
        const bool over = !part.decisions[j].allowed;
        part.rejected |= item.role == ItemRole::kEnforced && over;
        if (item.role == ItemRole::kQuota) {
          ++quota;
          quota_rejected += over ? 1 : 0;
        }
        part.charged |= item.Refundable(part.decisions[j]);
      }
      // What charge.lua decides with the request's quota count: all here, all over.
      part.rejected |= quota > 0 && quota == call->quota_items && quota_rejected == quota;
    }
    return absl::OkStatus();
  };
  status = parse();
  if (call->refunding) {
    // A refund that failed leaves the charge until its key expires; the decisions of the
    // charge stand.
    if (status.ok()) Forget(*call, part);
  } else {
    part.status = std::move(status);
  }
  if (call->outstanding.fetch_sub(1, std::memory_order_acq_rel) == 1) AllDone(std::move(call));
}

void RedisStore::AllDone(std::shared_ptr<Call> call) {
  if (call->refunding) return Complete(*call, absl::OkStatus());
  absl::Status failed;
  bool rejected = false;
  size_t quota_rejected = 0;
  for (const Part& part : call->parts) {
    if (!part.status.ok() && failed.ok()) failed = part.status;
    rejected |= part.status.ok() && part.rejected;
    if (!part.status.ok()) continue;
    for (size_t j = 0; j < part.items.size(); ++j) {
      const bool over = !part.decisions[j].allowed;
      quota_rejected += call->items[part.items[j]].role == ItemRole::kQuota && over ? 1 : 0;
    }
  }
  // Quota items spread over several calls: only here can it be seen that they all rejected.
  rejected |= call->quota_items > 0 && quota_rejected == call->quota_items;
  // Across nodes: a rejection (or a failure) on one gives back what the others charged.
  std::vector<size_t> refund;
  if (rejected || !failed.ok()) {
    for (size_t p = 0; p < call->parts.size(); ++p) {
      const Part& part = call->parts[p];
      if (part.status.ok() && !part.rejected && part.charged) refund.push_back(p);
    }
  }
  if (refund.empty()) return Complete(*call, failed);
  // The refund scripts are built while the limits are sure to live (until done runs).
  call->refunding = true;
  for (size_t p : refund) {
    Part& part = call->parts[p];
    Encode(*call, part, part.at);
  }
  call->outstanding.store(refund.size(), std::memory_order_relaxed);
  // A failed check (the limiter's on_failure answers) does not wait for the refunds.
  if (!failed.ok()) Complete(*call, failed);
  for (size_t p : refund) Send(call, p);
}

void RedisStore::Complete(Call& call, absl::Status status) {
  if (!call.done) return;  // a failed charge's refunds finishing
  if (!status.ok()) return std::exchange(call.done, nullptr)(std::move(status));
  for (const Part& part : call.parts) {
    for (size_t j = 0; j < part.items.size(); ++j)
      call.decisions[part.items[j]] = part.decisions[j];
  }
  if (call.cache) RememberRejections(call);
  std::exchange(call.done, nullptr)(Micros{call.parts.front().at});
}

bool RedisStore::AnswerFromCache(std::span<const ChargeItem> items, std::span<Decision> decisions,
                                 std::chrono::steady_clock::time_point now) {
  // One item only: a request with several would owe the caller the state of the items that
  // would have admitted (Store::Charge), which only Redis knows.
  // An item charged even when over must reach Redis: its debt is part of the answer.
  if (items.size() != 1 || items[0].when != ChargeWhen::kRequestAllowed) return false;
  MutexLock lock(cache_mu_);
  if (over_limit_.empty()) return false;
  int hit = -1;
  for (size_t i = 0; i < items.size() && hit < 0; ++i) {
    const ChargeItem& item = items[i];
    if (item.role != ItemRole::kEnforced || item.cost == 0) continue;
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
  const Micros elapsed = std::chrono::duration_cast<std::chrono::microseconds>(now - e.at).count();
  Decision& d = decisions[hit];
  d = e.decision;
  d.retry_after = std::max<Micros>(1, e.decision.retry_after - elapsed);
  d.reset_after = std::max<Micros>(0, e.decision.reset_after - elapsed);
  cached_rejections_.fetch_add(1, std::memory_order_relaxed);
  if (options_.on_cached_rejection) options_.on_cached_rejection();
  return true;
}

void RedisStore::Forget(const Call& call, const Part& part) {
  MutexLock lock(cache_mu_);
  if (over_limit_.empty()) return;
  for (size_t i : part.items) over_limit_.erase(call.items[i].counter_key(options_.key_prefix));
}

void RedisStore::ForgetReset(std::string_view key) {
  MutexLock lock(cache_mu_);
  reset_epoch_.fetch_add(1, std::memory_order_relaxed);  // ordered by cache_mu_
  over_limit_.erase(absl::string_view(key.data(), key.size()));
}

void RedisStore::RememberRejections(const Call& call) {
  const auto now = std::chrono::steady_clock::now();
  MutexLock lock(cache_mu_);
  // A key reset while this call was in flight: its rejection may predate the reset.
  if (call.reset_epoch != reset_epoch_.load(std::memory_order_relaxed)) return;
  for (size_t i = 0; i < call.items.size(); ++i) {
    const Call::Item& item = call.items[i];
    const Decision& d = call.decisions[i];
    // A concurrency slot may be released any moment: a rejection says nothing about later.
    if (d.allowed || item.role != ItemRole::kEnforced || d.cost_exceeds_limit ||
        d.retry_after <= 0 || item.limit->algorithm() == Algorithm::kConcurrency) {
      continue;
    }
    if (over_limit_.size() >= options_.over_limit_cache_keys) {
      // Full: drop what has expired; if that is not enough, start over (a cache, not state).
      absl::erase_if(over_limit_, [&](const auto& kv) { return now >= kv.second.until; });
      if (over_limit_.size() >= options_.over_limit_cache_keys) over_limit_.clear();
    }
    const Limit& l = *item.limit;
    // The latest rejection replaces any older entry: its retry_after is for its own cost.
    OverLimit& e = over_limit_[item.counter_key(options_.key_prefix)];
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

void RedisStore::Lease(const LeaseRequest& request, LeaseDone done) {
  if (absl::Status s = Supports(*request.limit); !s.ok()) return std::move(done)(s);
  const std::string state_key = StateKey(request.key);
  const uint64_t group = topology_->GroupOf(state_key);
  auto build = [state_key, pool_key = state_key + ":lease", r = request,
                l = *request.limit](bool functions) {
    std::string out;
    out.reserve(256 + 2 * state_key.size());
    redis::CommandWriter w(out);
    w.Begin(3 + 2 + 15);
    w.Arg(functions ? std::string_view("FCALL") : std::string_view("EVALSHA"));
    w.Arg(functions ? redis::kLeaseFunction : redis::kLeaseScriptSha1);
    w.Arg(int64_t{2});
    w.Arg(state_key);
    w.Arg(pool_key);
    w.Arg(std::string_view());
    WriteLimit(w, l);
    w.Arg(r.want);
    w.Arg(r.need);
    w.Arg(r.debt);
    w.Arg(r.give_back);
    w.Arg(r.given_at);
    w.Arg(r.credit_want);
    w.Arg(r.overshoot);
    w.Arg(r.batch);
    return out;
  };
  RunScript(group, std::move(build), std::chrono::steady_clock::now() + options_.timeout,
            [done = std::move(done)](absl::StatusOr<redis::Reply> reply) mutable {
              if (!reply.ok()) return std::move(done)(reply.status());
              const redisReply& r = **reply;
              if (r.type == REDIS_REPLY_ERROR) return std::move(done)(ReplyError(r));
              if (!IntegerArray(r, 8)) {
                return std::move(done)(absl::InternalError("redis: unexpected lease reply"));
              }
              auto at = [&](size_t i) { return r.element[i]->integer; };
              std::move(done)(LeaseReply{.now = at(0),
                                         .granted = at(1),
                                         .credit = at(2),
                                         .cost_exceeds_limit = at(3) != 0,
                                         .remaining = at(4),
                                         .reset_after = at(5),
                                         .retry_after = at(6),
                                         .valid_for = at(7)});
            });
}

}  // namespace sluice
