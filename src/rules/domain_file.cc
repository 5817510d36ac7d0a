// Envoy-compatible domain files (CONTRACT §3.2): `domain:` and `descriptors:`, in the format of
// envoyproxy/ratelimit, with its wording for problems where it has one.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "rules/loader_internal.h"
#include "rules/pattern.h"
#include "rules/strings.h"

namespace sluice::rules::internal {

namespace {

bool OneOf(std::string_view text, std::initializer_list<std::string_view> spellings) {
  return std::find(spellings.begin(), spellings.end(), text) != spellings.end();
}

// What YAML 1.1 (and so envoyproxy/ratelimit's YAML library) makes of a plain (unquoted)
// scalar: null, a bool, a number, or else a string.
MetadataValue PlainScalar(const std::string& text) {
  if (OneOf(text, {"", "~", "null", "Null", "NULL"})) return {};
  if (OneOf(text, {"y", "Y", "yes", "Yes", "YES", "on", "On", "ON", "true", "True", "TRUE"})) {
    return {true};
  }
  if (OneOf(text, {"n", "N", "no", "No", "NO", "off", "Off", "OFF", "false", "False", "FALSE"})) {
    return {false};
  }
  if (OneOf(text, {".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"})) {
    return {std::numeric_limits<double>::infinity()};
  }
  if (OneOf(text, {"-.inf", "-.Inf", "-.INF"})) return {-std::numeric_limits<double>::infinity()};
  if (OneOf(text, {".nan", ".NaN", ".NAN"})) return {std::numeric_limits<double>::quiet_NaN()};
  // Decimal integers and floats; other spellings (hex, octal, sexagesimal) stay strings.
  const bool numeric = text.find_first_not_of("0123456789+-.eE") == std::string::npos &&
                       text.find_first_of("0123456789") != std::string::npos;
  if (numeric) {
    char* end = nullptr;
    const double d = std::strtod(text.c_str(), &end);
    if (end == text.c_str() + text.size()) return {d};
  }
  return {text};
}

// Whether a mapping key is one envoyproxy/ratelimit refuses as "not of type string": a plain
// scalar YAML 1.1 reads as a number, a bool or null.
bool IsNonStringKey(const YAML::Node& key) {
  return key.IsScalar() && key.Tag() == "?" &&
         !std::holds_alternative<std::string>(PlainScalar(key.Scalar()).value);
}

// Reads one domain file into a LoadState, reporting problems to a Reader.
class DomainFileReader {
 public:
  DomainFileReader(yaml::Reader& reader, LoadState& state) : r_(reader), state_(state) {}

  void Load(const YAML::Node& root);

 private:
  DescriptorLevel LoadDescriptors(Domain& domain, const YAML::Node& seq,
                                  const std::string& parent_key);
  std::optional<DescriptorLimit> LoadRateLimit(const yaml::Field& field, std::string full_key);
  std::shared_ptr<const MetadataValue::Map> LoadMetadata(const yaml::Field& field);
  MetadataValue Value(const YAML::Node& node);

  // ForEachField, in envoyproxy/ratelimit's words for a key it does not know ("config error,
  // unknown key 'X'") or one that is not a string ("config error, key is not of type string").
  template <typename Fn>
  void Fields(const YAML::Node& map, std::string_view what, Fn fn) {
    r_.ForEachField(map, what, [&](const yaml::Field& f) {
      if (IsNonStringKey(f.key)) {
        Problem(yaml::At(f.key), Cat("config error, key is not of type string: ", f.name));
      } else if (!fn(f)) {
        Problem(yaml::At(f.key), Cat("config error, unknown key '", f.name, "' in ", what));
      }
      return true;
    });
  }

  void Problem(yaml::Pos pos, std::string_view message) { r_.Problem(pos, message); }
  size_t ProblemCount() { return r_.problems().size(); }
  SourceLocation Location(yaml::Pos pos) { return internal::Location(r_, pos); }

  yaml::Reader& r_;
  LoadState& state_;
};

void DomainFileReader::Load(const YAML::Node& root) {
  const size_t problems_before = ProblemCount();
  Domain domain;
  std::optional<YAML::Node> descriptors;
  yaml::Pos domain_pos = yaml::At(root);
  bool domain_seen = false;
  Fields(root, "domain file", [&](const yaml::Field& f) {
    if (f.name == "domain") {
      domain_seen = true;
      domain_pos = f.value_pos();
      if (f.value.IsNull() || (f.value.IsScalar() && f.value.Scalar().empty())) {
        Problem(domain_pos, "config file cannot have empty domain");
      } else {
        domain.name = r_.String(f).value_or("");
        CheckPrintable(r_, f, domain.name);
      }
    } else if (f.name == "descriptors") {
      if (r_.ExpectSequence(f, "descriptors")) descriptors = f.value;
    } else {
      return false;
    }
    return true;
  });
  // A file with `descriptors` and no `domain` is a domain file too (see loader.cc).
  if (!domain_seen) Problem(domain_pos, "config file cannot have empty domain");
  if (ProblemCount() != problems_before) return;
  domain.location = Location(domain_pos);
  if (descriptors.has_value()) {
    domain.top = LoadDescriptors(domain, *descriptors, domain.name + ".");
  }
  const auto [it, inserted] = state_.domain_names.try_emplace(domain.name, domain.location);
  if (!inserted) {
    Problem(domain_pos, Cat("duplicate domain '", domain.name,
                            "' in config file (first defined at ", it->second.ToString(), ")"));
    return;
  }
  if (ProblemCount() != problems_before) return;
  state_.domains.push_back(std::move(domain));
}

DescriptorLevel DomainFileReader::LoadDescriptors(Domain& domain, const YAML::Node& seq,
                                                  const std::string& parent_key) {
  DescriptorLevel level;
  if (seq.IsNull()) return level;
  for (const YAML::Node& item : seq) {
    if (!CountRule(state_, r_, yaml::At(item))) continue;
    if (!item.IsMap()) {
      // envoyproxy/ratelimit's words; it prints the item (a scalar, here, where there is one).
      Problem(yaml::At(item), Cat("config error, yaml file contains list of type other than map: ",
                                  item.IsScalar() ? item.Scalar() : "a list or null"));
      continue;
    }
    const size_t problems_before = ProblemCount();
    DescriptorNode node;
    std::optional<YAML::Node> key_node;
    std::optional<std::pair<YAML::Node, YAML::Node>> rate_limit;  // key, value
    std::optional<YAML::Node> children;
    bool shadow_mode = false;
    bool quota_mode = false;
    bool detailed_metric = false;
    std::optional<YAML::Node> share_key;
    std::shared_ptr<const MetadataValue::Map> metadata;
    Fields(item, "descriptor", [&](const yaml::Field& f) {
      // Keys and values make up metric keys (DescriptorLimit::full_key).
      if (f.name == "key") {
        key_node = f.key;
        node.key = r_.String(f).value_or("");
        CheckPrintable(r_, f, node.key);
      } else if (f.name == "value") {
        // An empty value is envoyproxy/ratelimit's "no value": the key-only default.
        if (!f.value.IsNull()) node.value = r_.String(f).value_or("");
        CheckPrintable(r_, f, node.value);
      } else if (f.name == "rate_limit") {
        rate_limit.emplace(f.key, f.value);
      } else if (f.name == "descriptors") {
        if (r_.ExpectSequence(f, "descriptors")) children = f.value;
      } else if (f.name == "shadow_mode") {
        shadow_mode = r_.Bool(f).value_or(false);
      } else if (f.name == "detailed_metric") {
        detailed_metric = r_.Bool(f).value_or(false);
      } else if (f.name == "quota_mode") {
        quota_mode = r_.Bool(f).value_or(false);
      } else if (f.name == "value_to_metric") {
        node.value_to_metric = r_.Bool(f).value_or(false);
      } else if (f.name == "share_threshold") {
        share_key = f.key;
        node.share_threshold = r_.Bool(f).value_or(false);
      } else if (f.name == "metadata") {
        metadata = LoadMetadata(f);
      } else {
        return false;
      }
      return true;
    });
    if (node.key.empty()) {
      Problem(key_node.has_value() ? yaml::At(*key_node) : yaml::At(item),
              "descriptor has empty key");
      continue;
    }
    const std::string full_key =
        parent_key + node.key + (node.value.empty() ? "" : "_" + node.value);
    if (node.share_threshold && node.value.find('*') == std::string::npos) {
      Problem(yaml::At(*share_key),
              Cat("share_threshold can only be used with wildcard values (containing '*'), but "
                  "found key '",
                  node.key, node.value.empty() ? "" : "_" + node.value, "'"));
    }
    if (children.has_value()) node.children = LoadDescriptors(domain, *children, full_key + ".");
    if (rate_limit.has_value()) {
      node.rate_limit =
          LoadRateLimit(yaml::Field{"rate_limit", rate_limit->first, rate_limit->second}, full_key);
      if (node.rate_limit.has_value()) {
        node.rate_limit->shadow_mode = shadow_mode;
        node.rate_limit->quota_mode = quota_mode;
        node.rate_limit->detailed_metric = detailed_metric;
        node.rate_limit->metadata = metadata;
        node.rate_limit->location = Location(yaml::At(item));
      }
    }
    DescriptorLevel::KeyNodes& same_key = level.by_key[node.key];
    const bool wildcard = node.value.find('*') != std::string::npos;
    bool duplicate = false;
    if (node.value.empty()) {
      duplicate = same_key.key_only.has_value();
    } else if (wildcard) {
      for (uint32_t i : same_key.wildcards) duplicate |= domain.nodes[i].value == node.value;
    } else {
      duplicate = same_key.exact.contains(node.value);
    }
    if (duplicate) {
      Problem(yaml::At(*key_node), Cat("duplicate descriptor composite key '", full_key, "'"));
      continue;
    }
    if (ProblemCount() != problems_before) continue;
    if (wildcard) {
      // Domain files take every `*` as a wildcard (no escapes), as envoyproxy/ratelimit does.
      node.value_glob = *Glob::Parse(node.value, Glob::Escapes::kNone);
    }
    const auto index = static_cast<uint32_t>(domain.nodes.size());
    if (node.value.empty()) {
      same_key.key_only = index;
    } else if (wildcard) {
      same_key.wildcards.push_back(index);
    } else {
      same_key.exact.emplace(node.value, index);
    }
    domain.nodes.push_back(std::move(node));
  }
  // Keys whose only descriptors had problems leave empty entries behind; drop them so that
  // `empty()` still means "no children".
  absl::erase_if(level.by_key, [](const auto& kv) {
    return kv.second.exact.empty() && kv.second.wildcards.empty() &&
           !kv.second.key_only.has_value();
  });
  return level;
}

std::optional<DescriptorLimit> DomainFileReader::LoadRateLimit(const yaml::Field& field,
                                                               std::string full_key) {
  if (!r_.ExpectMapping(field)) return std::nullopt;
  const YAML::Node& node = field.value;
  const size_t problems_before = ProblemCount();
  DescriptorLimit dl;
  dl.full_key = std::move(full_key);
  std::optional<RateLimitUnit> unit;
  std::optional<YAML::Node> unit_key;
  std::optional<int64_t> requests_per_unit;
  bool requests_per_unit_seen = false;
  Algorithm algorithm = Algorithm::kFixedWindow;
  int64_t burst = 0;
  yaml::Pos requests_pos = yaml::At(node);
  yaml::Pos multiplier_pos = yaml::At(node);
  Fields(node, "rate_limit", [&](const yaml::Field& f) {
    if (f.name == "unit") {
      unit_key = f.key;
      std::optional<std::string> s = r_.String(f);
      if (!s.has_value()) return true;
      unit = ParseRateLimitUnit(*s);
      if (!unit.has_value()) {
        Problem(f.value_pos(), Cat("invalid rate limit unit '", *s,
                                   "' (expected second, minute, hour, day, week, month or year)"));
      }
    } else if (f.name == "requests_per_unit") {
      requests_per_unit_seen = true;
      requests_pos = f.value_pos();
      requests_per_unit = r_.Integer(f, 0, std::numeric_limits<uint32_t>::max());
    } else if (f.name == "unlimited") {
      dl.unlimited = r_.Bool(f).value_or(false);
    } else if (f.name == "name") {
      dl.name = r_.String(f).value_or("");  // answered as current_limit.name
      CheckPrintable(r_, f, dl.name);
    } else if (f.name == "replaces") {
      if (!r_.ExpectSequence(f, "{name: ...} entries") || f.value.IsNull()) return true;
      for (const YAML::Node& item : f.value) {
        if (!item.IsMap()) {
          Problem(yaml::At(item), "a 'replaces' entry must be a mapping with 'name'");
          continue;
        }
        std::string replaced;
        Fields(item, "replaces entry", [&](const yaml::Field& rf) {
          if (rf.name != "name") return false;
          // `- name:` (null) is upstream's empty replaces entry, reported below.
          if (!rf.value.IsNull()) replaced = r_.String(rf).value_or("");
          return true;
        });
        if (replaced.empty()) {
          Problem(yaml::At(item), "should not have an empty replaces entry");
        } else {
          dl.replaces.push_back(std::move(replaced));
        }
      }
    } else if (f.name == "algorithm") {
      algorithm = ReadAlgorithm(r_, f).value_or(algorithm);
      if (algorithm == Algorithm::kConcurrency) {
        // Envoy's API has no way to give a slot back: a descriptor can only rate-limit.
        Problem(f.value_pos(),
                "algorithm 'concurrency' is not available in domain files (Envoy's rate limit "
                "API cannot release a slot); use a Sluice rules file");
        algorithm = Algorithm::kFixedWindow;
      }
    } else if (f.name == "burst") {
      burst = r_.Integer(f, 1).value_or(0);
    } else if (f.name == "unit_multiplier") {
      multiplier_pos = f.value_pos();
      dl.unit_multiplier = r_.Integer(f, 1).value_or(1);
    } else {
      return false;
    }
    return true;
  });
  if (!dl.name.empty() &&
      std::find(dl.replaces.begin(), dl.replaces.end(), dl.name) != dl.replaces.end()) {
    Problem(yaml::At(node), "replaces should not contain name of same descriptor");
  }
  if (dl.unlimited) {
    // envoyproxy/ratelimit's rule: a unit next to `unlimited` is a contradiction.
    if (unit_key.has_value()) {
      Problem(yaml::At(*unit_key), "should not specify rate limit unit when unlimited");
    }
  } else {
    if (!unit_key.has_value()) {
      Problem(yaml::At(node),
              "invalid rate limit unit '' (rate_limit is missing required key 'unit')");
    }
    if (!requests_per_unit_seen) {
      // envoyproxy/ratelimit would read a missing value as 0 and refuse every request; a
      // silent block is too easy to ship by mistake, so it must be written out.
      Problem(yaml::At(node),
              "rate_limit is missing required key 'requests_per_unit' (0 refuses every request)");
    }
  }
  if (ProblemCount() != problems_before) return std::nullopt;
  if (dl.unlimited) return dl;

  dl.unit = *unit;
  dl.requests_per_unit = static_cast<uint32_t>(*requests_per_unit);
  const Micros unit_micros = RateLimitUnitMicros(dl.unit);
  if (dl.unit_multiplier > Limit::kMaxWindow / unit_micros) {
    Problem(multiplier_pos, "'unit_multiplier' makes the window longer than 10 years");
    return std::nullopt;
  }
  if (dl.requests_per_unit == 0) return dl;  // blocks_all(): no Limit to run
  absl::StatusOr<Limit> limit = Limit::Create({.algorithm = algorithm,
                                               .limit = dl.requests_per_unit,
                                               .window = unit_micros * dl.unit_multiplier,
                                               .burst = burst});
  if (!limit.ok()) {
    Problem(requests_pos, Cat("invalid rate_limit: ", limit.status().message()));
    return std::nullopt;
  }
  dl.limit = *limit;
  return dl;
}

std::shared_ptr<const MetadataValue::Map> DomainFileReader::LoadMetadata(const yaml::Field& field) {
  // Not key-checked, as envoyproxy/ratelimit: its keys and values are the user's.
  if (field.value.IsNull()) return nullptr;
  if (!r_.ExpectMapping(field)) return nullptr;
  MetadataValue value = Value(field.value);
  auto* map = std::get_if<MetadataValue::Map>(&value.value);
  if (map == nullptr || map->empty()) return nullptr;
  return std::make_shared<const MetadataValue::Map>(std::move(*map));
}

MetadataValue DomainFileReader::Value(const YAML::Node& node) {
  // The parser has bounded the nodes (aliases expanded) and the depth already.
  if (node.IsScalar()) {
    if (node.Tag() == "?") return PlainScalar(node.Scalar());
    return {node.Scalar()};  // quoted, or tagged: the text
  }
  if (node.IsSequence()) {
    MetadataValue::List list;
    for (const YAML::Node& item : node) list.push_back(Value(item));
    return {std::move(list)};
  }
  if (node.IsMap()) {
    MetadataValue::Map map;
    for (const auto& kv : node) {
      if (!kv.first.IsScalar()) {
        Problem(yaml::At(kv.first), "error parsing metadata: keys must be scalars");
        continue;
      }
      const std::string& key = kv.first.Scalar();
      auto same = [&](const MetadataEntry& entry) { return entry.key == key; };
      if (std::find_if(map.begin(), map.end(), same) != map.end()) {
        Problem(yaml::At(kv.first), Cat("error parsing metadata: duplicate key '", key, "'"));
        continue;
      }
      map.push_back(MetadataEntry{key, Value(kv.second)});
    }
    return {std::move(map)};
  }
  return {};  // null
}

}  // namespace

void LoadDomainFile(const YAML::Node& root, yaml::Reader& reader, LoadState& state) {
  DomainFileReader(reader, state).Load(root);
}

}  // namespace sluice::rules::internal
