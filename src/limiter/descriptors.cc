// Limiter::CheckDescriptors: the Envoy rate limit service path (CONTRACT §6), on the charge
// pipeline of limiter.cc.
#include <algorithm>
#include <chrono>
#include <deque>
#include <limits>

#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "core/int_math.h"
#include "limiter/limiter.h"

namespace sluice {

namespace {

constexpr uint32_t kUnlimitedRemaining = std::numeric_limits<uint32_t>::max();

uint32_t ClampU32(int64_t v) {
  return static_cast<uint32_t>(std::clamp<int64_t>(v, 0, kUnlimitedRemaining));
}

// The time to the end of the current `unit` (Envoy's unit, not a window of ours), as
// envoyproxy/ratelimit's CalculateReset: what a requests_per_unit 0 descriptor reports.
Micros UntilUnitEnds(rules::RateLimitUnit unit, Micros now) {
  const Micros w = rules::RateLimitUnitMicros(unit);
  return static_cast<Micros>((int_math::FloorDiv(now, w) + 1) * w - now);
}

// envoyproxy/ratelimit's finalCode: OVER_LIMIT when a descriptor that is not in quota mode is
// over, or when every quota-mode descriptor is (unlimited ones take no part).
bool RequestOverLimit(const std::vector<DescriptorStatus>& statuses) {
  size_t quota = 0;
  size_t quota_over = 0;
  for (const DescriptorStatus& s : statuses) {
    if (s.unlimited) continue;
    if (s.quota) {
      ++quota;
      quota_over += s.over_limit ? 1 : 0;
    } else if (s.over_limit) {
      return true;
    }
  }
  return quota > 0 && quota_over == quota;
}

}  // namespace

// Records no sluice_rule_store_duration_seconds (Job::ObserveStore): an Envoy metric key is
// not a rule, and with detailed_metric there may be a thousand per rules version; a histogram
// each would be 18 series per key. Their round trips are in sluice_store_duration_seconds.
struct Limiter::DescriptorsJob final : Job {
  DescriptorsRequest request;
  DescriptorsResult result;
  std::vector<int> item_of;              // per descriptor: the item it charges, or -1
  std::vector<bool> blocks_all;          // per descriptor: requests_per_unit 0 (see below)
  std::vector<std::string> metric_keys;  // per descriptor; "" when nothing matched
  std::vector<bool> is_override;         // per item: its limit is the job's own (override_limits)
  std::deque<Limit> override_limits;     // stable addresses for ChargeItem::limit
  std::deque<Limit> local_overrides;     // override_limits scaled, when decided locally
  DescriptorsCallback done;

  void UseLocalLimits(const Limiter& limiter) override {
    for (size_t j = 0; j < items.size(); ++j) {
      if (is_override[j]) {  // a per-request limit: scaled per request
        local_overrides.push_back(limiter.LocalLimit(*items[j].limit));
        items[j].limit = &local_overrides.back();
      } else {
        items[j].limit = limiter.LocalDescriptorLimit(*snapshot, *items[j].limit);
      }
    }
  }

  void Count(Limiter& limiter, size_t i, DescriptorResult r) const {
    if (!metric_keys[i].empty())
      limiter.DescriptorCounter(*snapshot, metric_keys[i], r).Increment();
  }

  // Hands the outcome, the latency and each counted descriptor (under its metric key, with its
  // counter key moved out of `keys`) to the stats.
  void Record(Limiter& limiter, DecidedBy decided_by) {
    stats::Recorder* recorder = limiter.options_.stats;
    if (recorder == nullptr) return;
    absl::InlinedVector<stats::RuleHit, 4> hits;
    bool shadow_rejected = false;
    for (size_t i = 0; i < result.statuses.size(); ++i) {
      const int item = item_of[i];
      if (item < 0 || metric_keys[i].empty()) continue;
      const DescriptorStatus& s = result.statuses[i];
      // With the store down, only a requests_per_unit 0 descriptor is over by itself (fail_closed
      // makes every status over, but that is the store's failure, counted as such).
      const bool rejected = decided_by == DecidedBy::kNobody
                                ? static_cast<bool>(blocks_all[i])
                                : !decisions[static_cast<size_t>(item)].allowed;
      // The global shadow_mode answers OK whatever the descriptors say: none rejects.
      const bool enforced = !s.shadow && !limiter.options_.envoy.shadow_mode;
      shadow_rejected |= rejected && !enforced;
      // by_rule under the same bounded id as sluice_requests_total (a metric key may hold the
      // request's own values: past max_descriptor_series, or unclean, it is "_other").
      const std::string_view id = limiter.HasDescriptorSeries(*snapshot, metric_keys[i])
                                      ? std::string_view(metric_keys[i])
                                      : rules::kOtherRuleId;
      hits.push_back({id, &keys[static_cast<size_t>(item)], rejected, enforced});
    }
    const stats::Result outcome = result.store_unavailable ? stats::Result::kUnavailable
                                  : result.over_limit      ? stats::Result::kRejected
                                                           : stats::Result::kAllowed;
    recorder->Record(now, outcome, shadow_rejected && outcome == stats::Result::kAllowed,
                     decided_by != DecidedBy::kStore, latency, hits);
  }

  void Finish(Limiter& limiter, DecidedBy decided_by) override {
    const size_t n = result.statuses.size();
    if (decided_by == DecidedBy::kNobody) {
      const bool closed = limiter.options_.on_failure == FailurePolicy::kFailClosed;
      result.store_unavailable = closed;
      result.degraded = !closed;
      for (size_t i = 0; i < n; ++i) {
        if (item_of[i] < 0) continue;
        // A requests_per_unit 0 descriptor needs no store to be over: it stays so.
        if (closed) {
          result.statuses[i].over_limit = true;
        } else if (!blocks_all[i]) {
          result.statuses[i].over_limit = false;  // fail_open: allow
        }
        Count(limiter, i, blocks_all[i] ? DescriptorResult::kRejected : DescriptorResult::kError);
      }
      result.over_limit = closed || RequestOverLimit(result.statuses);
      Record(limiter, decided_by);
      return std::move(done)(std::move(result));
    }

    for (size_t i = 0; i < n; ++i) {
      DescriptorStatus& s = result.statuses[i];
      const int item = item_of[i];
      if (item < 0) {
        // An unlimited descriptor is an allowed request through a limit of its own: counted
        // under its metric key, as upstream's stats for it (test-domain.key6 in its tests).
        if (s.unlimited) Count(limiter, i, DescriptorResult::kAllowed);
        continue;
      }
      const Decision& d = decisions[item];
      const Limit& limit = *items[item].limit;
      // The status says OVER_LIMIT for an enforced or quota descriptor that is over; a shadow
      // one says OK. Either way, over means nothing remains (as upstream, and Envoy's headers).
      s.over_limit = !d.allowed && !s.shadow;
      s.limit_remaining = d.allowed ? ClampU32(d.remaining) : 0;
      if (blocks_all[i]) {
        // Set when the job was built.
      } else if (limit.algorithm() == Algorithm::kFixedWindow && d.reset_after == 0) {
        // Fixed windows report the time to the window's end, as envoyproxy/ratelimit does even
        // for an unused key; the others report when the state is fresh again. A used window's
        // end comes from the store (on Redis's clock); only an unused one is placed by ours.
        const Micros w = limit.window();
        s.duration_until_reset = static_cast<Micros>((int_math::FloorDiv(now, w) + 1) * w - now);
      } else {
        s.duration_until_reset = d.reset_after;
      }
      Count(limiter, i,
            d.allowed  ? DescriptorResult::kAllowed
            : s.shadow ? DescriptorResult::kShadowRejected
                       : DescriptorResult::kRejected);
    }
    result.over_limit = RequestOverLimit(result.statuses);
    if (result.over_limit && limiter.options_.envoy.shadow_mode) {
      result.over_limit = false;
      limiter.metrics_.envoy_global_shadow_mode().Increment();
    }
    if (result.over_limit) {
      // The first descriptor over its limit, under its metric key (as the check API logs its
      // rejecting rule).
      for (size_t i = 0; i < n; ++i) {
        if (!result.statuses[i].over_limit || item_of[i] < 0) continue;
        limiter.rejections_.Rejected(metric_keys[i], keys[static_cast<size_t>(item_of[i])],
                                     result.statuses[i].duration_until_reset.value_or(0),
                                     request.request_id);
        break;
      }
    }
    Record(limiter, decided_by);
    std::move(done)(std::move(result));
  }
};

void Limiter::CheckDescriptors(DescriptorsRequest request, DescriptorsCallback done) {
  auto p = std::make_unique<DescriptorsJob>();
  p->snapshot = snapshot_.load();
  p->request = std::move(request);
  p->now = clock_.NowMicros();
  p->started = std::chrono::steady_clock::now();
  const rules::RuleSet& rules = *p->snapshot->rules;
  const DescriptorsRequest& req = p->request;
  const size_t n = req.descriptors.size();
  const bool known_domain = rules.HasDomain(req.domain);
  const bool global_quota = options_.envoy.quota_mode;

  // Entry views for matching and keys; they point into p->request, which outlives them.
  std::vector<std::vector<rules::DescriptorEntry>> entries(n);
  std::vector<rules::DescriptorMatch> matches(n);
  std::vector<const rules::DescriptorLimit*> matched(n, nullptr);
  for (size_t i = 0; i < n; ++i) {
    for (const auto& [k, v] : req.descriptors[i].entries) entries[i].push_back({k, v});
    if (known_domain) matches[i] = rules.LookupDescriptor(req.domain, entries[i]);
    matched[i] = matches[i].limit;
  }
  rules::ApplyReplaces(matched);

  p->result.statuses.resize(n);
  p->item_of.assign(n, -1);
  p->blocks_all.assign(n, false);
  p->metric_keys.resize(n);
  p->keys.reserve(n);
  p->items.reserve(n);
  const uint64_t request_hits = req.hits_addend == 0 ? 1 : req.hits_addend;

  for (size_t i = 0; i < n; ++i) {
    const DescriptorRequest& d = req.descriptors[i];
    DescriptorStatus& status = p->result.statuses[i];
    const rules::DescriptorLimit* limit = matched[i];
    const uint64_t hits = d.hits_addend.value_or(request_hits);
    status.shadow = limit != nullptr && limit->shadow_mode;
    status.quota = global_quota || (limit != nullptr && limit->quota_mode);

    const Limit* effective = nullptr;
    bool is_override = false;
    // A requests_per_unit 0 limit: every hit is over, in this unit.
    std::optional<rules::RateLimitUnit> block_unit;
    rules::DescriptorLimit key_limit;  // what the counter key is built from
    std::span<const std::string_view> shared;
    if (d.limit_override && known_domain) {
      // An override applies whenever the domain is known, matched or not, and is always
      // enforced (envoyproxy/ratelimit builds overrides without shadow or quota mode, and
      // without share_threshold or metadata).
      const auto& o = *d.limit_override;
      status.shadow = false;
      status.quota = global_quota;
      status.current_limit = DescriptorStatus::CurrentLimit{
          limit != nullptr ? limit->name : std::string(), o.requests_per_unit, o.unit};
      p->metric_keys[i] = rules::DescriptorOverrideMetricKey(req.domain, entries[i]);
      if (o.requests_per_unit == 0) {
        block_unit = o.unit;
      } else {
        const Algorithm algorithm =
            limit != nullptr && limit->limit ? limit->limit->algorithm() : Algorithm::kFixedWindow;
        auto created = Limit::Create({.algorithm = algorithm,
                                      .limit = o.requests_per_unit,
                                      .window = rules::RateLimitUnitMicros(o.unit)});
        if (!created.ok()) {
          // Refused, not skipped: a limit that counts nothing would let everything through.
          metrics_.overrides_refused().Increment();
          DescriptorsResult refused;
          refused.status = absl::InvalidArgumentError(absl::StrCat(
              "descriptor ", i, ": limit override ", o.requests_per_unit, " per ",
              std::string(rules::RateLimitUnitName(o.unit)), " cannot be counted with ",
              std::string(AlgorithmName(algorithm)), ": ",
              std::string(created.status().message().data(), created.status().message().size())));
          return std::move(done)(std::move(refused));
        }
        p->override_limits.push_back(*created);
        effective = &p->override_limits.back();
        is_override = true;
        key_limit.limit = *created;
      }
    } else if (limit != nullptr) {
      p->metric_keys[i] = std::move(matches[i].metric_key);
      status.metadata = limit->metadata;
      if (limit->unlimited) {
        status.unlimited = true;
        status.quota = false;
        status.limit_remaining = kUnlimitedRemaining;
        continue;
      }
      status.current_limit =
          DescriptorStatus::CurrentLimit{limit->name, limit->requests_per_unit, limit->unit};
      if (limit->blocks_all()) {
        block_unit = limit->unit;
      } else {
        effective = &*limit->limit;
        key_limit.limit = *limit->limit;
        shared = matches[i].shared;
      }
    } else {
      continue;  // no limit: OK, nothing counted
    }
    int64_t cost = static_cast<int64_t>(std::min<uint64_t>(hits, Limit::kMaxCount));
    ChargeWhen when = ChargeWhen::kAllowedOrOver;
    if (block_unit.has_value()) {
      // requests_per_unit 0 must act as any over-limit descriptor, on every store: the request
      // is OVER_LIMIT and the others are not charged (the over ones keep their debt). That is
      // the store's all-or-nothing, so the descriptor goes to the store as an item the store
      // always rejects: a cost of 2 against a limit of 1 that is never charged (kRequestAllowed:
      // a rejecting item charges nothing), on a key of its own. Deciding it here and skipping
      // the store for the others instead would need a second, read-only path that reports their
      // state without charging, and would drift from the store's rules (debt, quota).
      p->blocks_all[i] = true;
      status.over_limit = !status.shadow;
      status.limit_remaining = 0;
      status.duration_until_reset = UntilUnitEnds(*block_unit, p->now);
      p->override_limits.push_back(
          *Limit::Create({.algorithm = Algorithm::kFixedWindow,
                          .limit = 1,
                          .window = rules::RateLimitUnitMicros(*block_unit)}));
      effective = &p->override_limits.back();
      is_override = true;
      key_limit.limit = *effective;
      cost = 2;
      when = ChargeWhen::kRequestAllowed;
    }
    std::string key;
    if (!rules::DescriptorCounterKey(req.domain, entries[i], key_limit, &key, shared)) continue;
    if (block_unit.has_value()) key.append("|blocked");
    p->item_of[i] = static_cast<int>(p->items.size());
    p->keys.push_back(std::move(key));
    p->is_override.push_back(is_override);
    // envoyproxy/ratelimit's charging (CONTRACT §6): an over-limit descriptor takes its hits
    // into debt, so that a later hits-0 check sees it over; the others are given back when
    // the request is OVER_LIMIT.
    p->items.push_back(ChargeItem{.key = {},  // set below, once `keys` no longer moves
                                  .limit = effective,
                                  .cost = cost,
                                  .role = status.shadow  ? ItemRole::kShadow
                                          : status.quota ? ItemRole::kQuota
                                                         : ItemRole::kEnforced,
                                  .when = when});
  }
  // A quota-mode descriptor that cannot be over (no limit matched, or shadow mode) passes, so
  // the quota descriptors are never all over: none of them may reject the request, which the
  // store is told by giving them the shadow role (charged as each item's ChargeWhen says, as a
  // quota item is while another admits).
  bool quota_always_passes = false;
  for (size_t i = 0; i < n; ++i) {
    const DescriptorStatus& s = p->result.statuses[i];
    quota_always_passes |= s.quota && (p->item_of[i] < 0 || s.shadow);
  }
  if (quota_always_passes) {
    for (ChargeItem& item : p->items) {
      if (item.role == ItemRole::kQuota) item.role = ItemRole::kShadow;
    }
  }
  for (size_t j = 0; j < p->items.size(); ++j) p->items[j].key = p->keys[j];
  p->decisions.resize(p->items.size());
  p->done = std::move(done);
  Charge(std::move(p));
}

bool Limiter::HasDescriptorSeries(const Snapshot& snapshot, const std::string& metric_key) const {
  MutexLock lock(snapshot.descriptor_mu);
  return snapshot.descriptor_counters.contains(metric_key);
}

prometheus::Counter& Limiter::DescriptorCounter(const Snapshot& snapshot,
                                                const std::string& metric_key,
                                                DescriptorResult result) const {
  static constexpr const char* kNames[] = {"allowed", "rejected", "shadow_rejected", "error"};
  const auto index = static_cast<size_t>(result);
  MutexLock lock(snapshot.descriptor_mu);
  auto it = snapshot.descriptor_counters.find(metric_key);
  if (it == snapshot.descriptor_counters.end()) {
    // With detailed_metric a key holds the request's own values: every distinct one would be a
    // series for ever. Past the limit (or for a key no label can hold) they share one, and are
    // not remembered, so that the map stays bounded too.
    if (snapshot.descriptor_keys < options_.max_descriptor_series &&
        rules::IsCleanMetricKey(metric_key)) {
      ++snapshot.descriptor_keys;
      it = snapshot.descriptor_counters.try_emplace(metric_key).first;
    } else {
      it = snapshot.descriptor_counters.try_emplace(std::string(rules::kOtherRuleId)).first;
    }
  }
  prometheus::Counter*& counter = it->second[index];
  if (counter == nullptr) counter = &snapshot.descriptor_series.Request(it->first, kNames[index]);
  return *counter;
}

}  // namespace sluice
