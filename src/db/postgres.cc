#include "db/postgres.h"

#include <libpq-fe.h>

#include <string>

#include "base/strings.h"

namespace sluice::db {

namespace {

// SQLSTATE classes that mean "try again later": connection exceptions, the server shutting
// down or out of resources, serialization failures.
bool IsTransient(std::string_view sqlstate) {
  return sqlstate.starts_with("08") || sqlstate.starts_with("57") || sqlstate.starts_with("53") ||
         sqlstate == "40001" || sqlstate == "40P01";
}

class PostgresConnection final : public SqlConnection {
 public:
  explicit PostgresConnection(PGconn* conn) : conn_(conn) {
    PQsetNoticeProcessor(
        conn_, [](void*, const char*) {}, nullptr);  // "already exists, skipping"
  }
  ~PostgresConnection() override { PQfinish(conn_); }

  Dialect dialect() const override { return Dialect::kPostgres; }

  absl::Status Exec(std::string_view sql) override {
    if (absl::Status s = EnsureConnected(); !s.ok()) return s;
    PGresult* r = PQexec(conn_, std::string(sql).c_str());
    absl::Status s = Check(r);
    PQclear(r);
    return s;
  }

  absl::StatusOr<std::vector<SqlRow>> Query(std::string_view sql,
                                            std::span<const SqlParam> params) override {
    if (absl::Status s = EnsureConnected(); !s.ok()) return s;
    // ?N placeholders become PostgreSQL's $N ('?' appears nowhere else in Sluice's SQL).
    std::string text(sql);
    for (char& c : text) {
      if (c == '?') c = '$';
    }
    std::vector<std::string> owned(params.size());
    std::vector<const char*> values(params.size(), nullptr);
    for (size_t i = 0; i < params.size(); ++i) {
      if (const auto* v = std::get_if<int64_t>(&params[i])) {
        owned[i] = std::to_string(*v);
        values[i] = owned[i].c_str();
      } else if (const auto* t = std::get_if<std::string_view>(&params[i])) {
        owned[i] = std::string(*t);
        values[i] = owned[i].c_str();
      }
    }
    PGresult* r = PQexecParams(conn_, text.c_str(), static_cast<int>(params.size()), nullptr,
                               values.data(), nullptr, nullptr, /*resultFormat=*/0);
    if (absl::Status s = Check(r); !s.ok()) {
      PQclear(r);
      return s;
    }
    std::vector<SqlRow> rows(static_cast<size_t>(PQntuples(r)));
    const int columns = PQnfields(r);
    for (int i = 0; i < PQntuples(r); ++i) {
      SqlRow& row = rows[static_cast<size_t>(i)];
      row.resize(static_cast<size_t>(columns));
      for (int c = 0; c < columns; ++c) {
        if (PQgetisnull(r, i, c)) continue;
        row[static_cast<size_t>(c)].emplace(PQgetvalue(r, i, c),
                                            static_cast<size_t>(PQgetlength(r, i, c)));
      }
    }
    PQclear(r);
    return rows;
  }

 private:
  absl::Status EnsureConnected() {
    if (PQstatus(conn_) == CONNECTION_OK) return absl::OkStatus();
    PQreset(conn_);
    if (PQstatus(conn_) == CONNECTION_OK) return absl::OkStatus();
    return absl::UnavailableError(Cat("postgresql: ", PQerrorMessage(conn_)));
  }

  absl::Status Check(PGresult* r) {
    const ExecStatusType status = PQresultStatus(r);
    if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) return absl::OkStatus();
    const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    std::string message =
        Cat("postgresql: ", r != nullptr ? PQresultErrorMessage(r) : PQerrorMessage(conn_));
    while (!message.empty() && message.back() == '\n') message.pop_back();
    if (PQstatus(conn_) != CONNECTION_OK || state == nullptr || IsTransient(state)) {
      return absl::UnavailableError(std::move(message));
    }
    return absl::InternalError(std::move(message));
  }

  PGconn* const conn_;
};

}  // namespace

std::string RedactUrl(std::string_view url) {
  // scheme://user:password@host... -> scheme://user:***@host...
  const size_t scheme = url.find("://");
  const size_t at = url.find('@');
  if (scheme == std::string_view::npos || at == std::string_view::npos || at < scheme) {
    return std::string(url);
  }
  const size_t colon = url.find(':', scheme + 3);
  if (colon == std::string_view::npos || colon > at) return std::string(url);
  return Cat(url.substr(0, colon + 1), "***", url.substr(at));
}

absl::StatusOr<std::unique_ptr<SqlConnection>> ConnectPostgres(const PostgresOptions& options) {
  const std::string timeout = std::to_string(options.connect_timeout.count());
  const char* keywords[] = {"dbname", "connect_timeout", "application_name", nullptr};
  const char* values[] = {options.url.c_str(), timeout.c_str(), "sluice", nullptr};
  PGconn* conn = PQconnectdbParams(keywords, values, /*expand_dbname=*/1);
  if (conn == nullptr) return absl::ResourceExhaustedError("postgresql: out of memory");
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string message =
        Cat("postgresql: cannot connect to ", RedactUrl(options.url), ": ", PQerrorMessage(conn));
    while (!message.empty() && message.back() == '\n') message.pop_back();
    PQfinish(conn);
    return absl::UnavailableError(std::move(message));
  }
  return std::unique_ptr<SqlConnection>(std::make_unique<PostgresConnection>(conn));
}

absl::StatusOr<std::unique_ptr<SqlDatabase>> OpenPostgres(const PostgresOptions& options) {
  auto connection = ConnectPostgres(options);
  if (!connection.ok()) return connection.status();
  return SqlDatabase::Open(std::move(*connection));
}

}  // namespace sluice::db
