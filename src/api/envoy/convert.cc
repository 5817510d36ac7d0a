#include "api/envoy/convert.h"

#include <algorithm>
#include <limits>
#include <optional>
#include <variant>

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

void ToValue(const rules::MetadataValue& in, ::google::protobuf::Value* out);

void ToStruct(const rules::MetadataValue::Map& in, ::google::protobuf::Struct* out) {
  auto& fields = *out->mutable_fields();
  for (const auto& [key, value] : in) ToValue(value, &fields[key]);
}

void ToValue(const rules::MetadataValue& in, ::google::protobuf::Value* out) {
  std::visit(
      [out](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::monostate>) {
          out->set_null_value(::google::protobuf::NULL_VALUE);
        } else if constexpr (std::is_same_v<T, bool>) {
          out->set_bool_value(v);
        } else if constexpr (std::is_same_v<T, double>) {
          out->set_number_value(v);
        } else if constexpr (std::is_same_v<T, std::string>) {
          out->set_string_value(v);
        } else if constexpr (std::is_same_v<T, rules::MetadataValue::List>) {
          auto* list = out->mutable_list_value();
          for (const rules::MetadataValue& item : v) ToValue(item, list->add_values());
        } else {
          ToStruct(v, out->mutable_struct_value());
        }
      },
      in.value);
}

// upstream's mergeMetadata: keys `dest` lacks are added; two mappings under one key merge;
// otherwise what `dest` has stays.
void Merge(const rules::MetadataValue::Map& src, ::google::protobuf::Struct* dest) {
  auto& fields = *dest->mutable_fields();
  for (const auto& [key, value] : src) {
    auto it = fields.find(key);
    if (it == fields.end()) {
      ToValue(value, &fields[key]);
    } else if (it->second.has_struct_value()) {
      if (const auto* map = std::get_if<rules::MetadataValue::Map>(&value.value)) {
        Merge(*map, it->second.mutable_struct_value());
      }
    }
  }
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

void DynamicMetadata(const RateLimitRequest& request, const DescriptorsResult& result,
                     ::google::protobuf::Struct* out) {
  auto& fields = *out->mutable_fields();
  fields["domain"].set_string_value(request.domain());
  auto* descriptors = fields["descriptors"].mutable_list_value();
  for (const auto& d : request.descriptors()) {
    auto& f = *descriptors->add_values()->mutable_struct_value()->mutable_fields();
    auto* entries = f["entries"].mutable_list_value();
    for (const auto& e : d.entries())
      entries->add_values()->set_string_value(e.key() + "=" + e.value());
    if (d.has_limit()) f["limit"].set_string_value(d.limit().ShortDebugString());
    if (d.has_hits_addend()) {
      f["hitsAddend"].set_number_value(static_cast<double>(d.hits_addend().value()));
    }
  }
  if (request.hits_addend() != 0) {
    fields["hitsAddend"].set_number_value(static_cast<double>(request.hits_addend()));
  }
  ::google::protobuf::Struct passed;
  for (const DescriptorStatus& s : result.statuses) {
    if (!s.over_limit && !s.unlimited && s.metadata != nullptr) Merge(*s.metadata, &passed);
  }
  if (passed.fields_size() > 0) *fields["metadata"].mutable_struct_value() = std::move(passed);
}

void ToProto(const RateLimitRequest& request, const DescriptorsResult& result,
             const EnvoyOptions& options, RateLimitResponse* response) {
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
      // Whole seconds, rounded up, at least 1: what envoyproxy/ratelimit sends (its windows
      // are aligned to whole seconds), and what Envoy's RateLimit-Reset is made from.
      status->mutable_duration_until_reset()->set_seconds(std::max<int64_t>(
          1, static_cast<int64_t>(int_math::CeilDiv(*s.duration_until_reset, kMicrosPerSecond))));
    }
  }
  if (options.response_headers) {
    for (const auto& [key, value] : ResponseHeaders(result)) {
      auto* h = response->add_response_headers_to_add();
      h->set_key(key);
      h->set_value(value);
    }
  }
  if (options.dynamic_metadata)
    DynamicMetadata(request, result, response->mutable_dynamic_metadata());
}

}  // namespace sluice::envoy_api
