// Sluice's Prometheus metrics (CONTRACT §5 /metrics), on prometheus-cpp's registry.
// Thread-safe (except RequestSeries, a holder of references). Hot paths keep pointers to the
// metrics they bump (see RuleCounters) rather than looking them up per request.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "base/mutex.h"
#include "obs/process_collector.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace sluice::obs {

class Metrics;

// sluice_requests_total{rule_id, result} for one rule id. Only the results that can occur for
// the rule's kind exist (see RuleKind); the others are null and never exported.
struct RuleCounters {
  prometheus::Counter* allowed = nullptr;
  prometheus::Counter* rejected = nullptr;
  prometheus::Counter* shadow_rejected = nullptr;
  prometheus::Counter* blocked = nullptr;
  prometheus::Counter* error = nullptr;
  // sluice_rule_store_duration_seconds{rule_id}: the store round trips of checks the rule
  // applied to, in seconds. Rules that are counted in a store only (enforced, shadow); null for
  // the lists. Same series bound and lifetime as the counters above.
  prometheus::Histogram* store_duration = nullptr;
};

// A memory store's sluice_memory_store_* series, labelled role="store" (backend memory) or
// role="fallback" (on_failure: local over Redis).
struct MemoryStoreMetrics {
  prometheus::Gauge* keys = nullptr;           // live keys, expired ones not yet swept included
  prometheus::Counter* evictions = nullptr;    // keys evicted to make room beyond max_keys
  prometheus::Counter* expirations = nullptr;  // expired keys removed
};

// What a rule id stands for, which decides the results it can have.
enum class RuleKind : uint8_t {
  kEnforced,   // allowed, rejected, error
  kShadow,     // allowed, shadow_rejected, error
  kDenyList,   // blocked
  kAllowList,  // allowed
};

// References to the per-rule series (sluice_requests_total, sluice_rule_store_duration_seconds)
// that come and go with the rules. A series is
// exported while anything references it and leaves /metrics when the last reference goes, so
// the series of a rule that a reload removed go once no request uses the old rules (a rules
// snapshot holds one RequestSeries for its rules). Series keep their values while referenced:
// a rule kept across a reload keeps counting. Not thread-safe; the Metrics it refers to must
// outlive it.
class RequestSeries {
 public:
  explicit RequestSeries(Metrics& metrics) : metrics_(&metrics) {}
  ~RequestSeries();
  RequestSeries(RequestSeries&& other) noexcept
      : metrics_(other.metrics_),
        held_(std::move(other.held_)),
        held_durations_(std::move(other.held_durations_)) {
    other.held_.clear();
    other.held_durations_.clear();
  }
  RequestSeries(const RequestSeries&) = delete;
  RequestSeries& operator=(const RequestSeries&) = delete;
  RequestSeries& operator=(RequestSeries&&) = delete;

  // As Metrics::ForRule and Metrics::Request, referenced until this RequestSeries goes.
  // `duration_id`, when not empty, labels the store duration instead of `rule_id` (the rules
  // past Limiter::Options::max_rule_latency_series share "_other").
  RuleCounters ForRule(std::string_view rule_id, RuleKind kind, std::string_view duration_id = {});
  prometheus::Counter& Request(std::string_view rule_id, std::string_view result);

 private:
  Metrics* metrics_;
  std::vector<prometheus::Counter*> held_;              // one entry per reference taken
  std::vector<prometheus::Histogram*> held_durations_;  // likewise
};

class Metrics {
 public:
  // `version` is exported as sluice_build_info{version}.
  explicit Metrics(std::string_view version);
  Metrics() : Metrics("unknown") {}

  // Finds or creates the counters of `rule_id` for a rule of `kind`. Takes the registry's lock:
  // call it when rules load, not per request. The series stay for as long as this Metrics
  // lives (for rules that come and go, see RequestSeries).
  RuleCounters ForRule(std::string_view rule_id, RuleKind kind);
  // One sluice_requests_total{rule_id, result} series, for ids whose possible results are not
  // known in advance (Envoy descriptor metric keys): created on first use. Takes the registry's
  // lock: cache the pointer. Stays as ForRule's do.
  prometheus::Counter& Request(std::string_view rule_id, std::string_view result);
  // The number of sluice_requests_total series exported. For tests.
  size_t request_series() const;
  // The number of sluice_rule_store_duration_seconds series exported. For tests.
  size_t rule_store_series() const;

  prometheus::Histogram& check_duration() { return *check_duration_; }  // seconds
  prometheus::Histogram& StoreDuration(std::string_view backend, std::string_view op);
  prometheus::Counter& StoreErrors(std::string_view backend, std::string_view type);
  // sluice_store_cached_rejections_total: checks the over-limit cache answered without the store.
  prometheus::Counter& StoreCachedRejections(std::string_view backend);
  // sluice_store_calls_total: script calls sent to a shared store (a coalesced call counts
  // once): with sluice_requests_total, the store calls per decision.
  prometheus::Counter& StoreCalls(std::string_view backend);
  // sluice_leases_total{rule_id, event}: leased counting's slices taken, returned and expired
  // (CONTRACT §11). Takes the registry's lock: per lease, never per check.
  prometheus::Counter& Leases(std::string_view rule_id, std::string_view event);
  // sluice_penalty_bans_total{rule_id}: keys this server banned under a rule's `penalty`.
  prometheus::Counter& PenaltyBans(std::string_view rule_id);
  // sluice_lease_overshoot_bound{rule_id}: the over-admission bound in force per window, tokens.
  prometheus::Gauge& LeaseOvershootBound(std::string_view rule_id);
  prometheus::Gauge& rules_loaded() { return *rules_loaded_; }
  // sluice_rules_version: /health's rules.version, updated once a second.
  prometheus::Gauge& rules_version() { return *rules_version_; }
  prometheus::Counter& reloads(bool success) { return success ? *reload_ok_ : *reload_failed_; }
  prometheus::Counter& http_errors(std::string_view code);  // sluice_http_errors_total{code}
  // Gateway mode (CONTRACT §10): sluice_proxy_requests_total{result}, one series per result
  // (forwarded, rejected, ...: see proxy/proxy_server.h), created on first use — takes the
  // registry's lock: cache the reference. sluice_proxy_upstream_duration_seconds: from the
  // request's first byte sent upstream to the upstream's response header, in seconds.
  prometheus::Counter& proxy_requests(std::string_view result);
  prometheus::Histogram& proxy_upstream_duration() { return *proxy_upstream_duration_; }
  // The series of one memory store; call once per store.
  MemoryStoreMetrics MemoryStore(std::string_view role);
  // sluice_envoy_overrides_refused_total: descriptor limit overrides no exact limit can express.
  prometheus::Counter& overrides_refused() { return *overrides_refused_; }
  // sluice_envoy_global_shadow_mode_total: Envoy requests over the limit that the global shadow
  // mode (envoy: shadow_mode) answered OK.
  prometheus::Counter& envoy_global_shadow_mode() { return *envoy_global_shadow_mode_; }
  // sluice_rules_database_up: 1 while the rules database answers, 0 while it does not. The
  // series exists from the first call on: a server without a database never calls it, so that
  // it has none.
  prometheus::Gauge& rules_database_up();
  // sluice_stats_top_entries{by}: the keys the heavy-hitter summary holds, by = "rejected" or
  // "requests" (both exist from the start, at 0). Another `by` is created on first use.
  prometheus::Gauge& stats_top_entries(std::string_view by);

  // The Prometheus text exposition format (version 0.0.4), the process_* series included.
  std::string Render() const;

 private:
  friend class RequestSeries;
  // One more reference to a series of sluice_requests_total (created at 0 when new), and one
  // less: the series leaves the registry with its last reference.
  prometheus::Counter& AcquireRequest(std::string_view rule_id, std::string_view result);
  void ReleaseRequest(prometheus::Counter* counter);
  // The same for sluice_rule_store_duration_seconds.
  prometheus::Histogram& AcquireRuleStoreDuration(std::string_view rule_id);
  void ReleaseRuleStoreDuration(prometheus::Histogram* histogram);

  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>* requests_;
  // References to each series of requests_. A series may be removed only at its last reference:
  // two holders of the same labels share one Counter.
  mutable Mutex series_mu_;
  absl::flat_hash_map<prometheus::Counter*, size_t> series_refs_ ABSL_GUARDED_BY(series_mu_);
  prometheus::Family<prometheus::Histogram>* rule_store_duration_;
  // References to each series of rule_store_duration_, as series_refs_.
  absl::flat_hash_map<prometheus::Histogram*, size_t> duration_refs_ ABSL_GUARDED_BY(series_mu_);
  prometheus::Family<prometheus::Histogram>* store_duration_;
  prometheus::Family<prometheus::Counter>* store_errors_;
  prometheus::Family<prometheus::Counter>* store_cached_rejections_;
  prometheus::Family<prometheus::Counter>* store_calls_;
  prometheus::Family<prometheus::Counter>* leases_;
  prometheus::Family<prometheus::Counter>* penalty_bans_;
  prometheus::Family<prometheus::Gauge>* lease_bound_;
  prometheus::Family<prometheus::Counter>* http_errors_;
  prometheus::Family<prometheus::Counter>* proxy_requests_;
  prometheus::Histogram* proxy_upstream_duration_;
  prometheus::Histogram* check_duration_;
  prometheus::Gauge* rules_loaded_;
  prometheus::Gauge* rules_version_;
  prometheus::Counter* reload_ok_;
  prometheus::Counter* reload_failed_;
  prometheus::Counter* overrides_refused_;
  prometheus::Counter* envoy_global_shadow_mode_;
  prometheus::Family<prometheus::Gauge>* memory_keys_;
  prometheus::Family<prometheus::Counter>* memory_evictions_;
  prometheus::Family<prometheus::Counter>* memory_expirations_;
  prometheus::Family<prometheus::Gauge>* rules_database_up_;
  prometheus::Family<prometheus::Gauge>* stats_top_entries_;
  prometheus::Gauge* stats_top_rejected_;
  prometheus::Gauge* stats_top_requests_;
  ProcessCollector process_;
};

}  // namespace sluice::obs
