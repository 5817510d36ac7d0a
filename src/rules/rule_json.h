// Rules and list entries as JSON (CONTRACT §8): what the admin API takes and gives, and what the
// rules database stores. A JSON rule is read by the very reader rules files use (JSON is YAML),
// so a rule the API accepts always loads; its problems come back as field paths for the 422.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "rules/rule.h"

namespace sluice::rules {

// A problem with one field: CONTRACT §8's `details` entry.
struct FieldProblem {
  // Dotted path from the rule: "limit", "match.ip_address", "key[1]"; "" for the whole value.
  std::string field;
  std::string message;

  bool operator==(const FieldProblem&) const = default;
};

struct JsonRule {
  std::optional<Rule> rule;  // set when `problems` is empty
  std::vector<FieldProblem> problems;
  // The rule as canonical JSON (keys sorted, no spaces): what the database stores and the API
  // returns. Set whenever the input was a JSON object.
  std::string canonical;
};

// Reads one rule (the fields of CONTRACT §3.1). `source` names where it comes from in the rule's
// location (e.g. "database").
JsonRule ParseRuleJson(std::string_view json, std::string_view source);

struct JsonListEntry {
  std::optional<ListEntry> entry;  // set when `problems` is empty
  std::vector<FieldProblem> problems;
  std::string canonical;
};

// Reads one allow/deny list entry: attributes to match, `reason`, `expires_at`.
JsonListEntry ParseListEntryJson(std::string_view json, std::string_view source);

}  // namespace sluice::rules
