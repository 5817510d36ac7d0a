// RulesDatabase on an SQLite file (CONTRACT §8's embedded default): the file and its schema are
// created on first open, migrations applied on open. WAL journal, so that several `sluice`
// servers on one file read while one writes; writes take the write lock up front (BEGIN
// IMMEDIATE) and wait up to `busy_timeout` for another writer.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "base/mutex.h"
#include "db/rules_database.h"

struct sqlite3;

namespace sluice::db {

struct SqliteOptions {
  std::string path;  // the database file
  std::chrono::milliseconds busy_timeout{5000};
};

class SqliteDatabase final : public RulesDatabase {
 public:
  // Opens (creating if needed) and migrates. kUnavailable when the file cannot be opened;
  // kFailedPrecondition when it holds a schema newer than this build knows.
  static absl::StatusOr<std::unique_ptr<SqliteDatabase>> Open(const SqliteOptions& options);
  ~SqliteDatabase() override;

  absl::StatusOr<State> Load() override;
  absl::StatusOr<uint64_t> Version() override;
  absl::StatusOr<std::vector<AuditEntry>> ChangesSince(uint64_t version) override;
  absl::StatusOr<Commit> Apply(std::span<const Write> writes, std::string_view actor,
                               std::string_view summary) override;
  absl::StatusOr<Commit> Restore(uint64_t version, std::string_view actor) override;
  absl::StatusOr<std::vector<AuditEntry>> Audit(uint64_t since, size_t limit) override;
  absl::StatusOr<std::vector<VersionInfo>> Versions(size_t limit) override;

  // The schema version (the newest migration applied).
  int schema_version() const { return schema_version_; }

 private:
  class Txn;
  explicit SqliteDatabase(sqlite3* db) : db_(db) {}

  absl::Status Migrate();
  // Applies `writes` inside an open write transaction as version `version`.
  absl::StatusOr<std::vector<AuditEntry>> ApplyLocked(std::span<const Write> writes,
                                                      std::string_view actor,
                                                      std::string_view action_override,
                                                      uint64_t version, const std::string& at)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<uint64_t> VersionLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Mutex mu_;  // one connection, one statement at a time
  sqlite3* const db_;
  int schema_version_ = 0;
};

}  // namespace sluice::db
