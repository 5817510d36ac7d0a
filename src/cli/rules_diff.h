// What `sluice admin rules apply` changes (CONTRACT §8): the database's rules made to match a
// rules file's. Pure: computed from the file's rules and the API's listing, rendered as text;
// the sending is admin_command.cc's.
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace sluice::cli {

// One rule of the file being applied.
struct FileRule {
  std::string id;
  std::string json;      // its canonical JSON (rules::Rule::json), what the API stores
  std::string location;  // "FILE:LINE:COL", for messages
};

// One field that differs between the database's rule and the file's.
struct FieldChange {
  std::string field;                     // dotted path: "limit", "match.tier"
  std::optional<nlohmann::json> before;  // absent: not set in the database's rule
  std::optional<nlohmann::json> after;   // absent: not set in the file's rule

  bool operator==(const FieldChange&) const = default;
};

struct RuleChange {
  enum class Kind { kCreate, kUpdate, kDelete };
  Kind kind = Kind::kCreate;
  std::string id;
  std::string body;  // kCreate and kUpdate: the file's rule, as sent
  // kUpdate and kDelete: the listing's revision, sent as If-Match so that a rule changed since
  // the listing is not overwritten (412). "" when the listing gave none.
  std::string revision;
  std::vector<FieldChange> fields;  // kUpdate: what differs, in field order
};

struct RulesDiff {
  // Creates and updates in the file's order, then deletes in the listing's order: the order
  // they are sent in.
  std::vector<RuleChange> changes;
  size_t unchanged = 0;  // database rules equal to the file's

  size_t Count(RuleChange::Kind kind) const;
};

// The fields in which `after` differs from `before` (two JSON values compared as values, not
// text): objects on both sides are compared key by key (dotted paths), anything else whole.
// `path` prefixes every field ("" at the top).
std::vector<FieldChange> DiffFields(const nlohmann::json& before, const nlohmann::json& after,
                                    const std::string& path = "");

// What makes the database's rules (the listing's with `"source": "database"`) equal to `file`:
// a rule only in the file is created, one in both whose JSON differs (the listing's without
// `source` and `revision`) is updated, one only in the database deleted. `listing` is the body
// of GET /v1/admin/rules. Errors: FailedPrecondition naming every rule the file defines that a
// file on the server defines too (file rules are read-only, one line each); InvalidArgument
// when the listing or a file rule's JSON is not what it should be.
absl::StatusOr<RulesDiff> DiffRules(std::span<const FileRule> file, const nlohmann::json& listing);

// One line per change — "+ ID", "~ ID" and its fields "  FIELD: BEFORE -> AFTER" (values as
// JSON, "(unset)" when absent), "- ID" — then DiffSummary's line.
std::string RenderDiff(const RulesDiff& diff);

// "N created, M updated, K deleted", or "no changes".
std::string DiffSummary(const RulesDiff& diff);

}  // namespace sluice::cli
