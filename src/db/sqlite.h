// The SQLite connection (CONTRACT §8's embedded default): the file is created on first open.
// WAL journal, so that several `sluice` servers on one file read while one writes; a writer
// waits up to `busy_timeout` for another.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "db/sql.h"
#include "db/sql_database.h"

namespace sluice::db {

struct SqliteOptions {
  std::string path;  // the database file
  std::chrono::milliseconds busy_timeout{5000};
};

// kUnavailable when the file cannot be opened or is not a database.
absl::StatusOr<std::unique_ptr<SqlConnection>> ConnectSqlite(const SqliteOptions& options);

// ConnectSqlite, then SqlDatabase::Open (schema created or migrated).
absl::StatusOr<std::unique_ptr<SqlDatabase>> OpenSqlite(const SqliteOptions& options);

}  // namespace sluice::db
