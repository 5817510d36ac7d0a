// Comparing Decisions field by field, and showing them: for the tests and the fuzz target that
// run the same requests through several implementations of the algorithms.
#pragma once

#include <string>

#include "base/strings.h"
#include "core/decision.h"

namespace sluice::testing {

inline bool SameDecision(const Decision& a, const Decision& b) {
  return a.allowed == b.allowed && a.cost_exceeds_limit == b.cost_exceeds_limit &&
         a.limit == b.limit && a.remaining == b.remaining && a.reset_after == b.reset_after &&
         a.retry_after == b.retry_after && a.delay == b.delay;
}

inline std::string DescribeDecision(const Decision& d) {
  return Cat("{allowed=", int{d.allowed}, " cel=", int{d.cost_exceeds_limit}, " limit=", d.limit,
             " remaining=", d.remaining, " reset_after=", d.reset_after,
             " retry_after=", d.retry_after, " delay=", d.delay, "}");
}

}  // namespace sluice::testing
