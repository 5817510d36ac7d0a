// What loader.cc shares with the readers of each file kind (rules_file.cc, domain_file.cc).
// Internal to the rules library.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "core/limit.h"
#include "rules/descriptor.h"
#include "rules/rule.h"
#include "yaml/reader.h"

namespace sluice::rules::internal {

// What the files loaded so far define, and the names that must be unique across all of them.
struct LoadState {
  std::vector<Rule> rules;
  std::vector<ListEntry> allow;
  std::vector<ListEntry> deny;
  std::vector<Domain> domains;
  absl::flat_hash_map<std::string, SourceLocation> rule_ids;
  absl::flat_hash_map<std::string, SourceLocation> domain_names;
};

// A position in the file `reader` reads, as the rule set keeps it.
inline SourceLocation Location(yaml::Reader& reader, yaml::Pos pos) {
  return {reader.problems().file(), pos.line, pos.column};
}

// `algorithm:`, in rules files and (a Sluice extension) in domain files' rate_limit.
std::optional<Algorithm> ReadAlgorithm(yaml::Reader& reader, const yaml::Field& field);

// A Sluice rules file (CONTRACT §3.1): `root` is a mapping with `rules` and/or `lists`.
void LoadRulesFile(const YAML::Node& root, yaml::Reader& reader, LoadState& state);

// An Envoy domain file (CONTRACT §3.2): `root` is a mapping with `domain`.
void LoadDomainFile(const YAML::Node& root, yaml::Reader& reader, LoadState& state);

}  // namespace sluice::rules::internal
