// The rules database's rules, list entries and tiers as the server holds them (CONTRACT §8):
// parsed once per record and kept, so that a change re-reads only what it touched (an
// incremental update stays fast with 100 000 database rules), and joined with the files' rule
// set into the one the limiter runs. Versions only move forward.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "db/rules_database.h"
#include "rules/rule_set.h"

namespace sluice::admin {

// user id → tier name, as the limiter reads it (Limiter::SetTiers).
using TierMap = absl::flat_hash_map<std::string, std::string>;

class DatabaseRules {
 public:
  // A database object as held: parsed, with its canonical JSON (rules: empty, the rule's own
  // `json` is it) and revision (the version that last wrote it: its ETag).
  template <typename T>
  struct Held {
    T value;
    std::string json;
    uint64_t revision = 0;
  };

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
  // Whether the last Reset or Apply changed list entries, rules or tiers (to know what to
  // rebuild).
  bool rules_changed() const { return rules_changed_; }
  bool tiers_changed() const { return tiers_changed_; }

  // `files` followed by the database's rules and list entries. kAlreadyExists naming the ids
  // that both define: ids are unique across files and database (CONTRACT §8).
  absl::StatusOr<std::shared_ptr<const rules::RuleSet>> Compose(const rules::RuleSet& files) const;
  // The tiers, as a map the limiter can hold.
  std::shared_ptr<const TierMap> Tiers() const;

  const std::map<std::string, Held<rules::Rule>, std::less<>>& rules() const { return rules_; }
  const std::map<std::string, Held<rules::ListEntry>, std::less<>>& list(
      db::TargetKind kind) const {
    return kind == db::TargetKind::kAllowList ? allow_ : deny_;
  }
  const std::map<std::string, Held<std::string>, std::less<>>& tiers() const { return tiers_; }
  // The stored tier of `user_id`, or nullptr.
  const std::string* TierOf(std::string_view user_id) const;

 private:
  // One record: apply `after` (nullopt: delete) for `kind`/`id`, written at `revision`.
  void Put(db::TargetKind kind, const std::string& id, const std::optional<std::string>& body,
           uint64_t revision, std::vector<std::string>& problems);

  uint64_t version_ = 0;
  bool rules_changed_ = false;
  bool tiers_changed_ = false;
  std::map<std::string, Held<rules::Rule>, std::less<>> rules_;  // by id: a stable file_order
  std::map<std::string, Held<rules::ListEntry>, std::less<>> allow_;
  std::map<std::string, Held<rules::ListEntry>, std::less<>> deny_;
  std::map<std::string, Held<std::string>, std::less<>> tiers_;  // value and json: the tier
};

}  // namespace sluice::admin
