// The embeddable API (include/sluice/sluice.h) over the engine: the same Limiter, stores, rules
// loader and answer rendering the server runs, wired as src/app/server.cc wires them, minus the
// listeners.
#include "sluice/sluice.h"

#include <algorithm>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "api/http/check_codec.h"
#include "base/mutex.h"
#include "core/limit.h"
#include "core/time.h"
#include "limiter/limiter.h"
#include "nlohmann/json.hpp"
#include "obs/log.h"
#include "obs/metrics.h"
#include "rules/loader.h"
#include "rules/rule_json.h"
#include "rules/rule_set.h"
#include "store/memory/memory_store.h"
#include "store/store_factory.h"

namespace sluice::embed {
namespace {

using Engine = ::sluice::Limiter;

Status FromAbsl(const absl::Status& status) {
  return status.ok() ? Status() : Status::Error(std::string(status.message()));
}

std::string_view AlgorithmText(Algorithm algorithm) {
  switch (algorithm) {
    case Algorithm::kTokenBucket:
      return "token_bucket";
    case Algorithm::kLeakyBucket:
      return "leaky_bucket";
    case Algorithm::kGcra:
      return "gcra";
    case Algorithm::kFixedWindow:
      return "fixed_window";
    case Algorithm::kSlidingWindowLog:
      return "sliding_window_log";
    case Algorithm::kSlidingWindowCounter:
      return "sliding_window_counter";
  }
  return "unknown";
}

// A Rule struct as the JSON rule of CONTRACT §8, which the admin API's reader validates exactly
// as a rules file's entry: one set of rules for what a rule may say, wherever it is written.
std::string RuleJson(const Rule& rule) {
  nlohmann::json match = nlohmann::json::object();
  for (const auto& [name, value] : rule.match) match[name] = value;
  nlohmann::json json = {
      {"id", rule.id},
      {"match", std::move(match)},
      {"key", rule.key},
      {"limit", rule.limit},
      {"window", std::to_string(rule.window.count()) + "ms"},
      {"algorithm", AlgorithmText(rule.algorithm)},
      {"priority", rule.priority},
      {"mode", rule.shadow ? "shadow" : "enforce"},
  };
  if (rule.burst != 0) json["burst"] = rule.burst;
  if (!rule.group.empty()) json["group"] = rule.group;
  return json.dump();
}

// The rules made in code, validated; or every problem, one per line, each naming its rule.
absl::Status ParseRules(const std::vector<Rule>& structs, std::vector<rules::Rule>* out) {
  std::string problems;
  absl::flat_hash_set<std::string> ids;
  for (size_t i = 0; i < structs.size(); ++i) {
    const std::string where = "rules[" + std::to_string(i) + "] (" + structs[i].id + ")";
    rules::JsonRule parsed = rules::ParseRuleJson(RuleJson(structs[i]), "code");
    for (const rules::FieldProblem& p : parsed.problems) {
      problems += where + (p.field.empty() ? "" : "." + p.field) + ": " + p.message + "\n";
    }
    if (!parsed.rule.has_value()) continue;
    if (!ids.insert(parsed.rule->id).second) {
      problems += where + ".id: duplicate rule id\n";
      continue;
    }
    out->push_back(std::move(*parsed.rule));
  }
  if (!problems.empty()) {
    problems.pop_back();
    return absl::InvalidArgumentError(problems);
  }
  return absl::OkStatus();
}

StoreConfig ToStoreConfig(const StoreOptions& o) {
  StoreConfig config;
  switch (o.backend) {
    case StoreOptions::Backend::kMemory:
      config.backend = StoreBackend::kMemory;
      break;
    case StoreOptions::Backend::kRedis:
      config.backend = StoreBackend::kRedis;
      break;
    case StoreOptions::Backend::kRedisCluster:
      config.backend = StoreBackend::kRedisCluster;
      break;
  }
  config.url = o.url;
  config.nodes = o.cluster_nodes;
  config.timeout = o.timeout.count() * kMicrosPerMilli;
  config.pool = o.pool;
  config.key_prefix = o.key_prefix;
  switch (o.on_failure) {
    case StoreOptions::OnFailure::kFailOpen:
      config.on_failure = FailurePolicy::kFailOpen;
      break;
    case StoreOptions::OnFailure::kFailClosed:
      config.on_failure = FailurePolicy::kFailClosed;
      break;
    case StoreOptions::OnFailure::kLocal:
      config.on_failure = FailurePolicy::kLocal;
      break;
  }
  config.fallback_share = o.fallback_share;
  return config;
}

// What StoreOptions may say, checked before a store is made from them.
absl::Status CheckStoreOptions(const StoreOptions& o) {
  if (o.timeout.count() < 1) return absl::InvalidArgumentError("store.timeout: at least 1 ms");
  if (o.pool < 1 || o.pool > 64) return absl::InvalidArgumentError("store.pool: 1 to 64");
  if (!(o.fallback_share > 0 && o.fallback_share <= 1)) {
    return absl::InvalidArgumentError("store.fallback_share: more than 0, at most 1");
  }
  if (o.backend == StoreOptions::Backend::kRedisCluster && o.cluster_nodes.empty()) {
    return absl::InvalidArgumentError("store.cluster_nodes: at least one host:port");
  }
  if (std::optional<std::string> problem = CheckKeyPrefix(o.key_prefix)) {
    return absl::InvalidArgumentError("store: " + *problem);
  }
  return absl::OkStatus();
}

Result ToResult(const CheckResult& r, bool http_answer) {
  Result out;
  switch (r.outcome) {
    case CheckResult::Outcome::kAllowed:
    case CheckResult::Outcome::kAllowlisted:
      out.verdict = Verdict::kAllowed;
      break;
    case CheckResult::Outcome::kRejected:
      out.verdict = Verdict::kRejected;
      break;
    case CheckResult::Outcome::kDenied:
      out.verdict = Verdict::kDenied;
      break;
    case CheckResult::Outcome::kStoreUnavailable:
      out.verdict = Verdict::kStoreUnavailable;
      break;
  }
  out.limited = r.limited;
  if (r.limited) {
    out.rule_id = r.rule_id;
    out.limit = r.decision.limit;
    out.remaining = r.decision.remaining;
    out.reset_at = http::CeilSeconds(r.now + r.decision.reset_after);
  }
  if (out.verdict == Verdict::kRejected) {
    out.retry_after =
        std::chrono::seconds(std::max<int64_t>(1, http::CeilSeconds(r.decision.retry_after)));
  }
  out.degraded = r.degraded;
  out.deny_reason = r.deny_reason;
  out.lease_id = r.lease_id;
  if (!http_answer) {
    switch (out.verdict) {
      case Verdict::kAllowed:
        out.http_status = 200;
        break;
      case Verdict::kRejected:
        out.http_status = 429;
        break;
      case Verdict::kDenied:
        out.http_status = 403;
        break;
      case Verdict::kStoreUnavailable:
        out.http_status = 503;
        break;
      case Verdict::kInvalid:
        out.http_status = 400;
        break;
    }
    return out;
  }
  http::Rendered rendered = http::RenderCheckResult(r);
  out.http_status = static_cast<int>(rendered.status);
  out.headers = std::move(rendered.headers);
  out.body = std::move(rendered.body);
  return out;
}

// The blocking forms' wait for a callback that runs exactly once, on this thread (before Wait)
// or on a store thread.
template <typename T>
class Answer {
 public:
  void Set(T value) {
    MutexLock lock(mu_);
    value_ = std::move(value);
    cv_.NotifyOne();
  }
  T Wait() {
    MutexLock lock(mu_);
    while (!cv_.WaitFor(mu_, std::chrono::seconds(1), [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return value_.has_value();
    })) {
    }
    return std::move(*value_);
  }

 private:
  Mutex mu_;
  CondVar cv_;
  std::optional<T> value_ ABSL_GUARDED_BY(mu_);
};

Result Invalid(std::string message) {
  Result out;
  out.verdict = Verdict::kInvalid;
  out.http_status = 400;
  out.body = http::ErrorBody("INVALID_REQUEST", message);
  return out;
}

}  // namespace

Status Status::Error(std::string message) {
  Status status;
  status.ok_ = false;
  status.message_ = std::move(message);
  return status;
}

std::string_view Version() { return SLUICE_VERSION; }

struct Limiter::Impl {
  Options options;
  SystemClock clock;
  obs::Metrics metrics{SLUICE_VERSION};
  std::unique_ptr<obs::RejectionLog> rejections;
  std::unique_ptr<Store> store;
  std::unique_ptr<MemoryStore> fallback;  // on_failure: local over Redis
  std::unique_ptr<Engine> engine;

  Mutex rules_mu;  // one rules change at a time; checks never take it
  std::shared_ptr<const rules::RuleSet> file_rules ABSL_GUARDED_BY(rules_mu);
  std::vector<rules::Rule> code_rules ABSL_GUARDED_BY(rules_mu);

  // Memory stores drop expired keys once a second, as the server's do.
  Mutex sweep_mu;
  CondVar sweep_cv;
  bool stopping ABSL_GUARDED_BY(sweep_mu) = false;
  std::thread sweeper;

  ~Impl() {
    {
      MutexLock lock(sweep_mu);
      stopping = true;
    }
    sweep_cv.NotifyAll();
    if (sweeper.joinable()) sweeper.join();
  }

  void Sweep() {
    MutexLock lock(sweep_mu);
    while (!sweep_cv.WaitFor(sweep_mu, std::chrono::seconds(1),
                             [this]()
                                 ABSL_EXCLUSIVE_LOCKS_REQUIRED(sweep_mu) { return stopping; })) {
      if (auto* memory = dynamic_cast<MemoryStore*>(store.get())) memory->Sweep();
      if (fallback != nullptr) fallback->Sweep();
    }
  }

  // The files' rules followed by the code's, ids unique across both, swapped in whole.
  absl::Status Apply(std::shared_ptr<const rules::RuleSet> files, std::vector<rules::Rule> code)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(rules_mu) {
    for (const rules::Rule& rule : code) {
      if (files->FindRule(rule.id) != nullptr) {
        return absl::InvalidArgumentError("rule id '" + rule.id +
                                          "' is both in the rules files and in the code's rules");
      }
    }
    engine->SetRules(code.empty() ? files : rules::RuleSet::Extend(*files, code, {}, {}));
    file_rules = std::move(files);
    code_rules = std::move(code);
    return absl::OkStatus();
  }
};

Limiter::Limiter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Limiter::~Limiter() = default;

std::unique_ptr<Limiter> Limiter::Create(Options options, Status* status) {
  auto fail = [status](const absl::Status& s) -> std::unique_ptr<Limiter> {
    if (status != nullptr) *status = FromAbsl(s);
    return nullptr;
  };
  if (absl::Status s = CheckStoreOptions(options.store); !s.ok()) return fail(s);
  auto impl = std::make_unique<Impl>();
  Impl& m = *impl;
  m.options = std::move(options);

  auto files = rules::LoadRuleSet(m.options.rules_paths);
  if (!files.ok()) return fail(files.status());
  std::vector<rules::Rule> code;
  if (absl::Status s = ParseRules(m.options.rules, &code); !s.ok()) return fail(s);

  const StoreConfig config = ToStoreConfig(m.options.store);
  auto store = MakeStore(config, m.clock, m.metrics);
  if (!store.ok()) return fail(store.status());
  m.store = std::move(*store);
  if (config.backend != StoreBackend::kMemory && config.on_failure == FailurePolicy::kLocal) {
    m.fallback = std::make_unique<MemoryStore>(m.clock);
  }
  m.rejections = std::make_unique<obs::RejectionLog>(
      m.clock, std::max<int64_t>(0, m.options.log_rejections_per_second));
  m.engine = std::make_unique<Engine>(*m.store, m.clock, m.metrics, *m.rejections,
                                      Engine::Options{
                                          .on_failure = config.on_failure,
                                          .fallback = m.fallback.get(),
                                          .fallback_share = config.fallback_share,
                                      });
  {
    MutexLock lock(m.rules_mu);
    if (absl::Status s = m.Apply(std::move(*files), std::move(code)); !s.ok()) return fail(s);
  }
  m.sweeper = std::thread([&m] { m.Sweep(); });
  if (status != nullptr) *status = Status();
  return std::unique_ptr<Limiter>(new Limiter(std::move(impl)));
}

void Limiter::Check(const Request& request, std::function<void(Result)> done) {
  if (request.cost < 0) return done(Invalid("field 'cost' must be a non-negative integer"));
  CheckRequest check;
  rules::RequestAttributes& a = check.attributes;
  a.user_id = request.user_id;
  a.api_key = request.api_key;
  a.endpoint = request.endpoint;
  a.method = request.method;
  a.tier = request.tier;
  if (!a.SetIpAddress(request.ip_address)) {
    return done(
        Invalid("field 'ip_address' is not an IPv4 or IPv6 address: '" + request.ip_address + "'"));
  }
  if (!request.headers.empty()) a.SetHeaders(request.headers);
  check.cost = request.cost;
  impl_->engine->Check(std::move(check),
                       [done = std::move(done), http_answer = impl_->options.http_answer](
                           CheckResult result) mutable { done(ToResult(result, http_answer)); });
}

Result Limiter::Check(const Request& request) {
  Answer<Result> answer;
  Check(request, [&answer](Result result) { answer.Set(std::move(result)); });
  return answer.Wait();
}

Status Limiter::Reload() {
  auto files = rules::LoadRuleSet(impl_->options.rules_paths);
  if (!files.ok()) return FromAbsl(files.status());
  MutexLock lock(impl_->rules_mu);
  return FromAbsl(impl_->Apply(std::move(*files), impl_->code_rules));
}

Status Limiter::SetRules(std::vector<Rule> rules) {
  std::vector<rules::Rule> code;
  if (absl::Status s = ParseRules(rules, &code); !s.ok()) return FromAbsl(s);
  MutexLock lock(impl_->rules_mu);
  return FromAbsl(impl_->Apply(impl_->file_rules, std::move(code)));
}

uint64_t Limiter::rules_version() const { return impl_->engine->rules_version(); }

Status Limiter::Release(std::string_view lease_id) {
  Answer<absl::Status> answer;
  impl_->engine->Release(lease_id,
                         [&answer](absl::Status status) { answer.Set(std::move(status)); });
  return FromAbsl(answer.Wait());
}

std::string Limiter::Metrics() const { return impl_->metrics.Render(); }

}  // namespace sluice::embed
