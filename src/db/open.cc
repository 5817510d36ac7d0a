#include "db/open.h"

#include <string>

#include "base/strings.h"
#include "db/postgres.h"
#include "db/sqlite.h"

namespace sluice::db {

std::string_view DatabaseBackend(std::string_view url) {
  if (url.starts_with(kSqliteScheme) && url.size() > kSqliteScheme.size()) return "sqlite";
  if (url.starts_with("postgresql://") || url.starts_with("postgres://")) return "postgresql";
  return "";
}

absl::StatusOr<std::unique_ptr<RulesDatabase>> OpenDatabase(std::string_view url) {
  const std::string_view backend = DatabaseBackend(url);
  if (backend == "sqlite") {
    auto db = OpenSqlite({.path = std::string(url.substr(kSqliteScheme.size()))});
    if (!db.ok()) return db.status();
    return std::unique_ptr<RulesDatabase>(std::move(*db));
  }
  if (backend == "postgresql") {
    auto db = OpenPostgres({.url = std::string(url)});
    if (!db.ok()) return db.status();
    return std::unique_ptr<RulesDatabase>(std::move(*db));
  }
  return absl::InvalidArgumentError(
      Cat("rules database '", RedactUrl(url), "': expected sqlite://PATH or postgresql://..."));
}

}  // namespace sluice::db
