// Sluice's embeddable C++ API: the rate limiter inside your own process.
//
// A small, stable surface over the engine the `sluice` server runs: rules from rules files
// (CONTRACT §3: Sluice rules files and Envoy domain files) or from Rule structs, the embedded
// memory store or Redis shared with other servers (single, Cluster), Check in a blocking and a
// callback form, reloads, concurrency leases, and the Prometheus metrics. Only the standard
// library crosses it: link `Sluice::sluice` (CMake: find_package(Sluice)) and include this file.
//
//   sluice::embed::Status status;
//   auto limiter = sluice::embed::Limiter::Create({.rules_paths = {"rules/"}}, &status);
//   if (!limiter) { std::cerr << status.message() << "\n"; return 1; }
//   sluice::embed::Result r = limiter->Check({.user_id = "alice", .endpoint = "/api/orders"});
//   if (!r.allowed()) { /* answer r.http_status (429, 403, 503) with r.headers and r.body */ }
//
// Thread-safety: every method of Limiter may be called from any thread at once.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#if defined(__GNUC__)
#define SLUICE_API __attribute__((visibility("default")))
#else
#define SLUICE_API
#endif

namespace sluice::embed {

/// The outcome of an operation that can fail: ok, or an error with a message meant for people
/// (for rules, one problem per line as `FILE:LINE:COL: message`).
class SLUICE_API Status {
 public:
  /// An ok status.
  Status() = default;
  /// A failed status carrying `message` (which should not be empty).
  static Status Error(std::string message);

  /// Whether the operation succeeded.
  bool ok() const { return ok_; }
  /// What went wrong; empty when ok().
  const std::string& message() const { return message_; }

 private:
  bool ok_ = true;
  std::string message_{};
};

/// One request, as rules see it (CONTRACT §3.1's request attributes). An empty attribute counts
/// as absent: a rule that matches or counts by it does not apply.
struct Request {
  std::string user_id{};     ///< the caller's user
  std::string api_key{};     ///< the caller's API key
  std::string ip_address{};  ///< IPv4 or IPv6; matched against CIDRs
  std::string endpoint{};    ///< the path, e.g. "/api/orders"
  std::string method{};      ///< e.g. "POST"; matched case-insensitively
  std::string tier{};        ///< e.g. "free", "premium"
  /// Request headers rules can match and count by (`headers.NAME`); names case-insensitive.
  std::vector<std::pair<std::string, std::string>> headers{};
  /// Units the request takes from every applicable rule (>= 0).
  int64_t cost = 1;
};

/// What a check decided.
enum class Verdict {
  kAllowed,           ///< pass it on (also when no rule applied, or the request is allow-listed)
  kRejected,          ///< over a limit: answer 429 and come back after `retry_after`
  kDenied,            ///< on the deny list: answer 403
  kStoreUnavailable,  ///< the store failed and the failure policy is fail_closed: answer 503
  kInvalid,           ///< the request is malformed (an ip_address that is no address, a negative
                      ///< cost): answer 400; `body` says what is wrong
};

/// The answer to one check: the decision and what the HTTP check API would answer for it
/// (CONTRACT §5), so that a service can pass it on as it is.
struct Result {
  /// What was decided.
  Verdict verdict = Verdict::kAllowed;
  /// Whether an enforced rule applied: `rule_id`, `limit`, `remaining` and `reset_at` are set.
  bool limited = false;
  /// The reported rule: when allowed, the enforced rule with the least remaining; when
  /// rejected, the rejecting rule with the longest wait.
  std::string rule_id{};
  int64_t limit = 0;      ///< the reported rule's limit
  int64_t remaining = 0;  ///< what is left of it after this request
  /// When the reported rule's counter is back to full, in seconds since the Unix epoch.
  int64_t reset_at = 0;
  /// kRejected: how long to wait before a retry can pass (at least 1 s); else 0.
  std::chrono::seconds retry_after{0};
  /// The store failed and fail_open or local answered.
  bool degraded = false;
  /// kDenied: the deny list entry's reason.
  std::string deny_reason{};
  /// The concurrency slots this admitted request holds (`algorithm: concurrency` rules), to be
  /// given back with Limiter::Release when the request ends; empty when it holds none.
  std::string lease_id{};
  /// The status POST /v1/ratelimit/check would answer: 200, 429, 403, 503 or 400.
  int http_status = 200;
  /// The limit headers of that answer (X-RateLimit-Limit, X-RateLimit-Remaining,
  /// X-RateLimit-Reset, RateLimit-Policy, RateLimit and, on a 429, Retry-After), in order; none
  /// when no enforced rule applied, or when Options::http_answer is false.
  std::vector<std::pair<std::string, std::string>> headers{};
  /// That answer's JSON body (CONTRACT §5): `{"allowed": ...}`, or the error object; empty
  /// when Options::http_answer is false.
  std::string body{};

  /// Whether the request may pass.
  bool allowed() const { return verdict == Verdict::kAllowed; }
};

/// The algorithms of CONTRACT §4 (docs/algorithms.md).
enum class Algorithm {
  kTokenBucket,
  kLeakyBucket,
  kGcra,
  kFixedWindow,
  kSlidingWindowLog,
  kSlidingWindowCounter,
};

/// A rule, as a rules file's `rules:` entry says it (CONTRACT §3.1), for rules made in code.
struct Rule {
  /// Unique among all rules (files' and structs'); required.
  std::string id{};
  /// Attributes every matching request has: `user_id`, `api_key`, `ip_address` (an address or a
  /// CIDR), `endpoint`, `method`, `tier`, `headers.NAME`; values may hold `*` globs. Empty:
  /// every request.
  std::vector<std::pair<std::string, std::string>> match{};
  /// The attributes that make up the counter key: one counter per distinct tuple. Empty: one
  /// counter for every matching request.
  std::vector<std::string> key{};
  /// Requests (units of cost) per window; >= 0.
  int64_t limit = 0;
  /// The window (the refill period for the bucket algorithms); at least 1 ms.
  std::chrono::milliseconds window{0};
  /// How requests are counted (docs/algorithms.md).
  Algorithm algorithm = Algorithm::kSlidingWindowCounter;
  /// The bucket size for token_bucket, leaky_bucket and gcra; 0: the same as `limit`.
  int64_t burst = 0;
  /// Within a group only the matching rule with the lowest `priority` applies.
  std::string group{};
  /// Lower wins inside a group; ties go to the earlier rule.
  int priority = 100;
  /// Counted and reported, never rejects (`mode: shadow`).
  bool shadow = false;
};

/// Where counters live (CONTRACT §2 `store:`, §7).
struct StoreOptions {
  /// Which store.
  enum class Backend {
    kMemory,        ///< in this process: exact, nothing to run, not shared
    kRedis,         ///< one Redis server (`url`), shared with every limiter that uses it
    kRedisCluster,  ///< a Redis Cluster (`cluster_nodes`)
  };
  /// What checks get while the store fails.
  enum class OnFailure {
    kFailOpen,    ///< allowed, marked degraded
    kFailClosed,  ///< Verdict::kStoreUnavailable
    kLocal,       ///< decided in memory on this process, each limit scaled by `fallback_share`
  };
  Backend backend = Backend::kMemory;            ///< which store
  std::string url = "redis://127.0.0.1:6379/0";  ///< kRedis: redis://[:password@]host:port[/db]
  std::vector<std::string> cluster_nodes{};      ///< kRedisCluster: "host:port" seeds
  std::chrono::milliseconds timeout{50};         ///< per store round trip
  int pool = 4;                                  ///< connections per Redis node
  std::string key_prefix = "sluice:";            ///< before every key Sluice writes
  OnFailure on_failure = OnFailure::kFailOpen;   ///< what checks get while the store fails
  double fallback_share = 1.0;  ///< kLocal: the share of each limit this process may admit
};

/// How to build a Limiter.
struct Options {
  /// Rules files and folders (every *.yaml in a folder, in name order), as `rules.paths`.
  std::vector<std::string> rules_paths{};
  /// Rules made in code, after the files' rules.
  std::vector<Rule> rules{};
  /// Where counters live.
  StoreOptions store{};
  /// Rejections written to the log (event `rate_limit_exceeded`, through spdlog's default
  /// logger), at most this many a second, the rest counted in the next line's `suppressed`;
  /// 0: none.
  int log_rejections_per_second = 0;
  /// Whether each Result carries the HTTP answer's `headers` and `body`. Rendering them costs
  /// more than the decision itself (bench/run.sh embed, docs/api.md); without them a Result
  /// still has the verdict, the numbers the headers are made of, and `http_status`.
  bool http_answer = true;
};

/// The rate limiter. Create one per process and share it.
class SLUICE_API Limiter {
 public:
  /// Loads and validates the rules and builds the store. Returns null and sets `*status` (when
  /// not null) to every problem found. A Redis store connects in the background: Create never
  /// waits for it, and checks follow `on_failure` until it answers.
  static std::unique_ptr<Limiter> Create(Options options, Status* status = nullptr);
  ~Limiter();
  Limiter(const Limiter&) = delete;
  Limiter& operator=(const Limiter&) = delete;

  /// Decides `request`, waiting for the store's answer (at most about `timeout`).
  Result Check(const Request& request);
  /// Decides `request` and calls `done` exactly once with the answer: on the calling thread
  /// (the memory store) or on a store thread (Redis), possibly before Check returns. `done`
  /// must not block.
  void Check(const Request& request, std::function<void(Result)> done);

  /// Reads the rules files again. On any problem nothing changes (the rules in force stay) and
  /// the problems come back, one per line.
  Status Reload();
  /// Replaces the rules made in code (the files' rules stay). Validated as Reload is.
  Status SetRules(std::vector<Rule> rules);
  /// How many times the rules were replaced (Create counts as the first).
  uint64_t rules_version() const;

  /// Gives back the concurrency slots of a check (Result::lease_id). Releasing a lease already
  /// released or expired is ok; a malformed lease id is an error.
  Status Release(std::string_view lease_id);

  /// Sluice's Prometheus metrics (sluice_requests_total, check and store latencies, ...) in the
  /// text exposition format, for your /metrics.
  std::string Metrics() const;

 private:
  struct Impl;
  explicit Limiter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_{};
};

/// The library's version, e.g. "0.1.0".
SLUICE_API std::string_view Version();

}  // namespace sluice::embed
