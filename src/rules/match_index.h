// An index from request attribute values to the rules (or list entries) that could match them,
// so that a request with thousands of rules loaded looks at a handful instead of scanning all.
// Internal to the rules library.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "rules/attributes.h"
#include "rules/rule.h"
#include "rules/strings.h"

namespace sluice::rules::internal {

// A request prepared once per lookup: the parsed IP (from RequestAttributes::ip, or parsed here
// once) and the uppercased method the index keys methods by.
struct PreparedRequest {
  explicit PreparedRequest(const RequestAttributes& attributes);
  PreparedRequest(const PreparedRequest&) = delete;  // `ip` may point into this object
  PreparedRequest& operator=(const PreparedRequest&) = delete;

  const RequestAttributes& attributes;
  const IpAddress* ip = nullptr;  // nullptr: ip_address absent or not an address
  std::string method_upper;

 private:
  IpAddress parsed_ip_;
};

using Candidates = absl::InlinedVector<uint32_t, 32>;

// Each added Match is filed under exactly one of its patterns, the most selective one: an exact
// value, an IP network, or a glob's literal prefix; a Match with none of those (empty, or only
// globs starting with `*`) goes to a list every lookup returns. Because each id is filed once,
// lookups never return duplicates. Candidates are a superset: callers still check the full Match.
// Immutable after the last Add; const methods are thread-safe.
class MatchIndex {
 public:
  void Add(const Match& match, uint32_t id);
  // Appends the ids that may match `request`, unordered.
  void Lookup(const PreparedRequest& request, Candidates& out) const;

  size_t scan_size() const { return scan_.size(); }  // ids every lookup returns (for tests)

 private:
  using Postings = StringMap<std::vector<uint32_t>>;
  struct StringIndex {
    Postings exact;
    Postings by_prefix;                  // glob literal prefix -> ids
    std::vector<size_t> prefix_lengths;  // distinct lengths in by_prefix, ascending
    void Lookup(std::string_view value, Candidates& out) const;
  };
  struct NetworkIndex {
    int prefix_bits = 0;
    Postings networks;  // the 16 masked bytes -> ids
  };

  std::array<StringIndex, kNumFixedAttributes> fixed_;  // ip_address: globs on its text only
  StringMap<StringIndex> headers_;                      // by lowercase header name
  std::vector<NetworkIndex> networks_;                  // one per prefix length in use, ascending
  std::vector<uint32_t> scan_;
};

}  // namespace sluice::rules::internal
