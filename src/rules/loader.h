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
// Loading never stops at the first problem: every problem of every file is reported, each as
// "FILE:LINE:COL: message" (FILE as given or folder-joined, LINE and COL from 1, at the offending
// key or value), or "FILE: cannot read: reason". Nothing here throws.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "rules/rule_set.h"

namespace sluice::rules {

struct LoadResult {
  // Set only when `problems` is empty: a set with problems is never half-loaded.
  std::shared_ptr<const RuleSet> rule_set;
  std::vector<std::string> problems;  // in file order, then position order within a file
};

// Loads and validates `paths`. No paths, or only empty folders, give an empty RuleSet.
LoadResult LoadRules(const std::vector<std::string>& paths);

// LoadRules as a StatusOr: InvalidArgument carrying every problem, one per line. For reloads,
// where a failure keeps the old snapshot and logs the message.
absl::StatusOr<std::shared_ptr<const RuleSet>> LoadRuleSet(const std::vector<std::string>& paths);

// For `sluice validate`: every problem in `paths`; empty means valid.
std::vector<std::string> ValidateRules(const std::vector<std::string>& paths);

// The files `paths` expand to, in load order, appending "PATH: cannot read: reason" to
// `problems` for paths that do not exist or cannot be listed. For watching files for reload.
std::vector<std::string> ExpandRulePaths(const std::vector<std::string>& paths,
                                         std::vector<std::string>* problems);

}  // namespace sluice::rules
