#include "admin/database_rules.h"

#include "base/strings.h"
#include "rules/rule_json.h"

namespace sluice::admin {

namespace {

std::string Describe(db::TargetKind kind, const std::string& id,
                     const std::vector<rules::FieldProblem>& problems) {
  std::string out = Cat("database ", db::TargetKindName(kind), " '", id, "':");
  for (const rules::FieldProblem& p : problems) {
    out += Cat(" ", p.field.empty() ? std::string() : p.field + ": ", p.message, ";");
  }
  out.pop_back();
  return out;
}

}  // namespace

void DatabaseRules::Put(db::TargetKind kind, const std::string& id,
                        const std::optional<std::string>& body, uint64_t revision,
                        std::vector<std::string>& problems) {
  switch (kind) {
    case db::TargetKind::kRule: {
      rules_changed_ = true;
      if (!body.has_value()) {
        rules_.erase(id);
        return;
      }
      rules::JsonRule parsed = rules::ParseRuleJson(*body, "database");
      if (!parsed.problems.empty()) {
        rules_.erase(id);  // the old version is gone from the database: never keep it
        problems.push_back(Describe(kind, id, parsed.problems));
        return;
      }
      if (parsed.rule->id != id) {
        rules_.erase(id);
        problems.push_back(
            Cat("database rule '", id, "': its body names id '", parsed.rule->id, "'"));
        return;
      }
      // The rule carries its canonical JSON already (Rule::json): not kept twice.
      rules_.insert_or_assign(
          id,
          Held<rules::Rule>{.value = std::move(*parsed.rule), .json = {}, .revision = revision});
      return;
    }
    case db::TargetKind::kAllowList:
    case db::TargetKind::kDenyList: {
      rules_changed_ = true;
      auto& list = kind == db::TargetKind::kAllowList ? allow_ : deny_;
      if (!body.has_value()) {
        list.erase(id);
        return;
      }
      rules::JsonListEntry parsed = rules::ParseListEntryJson(*body, "database");
      if (!parsed.problems.empty()) {
        list.erase(id);
        problems.push_back(Describe(kind, id, parsed.problems));
        return;
      }
      list.insert_or_assign(id, Held<rules::ListEntry>{.value = std::move(*parsed.entry),
                                                       .json = std::move(parsed.canonical),
                                                       .revision = revision});
      return;
    }
    case db::TargetKind::kTier:
      tiers_changed_ = true;
      if (body.has_value()) {
        tiers_.insert_or_assign(
            id, Held<std::string>{.value = *body, .json = *body, .revision = revision});
      } else {
        tiers_.erase(id);
      }
      return;
    case db::TargetKind::kCounter:
      return;  // a counter reset changes no rule
  }
}

std::vector<std::string> DatabaseRules::Reset(const db::State& state) {
  std::vector<std::string> problems;
  rules_changed_ = tiers_changed_ = false;
  if (state.version < version_) return problems;
  rules_.clear();
  allow_.clear();
  deny_.clear();
  tiers_.clear();
  const std::pair<db::TargetKind, const std::vector<db::Record>*> kinds[] = {
      {db::TargetKind::kRule, &state.rules},
      {db::TargetKind::kAllowList, &state.allow},
      {db::TargetKind::kDenyList, &state.deny},
      {db::TargetKind::kTier, &state.tiers}};
  for (const auto& [kind, records] : kinds) {
    for (const db::Record& r : *records) Put(kind, r.id, r.body, r.revision, problems);
  }
  rules_changed_ = tiers_changed_ = true;
  version_ = state.version;
  return problems;
}

std::vector<std::string> DatabaseRules::Apply(const std::vector<db::AuditEntry>& changes) {
  std::vector<std::string> problems;
  rules_changed_ = tiers_changed_ = false;
  for (const db::AuditEntry& e : changes) {
    if (e.version <= version_) continue;
    Put(e.kind, e.target, e.after, e.version, problems);
  }
  for (const db::AuditEntry& e : changes) version_ = std::max(version_, e.version);
  return problems;
}

absl::StatusOr<std::shared_ptr<const rules::RuleSet>> DatabaseRules::Compose(
    const rules::RuleSet& files) const {
  std::vector<std::string> clashes;
  for (const auto& [id, held] : rules_) {
    if (const rules::Rule* file_rule = files.FindRule(id)) {
      clashes.push_back(Cat("rule id '", id, "' is defined both in the rules database and at ",
                            file_rule->location.ToString()));
    }
  }
  if (!clashes.empty()) {
    std::string message;
    for (const std::string& c : clashes) message += (message.empty() ? "" : "\n") + c;
    return absl::AlreadyExistsError(message);
  }
  std::vector<rules::Rule> rules;
  rules.reserve(rules_.size());
  for (const auto& [id, held] : rules_) rules.push_back(held.value);
  std::vector<rules::ListEntry> allow;
  allow.reserve(allow_.size());
  for (const auto& [id, held] : allow_) allow.push_back(held.value);
  std::vector<rules::ListEntry> deny;
  deny.reserve(deny_.size());
  for (const auto& [id, held] : deny_) deny.push_back(held.value);
  return rules::RuleSet::Extend(files, std::move(rules), std::move(allow), std::move(deny));
}

std::shared_ptr<const TierMap> DatabaseRules::Tiers() const {
  auto tiers = std::make_shared<TierMap>();
  tiers->reserve(tiers_.size());
  for (const auto& [user, held] : tiers_) tiers->emplace(user, held.value);
  return tiers;
}

const std::string* DatabaseRules::TierOf(std::string_view user_id) const {
  auto it = tiers_.find(user_id);
  return it == tiers_.end() ? nullptr : &it->second.value;
}

}  // namespace sluice::admin
