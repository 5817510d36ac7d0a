// The rule model of Sluice rules files (CONTRACT §3.1): rules and allow/deny list entries.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/consistency.h"
#include "core/limit.h"
#include "core/time.h"
#include "rules/attributes.h"
#include "rules/pattern.h"

namespace sluice::rules {

// Where something was defined: for log lines and "first defined at" messages.
struct SourceLocation {
  std::string file;  // the path as given (or folder + name)
  int line = 0;      // 1-based; 0 when unknown
  int column = 0;    // 1-based; 0 when unknown

  std::string ToString() const;  // "FILE:LINE:COL", or "FILE" when the position is unknown
};

// Every listed attribute must match; an empty match matches every request.
using Match = std::vector<AttributePattern>;

// Whether `match` matches. `ip` is the parsed ip_address (nullptr if absent or unparseable).
bool MatchesAll(const Match& match, const RequestAttributes& request, const IpAddress* ip);

enum class RuleMode : uint8_t {
  kEnforce,  // rejects when over the limit
  kShadow,   // charged like an enforced rule; never rejects, never feeds the limit headers
};

// The rule_id of the metric series shared by the rules (and Envoy metric keys) that have none
// of their own (see Limiter::Options): the loader refuses it as a rule id.
inline constexpr std::string_view kOtherRuleId = "_other";

// `penalty: {after, within, ban}` (docs/configuration.md, "Penalties"): a key this rule rejects
// `after` times within `within` is denied (403, reason "penalty:RULE") for `ban`, on every server
// sharing the store. Both counters live in the store, beside the rule's own (counter_key.h).
struct Penalty {
  int64_t after = 0;  // rejections, >= 1
  Micros within = 0;
  Micros ban = 0;
  // sliding_window_log, `after` per `within`: one entry per rejection of the key.
  Limit rejections;
  // token_bucket, 1 per `ban`, burst 1: emptied when the key is banned, full again `ban` later.
  // A read (cost 0) of it gives remaining 0 exactly while the ban lasts.
  Limit banned;
};

struct Rule {
  std::string id;          // unique across all files
  std::string group;       // "" = no group; within a group only the best matching rule applies
  int64_t priority = 100;  // lower wins inside a group; ties go to the earlier file order
  Match match;
  // The counter is per distinct tuple of these attributes' values; empty = one shared counter.
  std::vector<AttributeRef> key;
  Limit limit;
  // CONTRACT §11: `consistency` and `max_overshoot` (unset: the store's defaults).
  Consistency consistency = Consistency::kDefault;
  std::optional<Overshoot> max_overshoot = std::nullopt;
  RuleMode mode = RuleMode::kEnforce;
  // CONTRACT §10, leaky_bucket only: gateway mode holds each admitted request for its delay.
  // The queue then holds at most `max_delay`'s worth (see rules_file.cc): a request whose delay
  // would exceed it is rejected.
  bool shape = false;
  Micros max_delay = 0;  // with shape: default 1 s
  std::optional<Penalty> penalty = std::nullopt;
  bool enabled = true;      // disabled rules are loaded (and counted) but never apply
  std::string description;  // free text for the admin API and the dashboard
  // The rule as canonical JSON (rule_json.h): as the admin API shows it and the rules database
  // stores it.
  std::string json;
  // Position in load order across all files: files in the order given, a folder's files in name
  // order, rules in file order. Breaks priority ties. Set by RuleSet::Create.
  uint32_t file_order = 0;
  SourceLocation location;  // of the rule's mapping
};

// An entry of `lists.allow` or `lists.deny`.
struct ListEntry {
  Match match;                       // non-empty: all attributes must match
  std::string reason;                // free text for the 403 body and logs; may be empty
  std::optional<Micros> expires_at;  // microseconds since the epoch; absent = never expires
  SourceLocation location;

  // An entry whose `expires_at` is now or in the past is ignored.
  bool ActiveAt(Micros now) const { return !expires_at.has_value() || now < *expires_at; }
};

}  // namespace sluice::rules
