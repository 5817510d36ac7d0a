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

// The node `entry` selects at `level`, or nullptr.
const DescriptorNode* Find(const Domain& domain, const DescriptorLevel& level,
                           const DescriptorEntry& entry) {
  const auto it = level.by_key.find(entry.key);
  if (it == level.by_key.end()) return nullptr;
  const DescriptorLevel::KeyNodes& nodes = it->second;
  if (const auto exact = nodes.exact.find(entry.value); exact != nodes.exact.end()) {
    return &domain.nodes[exact->second];
  }
  for (uint32_t index : nodes.wildcards) {
    if (domain.nodes[index].value_glob->Matches(entry.value)) return &domain.nodes[index];
  }
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

const DescriptorLimit* Domain::Match(std::span<const DescriptorEntry> entries) const {
  const DescriptorLevel* level = &top;
  for (size_t i = 0; i < entries.size(); ++i) {
    const DescriptorNode* node = Find(*this, *level, entries[i]);
    if (node == nullptr) return nullptr;
    if (i + 1 == entries.size()) {
      return node->rate_limit.has_value() ? &*node->rate_limit : nullptr;
    }
    // More entries than this branch is deep: depth mismatch, no limit.
    if (node->children.empty()) return nullptr;
    level = &node->children;
  }
  return nullptr;  // no entries
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
                          const DescriptorLimit& limit, std::string* out) {
  if (!limit.limit.has_value()) return false;
  out->assign("envoy|");
  internal::AppendKeyPart(out, domain);
  internal::AppendLimitIdentity(out, *limit.limit);
  for (const DescriptorEntry& entry : entries) {
    out->push_back('|');
    internal::AppendKeyPart(out, entry.key);
    out->push_back('=');
    internal::AppendKeyPart(out, entry.value);
  }
  return true;
}

std::string DescriptorMetricKey(std::string_view domain, std::span<const DescriptorEntry> entries,
                                const DescriptorLimit& limit) {
  if (!limit.detailed_metric) return limit.full_key;
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
