// RuleSet: an immutable, indexed snapshot of everything loaded from the rules paths. A request
// holds one snapshot (a shared_ptr) from start to end; a reload builds a new one and swaps it in.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "core/time.h"
#include "rules/attributes.h"
#include "rules/descriptor.h"
#include "rules/match_index.h"
#include "rules/rule.h"
#include "rules/strings.h"

namespace sluice::rules {

// The rules that apply to a request, in file order: inline room for the few a request meets.
using RuleList = absl::InlinedVector<const Rule*, 4>;

// What the allow/deny lists say about a request. Deny wins over allow.
struct ListVerdict {
  enum class Kind : uint8_t {
    kNone,   // on neither list: the rules decide
    kAllow,  // skips all rules
    kDeny,   // refused with 403 whatever the rules say
  };
  Kind kind = Kind::kNone;
  // The matching entry (the first in file order); nullptr for kNone. Points into the RuleSet.
  const ListEntry* entry = nullptr;

  std::string_view reason() const {
    return entry != nullptr ? std::string_view(entry->reason) : std::string_view();
  }
};

// Immutable after Create; every method is const and thread-safe.
class RuleSet {
 public:
  // Takes validated parts (the loader checks ids are unique and domains distinct; given
  // duplicates, lookups by id or domain find the first). Sets each rule's `file_order` to its
  // position in `rules`.
  static std::shared_ptr<const RuleSet> Create(std::vector<Rule> rules,
                                               std::vector<ListEntry> allow,
                                               std::vector<ListEntry> deny,
                                               std::vector<Domain> domains);
  // No rules, lists or domains: everything is allowed.
  static std::shared_ptr<const RuleSet> Empty();
  // `base`'s rules, lists and domains (the domains shared, not copied) followed by `rules`,
  // `allow` and `deny`: the files' rule set with the rules database's (CONTRACT §8). Ids are
  // the caller's to keep unique across both.
  static std::shared_ptr<const RuleSet> Extend(const RuleSet& base, std::vector<Rule> rules,
                                               std::vector<ListEntry> allow,
                                               std::vector<ListEntry> deny);

  RuleSet(const RuleSet&) = delete;
  RuleSet& operator=(const RuleSet&) = delete;

  // Replaces `out` with the rules that apply to `request` (CONTRACT §3.1), in file order:
  // - a rule applies only if it is enabled, every attribute of its `match` matches, and every
  //   attribute of its `key` is present (an absent or empty attribute never matches);
  // - every such rule without a group applies; of those sharing a group, only the one with the
  //   lowest priority, ties going to the earlier file order.
  // A rule whose key attribute is absent is left out before groups are decided, so the next
  // rule of its group can apply instead (a per-user quota falls back to a per-IP one).
  // Cost: a few hash lookups per request attribute plus a full check of each candidate (see
  // match_index.h), not a scan of every rule.
  void Applicable(const RequestAttributes& request, RuleList& out) const;

  // Writes the counter key of `rule` for `request` into `out`. It is unique per (rule id,
  // algorithm, window, key attribute names and values) and escapes separators, so two
  // different value tuples never share a key, and a reload that changes a rule's algorithm or
  // window starts a new counter. Values are as given except `method` (uppercased) and
  // `ip_address` (canonical form when it parses), so equivalent spellings share a counter.
  // Returns false, leaving `out` unspecified, when a key attribute is absent.
  static bool CounterKey(const Rule& rule, const RequestAttributes& request, std::string* out);
  // The keys of `rule`'s penalty counters for `request` (Penalty): its rejections and its ban.
  // Per (rule id, key attribute names and values), but not per algorithm and window: a ban
  // outlives a reload that changes the rule's limit. False when a key attribute is absent.
  static bool PenaltyKeys(const Rule& rule, const RequestAttributes& request,
                          std::string* rejections, std::string* ban);

  // Checks the deny list, then the allow list, skipping entries expired at `now` (microseconds
  // since the epoch; passed in so that expiry needs no reload and tests need no clock).
  ListVerdict CheckLists(const RequestAttributes& request, Micros now) const;

  // The limit of `entries` in `domain` (see Domain::Match); nullptr when the domain is unknown,
  // nothing matches, or the matched node is whitelisted. Points into the RuleSet.
  const DescriptorLimit* MatchDescriptor(std::string_view domain,
                                         std::span<const DescriptorEntry> entries) const {
    return LookupDescriptor(domain, entries).limit;
  }
  // The same, with what the counter and metric keys need (see Domain::Lookup).
  DescriptorMatch LookupDescriptor(std::string_view domain,
                                   std::span<const DescriptorEntry> entries) const;
  bool HasDomain(std::string_view domain) const { return domains_.contains(domain); }

  // Every loaded rule, disabled ones included, in file order.
  std::span<const Rule> rules() const { return rules_; }
  size_t size() const { return rules_.size(); }  // rule count, disabled included (/health)
  const Rule* FindRule(std::string_view id) const;
  std::span<const ListEntry> allow_list() const { return allow_; }
  std::span<const ListEntry> deny_list() const { return deny_; }
  size_t domain_count() const { return domains_.size(); }
  // Enabled rules with no indexable pattern (e.g. an empty match, or only globs starting with
  // `*`): every request checks these in full. For diagnostics and tests.
  size_t unindexed_rule_count() const { return rule_index_.scan_size(); }

 private:
  RuleSet() = default;
  static std::shared_ptr<const RuleSet> Build(
      std::vector<Rule> rules, std::vector<ListEntry> allow, std::vector<ListEntry> deny,
      internal::StringMap<std::shared_ptr<const Domain>> domains);

  // The first active entry of `list` matching `request`, or nullptr.
  static const ListEntry* FindEntry(const std::vector<ListEntry>& list,
                                    const internal::MatchIndex& index,
                                    const internal::PreparedRequest& request, Micros now);

  std::vector<Rule> rules_;
  std::vector<int32_t> group_of_;    // per rule: index of its group name, -1 without one
  internal::MatchIndex rule_index_;  // enabled rules only; ids are positions in rules_
  internal::StringMap<uint32_t> rule_by_id_;

  std::vector<ListEntry> allow_;
  std::vector<ListEntry> deny_;
  internal::MatchIndex allow_index_;
  internal::MatchIndex deny_index_;

  // Pointers: DescriptorLimit pointers handed out stay valid whatever the map does; shared with
  // the sets Extend makes.
  internal::StringMap<std::shared_ptr<const Domain>> domains_;
};

}  // namespace sluice::rules
