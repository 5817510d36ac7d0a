#include "api/envoy/convert.h"

#include <limits>
#include <optional>

#include "core/int_math.h"

namespace sluice::envoy_api {

namespace {

using rules::RateLimitUnit;
constexpr uint32_t kUnlimitedRemaining = std::numeric_limits<uint32_t>::max();
using ProtoUnit = ::envoy::service::ratelimit::v3::RateLimitResponse::RateLimit::Unit;

std::optional<RateLimitUnit> FromProtoUnit(::envoy::type::v3::RateLimitUnit unit) {
  switch (unit) {
    case ::envoy::type::v3::SECOND:
      return RateLimitUnit::kSecond;
    case ::envoy::type::v3::MINUTE:
      return RateLimitUnit::kMinute;
    case ::envoy::type::v3::HOUR:
      return RateLimitUnit::kHour;
    case ::envoy::type::v3::DAY:
      return RateLimitUnit::kDay;
    case ::envoy::type::v3::WEEK:
      return RateLimitUnit::kWeek;
    case ::envoy::type::v3::MONTH:
      return RateLimitUnit::kMonth;
    case ::envoy::type::v3::YEAR:
      return RateLimitUnit::kYear;
    default:
      return std::nullopt;
  }
}

ProtoUnit ToProtoUnit(RateLimitUnit unit) {
  switch (unit) {
    case RateLimitUnit::kSecond:
      return RateLimitResponse::RateLimit::SECOND;
    case RateLimitUnit::kMinute:
      return RateLimitResponse::RateLimit::MINUTE;
    case RateLimitUnit::kHour:
      return RateLimitResponse::RateLimit::HOUR;
    case RateLimitUnit::kDay:
      return RateLimitResponse::RateLimit::DAY;
    case RateLimitUnit::kWeek:
      return RateLimitResponse::RateLimit::WEEK;
    case RateLimitUnit::kMonth:
      return RateLimitResponse::RateLimit::MONTH;
    case RateLimitUnit::kYear:
      return RateLimitResponse::RateLimit::YEAR;
  }
  return RateLimitResponse::RateLimit::UNKNOWN;
}

}  // namespace

absl::StatusOr<DescriptorsRequest> FromProto(const RateLimitRequest& request) {
  if (request.domain().empty())
    return absl::InvalidArgumentError("rate limit domain must not be empty");
  if (request.descriptors_size() == 0) {
    return absl::InvalidArgumentError("rate limit descriptor list must not be empty");
  }
  DescriptorsRequest out;
  out.domain = request.domain();
  out.hits_addend = request.hits_addend();
  out.descriptors.reserve(request.descriptors_size());
  for (const auto& d : request.descriptors()) {
    if (d.entries_size() == 0) {
      return absl::InvalidArgumentError("rate limit descriptor must have entries");
    }
    DescriptorRequest& dr = out.descriptors.emplace_back();
    for (const auto& e : d.entries()) dr.entries.emplace_back(e.key(), e.value());
    if (d.has_limit()) {
      auto unit = FromProtoUnit(d.limit().unit());
      if (!unit) return absl::InvalidArgumentError("rate limit override has an unknown unit");
      dr.limit_override = DescriptorRequest::Override{d.limit().requests_per_unit(), *unit};
    }
    if (d.has_hits_addend()) dr.hits_addend = d.hits_addend().value();
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> ResponseHeaders(const DescriptorsResult& result) {
  // Nothing was counted when the store failed: no numbers to report.
  if (result.degraded || result.store_unavailable) return {};
  const DescriptorStatus* reported = nullptr;
  for (const DescriptorStatus& s : result.statuses) {
    if (!s.current_limit || s.limit_remaining == kUnlimitedRemaining || s.shadow) continue;
    if (reported == nullptr || (s.over_limit && !reported->over_limit) ||
        (s.over_limit == reported->over_limit && s.limit_remaining < reported->limit_remaining)) {
      reported = &s;
    }
  }
  if (reported == nullptr) return {};
  return {
      {"RateLimit-Limit", std::to_string(reported->current_limit->requests_per_unit)},
      {"RateLimit-Remaining", std::to_string(reported->limit_remaining)},
      {"RateLimit-Reset", std::to_string(static_cast<int64_t>(int_math::CeilDiv(
                              reported->duration_until_reset.value_or(0), kMicrosPerSecond)))},
  };
}

void ToProto(const DescriptorsResult& result, RateLimitResponse* response) {
  response->set_overall_code(result.over_limit ? RateLimitResponse::OVER_LIMIT
                                               : RateLimitResponse::OK);
  for (const DescriptorStatus& s : result.statuses) {
    auto* status = response->add_statuses();
    status->set_code(s.over_limit ? RateLimitResponse::OVER_LIMIT : RateLimitResponse::OK);
    status->set_limit_remaining(s.limit_remaining);
    if (s.current_limit) {
      auto* limit = status->mutable_current_limit();
      limit->set_name(s.current_limit->name);
      limit->set_requests_per_unit(s.current_limit->requests_per_unit);
      limit->set_unit(ToProtoUnit(s.current_limit->unit));
    }
    if (s.duration_until_reset) {
      auto* d = status->mutable_duration_until_reset();
      d->set_seconds(*s.duration_until_reset / kMicrosPerSecond);
      d->set_nanos(static_cast<int32_t>(*s.duration_until_reset % kMicrosPerSecond) * 1000);
    }
  }
  for (const auto& [key, value] : ResponseHeaders(result)) {
    auto* h = response->add_response_headers_to_add();
    h->set_key(key);
    h->set_value(value);
  }
}

}  // namespace sluice::envoy_api
