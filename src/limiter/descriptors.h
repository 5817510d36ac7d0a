// The Envoy rate limit service's view of the limiter (CONTRACT §3.2, §6): a domain and a list of
// descriptors in, one status per descriptor out. Shared by gRPC ShouldRateLimit and POST /json.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "core/time.h"
#include "rules/descriptor.h"

namespace sluice {

// The server config's `envoy:` section (CONTRACT §2, §6): envoyproxy/ratelimit's global
// settings. The limiter applies shadow_mode and quota_mode; the faces (gRPC, POST /json) apply
// response_headers and dynamic_metadata when they render.
struct EnvoyOptions {
  // RateLimit-Limit/-Remaining/-Reset in response_headers_to_add and on /json answers
  // (upstream's LIMIT_RESPONSE_HEADERS_ENABLED). Off by default, as upstream.
  bool response_headers = false;
  // Global shadow mode (upstream's SHADOW_MODE): the overall code is always OK; each answer it
  // turned from OVER_LIMIT is counted (sluice_envoy_global_shadow_mode_total). Statuses still
  // say which descriptors are over. A store failure under fail_closed is not a limit: it stays
  // OVER_LIMIT.
  bool shadow_mode = false;
  // Global quota mode (upstream's GLOBAL_QUOTA_MODE): every descriptor is a quota-mode one.
  bool quota_mode = false;
  // RateLimitResponse.dynamic_metadata (upstream's RESPONSE_DYNAMIC_METADATA): the domain, the
  // descriptors' entries and hits, and the merged `metadata` of the descriptors that passed.
  bool dynamic_metadata = false;
};

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
  uint32_t hits_addend = 0;     // request-level; 0 means 1
  std::string request_id = {};  // for the rejection log (see CheckRequest::request_id)
};

struct DescriptorStatus {
  bool over_limit = false;
  // The matched limit is in shadow mode: counted, never over. Not on the wire; the Envoy face
  // leaves shadow descriptors out of the RateLimit-* headers.
  bool shadow = false;
  // A quota-mode descriptor (its `quota_mode`, or the global one): over, it makes the request
  // OVER_LIMIT only when every quota-mode descriptor of the request is over.
  bool quota = false;
  bool unlimited = false;  // matched an `unlimited` limit
  // The matched limit's `metadata` (for dynamic_metadata); null when none.
  std::shared_ptr<const rules::MetadataValue::Map> metadata;
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
