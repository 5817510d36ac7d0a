// What loader.cc shares with the readers of each file kind (rules_file.cc, domain_file.cc).
// Internal to the rules library.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "core/limit.h"
#include "rules/descriptor.h"
#include "rules/loader.h"
#include "rules/rule.h"
#include "yaml/reader.h"

namespace sluice::rules::internal {

// What the files loaded so far define, and the names that must be unique across all of them.
struct LoadState {
  explicit LoadState(const LoadLimits& l) : limits(l) {}

  const LoadLimits& limits;
  std::vector<Rule> rules;
  std::vector<ListEntry> allow;
  std::vector<ListEntry> deny;
  std::vector<Domain> domains;
  absl::flat_hash_map<std::string, SourceLocation> rule_ids;
  absl::flat_hash_map<std::string, SourceLocation> domain_names;
  size_t rules_seen = 0;         // rules and descriptors read, valid or not
  size_t list_entries_seen = 0;  // allow and deny entries read, valid or not
};

// Counts one more rule (or descriptor) at `pos`. False once past `max_rules`, after reporting
// it at the first one past: the caller skips it, and every later one.
bool CountRule(LoadState& state, yaml::Reader& reader, yaml::Pos pos);
// The same for list entries and `max_list_entries`.
bool CountListEntry(LoadState& state, yaml::Reader& reader, yaml::Pos pos);

// For names that reach metric labels, logs and answers (rule ids, domains, descriptor keys,
// values and names): false, after reporting "'NAME' must not contain control characters" at
// the value, when `value` has one (NUL included). Invalid UTF-8 never gets here: yaml::Parse
// refuses it in any string.
bool CheckPrintable(yaml::Reader& reader, const yaml::Field& field, std::string_view value);

// A position in the file `reader` reads, as the rule set keeps it.
inline SourceLocation Location(yaml::Reader& reader, yaml::Pos pos) {
  return {reader.problems().file(), pos.line, pos.column};
}

// `algorithm:`, in rules files and (a Sluice extension) in domain files' rate_limit.
std::optional<Algorithm> ReadAlgorithm(yaml::Reader& reader, const yaml::Field& field);

// A Sluice rules file (CONTRACT §3.1): `root` is a mapping with `rules` and/or `lists`.
void LoadRulesFile(const YAML::Node& root, yaml::Reader& reader, LoadState& state);
// A YAML node as canonical JSON (keys sorted, no spaces), typed as Sluice's readers type it: a
// plain integer is a number, plain true/false a boolean, plain null/~/empty null, anything else
// a string. How a rule read from a file is shown by the admin API (Rule::json).
std::string YamlToJson(const YAML::Node& node);

// One rule of a rules file (`node` is its mapping), appended to state.rules when valid: how a
// rule given as JSON is read (rule_json.h).
void LoadRuleNode(const YAML::Node& node, yaml::Reader& reader, LoadState& state);
// One list entry (`node` is its mapping), appended to `list` when valid.
void LoadListEntryNode(const YAML::Node& node, yaml::Reader& reader, LoadState& state,
                       std::vector<ListEntry>& list);

// An Envoy domain file (CONTRACT §3.2): `root` is a mapping with `domain`.
void LoadDomainFile(const YAML::Node& root, yaml::Reader& reader, LoadState& state);

}  // namespace sluice::rules::internal
