#include "obs/metrics.h"

#include <iterator>
#include <sstream>

#include "prometheus/text_serializer.h"

namespace sluice::obs {

namespace {

// Decisions take microseconds: buckets from 10 us to 1 s.
prometheus::Histogram::BucketBoundaries LatencyBuckets() {
  return {0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
          0.005,   0.01,     0.025,   0.05,   0.1,     0.25,   1};
}

}  // namespace

Metrics::Metrics(std::string_view version) : registry_(std::make_shared<prometheus::Registry>()) {
  prometheus::BuildGauge()
      .Name("sluice_build_info")
      .Help("Always 1; the running Sluice's version in the version label")
      .Register(*registry_)
      .Add({{"version", std::string(version)}})
      .Set(1);
  requests_ = &prometheus::BuildCounter()
                   .Name("sluice_requests_total")
                   .Help("Rate limit decisions by rule and result")
                   .Register(*registry_);
  rule_store_duration_ =
      &prometheus::BuildHistogram()
           .Name("sluice_rule_store_duration_seconds")
           .Help("Store round trips of the checks a rule applied to, by rule (one per rule each)")
           .Register(*registry_);
  store_duration_ = &prometheus::BuildHistogram()
                         .Name("sluice_store_duration_seconds")
                         .Help("Store round trips")
                         .Register(*registry_);
  store_errors_ = &prometheus::BuildCounter()
                       .Name("sluice_store_errors_total")
                       .Help("Store failures by kind")
                       .Register(*registry_);
  store_cached_rejections_ =
      &prometheus::BuildCounter()
           .Name("sluice_store_cached_rejections_total")
           .Help("Checks rejected by the local over-limit cache without a store round trip")
           .Register(*registry_);
  store_calls_ = &prometheus::BuildCounter()
                      .Name("sluice_store_calls_total")
                      .Help("Script calls sent to the shared store (a coalesced call counts once)")
                      .Register(*registry_);
  leases_ = &prometheus::BuildCounter()
                 .Name("sluice_leases_total")
                 .Help(
                     "Leased counting: slices of a counter's quota taken from the store, "
                     "returned unused, or expired with tokens left")
                 .Register(*registry_);
  penalty_bans_ = &prometheus::BuildCounter()
                       .Name("sluice_penalty_bans_total")
                       .Help("Keys banned by this server under a rule's penalty (repeat offenders)")
                       .Register(*registry_);
  lease_bound_ = &prometheus::BuildGauge()
                      .Name("sluice_lease_overshoot_bound")
                      .Help(
                          "Leased counting: the most a leased rule may admit over its limit per "
                          "window, all servers together (max_overshoot, in tokens)")
                      .Register(*registry_);
  http_errors_ = &prometheus::BuildCounter()
                      .Name("sluice_http_errors_total")
                      .Help("HTTP requests answered with an error, by error code")
                      .Register(*registry_);
  proxy_requests_ = &prometheus::BuildCounter()
                         .Name("sluice_proxy_requests_total")
                         .Help("Gateway mode: requests by how they ended")
                         .Register(*registry_);
  // An upstream answers in milliseconds to seconds: buckets from 1 ms to 30 s (the default
  // proxy.timeout).
  proxy_upstream_duration_ =
      &prometheus::BuildHistogram()
           .Name("sluice_proxy_upstream_duration_seconds")
           .Help("Gateway mode: from a request sent upstream to the upstream's response header")
           .Register(*registry_)
           .Add({}, prometheus::Histogram::BucketBoundaries{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                            0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30});
  check_duration_ = &prometheus::BuildHistogram()
                         .Name("sluice_check_duration_seconds")
                         .Help("Time to decide one check, from parsed request to decision")
                         .Register(*registry_)
                         .Add({}, LatencyBuckets());
  rules_loaded_ = &prometheus::BuildGauge()
                       .Name("sluice_rules_loaded")
                       .Help("Rules in the active rule set")
                       .Register(*registry_)
                       .Add({});
  rules_version_ = &prometheus::BuildGauge()
                        .Name("sluice_rules_version")
                        .Help(
                            "The rules version in force, as /health reports it (the rules "
                            "database's version when there is one)")
                        .Register(*registry_)
                        .Add({});
  auto& reloads = prometheus::BuildCounter()
                      .Name("sluice_config_reloads_total")
                      .Help("Rules reload attempts (file changes and SIGHUP) by result")
                      .Register(*registry_);
  reload_ok_ = &reloads.Add({{"result", "success"}});
  reload_failed_ = &reloads.Add({{"result", "failure"}});
  overrides_refused_ = &prometheus::BuildCounter()
                            .Name("sluice_envoy_overrides_refused_total")
                            .Help(
                                "Envoy requests refused because a descriptor's limit override "
                                "cannot be counted exactly")
                            .Register(*registry_)
                            .Add({});
  envoy_global_shadow_mode_ =
      &prometheus::BuildCounter()
           .Name("sluice_envoy_global_shadow_mode_total")
           .Help(
               "Envoy requests answered OK only because of the global shadow mode (envoy: "
               "shadow_mode)")
           .Register(*registry_)
           .Add({});
  memory_keys_ = &prometheus::BuildGauge()
                      .Name("sluice_memory_store_keys")
                      .Help("Keys held by a memory store, expired ones not yet swept included")
                      .Register(*registry_);
  memory_evictions_ = &prometheus::BuildCounter()
                           .Name("sluice_memory_store_evictions_total")
                           .Help("Keys a memory store evicted to make room beyond max_keys")
                           .Register(*registry_);
  memory_expirations_ = &prometheus::BuildCounter()
                             .Name("sluice_memory_store_expirations_total")
                             .Help("Expired keys a memory store removed")
                             .Register(*registry_);
  rules_database_up_ = &prometheus::BuildGauge()
                            .Name("sluice_rules_database_up")
                            .Help("1 while the rules database answers, 0 while it does not")
                            .Register(*registry_);
  stats_top_entries_ = &prometheus::BuildGauge()
                            .Name("sluice_stats_top_entries")
                            .Help("Keys held by the heavy-hitter summary, by ranking")
                            .Register(*registry_);
  stats_top_rejected_ = &stats_top_entries_->Add({{"by", "rejected"}});
  stats_top_requests_ = &stats_top_entries_->Add({{"by", "requests"}});
}

prometheus::Gauge& Metrics::rules_database_up() { return rules_database_up_->Add({}); }

prometheus::Gauge& Metrics::stats_top_entries(std::string_view by) {
  if (by == "rejected") return *stats_top_rejected_;
  if (by == "requests") return *stats_top_requests_;
  return stats_top_entries_->Add({{"by", std::string(by)}});
}

MemoryStoreMetrics Metrics::MemoryStore(std::string_view role) {
  const prometheus::Labels labels{{"role", std::string(role)}};
  return {.keys = &memory_keys_->Add(labels),
          .evictions = &memory_evictions_->Add(labels),
          .expirations = &memory_expirations_->Add(labels)};
}

namespace {

// The series of a rule of `kind`: each counter from `add(result)`, the store duration from
// `duration()`.
template <typename Add, typename Duration>
RuleCounters CountersOf(RuleKind kind, Add add, Duration duration) {
  switch (kind) {
    case RuleKind::kEnforced:
      return {.allowed = add("allowed"),
              .rejected = add("rejected"),
              .error = add("error"),
              .store_duration = duration()};
    case RuleKind::kShadow:
      return {.allowed = add("allowed"),
              .shadow_rejected = add("shadow_rejected"),
              .error = add("error"),
              .store_duration = duration()};
    case RuleKind::kDenyList:
      return {.blocked = add("blocked")};
    case RuleKind::kAllowList:
      return {.allowed = add("allowed")};
  }
  return {};
}

}  // namespace

RuleCounters Metrics::ForRule(std::string_view rule_id, RuleKind kind) {
  // References never given back, as Request's.
  return CountersOf(
      kind, [&](const char* result) { return &Request(rule_id, result); },
      [&] { return &AcquireRuleStoreDuration(rule_id); });
}

prometheus::Counter& Metrics::Request(std::string_view rule_id, std::string_view result) {
  // A reference never given back: the series stays even if a RequestSeries shares it.
  return AcquireRequest(rule_id, result);
}

size_t Metrics::request_series() const {
  MutexLock lock(series_mu_);
  return series_refs_.size();
}

size_t Metrics::rule_store_series() const {
  MutexLock lock(series_mu_);
  return duration_refs_.size();
}

namespace {

// One more reference to the series of `family` with `labels` (made at 0 when new). Call with the
// lock that guards `refs` held.
template <typename T, typename... Args>
T& AcquireSeries(prometheus::Family<T>& family, absl::flat_hash_map<T*, size_t>& refs,
                 const prometheus::Labels& labels, Args&&... args) {
  T& series = family.Add(labels, std::forward<Args>(args)...);
  ++refs[&series];
  return series;
}

// One reference less to `series`: at the last, it leaves `family`. Call with the lock that guards
// `refs` held, so that no AcquireSeries of the same labels can get it back from Add between the
// count reaching zero and the removal.
template <typename T>
void ReleaseSeries(prometheus::Family<T>& family, absl::flat_hash_map<T*, size_t>& refs,
                   T* series) {
  auto it = refs.find(series);
  if (it == refs.end() || --it->second > 0) return;
  refs.erase(it);
  family.Remove(series);
}

}  // namespace

prometheus::Counter& Metrics::AcquireRequest(std::string_view rule_id, std::string_view result) {
  MutexLock lock(series_mu_);
  return AcquireSeries(*requests_, series_refs_,
                       {{"rule_id", std::string(rule_id)}, {"result", std::string(result)}});
}

void Metrics::ReleaseRequest(prometheus::Counter* counter) {
  MutexLock lock(series_mu_);
  ReleaseSeries(*requests_, series_refs_, counter);
}

prometheus::Histogram& Metrics::AcquireRuleStoreDuration(std::string_view rule_id) {
  MutexLock lock(series_mu_);
  return AcquireSeries(*rule_store_duration_, duration_refs_, {{"rule_id", std::string(rule_id)}},
                       LatencyBuckets());
}

void Metrics::ReleaseRuleStoreDuration(prometheus::Histogram* histogram) {
  MutexLock lock(series_mu_);
  ReleaseSeries(*rule_store_duration_, duration_refs_, histogram);
}

RequestSeries::~RequestSeries() {
  for (prometheus::Counter* counter : held_) metrics_->ReleaseRequest(counter);
  for (prometheus::Histogram* histogram : held_durations_) {
    metrics_->ReleaseRuleStoreDuration(histogram);
  }
}

RuleCounters RequestSeries::ForRule(std::string_view rule_id, RuleKind kind,
                                    std::string_view duration_id) {
  return CountersOf(
      kind, [&](const char* result) { return &Request(rule_id, result); },
      [&] {
        prometheus::Histogram* histogram =
            &metrics_->AcquireRuleStoreDuration(duration_id.empty() ? rule_id : duration_id);
        held_durations_.push_back(histogram);
        return histogram;
      });
}

prometheus::Counter& RequestSeries::Request(std::string_view rule_id, std::string_view result) {
  prometheus::Counter& counter = metrics_->AcquireRequest(rule_id, result);
  held_.push_back(&counter);
  return counter;
}

prometheus::Histogram& Metrics::StoreDuration(std::string_view backend, std::string_view op) {
  return store_duration_->Add({{"backend", std::string(backend)}, {"op", std::string(op)}},
                              LatencyBuckets());
}

prometheus::Counter& Metrics::StoreErrors(std::string_view backend, std::string_view type) {
  return store_errors_->Add({{"backend", std::string(backend)}, {"type", std::string(type)}});
}

prometheus::Counter& Metrics::StoreCachedRejections(std::string_view backend) {
  return store_cached_rejections_->Add({{"backend", std::string(backend)}});
}

prometheus::Counter& Metrics::StoreCalls(std::string_view backend) {
  return store_calls_->Add({{"backend", std::string(backend)}});
}

prometheus::Counter& Metrics::Leases(std::string_view rule_id, std::string_view event) {
  return leases_->Add({{"rule_id", std::string(rule_id)}, {"event", std::string(event)}});
}

prometheus::Counter& Metrics::PenaltyBans(std::string_view rule_id) {
  return penalty_bans_->Add({{"rule_id", std::string(rule_id)}});
}

prometheus::Gauge& Metrics::LeaseOvershootBound(std::string_view rule_id) {
  return lease_bound_->Add({{"rule_id", std::string(rule_id)}});
}

prometheus::Counter& Metrics::http_errors(std::string_view code) {
  return http_errors_->Add({{"code", std::string(code)}});
}

prometheus::Counter& Metrics::proxy_requests(std::string_view result) {
  return proxy_requests_->Add({{"result", std::string(result)}});
}

std::string Metrics::Render() const {
  std::vector<prometheus::MetricFamily> families = registry_->Collect();
  std::vector<prometheus::MetricFamily> process = process_.Collect();
  families.insert(families.end(), std::make_move_iterator(process.begin()),
                  std::make_move_iterator(process.end()));
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace sluice::obs
