// Loading and validating rules paths (CONTRACT §3) into a RuleSet.
//
// A path is a file or a folder; a folder contributes every *.yaml and *.yml file directly inside
// it (not recursively; names starting with '.' skipped, as editors and Kubernetes ConfigMap
// mounts put their temporary files there), in byte-wise name order. Paths load in the order
// given; that order across all files is the "file order" breaking priority ties.
//
// A file's kind is told by its top-level keys: `rules:` and/or `lists:` make a Sluice rules file
// (§3.1), `domain:` an Envoy-compatible domain file (§3.2); both or neither is a problem.
//
// Loading never stops at the first problem: every problem of every file is found, each as
// "FILE:LINE:COL: message" (FILE as given or folder-joined, LINE and COL from 1, at the offending
// key or value), or "FILE: cannot read: reason", or "FILE: too large (N bytes, at most M)".
// The first `max_problems` are listed, then "… and N more problems". Nothing here throws.
//
// Rules files are input like any other: everything they can make Sluice do is bounded by
// LoadLimits (docs/robustness.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/consistency.h"
#include "rules/rule_set.h"
#include "yaml/reader.h"

namespace sluice::rules {

// `max_overshoot:` (CONTRACT §11), in rules files and in the server config's `store`: an integer
// count, or a percentage of the limit ("1%", "0.25%"). Reports a problem and returns nothing
// otherwise.
std::optional<Overshoot> ReadOvershoot(yaml::Reader& reader, const yaml::Field& field);

// What one load accepts. Past a limit the load fails with a problem saying which.
struct LoadLimits {
  size_t max_file_bytes = size_t{16} << 20;  // per file
  // YAML nodes per file, each alias counted as all the nodes it stands for (an alias bomb is a
  // few hundred bytes).
  size_t max_nodes_per_file = 1'000'000;
  int max_depth = 64;  // sequences and mappings inside one another, per file
  // Rules of rules files and descriptors of domain files, all files together.
  size_t max_rules = 100'000;
  size_t max_list_entries = 100'000;  // allow and deny entries, all files together
  size_t max_problems = 100;          // listed; the others are counted in one last line
};

struct LoadResult {
  // Set only when `problems` is empty: a set with problems is never half-loaded.
  std::shared_ptr<const RuleSet> rule_set;
  std::vector<std::string> problems;  // in file order, then position order within a file
  // A hash of the files read, names and contents, in load order: equal digests (in one process)
  // mean the same files with the same bytes. Tells a reload that would change nothing.
  uint64_t digest = 0;
};

// Loads and validates `paths`. No paths, or only empty folders, give an empty RuleSet.
LoadResult LoadRules(const std::vector<std::string>& paths, const LoadLimits& limits = {});

// LoadRules as a StatusOr: InvalidArgument carrying every problem, one per line. For reloads,
// where a failure keeps the old snapshot and logs the message.
absl::StatusOr<std::shared_ptr<const RuleSet>> LoadRuleSet(const std::vector<std::string>& paths);

// For `sluice validate`: every problem in `paths`; empty means valid.
std::vector<std::string> ValidateRules(const std::vector<std::string>& paths);

// The files `paths` expand to, in load order, appending "PATH: cannot read: reason" to
// `problems` for paths that do not exist or cannot be listed. For watching files for reload.
// `transient`, when given, is set to whether a path failed for a passing reason (too many open
// files, out of memory): then the list says nothing about what the paths hold.
std::vector<std::string> ExpandRulePaths(const std::vector<std::string>& paths,
                                         std::vector<std::string>* problems,
                                         bool* transient = nullptr);

}  // namespace sluice::rules
