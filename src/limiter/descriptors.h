// The Envoy rate limit service's view of the limiter (CONTRACT §3.2, §6): a domain and a list of
// descriptors in, one status per descriptor out. Shared by gRPC ShouldRateLimit and POST /json.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "core/time.h"
#include "rules/descriptor.h"

namespace sluice {

struct DescriptorRequest {
  std::vector<std::pair<std::string, std::string>> entries;  // (key, value), in order
  struct Override {
    uint32_t requests_per_unit = 0;
    rules::RateLimitUnit unit = rules::RateLimitUnit::kSecond;
  };
  std::optional<Override> limit_override = std::nullopt;
  // Descriptor-level hits; 0 means check only. Absent: the request-level value.
  std::optional<uint64_t> hits_addend = std::nullopt;
};

struct DescriptorsRequest {
  std::string domain;
  std::vector<DescriptorRequest> descriptors;
  uint32_t hits_addend = 0;  // request-level; 0 means 1
};

struct DescriptorStatus {
  bool over_limit = false;
  // The matched limit is in shadow mode: counted, never over. Not on the wire; the Envoy face
  // leaves shadow descriptors out of the RateLimit-* headers.
  bool shadow = false;
  struct CurrentLimit {
    std::string name;
    uint32_t requests_per_unit = 0;
    rules::RateLimitUnit unit = rules::RateLimitUnit::kSecond;
  };
  std::optional<CurrentLimit> current_limit;  // set whenever a limit matched
  uint32_t limit_remaining = 0;
  std::optional<Micros> duration_until_reset;  // set whenever a limit matched
};

struct DescriptorsResult {
  // Not OK when the request was refused undecided (INVALID_ARGUMENT: a limit override no exact
  // limit can express); nothing was charged and `statuses` is empty.
  absl::Status status;
  bool over_limit = false;
  bool store_unavailable = false;  // fail_closed answered OVER_LIMIT because the store failed
  bool degraded = false;  // the store failed and fail_open answered OK: nothing was counted
  std::vector<DescriptorStatus> statuses;  // in request order
};

}  // namespace sluice
