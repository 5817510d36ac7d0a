// Limiter::CheckDescriptors: the Envoy rate limit service path (CONTRACT §6), on the charge
// pipeline of limiter.cc.
#include <algorithm>
#include <chrono>
#include <deque>
#include <limits>

#include "absl/strings/str_cat.h"
#include "core/int_math.h"
#include "limiter/limiter.h"

namespace sluice {

namespace {

constexpr uint32_t kUnlimitedRemaining = std::numeric_limits<uint32_t>::max();

uint32_t ClampU32(int64_t v) {
  return static_cast<uint32_t>(std::clamp<int64_t>(v, 0, kUnlimitedRemaining));
}

}  // namespace

struct Limiter::DescriptorsJob final : Job {
  DescriptorsRequest request;
  DescriptorsResult result;
  std::vector<int> item_of;              // per descriptor: the item it charges, or -1
  std::vector<std::string> metric_keys;  // per descriptor; "" when nothing matched
  std::vector<bool> is_override;         // per item: its limit is a per-request override
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

  void Finish(Limiter& limiter, DecidedBy decided_by) override {
    const size_t n = result.statuses.size();
    if (decided_by == DecidedBy::kNobody) {
      const bool closed = limiter.options_.on_failure == FailurePolicy::kFailClosed;
      result.over_limit = closed;
      result.store_unavailable = closed;
      result.degraded = !closed;
      for (size_t i = 0; i < n; ++i) {
        if (closed) {
          result.statuses[i].over_limit = true;
        } else if (item_of[i] >= 0) {
          result.statuses[i].over_limit = false;  // fail_open: allow
        }
        if (item_of[i] >= 0 && !metric_keys[i].empty()) {
          limiter.DescriptorCounter(*snapshot, metric_keys[i], DescriptorResult::kError)
              .Increment();
        }
      }
      return std::move(done)(std::move(result));
    }

    for (size_t i = 0; i < n; ++i) {
      DescriptorStatus& s = result.statuses[i];
      const int item = item_of[i];
      if (item >= 0) {
        const Decision& d = decisions[item];
        const Limit& limit = *items[item].limit;
        s.over_limit = !d.allowed && !s.shadow;
        s.limit_remaining = ClampU32(d.remaining);
        // Fixed windows report the time to the window's end, as envoyproxy/ratelimit does even
        // for an unused key; the others report when the state is fresh again. A used window's
        // end comes from the store (on Redis's clock); only an unused one is placed by ours.
        if (limit.algorithm() == Algorithm::kFixedWindow && d.reset_after == 0) {
          const Micros w = limit.window();
          s.duration_until_reset = static_cast<Micros>((int_math::FloorDiv(now, w) + 1) * w - now);
        } else {
          s.duration_until_reset = d.reset_after;
        }
        if (!metric_keys[i].empty()) {
          limiter
              .DescriptorCounter(*snapshot, metric_keys[i],
                                 d.allowed  ? DescriptorResult::kAllowed
                                 : s.shadow ? DescriptorResult::kShadowRejected
                                            : DescriptorResult::kRejected)
              .Increment();
        }
      } else if (s.over_limit && !metric_keys[i].empty()) {  // requests_per_unit: 0
        limiter.DescriptorCounter(*snapshot, metric_keys[i], DescriptorResult::kRejected)
            .Increment();
      }
      result.over_limit |= s.over_limit;
    }
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

  // Entry views for matching and keys; they point into p->request, which outlives them.
  std::vector<std::vector<rules::DescriptorEntry>> entries(n);
  std::vector<const rules::DescriptorLimit*> matched(n, nullptr);
  for (size_t i = 0; i < n; ++i) {
    for (const auto& [k, v] : req.descriptors[i].entries) entries[i].push_back({k, v});
    if (known_domain) matched[i] = rules.MatchDescriptor(req.domain, entries[i]);
  }
  rules::ApplyReplaces(matched);

  p->result.statuses.resize(n);
  p->item_of.assign(n, -1);
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

    const Limit* effective = nullptr;
    bool is_override = false;
    rules::DescriptorLimit key_limit;  // what the counter key is built from
    if (d.limit_override && known_domain) {
      // An override applies whenever the domain is known, matched or not, and is always
      // enforced (envoyproxy/ratelimit builds overrides without shadow mode).
      const auto& o = *d.limit_override;
      status.shadow = false;
      status.current_limit = DescriptorStatus::CurrentLimit{
          limit != nullptr ? limit->name : std::string(), o.requests_per_unit, o.unit};
      if (o.requests_per_unit == 0) {
        status.over_limit = true;
        status.duration_until_reset = rules::RateLimitUnitMicros(o.unit);
        continue;
      }
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
      p->metric_keys[i] = limit != nullptr
                              ? rules::DescriptorMetricKey(req.domain, entries[i], *limit)
                              : absl::StrCat(req.domain, ".override");
    } else if (limit != nullptr) {
      p->metric_keys[i] = rules::DescriptorMetricKey(req.domain, entries[i], *limit);
      if (limit->unlimited) {
        status.limit_remaining = kUnlimitedRemaining;
        continue;
      }
      status.current_limit =
          DescriptorStatus::CurrentLimit{limit->name, limit->requests_per_unit, limit->unit};
      if (limit->blocks_all()) {
        status.over_limit = !status.shadow;
        status.duration_until_reset = rules::RateLimitUnitMicros(limit->unit);
        continue;
      }
      effective = &*limit->limit;
      key_limit.limit = *limit->limit;
    } else {
      continue;  // no limit: OK, nothing counted
    }
    std::string key;
    if (!rules::DescriptorCounterKey(req.domain, entries[i], key_limit, &key)) continue;
    p->item_of[i] = static_cast<int>(p->items.size());
    p->keys.push_back(std::move(key));
    p->is_override.push_back(is_override);
    // envoyproxy/ratelimit's charging (CONTRACT §6): an over-limit descriptor takes its hits
    // into debt, so that a later hits-0 check sees it over; the others are given back when
    // the request is OVER_LIMIT.
    p->items.push_back(ChargeItem{.key = {},  // set below, once `keys` no longer moves
                                  .limit = effective,
                                  .cost = static_cast<int64_t>(std::min<uint64_t>(
                                      hits, static_cast<uint64_t>(Limit::kMaxCount))),
                                  .role = status.shadow ? ItemRole::kShadow : ItemRole::kEnforced,
                                  .when = ChargeWhen::kAllowedOrOver});
  }
  for (size_t j = 0; j < p->items.size(); ++j) p->items[j].key = p->keys[j];
  p->decisions.resize(p->items.size());
  p->done = std::move(done);
  Charge(std::move(p));
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
