// The rules a server runs (CONTRACT §3, §8): the files' rule set and the rules database's,
// composed into one and handed to the limiter, with the database's tiers.
//
// Files reload on their own trigger (SetFiles). The database is followed three ways, all ending
// in CatchUp: its change feed (PostgreSQL NOTIFY, the SQLite file changing), the `rules.poll`
// tick, and every change this server makes through the admin API (so a write is in force here
// before its answer leaves). A catch-up reads only the versions after the one held
// (RulesDatabase::ChangesSince) and never goes back. While the database cannot be reached the
// rules in force stay, `up()` is false, and the next feed event or poll tries again.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "admin/database_rules.h"
#include "base/mutex.h"
#include "db/change_feed.h"
#include "db/rules_database.h"
#include "limiter/limiter.h"
#include "prometheus/gauge.h"

namespace sluice::admin {

class ManagedRules {
 public:
  struct Options {
    std::string database_url;  // "" : files only
    std::chrono::milliseconds poll{5000};
    // Set to 1 while the database answers and 0 while it does not (sluice_rules_database_up),
    // when there is a database. Optional; must outlive the ManagedRules.
    prometheus::Gauge* database_up = nullptr;
  };
  // Opens the database (schema created or migrated) and reads everything in it. Fails when the
  // database cannot be opened: a server does not start without the rules it is configured for.
  // `limiter` must outlive the ManagedRules. No rules reach the limiter before the first
  // SetFiles.
  static absl::StatusOr<std::unique_ptr<ManagedRules>> Create(Options options, Limiter& limiter);
  ~ManagedRules();  // Stop()

  // The files' rule set, composed with the database's and put in force. kAlreadyExists when a
  // rule id is in both (nothing changes). Thread-safe.
  absl::Status SetFiles(std::shared_ptr<const rules::RuleSet> files);

  // Starts following the database (nothing to do without one).
  absl::Status Start();
  // Stops following it; no catch-up runs after it returns. Idempotent.
  void Stop();

  // Brings this server up to the database's version. kUnavailable when the database cannot be
  // reached (up() turns false until a catch-up succeeds). `trigger` is logged. Thread-safe;
  // catch-ups run one at a time.
  absl::Status CatchUp(std::string_view trigger);

  bool has_database() const { return database_ != nullptr; }
  // The database, or nullptr without one.
  db::RulesDatabase* database() { return database_.get(); }
  std::string_view backend() const { return backend_; }  // "sqlite", "postgresql", ""
  // Whether the last database round trip worked.
  bool up() const { return up_.load(std::memory_order_relaxed); }
  // The database version in force.
  uint64_t version() const { return version_.load(std::memory_order_relaxed); }
  // Marks the database down after a failed round trip made elsewhere (an admin write).
  void MarkDown(const absl::Status& why);

  // Runs `read` on the database's objects and the files' rule set as in force, under the lock
  // that orders catch-ups (keep it short).
  void Read(absl::FunctionRef<void(const DatabaseRules& database, const rules::RuleSet& files)>
                read) const;

 private:
  ManagedRules(Options options, Limiter& limiter)
      : options_(std::move(options)), limiter_(limiter) {}
  // Sets options_.database_up, if any.
  void SetUpGauge(bool up) const;
  // Composes and hands the result to the limiter. kAlreadyExists on an id clash.
  absl::Status PublishLocked(bool rules, bool tiers) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Follow();  // the catch-up thread

  const Options options_;
  Limiter& limiter_;
  std::unique_ptr<db::RulesDatabase> database_;
  std::string backend_;
  std::atomic<bool> up_{true};
  std::atomic<uint64_t> version_{0};

  mutable Mutex mu_;
  DatabaseRules held_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const rules::RuleSet> files_ ABSL_GUARDED_BY(mu_);

  // The feed wakes the catch-up thread (its callback must not block).
  std::unique_ptr<db::ChangeFeed> feed_;
  Mutex wake_mu_;
  CondVar wake_cv_;
  bool wake_ ABSL_GUARDED_BY(wake_mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(wake_mu_) = false;
  std::thread follower_;
};

}  // namespace sluice::admin
