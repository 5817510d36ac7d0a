#include "rules/descriptor.h"

#include "absl/container/flat_hash_set.h"
#include "rules/counter_key.h"
#include "rules/strings.h"
#include "yaml/values.h"

namespace sluice::rules {

namespace {

constexpr std::string_view kUnitNames[] = {"second", "minute", "hour", "day",
                                           "week",   "month",  "year"};
constexpr Micros kDay = 86400 * kMicrosPerSecond;
constexpr Micros kUnitMicros[] = {
    kMicrosPerSecond, 60 * kMicrosPerSecond, 3600 * kMicrosPerSecond, kDay, 7 * kDay, 30 * kDay,
    365 * kDay};

// How an entry found its node.
enum class MatchedBy : uint8_t { kValue, kWildcard, kKeyOnly };

// The node `entry` selects at `level`, or nullptr.
const DescriptorNode* Find(const Domain& domain, const DescriptorLevel& level,
                           const DescriptorEntry& entry, MatchedBy* by) {
  const auto it = level.by_key.find(entry.key);
  if (it == level.by_key.end()) return nullptr;
  const DescriptorLevel::KeyNodes& nodes = it->second;
  if (const auto exact = nodes.exact.find(entry.value); exact != nodes.exact.end()) {
    *by = MatchedBy::kValue;
    return &domain.nodes[exact->second];
  }
  for (uint32_t index : nodes.wildcards) {
    if (domain.nodes[index].value_glob->Matches(entry.value)) {
      *by = MatchedBy::kWildcard;
      return &domain.nodes[index];
    }
  }
  *by = MatchedBy::kKeyOnly;
  return nodes.key_only.has_value() ? &domain.nodes[*nodes.key_only] : nullptr;
}

}  // namespace

std::optional<RateLimitUnit> ParseRateLimitUnit(std::string_view name) {
  for (size_t i = 0; i < std::size(kUnitNames); ++i) {
    if (internal::EqualsIgnoreCase(name, kUnitNames[i])) return static_cast<RateLimitUnit>(i);
  }
  return std::nullopt;
}

std::string_view RateLimitUnitName(RateLimitUnit unit) {
  return kUnitNames[static_cast<size_t>(unit)];
}

Micros RateLimitUnitMicros(RateLimitUnit unit) { return kUnitMicros[static_cast<size_t>(unit)]; }

DescriptorMatch Domain::Lookup(std::span<const DescriptorEntry> entries) const {
  DescriptorMatch match;
  if (entries.empty()) return match;
  // Both metric keys are built along the walk, as envoyproxy/ratelimit's GetLimit does.
  std::string config_key = name;    // its valueToMetricFullKey
  std::string detailed_key = name;  // its detailedMetricFullKey
  const DescriptorLevel* level = &top;
  for (size_t i = 0; i < entries.size(); ++i) {
    const DescriptorEntry& entry = entries[i];
    MatchedBy by = MatchedBy::kValue;
    const DescriptorNode* node = Find(*this, *level, entry, &by);
    if (node == nullptr) return {};
    detailed_key.append(".").append(entry.key).append("_").append(entry.value);
    std::string_view value;  // the value the config key names for this entry
    if (by == MatchedBy::kWildcard && node->share_threshold) {
      // Tracked at any level: the limit may be on a node below the wildcard.
      if (match.shared.empty()) match.shared.resize(entries.size());
      match.shared[i] = node->value;
      value = node->value;
    } else if (by == MatchedBy::kWildcard) {
      value = node->value_to_metric ? entry.value : std::string_view(node->value);
    } else if (by == MatchedBy::kValue) {
      value = entry.value;
    } else if (node->value_to_metric) {
      value = entry.value;
    }
    config_key.append(".").append(entry.key);
    if (!value.empty()) config_key.append("_").append(value);
    if (i + 1 == entries.size()) {
      if (!node->rate_limit.has_value()) return {};
      match.limit = &*node->rate_limit;
      break;
    }
    // More entries than this branch is deep: depth mismatch, no limit.
    if (node->children.empty()) return {};
    level = &node->children;
  }
  if (!match.limit->detailed_metric) {
    match.metric_key = std::move(config_key);
  } else if (match.shared.empty()) {
    match.metric_key = std::move(detailed_key);
  } else {
    match.metric_key = name;
    for (size_t i = 0; i < entries.size(); ++i) {
      match.metric_key.append(".").append(entries[i].key);
      const std::string_view value = match.shared[i].empty() ? entries[i].value : match.shared[i];
      if (!value.empty()) match.metric_key.append("_").append(value);
    }
  }
  return match;
}

void ApplyReplaces(std::span<const DescriptorLimit*> matched) {
  absl::flat_hash_set<std::string_view> replaced;
  for (const DescriptorLimit* limit : matched) {
    if (limit == nullptr) continue;
    for (const std::string& name : limit->replaces) replaced.insert(name);
  }
  if (replaced.empty()) return;
  for (const DescriptorLimit*& limit : matched) {
    if (limit != nullptr && !limit->name.empty() && replaced.contains(limit->name)) {
      limit = nullptr;
    }
  }
}

bool DescriptorCounterKey(std::string_view domain, std::span<const DescriptorEntry> entries,
                          const DescriptorLimit& limit, std::string* out,
                          std::span<const std::string_view> shared) {
  if (!limit.limit.has_value()) return false;
  out->assign("envoy|");
  internal::AppendKeyPart(out, domain);
  internal::AppendLimitIdentity(out, *limit.limit);
  for (size_t i = 0; i < entries.size(); ++i) {
    out->push_back('|');
    internal::AppendKeyPart(out, entries[i].key);
    if (i < shared.size() && !shared[i].empty()) {
      // '~' rather than '=': a shared counter never meets the counter of one value.
      out->push_back('~');
      internal::AppendKeyPart(out, shared[i]);
    } else {
      out->push_back('=');
      internal::AppendKeyPart(out, entries[i].value);
    }
  }
  return true;
}

std::string DescriptorOverrideMetricKey(std::string_view domain,
                                        std::span<const DescriptorEntry> entries) {
  std::string key(domain);
  for (const DescriptorEntry& entry : entries) {
    key.append(".").append(entry.key);
    if (!entry.value.empty()) key.append("_").append(entry.value);
  }
  return key;
}

bool IsCleanMetricKey(std::string_view key) {
  return key.size() <= kMaxMetricKeyBytes && yaml::IsValidUtf8(key) &&
         !yaml::HasControlCharacter(key);
}

}  // namespace sluice::rules
