#include "limiter/limiter.h"

#include <algorithm>
#include <chrono>
#include <cmath>

namespace sluice {

using rules::ListVerdict;
using rules::Rule;
using Outcome = CheckResult::Outcome;

// One check in flight: owns everything the store's spans point into until `done` runs.
struct Limiter::Pending {
  std::shared_ptr<const Snapshot> snapshot;
  std::vector<const Rule*> rules;
  std::vector<size_t> rule_index;  // into snapshot->counters
  std::vector<std::string> keys;
  std::vector<ChargeItem> items;
  std::vector<Decision> decisions;
  Callback done;
  Micros now = 0;
  std::chrono::steady_clock::time_point started;
  bool local = false;  // decided by the fallback store (on_failure: local)
};

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

void Limiter::SetRules(std::shared_ptr<const rules::RuleSet> rules) {
  auto snapshot = std::make_shared<Snapshot>();
  snapshot->counters.reserve(rules->size());
  for (const Rule& rule : rules->rules()) snapshot->counters.push_back(metrics_.ForRule(rule.id));
  snapshot->deny_list = metrics_.ForRule("deny_list");
  snapshot->allow_list = metrics_.ForRule("allow_list");
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

void Limiter::Check(CheckRequest request, Callback done) {
  const auto started = std::chrono::steady_clock::now();
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
    std::move(done)(std::move(result));
    return;
  }
  if (verdict.kind == ListVerdict::Kind::kAllow) {
    snapshot->allow_list.allowed->Increment();
    result.outcome = Outcome::kAllowlisted;
    std::move(done)(std::move(result));
    return;
  }

  auto pending = std::make_unique<Pending>();
  rules.Applicable(request.attributes, pending->rules);
  if (pending->rules.empty()) {
    std::move(done)(std::move(result));
    return;
  }
  const size_t n = pending->rules.size();
  pending->keys.resize(n);
  pending->items.resize(n);
  pending->decisions.resize(n);
  pending->rule_index.resize(n);
  const Rule* first = rules.rules().data();
  for (size_t i = 0; i < n; ++i) {
    const Rule& rule = *pending->rules[i];
    rules::RuleSet::CounterKey(rule, request.attributes, &pending->keys[i]);  // key present:
                                                                             // Applicable checked
    pending->items[i] = ChargeItem{pending->keys[i], &rule.limit, request.cost,
                                   rule.mode == rules::RuleMode::kEnforce};
    pending->rule_index[i] = static_cast<size_t>(&rule - first);
  }
  pending->snapshot = std::move(snapshot);
  pending->done = std::move(done);
  pending->now = result.now;
  pending->started = started;
  Pending* raw = pending.get();
  store_.Charge(raw->items, raw->decisions,
                [this, pending = std::move(pending)](absl::Status status) mutable {
                  Finish(std::move(pending), status);
                });
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

void Limiter::DecideLocally(std::unique_ptr<Pending> p) {
  p->local = true;
  for (size_t i = 0; i < p->items.size(); ++i) {
    p->items[i].limit = &p->snapshot->local_limits[p->rule_index[i]];
  }
  Pending* raw = p.get();
  options_.fallback->Charge(
      raw->items, raw->decisions,
      [this, p = std::move(p)](absl::Status status) mutable { Finish(std::move(p), status); });
}

void Limiter::Finish(std::unique_ptr<Pending> pending, const absl::Status& status) {
  Pending& p = *pending;
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - p.started).count();
  if (!p.local) store_latency_.Observe(seconds);
  CheckResult result;
  result.now = p.now;
  const size_t n = p.rules.size();

  if (!status.ok() && !p.local) {
    store_failing_.store(true, std::memory_order_relaxed);
    store_errors_.Increment();
    if (options_.on_failure == FailurePolicy::kLocal && options_.fallback != nullptr) {
      return DecideLocally(std::move(pending));
    }
  }
  if (!status.ok()) {
    for (size_t i = 0; i < n; ++i) p.snapshot->counters[p.rule_index[i]].error->Increment();
    if (options_.on_failure == FailurePolicy::kFailClosed) {
      result.outcome = Outcome::kStoreUnavailable;
    } else {
      result.degraded = true;  // fail_open (or local, if even the fallback failed)
    }
    metrics_.check_duration().Observe(seconds);
    std::move(p.done)(std::move(result));
    return;
  }
  if (p.local) {
    result.degraded = true;
    // Report the rule's limit (CONTRACT §4), not the share this server granted alone.
    for (size_t i = 0; i < n; ++i) p.decisions[i].limit = p.rules[i]->limit.limit();
  } else {
    store_failing_.store(false, std::memory_order_relaxed);
  }

  // The reported rule: among enforced rejections, a cost no rule could ever admit first, then
  // the longest retry_after; when allowed, the enforced rule with the least remaining.
  int reported = -1;
  bool rejected = false;
  for (size_t i = 0; i < n; ++i) {
    if (p.rules[i]->mode != rules::RuleMode::kEnforce || p.decisions[i].allowed) continue;
    const Decision& d = p.decisions[i];
    if (!rejected) {
      reported = static_cast<int>(i);
      rejected = true;
      continue;
    }
    const Decision& best = p.decisions[reported];
    if ((d.cost_exceeds_limit && !best.cost_exceeds_limit) ||
        (d.cost_exceeds_limit == best.cost_exceeds_limit && d.retry_after > best.retry_after)) {
      reported = static_cast<int>(i);
    }
  }
  if (!rejected) {
    for (size_t i = 0; i < n; ++i) {
      if (p.rules[i]->mode != rules::RuleMode::kEnforce) continue;
      if (reported < 0 || p.decisions[i].remaining < p.decisions[reported].remaining) {
        reported = static_cast<int>(i);
      }
    }
  }

  for (size_t i = 0; i < n; ++i) {
    const obs::RuleCounters& c = p.snapshot->counters[p.rule_index[i]];
    const bool enforced = p.rules[i]->mode == rules::RuleMode::kEnforce;
    if (!p.decisions[i].allowed) {
      (enforced ? c.rejected : c.shadow_rejected)->Increment();
    } else if (!rejected) {
      c.allowed->Increment();
    }
  }

  if (reported >= 0) {
    result.limited = true;
    result.decision = p.decisions[reported];
    result.rule_id = p.rules[reported]->id;
    result.window = p.rules[reported]->limit.window();
    result.algorithm = p.rules[reported]->limit.algorithm();
  }
  if (rejected) {
    result.outcome = Outcome::kRejected;
    rejections_.Rejected(result.rule_id, p.keys[reported], result.decision.retry_after);
  }
  metrics_.check_duration().Observe(seconds);
  std::move(p.done)(std::move(result));
}

}  // namespace sluice
