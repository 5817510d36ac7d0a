// Building blocks of counter keys, shared by Sluice rules and Envoy descriptors.
#pragma once

#include <string>
#include <string_view>

#include "core/limit.h"

namespace sluice::rules::internal {

// Appends `part` with '%', '|', '=', '{' and '}' percent-encoded. Parts are joined with '|' and
// '='; escaping them makes the encoding injective, so two different tuples of values can never
// produce the same key. Braces are escaped too so that a value can never form a Redis Cluster
// hash tag and move a key to another slot than the store chose.
void AppendKeyPart(std::string* out, std::string_view part);

// Appends "|<algorithm>|<window_us>", plus "|<limit>" for the bucket algorithms: their stored
// state is scaled by gcd(limit, window) (Limit::units_per_token), so a reload that changes the
// limit must start a fresh bucket rather than misread the old one. The other algorithms store
// plain counts, which stay meaningful when only the limit changes.
void AppendLimitIdentity(std::string* out, const Limit& limit);

}  // namespace sluice::rules::internal
