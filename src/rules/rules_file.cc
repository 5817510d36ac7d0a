// Sluice rules files (CONTRACT §3.1): `rules:` and `lists:`.
#include <algorithm>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "rules/attributes.h"
#include "rules/loader.h"
#include "rules/loader_internal.h"
#include "rules/pattern.h"
#include "rules/strings.h"
#include "yaml/values.h"

namespace sluice::rules::internal {

namespace {

// Reads one rules file into a LoadState, reporting problems to a Reader.
class RulesFileReader {
 public:
  RulesFileReader(yaml::Reader& reader, LoadState& state) : r_(reader), state_(state) {}

  void Load(const YAML::Node& root);
  void LoadRule(const YAML::Node& node);
  void LoadListEntry(const YAML::Node& node, std::vector<ListEntry>& list);

 private:
  std::optional<Match> LoadMatch(const yaml::Field& field);
  std::optional<AttributePattern> LoadPattern(const AttributeRef& ref, const yaml::Field& field);
  void LoadLists(const yaml::Field& field);
  std::optional<Penalty> LoadPenalty(const yaml::Field& field);

  void Problem(yaml::Pos pos, std::string_view message) { r_.Problem(pos, message); }
  size_t ProblemCount() { return r_.problems().size(); }
  SourceLocation Location(yaml::Pos pos) { return internal::Location(r_, pos); }

  yaml::Reader& r_;
  LoadState& state_;
};

void RulesFileReader::Load(const YAML::Node& root) {
  r_.ForEachField(root, "rules file", [&](const yaml::Field& f) {
    if (f.name == "rules") {
      if (r_.ExpectSequence(f, "rules")) {
        for (const YAML::Node& rule : f.value) {
          if (CountRule(state_, r_, yaml::At(rule))) LoadRule(rule);
        }
      }
    } else if (f.name == "lists") {
      LoadLists(f);
    } else {
      return false;
    }
    return true;
  });
}

void RulesFileReader::LoadRule(const YAML::Node& node) {
  if (!node.IsMap()) {
    Problem(yaml::At(node), "a rule must be a mapping");
    return;
  }
  const size_t problems_before = ProblemCount();
  std::string id;
  bool id_seen = false;  // present, even if invalid (then reported): not also "missing"
  std::string group;
  int64_t priority = 100;
  Match match;
  std::vector<AttributeRef> key_attributes;
  std::optional<int64_t> limit;
  bool limit_seen = false;
  std::optional<Micros> window;
  bool window_seen = false;
  Algorithm algorithm = Algorithm::kSlidingWindowCounter;
  int64_t burst = 0;  // 0: Limit::Create defaults it to `limit`
  RuleMode mode = RuleMode::kEnforce;
  bool enabled = true;
  std::string description;
  Consistency consistency = Consistency::kDefault;
  yaml::Pos consistency_pos;
  std::optional<Overshoot> max_overshoot;
  yaml::Pos limit_pos;
  yaml::Pos algorithm_pos;
  std::optional<Micros> lease_ttl;
  yaml::Pos lease_ttl_pos;
  bool shape = false;
  yaml::Pos shape_pos;
  std::optional<Micros> max_delay;
  yaml::Pos max_delay_pos;
  yaml::Pos window_pos;
  std::optional<Penalty> penalty;
  yaml::Pos penalty_pos;

  r_.ForEachField(node, "rule", [&](const yaml::Field& f) {
    if (f.name == "id") {
      id_seen = true;
      std::optional<std::string> s = r_.String(f);
      if (!s.has_value()) return true;
      if (s->empty()) {
        Problem(f.value_pos(), "'id' must not be empty");
        return true;
      }
      // Ids are metric labels, JSON strings and log fields.
      if (!CheckPrintable(r_, f, *s)) return true;
      if (*s == kOtherRuleId) {
        Problem(f.value_pos(), Cat("rule id '", kOtherRuleId,
                                   "' is reserved (the metric series of rules without their own)"));
        return true;
      }
      id = *s;
      const auto [it, inserted] = state_.rule_ids.try_emplace(id, Location(f.value_pos()));
      if (!inserted) {
        Problem(f.value_pos(),
                Cat("duplicate rule id '", id, "' (first defined at ", it->second.ToString(), ")"));
      }
    } else if (f.name == "group") {
      group = r_.String(f).value_or("");
    } else if (f.name == "priority") {
      priority = r_.Integer(f).value_or(priority);
    } else if (f.name == "match") {
      match = LoadMatch(f).value_or(Match{});
    } else if (f.name == "key") {
      if (!r_.ExpectSequence(f, "attribute names")) return true;
      for (const YAML::Node& item : f.value) {
        std::optional<AttributeRef> ref;
        if (item.IsScalar()) ref = ParseAttributeName(item.Scalar());
        if (!ref.has_value()) {
          Problem(yaml::At(item),
                  Cat("unknown attribute ", item.IsScalar() ? "'" + item.Scalar() + "'" : "",
                      " in 'key' (expected user_id, api_key, ip_address, "
                      "endpoint, method, tier or headers.<name>)"));
        } else if (std::find(key_attributes.begin(), key_attributes.end(), *ref) !=
                   key_attributes.end()) {
          Problem(yaml::At(item), Cat("duplicate attribute '", ref->Name(), "' in 'key'"));
        } else {
          key_attributes.push_back(*std::move(ref));
        }
      }
    } else if (f.name == "limit") {
      limit_seen = true;
      limit_pos = f.value_pos();
      limit = r_.Integer(f, 1);
    } else if (f.name == "window") {
      window_seen = true;
      window_pos = f.key_pos();
      window = r_.Duration(f, Limit::kMaxWindow, "10 years");
    } else if (f.name == "algorithm") {
      algorithm_pos = f.value_pos();
      algorithm = ReadAlgorithm(r_, f).value_or(algorithm);
    } else if (f.name == "lease_ttl") {
      lease_ttl_pos = f.key_pos();
      lease_ttl = r_.Duration(f, Limit::kMaxWindow, "10 years");
    } else if (f.name == "shape") {
      shape_pos = f.key_pos();
      shape = r_.Bool(f).value_or(false);
    } else if (f.name == "max_delay") {
      max_delay_pos = f.key_pos();
      max_delay = r_.Duration(f, Limit::kMaxWindow, "10 years");
    } else if (f.name == "penalty") {
      penalty_pos = f.key_pos();
      penalty = LoadPenalty(f);
    } else if (f.name == "burst") {
      // Accepted on every algorithm: those without a bucket ignore it (Limit keeps it unused).
      burst = r_.Integer(f, 1).value_or(0);
    } else if (f.name == "mode") {
      mode =
          r_.Enum<RuleMode>(f, {{"enforce", RuleMode::kEnforce}, {"shadow", RuleMode::kShadow}},
                            [](std::string_view got) {
                              return Cat("unknown mode '", got, "' (expected enforce or shadow)");
                            })
              .value_or(mode);
    } else if (f.name == "enabled") {
      enabled = r_.Bool(f).value_or(enabled);
    } else if (f.name == "consistency") {
      consistency_pos = f.value_pos();
      consistency =
          r_.Enum<Consistency>(
                f, {{"exact", Consistency::kExact}, {"leased", Consistency::kLeased}},
                [](std::string_view got) {
                  return Cat("unknown consistency '", got, "' (expected exact or leased)");
                })
              .value_or(consistency);
    } else if (f.name == "max_overshoot") {
      max_overshoot = ReadOvershoot(r_, f);
    } else if (f.name == "description") {
      description = r_.String(f).value_or("");
    } else {
      return false;
    }
    return true;
  });

  const yaml::Pos rule_pos = yaml::At(node);
  // Concurrency counts requests in flight, not a rate: no window, a lease_ttl instead.
  const bool concurrent = algorithm == Algorithm::kConcurrency;
  for (const auto& [seen, name] : {std::pair{id_seen, "id"},
                                   std::pair{limit_seen, "limit"},
                                   {window_seen || concurrent, "window"}}) {
    if (!seen) Problem(rule_pos, Cat("rule is missing required key '", name, "'"));
  }
  if (concurrent && window_seen) {
    Problem(window_pos, "a concurrency rule has no 'window': its slots expire after 'lease_ttl'");
  }
  if (!concurrent && lease_ttl.has_value()) {
    Problem(lease_ttl_pos, "'lease_ttl' is for algorithm: concurrency only");
  }
  if (shape && algorithm != Algorithm::kLeakyBucket) {
    Problem(shape_pos, "'shape' needs algorithm: leaky_bucket (its delay is what is held)");
  }
  if (max_delay.has_value() && !shape) {
    Problem(max_delay_pos, "'max_delay' applies only with 'shape: true'");
  }
  if (penalty.has_value() && concurrent) {
    Problem(penalty_pos, "'penalty' counts rejections of a rate: not for algorithm: concurrency");
  }
  if (penalty.has_value() && mode == RuleMode::kShadow) {
    Problem(penalty_pos, "'penalty' needs an enforced rule: a shadow rule rejects nothing");
  }
  if (ProblemCount() != problems_before) return;

  // CONTRACT §10: slots expire after lease_ttl (default 30 s), kept as the limit's window.
  constexpr Micros kDefaultLeaseTtl = 30 * kMicrosPerSecond;
  const Micros limit_window = concurrent ? lease_ttl.value_or(kDefaultLeaseTtl) : *window;
  // A shaped queue holds at most max_delay's worth of requests: a request is admitted with the
  // delay the queue ahead of it takes to drain, so capping the queue at max_delay × rate (+ 1,
  // the request that finds the queue at exactly max_delay) makes a longer delay a rejection —
  // decided by the store like any other, with nothing to give back.
  constexpr Micros kDefaultMaxDelay = kMicrosPerSecond;
  const Micros delay_bound = shape ? max_delay.value_or(kDefaultMaxDelay) : 0;
  int64_t queue = burst;
  if (shape) {
    const int64_t burst_or_limit = burst == 0 ? *limit : burst;
    const __int128 fits = static_cast<__int128>(delay_bound) * *limit / *window + 1;
    queue = static_cast<int64_t>(std::min<__int128>(burst_or_limit, fits));
  }
  absl::StatusOr<Limit> created = Limit::Create(
      {.algorithm = algorithm, .limit = *limit, .window = limit_window, .burst = queue});
  if (!created.ok()) {
    Problem(limit_pos, Cat("invalid limit: ", created.status().message()));
    return;
  }
  if (consistency == Consistency::kLeased && !Leasable(algorithm)) {
    Problem(consistency_pos,
            Cat("consistency 'leased' is not supported by ", AlgorithmName(algorithm),
                " (use fixed_window, sliding_window_counter, token_bucket or gcra; see "
                "docs/algorithms.md)"));
    return;
  }
  state_.rules.push_back(Rule{.id = std::move(id),
                              .group = std::move(group),
                              .priority = priority,
                              .match = std::move(match),
                              .key = std::move(key_attributes),
                              .limit = *created,
                              .consistency = consistency,
                              .max_overshoot = max_overshoot,
                              .mode = mode,
                              .shape = shape,
                              .max_delay = delay_bound,
                              .penalty = std::move(penalty),
                              .enabled = enabled,
                              .description = std::move(description),
                              .json = YamlToJson(node),
                              .file_order = 0,
                              .location = Location(rule_pos)});
}

std::optional<AttributePattern> RulesFileReader::LoadPattern(const AttributeRef& ref,
                                                             const yaml::Field& field) {
  // Messages name the attribute as Sluice spells it (header names lowercased).
  const std::string name = ref.Name();
  const yaml::Field named{name, field.key, field.value};
  std::optional<std::string> text = r_.String(named);
  if (!text.has_value()) return std::nullopt;
  absl::StatusOr<AttributePattern> pattern = AttributePattern::Parse(ref, *text);
  if (!pattern.ok()) {
    Problem(named.value_pos(), Cat("'", name, "': ", pattern.status().message()));
    return std::nullopt;
  }
  return *std::move(pattern);
}

// `penalty: {after: N, within: DURATION, ban: DURATION}`, all three required.
std::optional<Penalty> RulesFileReader::LoadPenalty(const yaml::Field& field) {
  if (!r_.ExpectMapping(field, "{after, within, ban}")) return std::nullopt;
  // A rejection is one entry of a sliding window log: `after` bounds its memory per key.
  constexpr int64_t kMaxAfter = 10'000;
  std::optional<int64_t> after;
  std::optional<Micros> within;
  std::optional<Micros> ban;
  const size_t problems_before = ProblemCount();
  r_.Fields(
      field.value, "'penalty'",
      {{"after", [&](const yaml::Field& f) { after = r_.Integer(f, 1, kMaxAfter); }},
       {"within",
        [&](const yaml::Field& f) { within = r_.Duration(f, Limit::kMaxWindow, "10 years"); }},
       {"ban",
        [&](const yaml::Field& f) { ban = r_.Duration(f, Limit::kMaxWindow, "10 years"); }}});
  if (ProblemCount() != problems_before) return std::nullopt;
  for (const auto& [seen, name] :
       {std::pair{after.has_value(), "after"}, std::pair{within.has_value(), "within"},
        std::pair{ban.has_value(), "ban"}}) {
    if (!seen) Problem(field.key_pos(), Cat("'penalty' is missing required key '", name, "'"));
  }
  if (ProblemCount() != problems_before) return std::nullopt;
  absl::StatusOr<Limit> rejections = Limit::Create(
      {.algorithm = Algorithm::kSlidingWindowLog, .limit = *after, .window = *within});
  absl::StatusOr<Limit> banned =
      Limit::Create({.algorithm = Algorithm::kTokenBucket, .limit = 1, .window = *ban, .burst = 1});
  for (const absl::StatusOr<Limit>* made : {&rejections, &banned}) {
    if (!made->ok()) {
      Problem(field.key_pos(), Cat("invalid penalty: ", made->status().message()));
      return std::nullopt;
    }
  }
  return Penalty{.after = *after,
                 .within = *within,
                 .ban = *ban,
                 .rejections = *rejections,
                 .banned = *banned};
}

std::optional<Match> RulesFileReader::LoadMatch(const yaml::Field& field) {
  if (field.value.IsNull()) return Match{};  // `match:` left empty, like `match: {}`
  if (!r_.ExpectMapping(field, "of attribute to pattern")) return std::nullopt;
  Match match;
  r_.ForEachField(field.value, "match", [&](const yaml::Field& f) {
    std::optional<AttributeRef> ref = ParseAttributeName(f.name);
    if (!ref.has_value()) return false;
    for (const AttributePattern& existing : match) {
      if (existing.attribute() == *ref) {
        Problem(f.key_pos(), Cat("duplicate attribute '", ref->Name(), "' in match"));
        return true;
      }
    }
    if (std::optional<AttributePattern> p = LoadPattern(*ref, f)) match.push_back(*std::move(p));
    return true;
  });
  return match;
}

void RulesFileReader::LoadLists(const yaml::Field& field) {
  if (field.value.IsNull()) return;
  if (!r_.ExpectMapping(field, "with 'allow' and/or 'deny'")) return;
  r_.ForEachField(field.value, "lists", [&](const yaml::Field& f) {
    if (f.name != "allow" && f.name != "deny") return false;
    if (r_.ExpectSequence(f, "entries")) {
      for (const YAML::Node& entry : f.value) {
        if (!CountListEntry(state_, r_, yaml::At(entry))) continue;
        LoadListEntry(entry, f.name == "allow" ? state_.allow : state_.deny);
      }
    }
    return true;
  });
}

void RulesFileReader::LoadListEntry(const YAML::Node& node, std::vector<ListEntry>& list) {
  if (!node.IsMap()) {
    Problem(yaml::At(node), "a list entry must be a mapping of attribute to pattern");
    return;
  }
  const size_t problems_before = ProblemCount();
  ListEntry entry;
  entry.location = Location(yaml::At(node));
  r_.ForEachField(node, "list entry", [&](const yaml::Field& f) {
    if (f.name == "reason") {
      entry.reason = r_.String(f).value_or("");
    } else if (f.name == "expires_at") {
      std::optional<std::string> s = r_.String(f);
      if (!s.has_value()) return true;
      absl::StatusOr<Micros> t = yaml::ParseRfc3339(*s);
      if (t.ok()) {
        entry.expires_at = *t;
      } else {
        Problem(f.value_pos(), Cat("'expires_at': ", t.status().message()));
      }
    } else if (std::optional<AttributeRef> ref = ParseAttributeName(f.name)) {
      for (const AttributePattern& existing : entry.match) {
        if (existing.attribute() == *ref) {
          Problem(f.key_pos(), Cat("duplicate attribute '", ref->Name(), "' in list entry"));
          return true;
        }
      }
      if (std::optional<AttributePattern> p = LoadPattern(*ref, f)) {
        entry.match.push_back(*std::move(p));
      }
    } else {
      return false;
    }
    return true;
  });
  if (ProblemCount() != problems_before) return;
  if (entry.match.empty()) {
    // An entry without attributes would allow (or deny) every request: surely a mistake.
    Problem(yaml::At(node), "a list entry must name at least one attribute");
    return;
  }
  list.push_back(std::move(entry));
}

}  // namespace

void LoadRulesFile(const YAML::Node& root, yaml::Reader& reader, LoadState& state) {
  RulesFileReader(reader, state).Load(root);
}

void LoadRuleNode(const YAML::Node& node, yaml::Reader& reader, LoadState& state) {
  if (CountRule(state, reader, yaml::At(node))) RulesFileReader(reader, state).LoadRule(node);
}

void LoadListEntryNode(const YAML::Node& node, yaml::Reader& reader, LoadState& state,
                       std::vector<ListEntry>& list) {
  if (CountListEntry(state, reader, yaml::At(node))) {
    RulesFileReader(reader, state).LoadListEntry(node, list);
  }
}

}  // namespace sluice::rules::internal
