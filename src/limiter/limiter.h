// The engine: request → applicable rules → one all-or-nothing store charge → one Decision.
// Both faces (HTTP, gRPC) call it; it owns the rules snapshot, the failure policy and the
// per-rule metrics.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "base/mutex.h"
#include "core/decision.h"
#include "core/time.h"
#include "limiter/descriptors.h"
#include "obs/log.h"
#include "obs/metrics.h"
#include "rules/rule_set.h"
#include "stats/recorder.h"
#include "store/store.h"
#include "store/store_config.h"

namespace sluice {

struct CheckRequest {
  rules::RequestAttributes attributes;
  int64_t cost = 1;  // >= 0
  // "charge": "always" (CONTRACT §4): every applicable rule is charged `cost`, into debt where
  // it does not admit it, and nothing is given back when the request is rejected.
  bool charge_always = false;
  // The caller's request id (X-Request-Id, or traceparent's trace id), for the rejection log;
  // empty: the log makes one up.
  std::string request_id;
};

// The answer to one check (CONTRACT §3.1, §5).
struct CheckResult {
  enum class Outcome : uint8_t {
    kAllowed,           // allowed; `limited` says whether any enforced rule applied
    kRejected,          // 429
    kAllowlisted,       // on the allow list: no rules evaluated
    kDenied,            // on the deny list: 403
    kStoreUnavailable,  // the store failed and the policy is fail_closed: 503
  };
  Outcome outcome = Outcome::kAllowed;
  // Whether an enforced rule applied, so `decision` and `rule_id` mean something (limit headers).
  bool limited = false;
  // The reported rule: when allowed, the enforced rule with the least remaining; when rejected,
  // the rejecting rule with the longest retry_after (a cost no rule could ever admit first).
  Decision decision;
  std::string rule_id;
  Micros window = 0;                              // of the reported rule
  Algorithm algorithm = Algorithm::kFixedWindow;  // of the reported rule
  std::string deny_reason;
  bool degraded = false;  // the store failed and fail_open/local answered
  Micros now = 0;         // the time the decision was made (for reset_at)
  // Gateway mode (CONTRACT §10): how long to hold an admitted request before forwarding it, the
  // longest delay of the applicable enforced `shape: true` leaky_bucket rules (0: none). The
  // rule's max_delay bounds it: a longer delay is a rejection.
  Micros hold = 0;
  // The concurrency slots this admitted request holds (`algorithm: concurrency` rules): the id
  // that gives them all back (Limiter::Release). Empty when no concurrency rule took a slot.
  std::string lease_id;
};

// What the store probe saw (GET /health, /healthcheck and gRPC health).
struct ProbeResult {
  bool store_up = false;    // the store answered a read
  bool can_decide = false;  // checks get answers: the store is up, or the policy is not fail_closed
  double latency_ms = 0;    // the round trip
};

class Limiter {
 public:
  struct Options {
    FailurePolicy on_failure = FailurePolicy::kFailOpen;
    // on_failure: local — where checks are decided while `store` fails (a MemoryStore), each
    // limit scaled by `fallback_share` (CONTRACT §7). Must outlive the Limiter.
    Store* fallback = nullptr;
    double fallback_share = 1.0;
    // sluice_requests_total is bounded whatever the rules files and requests hold:
    // - rules with series of their own: the first `max_rule_series` in file order; the others
    //   share rule_id="_other" (rules::kOtherRuleId);
    // - Envoy metric keys with series of their own: the first `max_descriptor_series` met per
    //   rules version; the others, and keys that cannot be a label as they are (too long, or
    //   with control characters: see rules::IsCleanMetricKey), count under "_other".
    // A series goes from /metrics when the rules that made it are replaced and no request uses
    // them any more.
    size_t max_rule_series = 1000;
    // sluice_rule_store_duration_seconds{rule_id}, a histogram of 18 series per rule: the first
    // `max_rule_latency_series` rules in file order have their own; the others share "_other".
    size_t max_rule_latency_series = 50;
    size_t max_descriptor_series = 1000;
    // The Envoy face's global settings; CheckDescriptors applies shadow_mode and quota_mode.
    EnvoyOptions envoy = {};
    // Where every check's outcome, latency and keys are recorded for the stats API (CONTRACT
    // §9); none when null. Must outlive the Limiter.
    stats::Recorder* stats = nullptr;
  };
  using Callback = absl::AnyInvocable<void(CheckResult) &&>;

  // `store`, `clock`, `metrics` and `rejections` must outlive the Limiter.
  Limiter(Store& store, const Clock& clock, obs::Metrics& metrics, obs::RejectionLog& rejections,
          Options options);
  ~Limiter();

  // Swaps in a new rules snapshot. Requests already running keep the one they started with.
  // Thread-safe.
  void SetRules(std::shared_ptr<const rules::RuleSet> rules);
  std::shared_ptr<const rules::RuleSet> rules() const;
  // Bumped by every SetRules: /health's rules.version.
  uint64_t rules_version() const { return rules_version_.load(std::memory_order_relaxed); }

  // The stored tiers (CONTRACT §8): a check that carries a `user_id` and no `tier` is matched
  // as if it carried its user's tier. Swapped in whole; checks read it without a lock.
  // Thread-safe.
  using TierMap = absl::flat_hash_map<std::string, std::string>;
  void SetTiers(std::shared_ptr<const TierMap> tiers);
  // Fills in `attributes.tier` from the stored tiers when it is empty and a user_id is given.
  void ApplyStoredTier(rules::RequestAttributes& attributes) const;

  // Decides `request`. `done` runs exactly once, possibly before Check returns. Thread-safe.
  void Check(CheckRequest request, Callback done);

  // One counter of one rule (CONTRACT §8 "Counters"): the rule with id `rule_id` and the key
  // attributes in `attributes`.
  struct CounterResult {
    absl::Status status;  // kNotFound: no such rule; kInvalidArgument: a key attribute missing
    const rules::Rule* rule = nullptr;  // valid while `rules` is held
    std::shared_ptr<const rules::RuleSet> rules;
    std::string key;    // the counter key
    Decision decision;  // the state, as a check with cost 0 reports it (ReadCounter)
    Micros now = 0;
  };
  using CounterCallback = absl::AnyInvocable<void(CounterResult) &&>;
  // Reads the counter without consuming (a cost-0 charge on the store), or with `reset`,
  // forgets its state (Store::Reset; the on_failure: local fallback's too). `done` runs exactly
  // once. Thread-safe.
  void Counter(std::string_view rule_id, const rules::RequestAttributes& attributes, bool reset,
               CounterCallback done);
  // Every rule that would apply to a check with `attributes` (the stored tier filled in as
  // Check does), each with its counter's state read without consuming (cost 0): CONTRACT §9
  // /v1/stats/users. Lists are not consulted. `done` runs exactly once. Thread-safe.
  struct PeekResult {
    absl::Status status;
    std::shared_ptr<const rules::RuleSet> rules;  // holds what `applied` points to
    std::string tier;                             // as matched (given or stored)
    rules::RuleList applied;
    std::vector<std::string> keys;
    std::vector<Decision> decisions;
    Micros now = 0;
  };
  using PeekCallback = absl::AnyInvocable<void(PeekResult) &&>;
  void Peek(rules::RequestAttributes attributes, PeekCallback done);

  // Another server reset counter `key` (the rules database's audit says so): drops what this
  // one caches about it (Store::ForgetCached). Thread-safe.
  void ForgetCachedCounter(std::string_view key) { store_.ForgetCached(key); }

  using DescriptorsCallback = absl::AnyInvocable<void(DescriptorsResult) &&>;
  // Decides an Envoy rate limit request (domain + descriptors) with envoyproxy/ratelimit's
  // semantics: matching, `replaces`, `unlimited`, shadow and quota mode, share_threshold, limit
  // overrides, both hits_addends, and its charging (an over-limit descriptor takes its hits
  // into debt; nothing else is consumed when the answer is OVER_LIMIT). The caller validates
  // that the domain and descriptors are not empty. `done` runs exactly once. Thread-safe.
  void CheckDescriptors(DescriptorsRequest request, DescriptorsCallback done);

  using ReleaseCallback = absl::AnyInvocable<void(absl::Status) &&>;
  // Gives back the concurrency slots of a check (its CheckResult::lease_id), on any server that
  // shares the store. Releasing a slot already released or expired is OK (nothing happens);
  // InvalidArgument for a lease id no check of this kind could have made. `done` runs exactly
  // once, possibly before Release returns. Thread-safe.
  void Release(std::string_view lease_id, ReleaseCallback done);

  using ProbeCallback = absl::AnyInvocable<void(ProbeResult) &&>;
  // Reads (cost 0) a reserved key: a real store round trip that charges nothing. `done` runs
  // exactly once, possibly before ProbeStore returns. Thread-safe.
  void ProbeStore(ProbeCallback done);

  // The penalty bans this server knows of (it set them, or a check found the key banned), not
  // yet expired, by key: what the lists API shows beside the deny list (CONTRACT §8). A ban set
  // by another server shows here once a check of this one meets it. Thread-safe.
  struct BanInfo {
    std::string key;  // the ban's store key ("ban|RULE|NAME=VALUE...")
    std::string rule_id;
    Micros until = 0;  // microseconds since the epoch
  };
  std::vector<BanInfo> Bans() const;

  // Whether the last store round trip failed (for /health). Relaxed: advisory.
  bool store_failing() const { return store_failing_.load(std::memory_order_relaxed); }
  FailurePolicy on_failure() const { return options_.on_failure; }
  // The store's backend name ("memory", "redis", ...), for /health.
  std::string_view store_backend() const { return store_.backend(); }
  const Clock& clock() const { return clock_; }

 private:
  // A snapshot and the metric handles of its rules, built once per SetRules. It references
  // the series it uses: when it goes (after the reload that replaced it, once no request holds
  // it), the series no later snapshot uses go from /metrics with it.
  struct Snapshot {
    explicit Snapshot(obs::Metrics& metrics) : series(metrics), descriptor_series(metrics) {}

    std::shared_ptr<const rules::RuleSet> rules;
    obs::RequestSeries series;                // the references behind `counters`
    std::vector<obs::RuleCounters> counters;  // per rule, by index in rules->rules()
    obs::RuleCounters deny_list;
    obs::RuleCounters allow_list;
    // on_failure: local — each rule's limit scaled by fallback_share, by index in rules->rules().
    std::vector<Limit> local_limits;
    // The same for descriptor limits, which the RuleSet does not list: made the first time the
    // store fails on one, then kept for the snapshot's life (stable addresses).
    mutable Mutex local_mu;
    mutable absl::flat_hash_map<const Limit*, std::unique_ptr<const Limit>> local_descriptor_limits
        ABSL_GUARDED_BY(local_mu);
    // Envoy metric keys' counters, made on first use (see DescriptorCounter).
    mutable Mutex descriptor_mu;
    mutable absl::flat_hash_map<std::string, std::array<prometheus::Counter*, 4>>
        descriptor_counters ABSL_GUARDED_BY(descriptor_mu);
    mutable size_t descriptor_keys ABSL_GUARDED_BY(descriptor_mu) = 0;  // with series of their own
    mutable obs::RequestSeries descriptor_series ABSL_GUARDED_BY(descriptor_mu);
  };

  // Who decided a job's items.
  enum class DecidedBy : uint8_t {
    kStore,     // the store: `decisions` hold its answers
    kFallback,  // on_failure: local — the fallback store, with scaled limits
    kNobody,    // the store failed (and the fallback too, or there is none): no decisions
  };

  // One request in flight through the charge pipeline (Charge → the store → on failure, the
  // policy → Finish). A face's request type derives from it, builds `items` (with `keys` and
  // whatever the items point into) and reads `decisions` in Finish. The job owns everything the
  // store's spans point into until it is finished.
  struct Job {
    virtual ~Job() = default;
    // on_failure: local — points every item at its limit scaled by fallback_share.
    virtual void UseLocalLimits(const Limiter& limiter) = 0;
    // Answers the caller from `decisions` (or the failure policy, for kNobody). Runs once.
    virtual void Finish(Limiter& limiter, DecidedBy decided_by) = 0;
    // Records one store round trip of `seconds` per rule of the job
    // (sluice_rule_store_duration_seconds). Envoy requests record none: see DescriptorsJob.
    virtual void ObserveStore(double /*seconds*/) const {}

    std::shared_ptr<const Snapshot> snapshot;
    // Inline room for the usual one or two rules a request meets: no allocation for them.
    absl::InlinedVector<std::string, 2> keys;
    absl::InlinedVector<ChargeItem, 2> items;
    absl::InlinedVector<Decision, 2> decisions;
    Micros now = 0;                                 // when the check began, on `clock`
    std::chrono::steady_clock::time_point started;  // likewise, for the check duration
    Micros latency = 0;                             // set as the job finishes
  };
  struct CheckJob;
  struct DescriptorsJob;

  // The pipeline both faces use: charges `job`'s items on the store, applies the failure policy
  // when it fails, records the store and check metrics, then finishes the job.
  void Charge(std::unique_ptr<Job> job);
  void ChargeFallback(std::unique_ptr<Job> job);
  void Finish(std::unique_ptr<Job> job, DecidedBy decided_by);
  // Records the check duration (sluice_check_duration_seconds) and returns it.
  Micros ObserveCheck(std::chrono::steady_clock::time_point started);
  // Records a check answered without the store (lists, no rule) for the stats API.
  void RecordUnlimited(stats::Result result, Micros now, Micros latency);

  // `limit` with its limit and burst scaled by fallback_share (at least 1 each).
  Limit LocalLimit(const Limit& limit) const;
  // The scaled limit of a descriptor limit of `snapshot`, made once and kept for its life.
  const Limit* LocalDescriptorLimit(const Snapshot& snapshot, const Limit& limit) const;
  // sluice_requests_total{rule_id=metric_key, result}, created on first use and cached in
  // `snapshot`: registering it with prometheus per request would take its registry lock each
  // time. Only results that occurred are exported (an Envoy metric key's possible results are
  // not known in advance: an override makes a shadow descriptor enforced). Past
  // max_descriptor_series keys, or for a key that cannot be a label, rule_id is "_other".
  enum class DescriptorResult : uint8_t { kAllowed, kRejected, kShadowRejected, kError };
  // Whether `metric_key` has series of its own in `snapshot` (DescriptorCounter made them).
  bool HasDescriptorSeries(const Snapshot& snapshot, const std::string& metric_key) const;
  prometheus::Counter& DescriptorCounter(const Snapshot& snapshot, const std::string& metric_key,
                                         DescriptorResult result) const;

  // Penalties: counts a rejection of `rule`'s key (its rejections counter, in the store), and
  // bans the key when that makes `after` within `within`. Runs after the check has answered.
  void CountRejection(std::shared_ptr<const Snapshot> snapshot, const rules::Rule& rule,
                      std::string rejections_key, std::string ban_key);
  struct PenaltyCount;
  // The second step: bans the key when its rejections counter says so.
  void BanIfDue(std::unique_ptr<PenaltyCount> count);
  // Remembers a ban for Bans().
  void NoteBan(const rules::Rule& rule, std::string_view ban_key, Micros until);

  Store& store_;
  const Clock& clock_;
  obs::Metrics& metrics_;
  obs::RejectionLog& rejections_;
  const Options options_;
  std::atomic<std::shared_ptr<const Snapshot>> snapshot_;
  std::atomic<uint64_t> rules_version_{0};
  std::atomic<std::shared_ptr<const TierMap>> tiers_;
  std::atomic<bool> has_tiers_{false};  // tiers_ is not empty: skips its load when there are none
  std::atomic<bool> store_failing_{false};
  prometheus::Histogram& store_latency_;
  prometheus::Counter& store_errors_;

  struct Ban {
    std::string rule_id;
    Micros until = 0;
  };
  mutable Mutex bans_mu_;
  absl::flat_hash_map<std::string, Ban> bans_ ABSL_GUARDED_BY(bans_mu_);
  size_t bans_swept_size_ ABSL_GUARDED_BY(bans_mu_) = 0;
};

}  // namespace sluice
