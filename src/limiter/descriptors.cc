// Limiter::CheckDescriptors: the Envoy rate limit service path.
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

// One descriptor check in flight (see Limiter::Pending).
struct Limiter::PendingDescriptors {
  std::shared_ptr<const Snapshot> snapshot;
  DescriptorsRequest request;
  DescriptorsResult result;
  // Per descriptor: the item it charges (index into items), or -1.
  std::vector<int> item_of;
  std::vector<bool> shadow;
  std::vector<std::string> metric_keys;  // per descriptor; "" when nothing matched
  std::deque<Limit> override_limits;     // stable addresses for ChargeItem::limit
  std::vector<std::string> keys;
  std::vector<ChargeItem> items;
  std::vector<Decision> decisions;
  DescriptorsCallback done;
  Micros now = 0;
  std::chrono::steady_clock::time_point started;
  bool local = false;                 // decided by the fallback store (on_failure: local)
  std::deque<Limit> local_overrides;  // scaled override_limits, when local
};

void Limiter::CheckDescriptors(DescriptorsRequest request, DescriptorsCallback done) {
  auto p = std::make_unique<PendingDescriptors>();
  p->snapshot = snapshot_.load();
  p->request = std::move(request);
  p->done = std::move(done);
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
  p->shadow.assign(n, false);
  p->metric_keys.resize(n);
  p->keys.reserve(n);
  p->items.reserve(n);
  const uint64_t request_hits = req.hits_addend == 0 ? 1 : req.hits_addend;

  for (size_t i = 0; i < n; ++i) {
    const DescriptorRequest& d = req.descriptors[i];
    DescriptorStatus& status = p->result.statuses[i];
    const rules::DescriptorLimit* limit = matched[i];
    const uint64_t hits = d.hits_addend.value_or(request_hits);
    p->shadow[i] = limit != nullptr && limit->shadow_mode;

    const Limit* effective = nullptr;
    rules::DescriptorLimit key_limit;  // what the counter key is built from
    if (d.limit_override && known_domain) {
      // An override applies whenever the domain is known, matched or not, and is always
      // enforced (envoyproxy/ratelimit builds overrides without shadow mode).
      const auto& o = *d.limit_override;
      p->shadow[i] = false;
      status.current_limit = DescriptorStatus::CurrentLimit{
          limit != nullptr ? limit->name : std::string(), o.requests_per_unit, o.unit};
      if (o.requests_per_unit == 0) {
        status.over_limit = !p->shadow[i];
        status.duration_until_reset = rules::RateLimitUnitMicros(o.unit);
        continue;
      }
      auto created = Limit::Create(
          {.algorithm = limit != nullptr && limit->limit ? limit->limit->algorithm()
                                                         : Algorithm::kFixedWindow,
           .limit = o.requests_per_unit,
           .window = rules::RateLimitUnitMicros(o.unit)});
      if (!created.ok()) continue;
      p->override_limits.push_back(*created);
      effective = &p->override_limits.back();
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
      status.current_limit = DescriptorStatus::CurrentLimit{limit->name, limit->requests_per_unit,
                                                            limit->unit};
      if (limit->blocks_all()) {
        status.over_limit = !p->shadow[i];
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
    p->items.push_back(ChargeItem{{}, effective,
                                  static_cast<int64_t>(std::min<uint64_t>(
                                      hits, static_cast<uint64_t>(Limit::kMaxCount))),
                                  !p->shadow[i]});
  }
  for (size_t j = 0; j < p->items.size(); ++j) p->items[j].key = p->keys[j];
  p->decisions.resize(p->items.size());

  PendingDescriptors* raw = p.get();
  store_.Charge(raw->items, raw->decisions, [this, p = std::move(p)](absl::Status status) mutable {
    FinishDescriptors(std::move(p), status);
  });
}

void Limiter::DecideDescriptorsLocally(std::unique_ptr<PendingDescriptors> p) {
  p->local = true;
  const Snapshot& snapshot = *p->snapshot;
  for (ChargeItem& item : p->items) {
    const Limit* original = item.limit;
    const bool is_override = std::any_of(p->override_limits.begin(), p->override_limits.end(),
                                         [&](const Limit& l) { return &l == original; });
    if (is_override) {  // a per-request limit: scaled per request
      p->local_overrides.push_back(LocalLimit(*original));
      item.limit = &p->local_overrides.back();
      continue;
    }
    std::lock_guard lock(snapshot.local_mu);
    auto& scaled = snapshot.local_descriptor_limits[original];
    if (scaled == nullptr) scaled = std::make_unique<const Limit>(LocalLimit(*original));
    item.limit = scaled.get();
  }
  PendingDescriptors* raw = p.get();
  options_.fallback->Charge(raw->items, raw->decisions,
                            [this, p = std::move(p)](absl::Status status) mutable {
                              FinishDescriptors(std::move(p), status);
                            });
}

void Limiter::FinishDescriptors(std::unique_ptr<PendingDescriptors> pending,
                                const absl::Status& status) {
  PendingDescriptors& p = *pending;
  DescriptorsResult& result = p.result;
  const size_t n = result.statuses.size();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - p.started).count();
  if (!p.local) store_latency_.Observe(seconds);
  if (!status.ok() && !p.local) {
    store_failing_.store(true, std::memory_order_relaxed);
    store_errors_.Increment();
    if (options_.on_failure == FailurePolicy::kLocal && options_.fallback != nullptr) {
      return DecideDescriptorsLocally(std::move(pending));
    }
  }
  if (!status.ok()) {
    if (options_.on_failure == FailurePolicy::kFailClosed) {
      result.over_limit = true;
      result.store_unavailable = true;
      for (auto& s : result.statuses) s.over_limit = true;
    } else {
      for (size_t i = 0; i < n; ++i) {
        if (p.item_of[i] >= 0) result.statuses[i].over_limit = false;  // fail_open: allow
      }
    }
    metrics_.check_duration().Observe(seconds);
    std::move(p.done)(std::move(result));
    return;
  }
  if (!p.local) store_failing_.store(false, std::memory_order_relaxed);

  int reported = -1;  // the status that feeds the response headers
  for (size_t i = 0; i < n; ++i) {
    DescriptorStatus& s = result.statuses[i];
    const int item = p.item_of[i];
    if (item >= 0) {
      const Decision& d = p.decisions[item];
      const Limit& limit = *p.items[item].limit;
      s.over_limit = !d.allowed && !p.shadow[i];
      s.limit_remaining = ClampU32(d.remaining);
      // Fixed windows report the time to the window's end, as envoyproxy/ratelimit does even
      // for an unused key; the others report when the state is fresh again. A used window's
      // end comes from the store (on Redis's clock); only an unused one is placed by ours.
      if (limit.algorithm() == Algorithm::kFixedWindow && d.reset_after == 0) {
        const Micros w = limit.window();
        s.duration_until_reset =
            static_cast<Micros>((int_math::FloorDiv(p.now, w) + 1) * w - p.now);
      } else {
        s.duration_until_reset = d.reset_after;
      }
      if (!p.metric_keys[i].empty()) {
        const obs::RuleCounters c = DescriptorCounters(p.metric_keys[i]);
        if (!d.allowed) {
          (p.shadow[i] ? c.shadow_rejected : c.rejected)->Increment();
        } else {
          c.allowed->Increment();
        }
      }
    } else if (s.over_limit && !p.metric_keys[i].empty()) {
      DescriptorCounters(p.metric_keys[i]).rejected->Increment();  // requests_per_unit: 0
    }
    result.over_limit |= s.over_limit;
    // Shadow descriptors never feed the headers, as shadow rules never do on HTTP.
    if (!s.current_limit || s.limit_remaining == kUnlimitedRemaining || p.shadow[i]) continue;
    if (reported < 0) {
      reported = static_cast<int>(i);
      continue;
    }
    const DescriptorStatus& best = result.statuses[reported];
    if ((s.over_limit && !best.over_limit) ||
        (s.over_limit == best.over_limit && s.limit_remaining < best.limit_remaining)) {
      reported = static_cast<int>(i);
    }
  }
  if (reported >= 0) {
    const DescriptorStatus& s = result.statuses[reported];
    result.response_headers = {
        {"RateLimit-Limit", std::to_string(s.current_limit->requests_per_unit)},
        {"RateLimit-Remaining", std::to_string(s.limit_remaining)},
        {"RateLimit-Reset",
         std::to_string(static_cast<int64_t>(
             int_math::CeilDiv(s.duration_until_reset.value_or(0), kMicrosPerSecond)))},
    };
  }
  metrics_.check_duration().Observe(seconds);
  std::move(p.done)(std::move(result));
}

}  // namespace sluice

namespace sluice {

obs::RuleCounters Limiter::DescriptorCounters(const std::string& metric_key) {
  std::lock_guard lock(descriptor_counters_mu_);
  auto it = descriptor_counters_.find(metric_key);
  if (it == descriptor_counters_.end()) {
    it = descriptor_counters_.emplace(metric_key, metrics_.ForRule(metric_key)).first;
  }
  return it->second;
}

}  // namespace sluice
