// Opens the rules database a `rules.database` URL names (CONTRACT §8).
#pragma once

#include <memory>
#include <string_view>

#include "absl/status/statusor.h"
#include "db/rules_database.h"

namespace sluice::db {

inline constexpr std::string_view kSqliteScheme = "sqlite://";

// "sqlite" for sqlite://PATH, "postgresql" for postgresql://... (or postgres://), "" for
// anything else.
std::string_view DatabaseBackend(std::string_view url);

// Connects and creates or migrates the schema. kInvalidArgument for a URL of no known kind;
// kUnavailable when the database cannot be reached; kFailedPrecondition for a schema newer than
// this build knows.
absl::StatusOr<std::unique_ptr<RulesDatabase>> OpenDatabase(std::string_view url);

}  // namespace sluice::db
