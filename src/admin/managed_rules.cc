#include "admin/managed_rules.h"

#include <utility>
#include <vector>

#include "absl/strings/str_join.h"
#include "db/open.h"
#include "obs/log.h"

namespace sluice::admin {

namespace {

using spdlog::level::level_enum;

std::string Text(const absl::Status& s) { return {s.message().data(), s.message().size()}; }

void LogProblems(const std::vector<std::string>& problems) {
  for (const std::string& p : problems) {
    obs::LogEvent(level_enum::err, "database_rule_invalid", {{"problem", p}});
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<ManagedRules>> ManagedRules::Create(Options options,
                                                                   Limiter& limiter) {
  std::unique_ptr<ManagedRules> managed(new ManagedRules(std::move(options), limiter));
  ManagedRules& m = *managed;
  if (m.options_.database_url.empty()) return managed;
  auto database = db::OpenDatabase(m.options_.database_url);
  if (!database.ok()) return database.status();
  m.database_ = std::move(*database);
  m.backend_ = std::string(db::DatabaseBackend(m.options_.database_url));
  absl::StatusOr<db::State> state = m.database_->Load();
  if (!state.ok()) return state.status();
  MutexLock lock(m.mu_);
  LogProblems(m.held_.Reset(*state));
  m.version_.store(m.held_.version(), std::memory_order_relaxed);
  m.SetUpGauge(true);
  return managed;
}

void ManagedRules::SetUpGauge(bool up) const {
  if (options_.database_up != nullptr) options_.database_up->Set(up ? 1 : 0);
}

ManagedRules::~ManagedRules() { Stop(); }

absl::Status ManagedRules::PublishLocked(bool rules, bool tiers) {
  if (rules && files_ != nullptr) {
    absl::StatusOr<std::shared_ptr<const rules::RuleSet>> composed =
        database_ == nullptr ? files_ : held_.Compose(*files_);
    if (!composed.ok()) return composed.status();
    limiter_.SetRules(std::move(*composed));
  }
  if (tiers && database_ != nullptr) limiter_.SetTiers(held_.Tiers());
  return absl::OkStatus();
}

absl::Status ManagedRules::SetFiles(std::shared_ptr<const rules::RuleSet> files) {
  MutexLock lock(mu_);
  std::shared_ptr<const rules::RuleSet> previous = std::exchange(files_, std::move(files));
  absl::Status s = PublishLocked(/*rules=*/true, /*tiers=*/previous == nullptr);
  if (!s.ok()) files_ = std::move(previous);
  return s;
}

absl::Status ManagedRules::CatchUp(std::string_view trigger) {
  if (database_ == nullptr) return absl::OkStatus();
  MutexLock lock(mu_);
  const uint64_t before = held_.version();
  absl::StatusOr<std::vector<db::AuditEntry>> changes = database_->ChangesSince(before);
  if (!changes.ok()) {
    MarkDown(changes.status());
    return changes.status();
  }
  if (!up_.exchange(true, std::memory_order_relaxed)) {
    obs::LogEvent(level_enum::info, "database_up", {{"backend", backend_}});
  }
  // Set at every success, not only on the transition: a MarkDown racing this catch-up may have
  // set 0 last, and the next catch-up (at most `poll` later) puts it right.
  SetUpGauge(true);
  if (changes->empty()) return absl::OkStatus();
  for (const db::AuditEntry& e : *changes) {
    // A counter reset elsewhere: the store's state is gone, a cached rejection must go too.
    if (e.kind == db::TargetKind::kCounter && e.version > before) {
      limiter_.ForgetCachedCounter(e.target);
    }
  }
  LogProblems(held_.Apply(*changes));
  if (absl::Status s = PublishLocked(held_.rules_changed(), held_.tiers_changed()); !s.ok()) {
    // A database rule whose id a file took meanwhile (the API refuses it; a file reload racing
    // a write can still make it): the composed set keeps the rules as they were.
    obs::LogEvent(level_enum::err, "database_rules_refused", {{"error", Text(s)}});
  }
  version_.store(held_.version(), std::memory_order_relaxed);
  obs::LogEvent(level_enum::info, "database_rules_applied",
                {{"trigger", trigger},
                 {"from_version", before},
                 {"version", held_.version()},
                 {"changes", changes->size()}});
  return absl::OkStatus();
}

void ManagedRules::MarkDown(const absl::Status& why) {
  if (up_.exchange(false, std::memory_order_relaxed)) {
    obs::LogEvent(level_enum::err, "database_down", {{"backend", backend_}, {"error", Text(why)}});
  }
  SetUpGauge(false);
}

void ManagedRules::Read(
    absl::FunctionRef<void(const DatabaseRules& database, const rules::RuleSet& files)> read)
    const {
  MutexLock lock(mu_);
  read(held_, files_ != nullptr ? *files_ : *rules::RuleSet::Empty());
}

absl::Status ManagedRules::Start() {
  if (database_ == nullptr) return absl::OkStatus();
  follower_ = std::thread([this] { Follow(); });
  auto feed = db::ChangeFeed::Start(
      {.url = options_.database_url, .poll = options_.poll, .changed = [this] {
         MutexLock lock(wake_mu_);
         wake_ = true;
         wake_cv_.NotifyAll();
       }});
  if (!feed.ok()) {
    Stop();
    return feed.status();
  }
  feed_ = std::move(*feed);
  return absl::OkStatus();
}

void ManagedRules::Follow() {
  while (true) {
    {
      MutexLock lock(wake_mu_);
      while (!wake_cv_.WaitFor(
          wake_mu_, std::chrono::seconds(60),
          [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(wake_mu_) { return wake_ || stopping_; })) {
      }
      if (stopping_) return;
      wake_ = false;
    }
    (void)CatchUp("database_change");
  }
}

void ManagedRules::Stop() {
  feed_.reset();  // no callback after this
  {
    MutexLock lock(wake_mu_);
    stopping_ = true;
  }
  wake_cv_.NotifyAll();
  if (follower_.joinable()) follower_.join();
}

}  // namespace sluice::admin
