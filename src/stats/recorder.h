// What the limiter decided, kept for CONTRACT §9's stats: per-second totals for the last hour
// (a ring of 3600 one-second buckets, each with a latency histogram and per-rule counts) and
// the heaviest keys per ranking (Space-Saving summaries, one per minute for the last hour).
//
// Recording is on the check path and costs it little: a check takes the lock of one of a few
// shards (chosen per thread, so uncontended), adds to that shard's counts for the current
// second and appends its keys to a buffer. The shard hands its second to the ring when the
// second changes, and its buffered keys to the summaries every kFlushKeys keys — one lock of
// the shared state per second or per batch, not per check. Tick() (once a second) and every
// query flush all shards first, so what a query sees is at most one check behind.
//
// Memory is fixed: the ring, plus per ranking (requests, rejected) one summary of
// `top_capacity` keys for the current minute and 60 of top_capacity/10 (at least 64) for the
// minutes before — at most 7 × top_capacity keys per ranking. A finished minute keeps only its
// heaviest keys: a key it dropped is charged that minute's floor when minutes are merged, so
// keys lighter than a minute's top tenth get a wider error over windows of several minutes.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "base/mutex.h"
#include "core/time.h"
#include "stats/space_saving.h"

namespace sluice::stats {

// The latency histogram: 4 buckets per power of two of microseconds (each about 19 % wide),
// from 1 µs to 16 s.
inline constexpr size_t kLatencyBuckets = 96;
size_t LatencyBucket(uint64_t micros);
uint64_t LatencyBucketLow(size_t bucket);  // the bucket's first microsecond

struct RuleCounts {
  uint64_t allowed = 0;
  uint64_t rejected = 0;
};

// One period's totals (CONTRACT §9 /v1/stats/global). `requests` counts every check; each is
// exactly one of allowed (a shadow rejection and a check that fail_open let through included),
// rejected, blocked (deny list) or unavailable (the store failed under fail_closed: 503).
// `errors` counts the checks the store failed on, whatever they were answered.
struct Counts {
  uint64_t requests = 0;
  uint64_t allowed = 0;
  uint64_t rejected = 0;
  uint64_t blocked = 0;
  uint64_t shadow_rejected = 0;
  uint64_t errors = 0;
  std::array<uint64_t, kLatencyBuckets> latency{};
  absl::flat_hash_map<std::string, RuleCounts> by_rule;

  void Add(const Counts& other);
  // The q-quantile (0 < q < 1) of the check latency, in milliseconds; 0 without checks.
  double LatencyQuantileMs(double q) const;
  void Clear();
};

// Per rule and per second, a shard keeps at most this many rule ids apart; the others count
// under kOtherRule (a flood of rule ids cannot grow the ring).
inline constexpr size_t kMaxRulesPerSecond = 64;
inline constexpr std::string_view kOtherRule = "_other";
// The longest counter key the summaries keep: a longer one is cut and ends with "~cut:" and 16
// hex digits of a hash of the whole key.
inline constexpr size_t kMaxKeyBytes = 256;

enum class Result : uint8_t { kAllowed, kRejected, kBlocked, kUnavailable };
enum class Ranking : uint8_t { kRequests, kRejected };

// One applicable rule of a check. by_rule counts it as rejected when it is enforced and
// rejected, as allowed when the check was allowed (a shadow rejection is allowed), and not at all
// when another rule rejected the check (as sluice_requests_total does). The rankings count its
// key once per check under `requests`, and under `rejected` when its own decision rejected.
struct RuleHit {
  std::string_view rule_id;
  std::string* key;  // the counter key; Record moves it out
  bool rejected;     // this rule's own decision rejected (enforced or shadow)
  bool enforced;     // the rule is enforced: its rejection rejects the check
};

class Recorder {
 public:
  struct Options {
    size_t top_capacity = 10000;
  };
  Recorder(const Clock& clock, Options options);
  ~Recorder();
  Recorder(const Recorder&) = delete;
  Recorder& operator=(const Recorder&) = delete;

  // The check path. `now` is when the check began (its second is the bucket), `latency` how long
  // it took. Thread-safe.
  void Record(Micros now, Result result, bool shadow_rejected, bool store_error, Micros latency,
              std::span<const RuleHit> rules);

  // Hands every shard's counts and keys to the shared state and starts a new minute's summaries
  // when the minute changed. Call about once a second. Thread-safe.
  void Tick();

  // The totals of the last `window_seconds` (the current second included). Thread-safe.
  Counts Window(int64_t window_seconds);
  // The seconds [from, to] (Unix seconds), each with its totals; a second with no checks, or
  // older than the ring, has zero counts. Thread-safe.
  struct Second {
    int64_t at = 0;
    Counts counts;
  };
  std::vector<Second> Seconds(int64_t from, int64_t to);

  // The summary of `ranking` over the current minute and the `minutes` before it. Thread-safe.
  SpaceSaving Top(Ranking ranking, int64_t minutes);
  // Per minute (Unix minute), the current one included, each cut to past_capacity() keys as
  // finished minutes are: for publishing to other servers.
  struct MinuteTop {
    int64_t minute = 0;
    SpaceSaving requests{1};
    SpaceSaving rejected{1};
  };
  std::vector<MinuteTop> Minutes(int64_t from_minute);
  // The keys held by the summaries (sluice_stats_top_entries), per ranking. Thread-safe.
  size_t top_entries(Ranking ranking);

  const Clock& clock() const { return clock_; }
  size_t top_capacity() const { return options_.top_capacity; }
  // The capacity each finished minute is compacted to.
  size_t past_capacity() const;

  static constexpr int64_t kRingSeconds = 3600;
  static constexpr int64_t kKeptMinutes = 60;  // finished minutes kept besides the current
  static constexpr size_t kFlushKeys = 256;

 private:
  struct Hit {
    std::string key;
    bool rejected;
  };
  struct Shard {
    Mutex mu;
    int64_t second ABSL_GUARDED_BY(mu) = -1;
    Counts pending ABSL_GUARDED_BY(mu);
    std::vector<Hit> hits ABSL_GUARDED_BY(mu);
    int64_t hits_minute ABSL_GUARDED_BY(mu) = 0;  // the Unix minute `hits` were counted in
  };
  struct Slot {
    int64_t at = -1;
    Counts counts;
  };

  // Hands the shard's second to the ring. Holds the shard's lock; takes ring_mu_.
  void FlushSecond(Shard& shard) ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  // Adds `hits`, counted in Unix minute `minute`, to the summaries. Takes top_mu_.
  void ApplyHits(std::vector<Hit>& hits, int64_t minute);
  void FlushAll();
  void RotateLocked(int64_t minute) ABSL_EXCLUSIVE_LOCKS_REQUIRED(top_mu_);
  Shard& ShardForThisThread();

  const Clock& clock_;
  const Options options_;
  static constexpr size_t kShards = 8;
  std::array<Shard, kShards> shards_;
  std::atomic<uint32_t> next_shard_{0};

  Mutex ring_mu_;
  std::vector<Slot> ring_ ABSL_GUARDED_BY(ring_mu_);  // kRingSeconds slots, by second

  Mutex top_mu_;
  int64_t minute_ ABSL_GUARDED_BY(top_mu_) = -1;
  SpaceSaving requests_ ABSL_GUARDED_BY(top_mu_);
  SpaceSaving rejected_ ABSL_GUARDED_BY(top_mu_);
  // Finished minutes, oldest first, compacted; immutable once made.
  std::deque<std::shared_ptr<const MinuteTop>> past_ ABSL_GUARDED_BY(top_mu_);
};

// A counter key's attributes (rules::RuleSet::CounterKey, rules::DescriptorKey): the rule id
// and {name: value} of each key attribute (descriptor entries for Envoy keys).
struct DecodedKey {
  std::string rule_id;
  std::vector<std::pair<std::string, std::string>> attributes;
};
DecodedKey DecodeCounterKey(std::string_view key);
// The prefix every counter key of Sluice rule `rule_id` starts with.
std::string RuleKeyPrefix(std::string_view rule_id);

}  // namespace sluice::stats
