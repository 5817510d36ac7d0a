// RulesDatabase on SQL (SQLite or PostgreSQL, through SqlConnection): the schema migrated on
// open; each change one transaction holding the data, its version and its audit entries.
// Writers are serialized by the database (SQLite: BEGIN IMMEDIATE; PostgreSQL: an exclusive
// lock on sluice_versions), so two servers writing at once get consecutive versions and a
// stale If-Match always loses.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "base/mutex.h"
#include "db/rules_database.h"
#include "db/sql.h"

namespace sluice::db {

class SqlDatabase final : public RulesDatabase {
 public:
  // Migrates the schema. kFailedPrecondition when the database holds a schema newer than this
  // build knows.
  static absl::StatusOr<std::unique_ptr<SqlDatabase>> Open(std::unique_ptr<SqlConnection> sql);

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
  explicit SqlDatabase(std::unique_ptr<SqlConnection> sql) : sql_(std::move(sql)) {}

  absl::Status Migrate();
  absl::StatusOr<uint64_t> VersionLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Rolls back the open transaction and returns `cause`.
  absl::Status RollBack(absl::Status cause) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Starts version `version` (its sluice_versions row) and applies `writes` as it, inside an
  // open write transaction; `action` overrides each audit entry's action when not empty.
  absl::StatusOr<Commit> CommitLocked(std::span<const Write> writes, std::string_view actor,
                                      std::string_view summary, std::string_view action)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<std::vector<AuditEntry>> AuditQuery(std::string_view where,
                                                     std::span<const SqlParam> params)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Mutex mu_;  // one connection, one statement at a time
  const std::unique_ptr<SqlConnection> sql_ ABSL_PT_GUARDED_BY(mu_);
  int schema_version_ = 0;
};

}  // namespace sluice::db
