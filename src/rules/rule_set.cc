#include "rules/rule_set.h"

#include <algorithm>

#include "rules/counter_key.h"
#include "rules/strings.h"

namespace sluice::rules {

namespace {

bool KeyPresent(const Rule& rule, const RequestAttributes& request) {
  for (const AttributeRef& ref : rule.key) {
    if (request.Get(ref).empty()) return false;
  }
  return true;
}

}  // namespace

std::shared_ptr<const RuleSet> RuleSet::Create(std::vector<Rule> rules,
                                               std::vector<ListEntry> allow,
                                               std::vector<ListEntry> deny,
                                               std::vector<Domain> domains) {
  internal::StringMap<std::shared_ptr<const Domain>> by_name;
  for (Domain& domain : domains) {
    std::string name = domain.name;
    by_name.try_emplace(std::move(name), std::make_shared<const Domain>(std::move(domain)));
  }
  return Build(std::move(rules), std::move(allow), std::move(deny), std::move(by_name));
}

std::shared_ptr<const RuleSet> RuleSet::Extend(const RuleSet& base, std::vector<Rule> rules,
                                               std::vector<ListEntry> allow,
                                               std::vector<ListEntry> deny) {
  std::vector<Rule> all(base.rules_.begin(), base.rules_.end());
  all.insert(all.end(), std::make_move_iterator(rules.begin()),
             std::make_move_iterator(rules.end()));
  std::vector<ListEntry> all_allow(base.allow_.begin(), base.allow_.end());
  all_allow.insert(all_allow.end(), std::make_move_iterator(allow.begin()),
                   std::make_move_iterator(allow.end()));
  std::vector<ListEntry> all_deny(base.deny_.begin(), base.deny_.end());
  all_deny.insert(all_deny.end(), std::make_move_iterator(deny.begin()),
                  std::make_move_iterator(deny.end()));
  return Build(std::move(all), std::move(all_allow), std::move(all_deny), base.domains_);
}

std::shared_ptr<const RuleSet> RuleSet::Build(
    std::vector<Rule> rules, std::vector<ListEntry> allow, std::vector<ListEntry> deny,
    internal::StringMap<std::shared_ptr<const Domain>> domains) {
  // Not make_shared: the constructor is private.
  std::shared_ptr<RuleSet> set(new RuleSet());
  set->rules_ = std::move(rules);
  absl::flat_hash_map<std::string, int32_t> groups;
  set->group_of_.reserve(set->rules_.size());
  for (uint32_t i = 0; i < set->rules_.size(); ++i) {
    Rule& rule = set->rules_[i];
    rule.file_order = i;
    set->rule_by_id_.try_emplace(rule.id, i);
    int32_t group = -1;
    if (!rule.group.empty()) {
      group = groups.try_emplace(rule.group, static_cast<int32_t>(groups.size())).first->second;
    }
    set->group_of_.push_back(group);
    if (rule.enabled) set->rule_index_.Add(rule.match, i);
  }
  set->allow_ = std::move(allow);
  set->deny_ = std::move(deny);
  for (uint32_t i = 0; i < set->allow_.size(); ++i) set->allow_index_.Add(set->allow_[i].match, i);
  for (uint32_t i = 0; i < set->deny_.size(); ++i) set->deny_index_.Add(set->deny_[i].match, i);
  set->domains_ = std::move(domains);
  return set;
}

std::shared_ptr<const RuleSet> RuleSet::Empty() { return Create({}, {}, {}, {}); }

void RuleSet::Applicable(const RequestAttributes& request, RuleList& out) const {
  out.clear();
  const internal::PreparedRequest prepared(request);
  internal::Candidates candidates;
  rule_index_.Lookup(prepared, candidates);
  // File order: the output order, and what makes the first of equal priorities win below.
  std::sort(candidates.begin(), candidates.end());
  // The best rule so far of each group met: (group, rule index). Requests meet few groups.
  absl::InlinedVector<std::pair<int32_t, uint32_t>, 8> best_of_group;
  for (uint32_t index : candidates) {
    const Rule& rule = rules_[index];
    if (!MatchesAll(rule.match, request, prepared.ip) || !KeyPresent(rule, request)) continue;
    const int32_t group = group_of_[index];
    if (group < 0) {
      out.push_back(&rule);
      continue;
    }
    auto it = std::find_if(best_of_group.begin(), best_of_group.end(),
                           [group](const auto& g) { return g.first == group; });
    if (it == best_of_group.end()) {
      best_of_group.emplace_back(group, index);
    } else if (rule.priority < rules_[it->second].priority) {
      it->second = index;
    }
  }
  if (best_of_group.empty()) return;
  for (const auto& [group, index] : best_of_group) out.push_back(&rules_[index]);
  std::sort(out.begin(), out.end(),
            [](const Rule* a, const Rule* b) { return a->file_order < b->file_order; });
}

namespace {

// Appends "|NAME=VALUE" for each key attribute of `rule`; false when one is absent.
bool AppendKeyAttributes(const Rule& rule, const RequestAttributes& request, std::string* out) {
  for (const AttributeRef& ref : rule.key) {
    const std::string_view value = request.Get(ref);
    if (value.empty()) return false;
    out->push_back('|');
    internal::AppendKeyPart(out, ref.Name());
    out->push_back('=');
    if (ref.attribute == Attribute::kMethod) {
      internal::AppendKeyPart(out, internal::AsciiUpper(value));
    } else if (ref.attribute == Attribute::kIpAddress) {
      IpAddress ip;
      if (request.ip.has_value()) {
        internal::AppendKeyPart(out, request.ip->ToString());
      } else if (ParseIp(value, &ip)) {
        internal::AppendKeyPart(out, ip.ToString());
      } else {
        internal::AppendKeyPart(out, value);
      }
    } else {
      internal::AppendKeyPart(out, value);
    }
  }
  return true;
}

}  // namespace

bool RuleSet::CounterKey(const Rule& rule, const RequestAttributes& request, std::string* out) {
  out->assign("rule|");
  internal::AppendKeyPart(out, rule.id);
  internal::AppendLimitIdentity(out, rule.limit);
  return AppendKeyAttributes(rule, request, out);
}

bool RuleSet::PenaltyKeys(const Rule& rule, const RequestAttributes& request,
                          std::string* rejections, std::string* ban) {
  ban->assign("ban|");
  internal::AppendKeyPart(ban, rule.id);
  if (!AppendKeyAttributes(rule, request, ban)) return false;
  rejections->assign("penalty|");
  rejections->append(std::string_view(*ban).substr(4));
  return true;
}

const ListEntry* RuleSet::FindEntry(const std::vector<ListEntry>& list,
                                    const internal::MatchIndex& index,
                                    const internal::PreparedRequest& request, Micros now) {
  if (list.empty()) return nullptr;
  internal::Candidates candidates;
  index.Lookup(request, candidates);
  std::sort(candidates.begin(), candidates.end());
  for (uint32_t i : candidates) {
    const ListEntry& entry = list[i];
    if (entry.ActiveAt(now) && MatchesAll(entry.match, request.attributes, request.ip)) {
      return &entry;
    }
  }
  return nullptr;
}

ListVerdict RuleSet::CheckLists(const RequestAttributes& request, Micros now) const {
  if (allow_.empty() && deny_.empty()) return {};
  const internal::PreparedRequest prepared(request);
  if (const ListEntry* e = FindEntry(deny_, deny_index_, prepared, now)) {
    return {ListVerdict::Kind::kDeny, e};
  }
  if (const ListEntry* e = FindEntry(allow_, allow_index_, prepared, now)) {
    return {ListVerdict::Kind::kAllow, e};
  }
  return {};
}

DescriptorMatch RuleSet::LookupDescriptor(std::string_view domain,
                                          std::span<const DescriptorEntry> entries) const {
  const auto it = domains_.find(domain);
  return it == domains_.end() ? DescriptorMatch{} : it->second->Lookup(entries);
}

const Rule* RuleSet::FindRule(std::string_view id) const {
  const auto it = rule_by_id_.find(id);
  return it == rule_by_id_.end() ? nullptr : &rules_[it->second];
}

}  // namespace sluice::rules
