// The rules database's rules, list entries and tiers as the server holds them (CONTRACT §8):
// parsed once per record and kept, so that a change re-reads only what it touched (an
// incremental update stays fast with 100 000 database rules), and joined with the files' rule
// set into the one the limiter runs. Versions only move forward.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "db/rules_database.h"
#include "rules/rule_set.h"

namespace sluice {

class DatabaseRules {
 public:
  // Replaces everything with `state` (the first load, or a full catch-up). Records that do not
  // load are left out, each reported as "database rule 'ID': FIELD: message"; a rule the admin
  // API wrote always loads, so these come only from writes around it. Ignored (returns
  // nothing) when `state` is older than what is held.
  std::vector<std::string> Reset(const db::State& state);
  // Applies the changes of the versions after version(), oldest first (ChangesSince). Entries
  // of versions already held are skipped.
  std::vector<std::string> Apply(const std::vector<db::AuditEntry>& changes);

  uint64_t version() const { return version_; }
  size_t rule_count() const { return rules_.size(); }

  // `files` followed by the database's rules and list entries. kAlreadyExists naming the ids
  // that both define: ids are unique across files and database (CONTRACT §8).
  absl::StatusOr<std::shared_ptr<const rules::RuleSet>> Compose(const rules::RuleSet& files) const;

  // The stored tier of `user_id`, or nullptr.
  const std::string* TierOf(std::string_view user_id) const;

 private:
  // One record: apply `after` (nullopt: delete) for `kind`/`id`.
  void Put(db::TargetKind kind, const std::string& id, const std::optional<std::string>& body,
           std::vector<std::string>& problems);

  uint64_t version_ = 0;
  std::map<std::string, rules::Rule> rules_;  // by id: a stable order for file_order
  std::map<std::string, rules::ListEntry> allow_;
  std::map<std::string, rules::ListEntry> deny_;
  absl::flat_hash_map<std::string, std::string> tiers_;
};

}  // namespace sluice
