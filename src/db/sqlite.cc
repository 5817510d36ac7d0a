#include "db/sqlite.h"

#include <sqlite3.h>

#include "base/strings.h"

namespace sluice::db {

namespace {

// Busy and locked are kUnavailable (another writer held the lock past the timeout), as is
// anything that says the file is gone, unreadable or not a database.
absl::Status Error(sqlite3* db, int rc, std::string_view what) {
  std::string message = Cat("sqlite: ", what, ": ", sqlite3_errmsg(db));
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_FULL:
    case SQLITE_READONLY:
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
      return absl::UnavailableError(std::move(message));
    default:
      return absl::InternalError(std::move(message));
  }
}

class SqliteConnection final : public SqlConnection {
 public:
  explicit SqliteConnection(sqlite3* db) : db_(db) {}
  ~SqliteConnection() override { sqlite3_close_v2(db_); }

  Dialect dialect() const override { return Dialect::kSqlite; }

  absl::Status Exec(std::string_view sql) override {
    const std::string text(sql);
    char* err = nullptr;
    const int rc = sqlite3_exec(db_, text.c_str(), nullptr, nullptr, &err);
    if (rc == SQLITE_OK) return absl::OkStatus();
    absl::Status s = Error(db_, rc, err != nullptr ? err : "exec");
    sqlite3_free(err);
    return s;
  }

  absl::StatusOr<std::vector<SqlRow>> Query(std::string_view sql,
                                            std::span<const SqlParam> params) override {
    sqlite3_stmt* stmt = nullptr;
    int rc = sqlite3_prepare_v2(db_, sql.data(), static_cast<int>(sql.size()), &stmt, nullptr);
    if (rc != SQLITE_OK) return Error(db_, rc, "prepare");
    std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> owned(stmt, sqlite3_finalize);
    for (size_t i = 0; i < params.size(); ++i) {
      const int at = static_cast<int>(i) + 1;
      if (const auto* v = std::get_if<int64_t>(&params[i])) {
        sqlite3_bind_int64(stmt, at, *v);
      } else if (const auto* t = std::get_if<std::string_view>(&params[i])) {
        sqlite3_bind_text(stmt, at, t->data(), static_cast<int>(t->size()), SQLITE_TRANSIENT);
      } else {
        sqlite3_bind_null(stmt, at);
      }
    }
    std::vector<SqlRow> rows;
    for (;;) {
      rc = sqlite3_step(stmt);
      if (rc == SQLITE_DONE) return rows;
      if (rc != SQLITE_ROW) return Error(db_, rc, "step");
      SqlRow& row = rows.emplace_back(static_cast<size_t>(sqlite3_column_count(stmt)));
      for (int c = 0; c < sqlite3_column_count(stmt); ++c) {
        if (sqlite3_column_type(stmt, c) == SQLITE_NULL) continue;
        const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt, c));
        row[static_cast<size_t>(c)].emplace(p, static_cast<size_t>(sqlite3_column_bytes(stmt, c)));
      }
    }
  }

 private:
  sqlite3* const db_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<SqlConnection>> ConnectSqlite(const SqliteOptions& options) {
  sqlite3* raw = nullptr;
  const int rc =
      sqlite3_open_v2(options.path.c_str(), &raw,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    absl::Status s =
        absl::UnavailableError(Cat("sqlite: cannot open ", options.path, ": ",
                                   raw != nullptr ? sqlite3_errmsg(raw) : sqlite3_errstr(rc)));
    sqlite3_close(raw);
    return s;
  }
  auto connection = std::make_unique<SqliteConnection>(raw);
  sqlite3_busy_timeout(raw, static_cast<int>(options.busy_timeout.count()));
  for (const char* pragma :
       {"PRAGMA journal_mode = WAL", "PRAGMA foreign_keys = ON", "PRAGMA synchronous = NORMAL"}) {
    if (absl::Status s = connection->Exec(pragma); !s.ok()) {
      return absl::UnavailableError(Cat("sqlite: ", options.path, ": ", s.message()));
    }
  }
  return connection;
}

absl::StatusOr<std::unique_ptr<SqlDatabase>> OpenSqlite(const SqliteOptions& options) {
  auto connection = ConnectSqlite(options);
  if (!connection.ok()) return connection.status();
  return SqlDatabase::Open(std::move(*connection));
}

}  // namespace sluice::db
