// The PostgreSQL connection (libpq): `postgresql://user:pass@host:port/db` (any libpq
// connection URI). A lost connection is re-established on the next statement; until then
// statements fail with kUnavailable.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "db/sql.h"
#include "db/sql_database.h"

namespace sluice::db {

struct PostgresOptions {
  std::string url;  // postgresql://...
  std::chrono::seconds connect_timeout{5};
};

absl::StatusOr<std::unique_ptr<SqlConnection>> ConnectPostgres(const PostgresOptions& options);

// ConnectPostgres, then SqlDatabase::Open (schema created or migrated).
absl::StatusOr<std::unique_ptr<SqlDatabase>> OpenPostgres(const PostgresOptions& options);

// `url` with its password replaced by "***", for messages and logs.
std::string RedactUrl(std::string_view url);

}  // namespace sluice::db
