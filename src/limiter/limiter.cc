// The Limiter's snapshot, the charge pipeline both faces use, the store probe, and Check (the
// HTTP check API's path). CheckDescriptors (the Envoy path) is in descriptors.cc.
#include "limiter/limiter.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <optional>

#include "absl/container/inlined_vector.h"
#include "absl/random/random.h"
#include "absl/strings/escaping.h"
#include "base/strings.h"

namespace sluice {

using rules::ListVerdict;
using rules::Rule;
using Outcome = CheckResult::Outcome;

namespace {

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

Limiter::Limiter(Store& store, const Clock& clock, obs::Metrics& metrics,
                 obs::RejectionLog& rejections, Options options)
    : store_(store),
      clock_(clock),
      metrics_(metrics),
      rejections_(rejections),
      options_(options),
      store_latency_(metrics.StoreDuration(store.backend(), "charge")),
      store_errors_(metrics.StoreErrors(store.backend(), "charge")) {
  SetRules(rules::RuleSet::Empty());
  rules_version_.store(0);  // version 1 is the first rules the server loads
}

Limiter::~Limiter() = default;

void Limiter::SetRules(std::shared_ptr<const rules::RuleSet> rules) {
  auto snapshot = std::make_shared<Snapshot>(metrics_);
  snapshot->counters.reserve(rules->size());
  // The series rules past max_rule_series share, by kind (enforced, shadow): made when needed.
  std::optional<obs::RuleCounters> other[2];
  for (const Rule& rule : rules->rules()) {
    const bool shadow = rule.mode != rules::RuleMode::kEnforce;
    const obs::RuleKind kind = shadow ? obs::RuleKind::kShadow : obs::RuleKind::kEnforced;
    if (snapshot->counters.size() < options_.max_rule_series) {
      const bool own_latency = snapshot->counters.size() < options_.max_rule_latency_series;
      snapshot->counters.push_back(snapshot->series.ForRule(
          rule.id, kind, own_latency ? std::string_view() : rules::kOtherRuleId));
      continue;
    }
    std::optional<obs::RuleCounters>& shared = other[shadow ? 1 : 0];
    if (!shared.has_value()) shared = snapshot->series.ForRule(rules::kOtherRuleId, kind);
    snapshot->counters.push_back(*shared);
  }
  snapshot->deny_list = metrics_.ForRule("deny_list", obs::RuleKind::kDenyList);
  snapshot->allow_list = metrics_.ForRule("allow_list", obs::RuleKind::kAllowList);
  if (options_.on_failure == FailurePolicy::kLocal) {
    snapshot->local_limits.reserve(rules->size());
    for (const Rule& rule : rules->rules()) {
      snapshot->local_limits.push_back(LocalLimit(rule.limit));
    }
  }
  metrics_.rules_loaded().Set(static_cast<double>(rules->size()));
  snapshot->rules = std::move(rules);
  // seq_cst store: a request that loads the new snapshot sees it fully built.
  snapshot_.store(std::move(snapshot));
  rules_version_.fetch_add(1, std::memory_order_relaxed);
}

std::shared_ptr<const rules::RuleSet> Limiter::rules() const { return snapshot_.load()->rules; }

void Limiter::SetTiers(std::shared_ptr<const TierMap> tiers) {
  const bool any = tiers != nullptr && !tiers->empty();
  tiers_.store(std::move(tiers));
  has_tiers_.store(any, std::memory_order_release);
}

void Limiter::Counter(std::string_view rule_id, const rules::RequestAttributes& attributes,
                      bool reset, CounterCallback done) {
  struct Read {
    CounterResult result;
    ChargeItem item;
    Decision decision;
  };
  auto read = std::make_unique<Read>();
  CounterResult& result = read->result;
  result.rules = rules();
  result.now = clock_.NowMicros();
  result.rule = result.rules->FindRule(rule_id);
  if (result.rule == nullptr) {
    result.status = absl::NotFoundError(Cat("no rule '", rule_id, "'"));
    return std::move(done)(std::move(result));
  }
  if (!rules::RuleSet::CounterKey(*result.rule, attributes, &result.key)) {
    std::string names;
    for (const rules::AttributeRef& ref : result.rule->key) {
      names += Cat(names.empty() ? "" : ", ", ref.Name());
    }
    result.status = absl::InvalidArgumentError(
        Cat("rule '", rule_id, "' counts per ", names, ": give each as a parameter"));
    return std::move(done)(std::move(result));
  }
  if (reset) {
    if (options_.fallback != nullptr) {
      options_.fallback->Reset(result.key, result.rule->limit, [](absl::Status) {});
    }
    Read& r = *read;
    store_.Reset(r.result.key, r.result.rule->limit,
                 [read = std::move(read), done = std::move(done)](absl::Status status) mutable {
                   read->result.status = std::move(status);
                   std::move(done)(std::move(read->result));
                 });
    return;
  }
  read->item = ChargeItem{.key = result.key,
                          .limit = &result.rule->limit,
                          .cost = 0,
                          .role = ItemRole::kShadow,
                          .when = ChargeWhen::kRequestAllowed};
  Read& r = *read;
  store_.Charge(std::span<const ChargeItem>(&r.item, 1), std::span<Decision>(&r.decision, 1),
                [read = std::move(read), done = std::move(done)](absl::Status status) mutable {
                  read->result.status = std::move(status);
                  read->result.decision = read->decision;
                  std::move(done)(std::move(read->result));
                });
}

void Limiter::Peek(rules::RequestAttributes attributes, PeekCallback done) {
  ApplyStoredTier(attributes);
  struct Read {
    PeekResult result;
    std::vector<ChargeItem> items;
  };
  auto read = std::make_unique<Read>();
  PeekResult& result = read->result;
  result.rules = rules();
  result.now = clock_.NowMicros();
  result.tier = attributes.tier;
  result.rules->Applicable(attributes, result.applied);
  const size_t n = result.applied.size();
  result.keys.resize(n);
  result.decisions.resize(n);
  read->items.resize(n);
  for (size_t i = 0; i < n; ++i) {
    rules::RuleSet::CounterKey(*result.applied[i], attributes, &result.keys[i]);
    read->items[i] = ChargeItem{.key = result.keys[i],
                                .limit = &result.applied[i]->limit,
                                .cost = 0,
                                .role = ItemRole::kShadow,
                                .when = ChargeWhen::kRequestAllowed};
  }
  if (n == 0) return std::move(done)(std::move(result));
  Read& r = *read;
  store_.Charge(r.items, r.result.decisions,
                [read = std::move(read), done = std::move(done)](absl::Status status) mutable {
                  read->result.status = std::move(status);
                  std::move(done)(std::move(read->result));
                });
}

// ---- The charge pipeline ----

void Limiter::Charge(std::unique_ptr<Job> job) {
  // Nothing to count (an Envoy request whose descriptors matched no counted limit): no store
  // round trip, and none timed.
  if (job->items.empty()) return Finish(std::move(job), DecidedBy::kStore);
  Job* raw = job.get();
  // The store's own time: from here, not from the start of the check (rule matching excluded).
  const auto sent = std::chrono::steady_clock::now();
  store_.Charge(
      raw->items, raw->decisions, [this, sent, job = std::move(job)](absl::Status status) mutable {
        const double seconds = SecondsSince(sent);
        store_latency_.Observe(seconds);
        job->ObserveStore(seconds);
        if (status.ok()) {
          store_failing_.store(false, std::memory_order_relaxed);
          return Finish(std::move(job), DecidedBy::kStore);
        }
        store_failing_.store(true, std::memory_order_relaxed);
        store_errors_.Increment();
        if (options_.on_failure == FailurePolicy::kLocal && options_.fallback != nullptr) {
          return ChargeFallback(std::move(job));
        }
        Finish(std::move(job), DecidedBy::kNobody);
      });
}

void Limiter::ChargeFallback(std::unique_ptr<Job> job) {
  job->UseLocalLimits(*this);
  Job* raw = job.get();
  options_.fallback->Charge(
      raw->items, raw->decisions, [this, job = std::move(job)](absl::Status status) mutable {
        Finish(std::move(job), status.ok() ? DecidedBy::kFallback : DecidedBy::kNobody);
      });
}

void Limiter::Finish(std::unique_ptr<Job> job, DecidedBy decided_by) {
  job->latency = ObserveCheck(job->started);
  job->Finish(*this, decided_by);
}

Micros Limiter::ObserveCheck(std::chrono::steady_clock::time_point started) {
  const double seconds = SecondsSince(started);
  metrics_.check_duration().Observe(seconds);
  return static_cast<Micros>(seconds * kMicrosPerSecond);
}

void Limiter::RecordUnlimited(stats::Result result, Micros now, Micros latency) {
  if (options_.stats != nullptr) options_.stats->Record(now, result, false, false, latency, {});
}

Limit Limiter::LocalLimit(const Limit& limit) const {
  const double share = options_.fallback_share;
  auto scale = [share](int64_t v) {
    return std::max<int64_t>(1, static_cast<int64_t>(std::floor(static_cast<double>(v) * share)));
  };
  auto scaled = Limit::Create({.algorithm = limit.algorithm(),
                               .limit = scale(limit.limit()),
                               .window = limit.window(),
                               .burst = scale(limit.burst())});
  // A scaled bucket can be too fine-grained to count where the original was not: keep it whole.
  return scaled.ok() ? *scaled : limit;
}

const Limit* Limiter::LocalDescriptorLimit(const Snapshot& snapshot, const Limit& limit) const {
  MutexLock lock(snapshot.local_mu);
  auto& scaled = snapshot.local_descriptor_limits[&limit];
  if (scaled == nullptr) scaled = std::make_unique<const Limit>(LocalLimit(limit));
  return scaled.get();
}

// ---- The store probe ----

void Limiter::ProbeStore(ProbeCallback done) {
  // A read (cost 0) of a reserved key: a real round trip to the store, charging nothing.
  static const Limit kProbe =
      *Limit::Create({.algorithm = Algorithm::kFixedWindow, .limit = 1, .window = 1000});
  struct Probe {
    ChargeItem item{.key = "sluice:health", .limit = &kProbe, .cost = 0};
    Decision decision;
    std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
    ProbeCallback done;
  };
  auto probe = std::make_unique<Probe>();
  probe->done = std::move(done);
  Probe* raw = probe.get();
  store_.Charge(
      {&raw->item, 1}, {&raw->decision, 1},
      [policy = options_.on_failure, probe = std::move(probe)](absl::Status status) mutable {
        ProbeResult result;
        result.latency_ms = SecondsSince(probe->started) * 1000;
        result.store_up = status.ok();
        result.can_decide = result.store_up || policy != FailurePolicy::kFailClosed;
        std::move(probe->done)(result);
      });
}

// ---- Check: the HTTP check API ----

namespace {

// A lease id (CONTRACT §10) names the slot and the counters it is held on, so that any server
// sharing the store can release it: "<32 hex digits>" then ".<counter key, base64url>" per
// concurrency counter. Not a secret: holding one lets a caller give back that one slot early.
constexpr size_t kLeaseSlotChars = 32;
constexpr size_t kMaxLeaseIdBytes = 8 * 1024;
constexpr size_t kMaxLeaseCounters = 64;

std::string NewLeaseSlot() {
  thread_local absl::BitGen gen;
  std::string slot;
  slot.reserve(kLeaseSlotChars);
  static constexpr char kHex[] = "0123456789abcdef";
  for (int half = 0; half < 2; ++half) {
    uint64_t bits = absl::Uniform<uint64_t>(gen);
    for (int i = 0; i < 16; ++i, bits >>= 4) slot.push_back(kHex[bits & 0xf]);
  }
  return slot;
}

std::string MakeLeaseId(const std::string& slot, std::span<const ChargeItem> items,
                        std::span<const std::string> keys) {
  std::string id = slot;
  for (size_t i = 0; i < items.size(); ++i) {
    if (items[i].limit->algorithm() != Algorithm::kConcurrency) continue;
    id.push_back('.');
    id += absl::WebSafeBase64Escape(keys[i]);
  }
  return id;
}

}  // namespace

struct Limiter::CheckJob final : Job {
  rules::RuleList rules;                      // the applicable rules, one per item
  absl::InlinedVector<size_t, 4> rule_index;  // of each, into snapshot->counters
  std::string request_id;
  // The slot id of the request's concurrency items (the items' `lease` points into it); empty
  // when no concurrency rule applies.
  std::string lease;
  // Penalties: items, keys and decisions [n, n + m) read the bans of the m applicable rules with
  // a `penalty` (rules[penalized[j]]'s ban is item n + j); rejections[j] is its rejections key.
  absl::InlinedVector<size_t, 1> penalized;
  absl::InlinedVector<std::string, 1> rejections;
  Callback done;

  // Hands the outcome, the latency and each rule's key (moved out of `keys`) to the stats.
  // `decided_by` kNobody: no decisions (the store failed); kFallback: the store failed and the
  // local fallback decided.
  void Record(Limiter& limiter, stats::Result outcome, DecidedBy decided_by) {
    stats::Recorder* recorder = limiter.options_.stats;
    if (recorder == nullptr) return;
    absl::InlinedVector<stats::RuleHit, 4> hits;
    bool shadow_rejected = false;
    for (size_t i = 0; i < rules.size(); ++i) {
      const bool rejected = decided_by != DecidedBy::kNobody && !decisions[i].allowed;
      const bool enforced = rules[i]->mode == rules::RuleMode::kEnforce;
      shadow_rejected |= rejected && !enforced;
      hits.push_back({rules[i]->id, &keys[i], rejected, enforced});
    }
    recorder->Record(now, outcome, shadow_rejected && outcome == stats::Result::kAllowed,
                     decided_by != DecidedBy::kStore, latency, hits);
  }

  void UseLocalLimits(const Limiter&) override {
    // The bans' reads keep their limits: the fallback knows no ban (docs/configuration.md).
    for (size_t i = 0; i < rule_index.size(); ++i) {
      items[i].limit = &snapshot->local_limits[rule_index[i]];
    }
  }

  void ObserveStore(double seconds) const override {
    for (size_t index : rule_index) snapshot->counters[index].store_duration->Observe(seconds);
  }

  void Finish(Limiter& limiter, DecidedBy decided_by) override {
    CheckResult result;
    result.now = now;
    const size_t n = rules.size();
    if (decided_by == DecidedBy::kNobody) {
      for (size_t i = 0; i < n; ++i) snapshot->counters[rule_index[i]].error->Increment();
      if (limiter.options_.on_failure == FailurePolicy::kFailClosed) {
        result.outcome = Outcome::kStoreUnavailable;
      } else {
        result.degraded = true;  // fail_open (or local, if even the fallback failed)
      }
      Record(limiter,
             result.outcome == Outcome::kStoreUnavailable ? stats::Result::kUnavailable
                                                          : stats::Result::kAllowed,
             decided_by);
      return std::move(done)(std::move(result));
    }
    if (decided_by == DecidedBy::kFallback) {
      result.degraded = true;
      // Report the rule's limit (CONTRACT §4), not the share this server granted alone.
      for (size_t i = 0; i < n; ++i) decisions[i].limit = rules[i]->limit.limit();
    }
    // A key banned under a rule's penalty is denied as the deny list denies, whatever its
    // counters said (they were charged in the same call: docs/configuration.md, "Penalties").
    for (size_t j = 0; j < penalized.size() && decided_by == DecidedBy::kStore; ++j) {
      const Decision& ban = decisions[n + j];
      if (ban.remaining > 0) continue;
      const rules::Rule& rule = *rules[penalized[j]];
      snapshot->deny_list.blocked->Increment();
      limiter.NoteBan(rule, keys[n + j], now + ban.reset_after);
      result.outcome = Outcome::kDenied;
      result.rule_id = "deny_list";
      result.deny_reason = Cat("penalty:", rule.id);
      Record(limiter, stats::Result::kBlocked, decided_by);
      return std::move(done)(std::move(result));
    }

    // The reported rule: among enforced rejections, a cost no rule could ever admit first, then
    // the longest retry_after; when allowed, the enforced rule with the least remaining.
    int reported = -1;
    bool rejected = false;
    for (size_t i = 0; i < n; ++i) {
      if (rules[i]->mode != rules::RuleMode::kEnforce || decisions[i].allowed) continue;
      const Decision& d = decisions[i];
      if (!rejected) {
        reported = static_cast<int>(i);
        rejected = true;
        continue;
      }
      const Decision& best = decisions[reported];
      if ((d.cost_exceeds_limit && !best.cost_exceeds_limit) ||
          (d.cost_exceeds_limit == best.cost_exceeds_limit && d.retry_after > best.retry_after)) {
        reported = static_cast<int>(i);
      }
    }
    if (!rejected) {
      for (size_t i = 0; i < n; ++i) {
        if (rules[i]->mode != rules::RuleMode::kEnforce) continue;
        if (reported < 0 || decisions[i].remaining < decisions[reported].remaining) {
          reported = static_cast<int>(i);
        }
      }
    }

    for (size_t i = 0; i < n; ++i) {
      const obs::RuleCounters& c = snapshot->counters[rule_index[i]];
      const bool enforced = rules[i]->mode == rules::RuleMode::kEnforce;
      if (!decisions[i].allowed) {
        (enforced ? c.rejected : c.shadow_rejected)->Increment();
      } else if (!rejected) {
        c.allowed->Increment();
      }
    }

    if (reported >= 0) {
      result.limited = true;
      result.decision = decisions[reported];
      result.rule_id = rules[reported]->id;
      result.window = rules[reported]->limit.window();
      result.algorithm = rules[reported]->limit.algorithm();
    }
    if (rejected) {
      result.outcome = Outcome::kRejected;
      limiter.rejections_.Rejected(result.rule_id, keys[reported], result.decision.retry_after,
                                   request_id);
      for (size_t j = 0; j < penalized.size() && decided_by == DecidedBy::kStore; ++j) {
        const size_t i = penalized[j];
        if (decisions[i].allowed) continue;
        limiter.CountRejection(snapshot, *rules[i], std::move(rejections[j]), keys[n + j]);
      }
    } else {
      for (size_t i = 0; i < n; ++i) {
        // Shaping: the longest delay of the enforced shape rules (each within its max_delay:
        // the rule's queue is sized so).
        if (rules[i]->shape && rules[i]->mode == rules::RuleMode::kEnforce) {
          result.hold = std::max(result.hold, decisions[i].delay);
        }
      }
      if (!lease.empty() && items[0].cost > 0) result.lease_id = MakeLeaseId(lease, items, keys);
    }
    Record(limiter, rejected ? stats::Result::kRejected : stats::Result::kAllowed, decided_by);
    std::move(done)(std::move(result));
  }
};

// ---- Penalties ----

// One penalty counted for a key: its two store items, in turn (the rejection, then the ban).
struct Limiter::PenaltyCount {
  std::shared_ptr<const Snapshot> snapshot;  // holds `rule`
  const rules::Rule* rule = nullptr;
  std::string rejections_key;
  std::string ban_key;
  ChargeItem item;
  Decision decision;

  // Charges one of the penalty's counters (`key`, `limit`) by 1, then calls `next`.
  template <typename Next>
  static void Charge(Limiter& limiter, std::unique_ptr<PenaltyCount> count, std::string_view key,
                     const Limit& limit, Next next) {
    count->item = ChargeItem{.key = key,
                             .limit = &limit,
                             .cost = 1,
                             .consistency = Consistency::kExact,
                             .rule_id = count->rule->id};
    count->decision = Decision{};
    PenaltyCount* raw = count.get();
    limiter.store_.Charge({&raw->item, 1}, {&raw->decision, 1},
                          [count = std::move(count), next](absl::Status status) mutable {
                            if (status.ok()) next(std::move(count));
                          });
  }
};

void Limiter::CountRejection(std::shared_ptr<const Snapshot> snapshot, const rules::Rule& rule,
                             std::string rejections_key, std::string ban_key) {
  auto count = std::make_unique<PenaltyCount>();
  count->snapshot = std::move(snapshot);
  count->rule = &rule;
  count->rejections_key = std::move(rejections_key);
  count->ban_key = std::move(ban_key);
  const std::string_view key = count->rejections_key;
  PenaltyCount::Charge(*this, std::move(count), key, rule.penalty->rejections,
                       [this](std::unique_ptr<PenaltyCount> count) { BanIfDue(std::move(count)); });
}

void Limiter::BanIfDue(std::unique_ptr<PenaltyCount> count) {
  // Fewer than `after` rejections within `within` so far: no ban yet. At `after` (remaining 0)
  // or past it (the log full: a ban lifted, or shorter than `within`), the key is banned,
  // unless it is already.
  if (count->decision.allowed && count->decision.remaining > 0) return;
  const std::string_view key = count->ban_key;
  const Limit& banned = count->rule->penalty->banned;
  PenaltyCount::Charge(*this, std::move(count), key, banned,
                       [this](std::unique_ptr<PenaltyCount> count) {
                         // Not allowed: banned already (by another server, or by a rejection a
                         // moment ago): the ban is not extended.
                         if (!count->decision.allowed) return;
                         const rules::Rule& rule = *count->rule;
                         metrics_.PenaltyBans(rule.id).Increment();
                         obs::LogEvent(spdlog::level::warn, "penalty_ban",
                                       {{"rule_id", rule.id},
                                        {"key", count->ban_key},
                                        {"rejections", rule.penalty->after},
                                        {"within_us", rule.penalty->within},
                                        {"ban_us", rule.penalty->ban}});
                         NoteBan(rule, count->ban_key, clock_.NowMicros() + rule.penalty->ban);
                       });
}

void Limiter::NoteBan(const rules::Rule& rule, std::string_view ban_key, Micros until) {
  MutexLock lock(bans_mu_);
  Ban& ban = bans_[std::string(ban_key)];
  ban.rule_id = rule.id;
  ban.until = until;
  // Expired bans go as new ones come: the map holds at most the bans of the last `ban` period.
  if (bans_.size() > 2 * bans_swept_size_ + 64) {
    const Micros now = clock_.NowMicros();
    for (auto it = bans_.begin(); it != bans_.end();) {
      if (it->second.until <= now) {
        bans_.erase(it++);
      } else {
        ++it;
      }
    }
    bans_swept_size_ = bans_.size();
  }
}

std::vector<Limiter::BanInfo> Limiter::Bans() const {
  const Micros now = clock_.NowMicros();
  std::vector<BanInfo> out;
  MutexLock lock(bans_mu_);
  for (const auto& [key, ban] : bans_) {
    if (ban.until > now) out.push_back({.key = key, .rule_id = ban.rule_id, .until = ban.until});
  }
  std::sort(out.begin(), out.end(),
            [](const BanInfo& a, const BanInfo& b) { return a.key < b.key; });
  return out;
}

void Limiter::Release(std::string_view lease_id, ReleaseCallback done) {
  auto invalid = [&](std::string_view why) {
    std::move(done)(absl::InvalidArgumentError(Cat("invalid lease_id: ", why)));
  };
  if (lease_id.size() > kMaxLeaseIdBytes) return invalid("too long");
  std::vector<std::string_view> parts;
  for (size_t from = 0;;) {
    const size_t dot = lease_id.find('.', from);
    parts.push_back(lease_id.substr(from, dot == std::string_view::npos ? dot : dot - from));
    if (dot == std::string_view::npos) break;
    from = dot + 1;
  }
  const std::string_view slot = parts[0];
  if (slot.size() != kLeaseSlotChars ||
      slot.find_first_not_of("0123456789abcdef") != std::string_view::npos) {
    return invalid("not one a check returned");
  }
  if (parts.size() < 2 || parts.size() > kMaxLeaseCounters + 1) {
    return invalid("not one a check returned");
  }
  std::vector<std::string> keys(parts.size() - 1);
  for (size_t i = 1; i < parts.size(); ++i) {
    if (parts[i].empty() ||
        !absl::WebSafeBase64Unescape(absl::string_view(parts[i].data(), parts[i].size()),
                                     &keys[i - 1])) {
      return invalid("not one a check returned");
    }
  }
  // Every counter's slot, in the store and in the local fallback (which held the slots a check
  // took while the store was down). Answers once the store has answered for every counter, with
  // the first error.
  struct Pending {
    std::atomic<size_t> left;
    Mutex mu;
    absl::Status status ABSL_GUARDED_BY(mu);
    ReleaseCallback done;
  };
  auto pending = std::make_shared<Pending>();
  pending->left = keys.size();
  pending->done = std::move(done);
  auto answered = [pending](absl::Status status) {
    {
      MutexLock lock(pending->mu);
      if (pending->status.ok()) pending->status = std::move(status);
    }
    if (pending->left.fetch_sub(1) != 1) return;
    absl::Status first;
    {
      MutexLock lock(pending->mu);
      first = pending->status;
    }
    std::move(pending->done)(std::move(first));
  };
  for (const std::string& key : keys) {
    // The fallback is a memory store: it answers at once, and cannot fail.
    if (options_.fallback != nullptr) options_.fallback->Release(key, slot, [](absl::Status) {});
    store_.Release(key, slot, answered);
  }
}

void Limiter::ApplyStoredTier(rules::RequestAttributes& attributes) const {
  if (attributes.tier.empty() && !attributes.user_id.empty() &&
      has_tiers_.load(std::memory_order_acquire)) {
    const std::shared_ptr<const TierMap> tiers = tiers_.load();
    if (auto it = tiers->find(attributes.user_id); it != tiers->end()) attributes.tier = it->second;
  }
}

void Limiter::Check(CheckRequest request, Callback done) {
  const auto started = std::chrono::steady_clock::now();
  ApplyStoredTier(request.attributes);
  std::shared_ptr<const Snapshot> snapshot = snapshot_.load();
  const rules::RuleSet& rules = *snapshot->rules;
  CheckResult result;
  result.now = clock_.NowMicros();

  const ListVerdict verdict = rules.CheckLists(request.attributes, result.now);
  if (verdict.kind == ListVerdict::Kind::kDeny) {
    snapshot->deny_list.blocked->Increment();
    result.outcome = Outcome::kDenied;
    result.rule_id = "deny_list";
    result.deny_reason = std::string(verdict.reason());
    RecordUnlimited(stats::Result::kBlocked, result.now, ObserveCheck(started));
    return std::move(done)(std::move(result));
  }
  if (verdict.kind == ListVerdict::Kind::kAllow) {
    snapshot->allow_list.allowed->Increment();
    result.outcome = Outcome::kAllowlisted;
    RecordUnlimited(stats::Result::kAllowed, result.now, ObserveCheck(started));
    return std::move(done)(std::move(result));
  }

  auto job = std::make_unique<CheckJob>();
  rules.Applicable(request.attributes, job->rules);
  if (job->rules.empty()) {
    RecordUnlimited(stats::Result::kAllowed, result.now, ObserveCheck(started));
    return std::move(done)(std::move(result));
  }
  const size_t n = job->rules.size();
  size_t m = 0;  // rules with a penalty: one more item each, its ban's read
  for (const Rule* rule : job->rules) m += rule->penalty.has_value() ? 1 : 0;
  // Sized once: the items point into `keys`.
  job->keys.resize(n + m);
  job->items.resize(n + m);
  job->decisions.resize(n + m);
  job->rule_index.resize(n);
  const Rule* first = rules.rules().data();
  for (const Rule* rule : job->rules) {
    if (rule->limit.algorithm() == Algorithm::kConcurrency && request.cost > 0) {
      job->lease = NewLeaseSlot();
      break;
    }
  }
  for (size_t i = 0; i < n; ++i) {
    const Rule& rule = *job->rules[i];
    // The key is present: Applicable checked.
    rules::RuleSet::CounterKey(rule, request.attributes, &job->keys[i]);
    job->items[i] = ChargeItem{
        .key = job->keys[i],
        .limit = &rule.limit,
        .cost = request.cost,
        .role = rule.mode == rules::RuleMode::kEnforce ? ItemRole::kEnforced : ItemRole::kShadow,
        // A concurrency slot is held only by an admitted request (whose answer carries the lease
        // id that frees it): "charge": "always" does not apply to it.
        .when = request.charge_always && rule.limit.algorithm() != Algorithm::kConcurrency
                    ? ChargeWhen::kAlways
                    : ChargeWhen::kRequestAllowed,
        .consistency = rule.consistency,
        .max_overshoot = rule.max_overshoot.has_value() ? &*rule.max_overshoot : nullptr,
        .rule_id = rule.id,
        .lease = rule.limit.algorithm() == Algorithm::kConcurrency ? std::string_view(job->lease)
                                                                   : std::string_view()};
    job->rule_index[i] = static_cast<size_t>(&rule - first);
  }
  for (size_t i = 0, j = n; j < n + m; ++i) {
    const Rule& rule = *job->rules[i];
    if (!rule.penalty.has_value()) continue;
    job->penalized.push_back(i);
    rules::RuleSet::PenaltyKeys(rule, request.attributes, &job->rejections.emplace_back(),
                                &job->keys[j]);
    // A read: a shadow item of cost 0 never rejects; remaining 0 means banned.
    job->items[j] = ChargeItem{.key = job->keys[j],
                               .limit = &rule.penalty->banned,
                               .cost = 0,
                               .role = ItemRole::kShadow,
                               .consistency = Consistency::kExact,
                               .rule_id = rule.id};
    ++j;
  }
  job->snapshot = std::move(snapshot);
  job->request_id = std::move(request.request_id);
  job->done = std::move(done);
  job->now = result.now;
  job->started = started;
  Charge(std::move(job));
}

}  // namespace sluice
