// The rules database's schema, as versioned migrations applied in order on start. Each step runs
// in the transaction that records it in sluice_schema, so a server that stops mid-migration
// leaves the database at the previous step. The tables:
//
//   sluice_schema        (version, applied_at)            which migrations ran
//   sluice_versions      (version, at, actor, summary)    one row per change
//   sluice_rules         (id, body, revision)             body: the rule as canonical JSON
//   sluice_list_entries  (list, id, body, revision)       list: 'allow' | 'deny'
//   sluice_user_tiers    (user_id, tier, revision)
//   sluice_audit         (seq, version, at, actor, action, kind, target, before, after)
//                        append-only: triggers refuse UPDATE and DELETE
//
// `revision` is the version that last wrote the row (its ETag).
#pragma once

#include <span>
#include <string_view>

namespace sluice::db {

enum class Dialect : uint8_t { kSqlite, kPostgres };

struct Migration {
  int version;
  std::string_view description;
  std::string_view sql;  // one or more statements
};

// Every migration of `dialect`, oldest first. Never edit a published step: add one.
std::span<const Migration> Migrations(Dialect dialect);

}  // namespace sluice::db
