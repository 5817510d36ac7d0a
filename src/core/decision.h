#pragma once

#include <cstdint>

#include "core/time.h"

namespace sluice {

// How Admit treats a cost the limit does not admit (CONTRACT §4 "charge").
enum class OnReject : uint8_t {
  kChargeNothing,  // the default: a rejection leaves the state as it was
  // Charge it all the same ("charge": "always", and Envoy's over-limit descriptors): the key
  // goes into debt, which later requests pay back at the limit's rate. The debt a key can hold
  // is bounded (each state says how), so a huge cost saturates instead of wrapping.
  kChargeAnyway,
};

// What every algorithm answers for one request against one limit (CONTRACT §4).
struct Decision {
  bool allowed = true;
  // The cost asked for is above what this limit could ever admit: rejected, and retrying is
  // pointless, so retry_after stays 0 (HTTP: COST_EXCEEDS_LIMIT, no Retry-After).
  bool cost_exceeds_limit = false;
  int64_t limit = 0;       // the rule's limit, never the burst
  int64_t remaining = 0;   // what could still be admitted right now (after this request's charge)
                           // never negative, also for a key in debt
  Micros reset_after = 0;  // until the state is as fresh as an unused key, with no further requests
  Micros retry_after = 0;  // when rejected: until this same request would be admitted
  Micros delay = 0;        // leaky_bucket only: how long to hold an admitted request
};

}  // namespace sluice
