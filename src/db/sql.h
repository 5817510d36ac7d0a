// The little SQL the rules database needs, over SQLite or PostgreSQL: statements with bound
// parameters (never values spliced into SQL text), results as rows of text.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "db/schema.h"

namespace sluice::db {

// A bound parameter: NULL, an integer or text.
using SqlParam = std::variant<std::monostate, int64_t, std::string_view>;
// One result row: each column as text (integers in decimal), or nullopt for NULL.
using SqlRow = std::vector<std::optional<std::string>>;

// One connection. Not thread-safe: the caller serializes. Errors: kUnavailable when the
// database cannot be reached (or is busy past its timeout), kInternal for anything else.
class SqlConnection {
 public:
  virtual ~SqlConnection() = default;
  virtual Dialect dialect() const = 0;
  // Runs `sql` (one or more statements, no parameters, no result).
  virtual absl::Status Exec(std::string_view sql) = 0;
  // Runs one statement. Parameters are written ?1, ?2, ... in `sql` (the PostgreSQL connection
  // turns them into $1, $2, ...).
  virtual absl::StatusOr<std::vector<SqlRow>> Query(std::string_view sql,
                                                    std::span<const SqlParam> params) = 0;
};

}  // namespace sluice::db
