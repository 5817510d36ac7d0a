// Envoy-compatible domain files (CONTRACT §3.2): `domain:` and `descriptors:`, in the format of
// envoyproxy/ratelimit, with its wording for problems where it has one.
#include <algorithm>
#include <limits>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "rules/loader_internal.h"
#include "rules/pattern.h"
#include "rules/strings.h"

namespace sluice::rules::internal {

namespace {

// Reads one domain file into a LoadState, reporting problems to a Reader.
class DomainFileReader {
 public:
  DomainFileReader(yaml::Reader& reader, LoadState& state) : r_(reader), state_(state) {}

  void Load(const YAML::Node& root);

 private:
  DescriptorLevel LoadDescriptors(Domain& domain, const YAML::Node& seq,
                                  const std::string& parent_key);
  std::optional<DescriptorLimit> LoadRateLimit(const yaml::Field& field, std::string full_key);

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
  r_.ForEachField(root, "domain file", [&](const yaml::Field& f) {
    if (f.name == "domain") {
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
      Problem(yaml::At(item), "a descriptor must be a mapping");
      continue;
    }
    const size_t problems_before = ProblemCount();
    DescriptorNode node;
    std::optional<YAML::Node> key_node;
    std::optional<std::pair<YAML::Node, YAML::Node>> rate_limit;  // key, value
    std::optional<YAML::Node> children;
    bool shadow_mode = false;
    bool detailed_metric = false;
    r_.ForEachField(item, "descriptor", [&](const yaml::Field& f) {
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
    if (children.has_value()) node.children = LoadDescriptors(domain, *children, full_key + ".");
    if (rate_limit.has_value()) {
      node.rate_limit =
          LoadRateLimit(yaml::Field{"rate_limit", rate_limit->first, rate_limit->second}, full_key);
      if (node.rate_limit.has_value()) {
        node.rate_limit->shadow_mode = shadow_mode;
        node.rate_limit->detailed_metric = detailed_metric;
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
  r_.ForEachField(node, "rate_limit", [&](const yaml::Field& f) {
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
        r_.ForEachField(item, "replaces entry", [&](const yaml::Field& rf) {
          if (rf.name != "name") return false;
          replaced = r_.String(rf).value_or("");
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
    if (!unit_key.has_value()) Problem(yaml::At(node), "rate_limit is missing required key 'unit'");
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

}  // namespace

void LoadDomainFile(const YAML::Node& root, yaml::Reader& reader, LoadState& state) {
  DomainFileReader(reader, state).Load(root);
}

}  // namespace sluice::rules::internal
