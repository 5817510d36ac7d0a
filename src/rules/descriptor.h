// Envoy-compatible domain files (CONTRACT §3.2): descriptor trees with envoyproxy/ratelimit's
// matching semantics, and the helpers the gRPC adapter needs around a match.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "core/limit.h"
#include "core/time.h"
#include "rules/pattern.h"
#include "rules/rule.h"
#include "rules/strings.h"

namespace sluice::rules {

// One (key, value) entry of a request's descriptor, as Envoy sends it.
struct DescriptorEntry {
  std::string_view key;
  std::string_view value;
};

// The units of `rate_limit.unit`. The gRPC adapter maps these to rls.proto's Unit enum.
enum class RateLimitUnit : uint8_t { kSecond, kMinute, kHour, kDay, kWeek, kMonth, kYear };

// "second", ..., "year" (any case, as envoyproxy/ratelimit upper-cases it); nullopt otherwise.
std::optional<RateLimitUnit> ParseRateLimitUnit(std::string_view name);
std::string_view RateLimitUnitName(RateLimitUnit unit);  // "second", ...
// A month is 30 days and a year 365 days (CONTRACT §3.2).
Micros RateLimitUnitMicros(RateLimitUnit unit);

// A descriptor's `metadata` (CONTRACT §6): any YAML, kept as the JSON-like value Envoy receives
// it as (google.protobuf.Struct): plain scalars are typed as YAML 1.1 types them (null, bool,
// number), quoted ones are strings, mapping keys are their text.
struct MetadataEntry;
struct MetadataValue {
  using List = std::vector<MetadataValue>;
  using Map = std::vector<MetadataEntry>;  // file order, unique keys
  std::variant<std::monostate, bool, double, std::string, List, Map> value;
};
struct MetadataEntry {
  std::string key;
  MetadataValue value;
};

// The `rate_limit` of one descriptor node.
struct DescriptorLimit {
  // envoyproxy/ratelimit's stats key: "domain.key_value.key2" (the config path, values only where
  // the config gives one). The metric name for this limit unless `detailed_metric`.
  std::string full_key;
  std::string name;                   // for `replaces`; may be empty
  std::vector<std::string> replaces;  // names of limits this one replaces within a request
  bool unlimited = false;             // matched but never limited: OK with limit_remaining = 2^32-1
  bool shadow_mode = false;           // charged and reported, never OVER_LIMIT
  bool detailed_metric = false;       // metrics are per request value (see DescriptorMatch)
  // `quota_mode`: over, it makes the request OVER_LIMIT only when every quota-mode descriptor
  // of the request is over (envoyproxy/ratelimit's finalCode).
  bool quota_mode = false;
  // The node's `metadata` (a mapping), null when it has none: passed to Envoy in the
  // response's dynamic_metadata when the descriptor passes (see envoy: dynamic_metadata).
  std::shared_ptr<const MetadataValue::Map> metadata;
  // As configured, for the response's current_limit (which keeps the configured unit even with
  // a multiplier; duration_until_reset tells the real window).
  uint32_t requests_per_unit = 0;
  RateLimitUnit unit = RateLimitUnit::kSecond;
  int64_t unit_multiplier = 1;
  // What the algorithms run: requests_per_unit per (unit x unit_multiplier), with `algorithm`
  // (default fixed_window) and `burst`. Absent when `unlimited`, and when requests_per_unit is 0,
  // which envoyproxy/ratelimit users write to refuse every request (see `blocks_all()`; the
  // limiter turns such a descriptor into an item the store always rejects).
  std::optional<Limit> limit;
  SourceLocation location;  // of the descriptor node

  // requests_per_unit 0: every hit is over the limit.
  bool blocks_all() const { return !unlimited && requests_per_unit == 0; }
};

// One level of a descriptor tree: the children of a node (or a domain's top level), indexed the
// way matching looks them up.
struct DescriptorLevel {
  struct KeyNodes {
    internal::StringMap<uint32_t> exact;  // value -> node
    std::vector<uint32_t> wildcards;      // nodes whose value has a `*`, in file order
    std::optional<uint32_t> key_only;     // the node without a value: the default for this key
  };
  internal::StringMap<KeyNodes> by_key;

  bool empty() const { return by_key.empty(); }
};

struct DescriptorNode {
  std::string key;
  std::string value;               // "" = key-only
  std::optional<Glob> value_glob;  // set when `value` has a `*`
  // `share_threshold` (only with a wildcard value): every request value matching it shares one
  // counter, for the limit of this node or of any node below it.
  bool share_threshold = false;
  // `value_to_metric`: the metric key names the request's value where it would name the
  // configured one (a wildcard pattern) or none (a key-only node).
  bool value_to_metric = false;
  std::optional<DescriptorLimit> rate_limit;  // none and no children: whitelisted
  DescriptorLevel children;
};

// What a descriptor matched, with what its counter key and metric key need.
struct DescriptorMatch {
  const DescriptorLimit* limit = nullptr;  // nullptr: no limit applies
  // Per entry (empty when no entry has one): the wildcard pattern of a `share_threshold` node
  // the entry matched, which stands for the entry's value in the counter key, so that every
  // value matching it shares one counter (envoyproxy/ratelimit's shareThresholdPatterns).
  // Empty strings for the other entries. Points into the Domain.
  std::vector<std::string_view> shared;
  // The metric key, as envoyproxy/ratelimit's GetLimit names the stats of the limit:
  // - without `detailed_metric`, the config path "domain.key_value.key2", where an entry
  //   matched by a wildcard names the pattern (or the request's value with `value_to_metric`
  //   on that node, unless share_threshold applies) and one matched by a key-only node names no
  //   value (or the request's value with `value_to_metric`);
  // - with `detailed_metric`, the request's own path "domain.key_value.key2_value2", each entry
  //   as "key_value" (even with an empty value), except that an entry under share_threshold
  //   names its pattern and then entries with an empty value name their key alone.
  std::string metric_key;
};

// A parsed domain file. Nodes live in one vector and refer to each other by index.
struct Domain {
  std::string name;
  std::vector<DescriptorNode> nodes;
  DescriptorLevel top;
  SourceLocation location;  // of the `domain` value

  // envoyproxy/ratelimit's lookup. Walks the tree one entry per level; at each level it takes
  // the node with the entry's key and exact value, else the first (file order) whose wildcard
  // value matches, else the key-only node. An entry that finds nothing ends the walk with no
  // limit. The limit that applies is the one of the node reached by the last entry, so a
  // descriptor with more or fewer entries than the configured depth gets none. Returns nullptr
  // when nothing applies, including a whitelisted node (no rate_limit, no children).
  const DescriptorLimit* Match(std::span<const DescriptorEntry> entries) const {
    return Lookup(entries).limit;
  }
  // The same walk, with the share_threshold patterns and the metric key of the match.
  DescriptorMatch Lookup(std::span<const DescriptorEntry> entries) const;
};

// envoyproxy/ratelimit's `replaces` across the descriptors of one request: `matched[i]` is the
// limit of descriptor i (nullptr if none). Sets to nullptr every limit whose non-empty name is
// replaced by another matched limit; replacement is decided on the input set, so a replaced
// limit's own `replaces` still count.
void ApplyReplaces(std::span<const DescriptorLimit*> matched);

// The counter key of `limit` for this descriptor: domain, algorithm, window and every entry's
// key and value, with separators escaped so that different inputs never share a key. Like
// envoyproxy/ratelimit, counters are per request values (a key-only node counts each value
// separately), except that an entry with a non-empty `shared[i]` (DescriptorMatch::shared)
// counts under that wildcard pattern, whatever its value. Returns false for a limit without a
// Limit (unlimited or blocks_all).
bool DescriptorCounterKey(std::string_view domain, std::span<const DescriptorEntry> entries,
                          const DescriptorLimit& limit, std::string* out,
                          std::span<const std::string_view> shared = {});

// The metric key of a per-request limit override, as envoyproxy/ratelimit names it:
// "domain.key_value.key2" (the request's entries; an empty value names the key alone).
std::string DescriptorOverrideMetricKey(std::string_view domain,
                                        std::span<const DescriptorEntry> entries);

// The longest metric key that may be a label value of its own.
inline constexpr size_t kMaxMetricKeyBytes = 512;

// Whether `key` may be a metric label value as it is: at most kMaxMetricKeyBytes, well-formed
// UTF-8 (Prometheus refuses a whole scrape over one bad label) and free of control characters.
// A `detailed_metric` key holds the request's own values, so any of these can fail.
bool IsCleanMetricKey(std::string_view key);

}  // namespace sluice::rules
