#include "api/envoy/convert.h"

#include <gtest/gtest.h>

namespace sluice::envoy_api {
namespace {

DescriptorStatus Limited(uint32_t limit, uint32_t remaining, Micros reset, bool over = false,
                         bool shadow = false) {
  DescriptorStatus s;
  s.over_limit = over;
  s.shadow = shadow;
  s.current_limit = DescriptorStatus::CurrentLimit{"", limit, rules::RateLimitUnit::kHour};
  s.limit_remaining = remaining;
  s.duration_until_reset = reset;
  return s;
}

using Headers = std::vector<std::pair<std::string, std::string>>;

// Verifies which descriptor the RateLimit-* headers describe: the over-limit one first, else
// the least remaining; shadow, unlimited and unmatched descriptors never.
TEST(ResponseHeadersTest, DescribeTheTightestEnforcedDescriptor) {
  DescriptorsResult r;
  EXPECT_TRUE(ResponseHeaders(r).empty());
  r.statuses.push_back(DescriptorStatus{});  // nothing matched
  DescriptorStatus unlimited;
  unlimited.limit_remaining = 4294967295u;
  r.statuses.push_back(unlimited);
  EXPECT_TRUE(ResponseHeaders(r).empty());

  r.statuses.push_back(Limited(50, 49, 1'500'000));
  r.statuses.push_back(Limited(1, 0, 3'600'000'000, /*over=*/true, /*shadow=*/true));
  EXPECT_EQ(ResponseHeaders(r), (Headers{{"RateLimit-Limit", "50"},
                                         {"RateLimit-Remaining", "49"},
                                         {"RateLimit-Reset", "2"}}));  // 1.5 s rounds up
  r.statuses.push_back(Limited(10, 3, 60'000'000));
  EXPECT_EQ(ResponseHeaders(r)[0].second, "10");
  r.statuses.push_back(Limited(100, 7, 60'000'000, /*over=*/true));
  EXPECT_EQ(ResponseHeaders(r), (Headers{{"RateLimit-Limit", "100"},
                                         {"RateLimit-Remaining", "7"},
                                         {"RateLimit-Reset", "60"}}));
}

// Verifies that a store failure (fail_open or fail_closed) reports no numbers: nothing was counted.
TEST(ResponseHeadersTest, NoneWhenTheStoreFailed) {
  DescriptorsResult r;
  r.statuses.push_back(Limited(5, 0, 0));
  EXPECT_FALSE(ResponseHeaders(r).empty());
  r.degraded = true;
  EXPECT_TRUE(ResponseHeaders(r).empty());
  r.degraded = false;
  r.store_unavailable = true;
  EXPECT_TRUE(ResponseHeaders(r).empty());
}

// Verifies that ToProto carries the same headers as response_headers_to_add, only when the
// server config asks for them (envoy: {response_headers: true}), as upstream.
TEST(ResponseHeadersTest, ToProtoCarriesThemWhenAsked) {
  DescriptorsResult r;
  r.statuses.push_back(Limited(5, 4, 1'000'000));
  RateLimitRequest request;
  RateLimitResponse off;
  ToProto(request, r, EnvoyOptions{}, &off);
  EXPECT_EQ(off.response_headers_to_add_size(), 0);
  RateLimitResponse proto;
  ToProto(request, r, EnvoyOptions{.response_headers = true}, &proto);
  ASSERT_EQ(proto.response_headers_to_add_size(), 3);
  EXPECT_EQ(proto.response_headers_to_add(0).key(), "RateLimit-Limit");
  EXPECT_EQ(proto.response_headers_to_add(1).value(), "4");
}

// Verifies that duration_until_reset goes out in whole seconds, rounded up, at least 1, as
// envoyproxy/ratelimit sends it.
TEST(ToProtoTest, DurationInWholeSecondsRoundedUp) {
  DescriptorsResult r;
  r.statuses.push_back(Limited(5, 4, 443'432));
  r.statuses.push_back(Limited(5, 4, 59'000'001));
  r.statuses.push_back(Limited(5, 4, 60'000'000));
  r.statuses.push_back(Limited(5, 4, 0));
  RateLimitResponse proto;
  ToProto(RateLimitRequest{}, r, EnvoyOptions{}, &proto);
  ASSERT_EQ(proto.statuses_size(), 4);
  const int64_t expected[] = {1, 60, 60, 1};
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(proto.statuses(i).duration_until_reset().seconds(), expected[i]) << i;
    EXPECT_EQ(proto.statuses(i).duration_until_reset().nanos(), 0) << i;
  }
}

rules::MetadataValue::Map Meta(std::string key, rules::MetadataValue value) {
  rules::MetadataValue::Map map;
  map.push_back(rules::MetadataEntry{std::move(key), std::move(value)});
  return map;
}

// Verifies upstream's dynamic metadata: domain, each descriptor's entries ("k=v"), override and
// hits, the request's hits, and the merged metadata of the descriptors that passed only
// (nested mappings merge; otherwise the first value stays). Absent unless asked for.
TEST(ToProtoTest, DynamicMetadata) {
  RateLimitRequest request;
  request.set_domain("d");
  request.set_hits_addend(3);
  auto* d0 = request.add_descriptors();
  auto* e = d0->add_entries();
  e->set_key("k");
  e->set_value("v");
  d0->mutable_hits_addend()->set_value(2);
  auto* d1 = request.add_descriptors();
  e = d1->add_entries();
  e->set_key("k2");
  d1->mutable_limit()->set_requests_per_unit(7);
  d1->mutable_limit()->set_unit(::envoy::type::v3::MINUTE);
  request.add_descriptors()->add_entries()->set_key("k3");

  DescriptorsResult r;
  r.statuses.resize(3);
  rules::MetadataValue::Map nested = Meta("a", {1.0});
  r.statuses[0].metadata = std::make_shared<const rules::MetadataValue::Map>(
      Meta("svc", {rules::MetadataValue::Map(nested)}));
  rules::MetadataValue::Map second = Meta("svc", {Meta("b", {std::string("x")})});
  second.push_back(rules::MetadataEntry{"flag", rules::MetadataValue{true}});
  r.statuses[1].metadata = std::make_shared<const rules::MetadataValue::Map>(second);
  r.statuses[2].over_limit = true;  // did not pass: its metadata stays out
  r.statuses[2].metadata =
      std::make_shared<const rules::MetadataValue::Map>(Meta("over", {std::string("y")}));

  RateLimitResponse off;
  ToProto(request, r, EnvoyOptions{}, &off);
  EXPECT_FALSE(off.has_dynamic_metadata());

  RateLimitResponse proto;
  ToProto(request, r, EnvoyOptions{.dynamic_metadata = true}, &proto);
  const auto& f = proto.dynamic_metadata().fields();
  EXPECT_EQ(f.at("domain").string_value(), "d");
  EXPECT_EQ(f.at("hitsAddend").number_value(), 3);
  const auto& list = f.at("descriptors").list_value();
  ASSERT_EQ(list.values_size(), 3);
  const auto& first = list.values(0).struct_value().fields();
  EXPECT_EQ(first.at("entries").list_value().values(0).string_value(), "k=v");
  EXPECT_EQ(first.at("hitsAddend").number_value(), 2);
  EXPECT_FALSE(first.contains("limit"));
  const auto& other = list.values(1).struct_value().fields();
  EXPECT_EQ(other.at("entries").list_value().values(0).string_value(), "k2=");
  EXPECT_NE(other.at("limit").string_value().find("requests_per_unit: 7"), std::string::npos);
  const auto& metadata = f.at("metadata").struct_value().fields();
  EXPECT_FALSE(metadata.contains("over"));
  EXPECT_TRUE(metadata.at("flag").bool_value());
  const auto& svc = metadata.at("svc").struct_value().fields();
  EXPECT_EQ(svc.at("a").number_value(), 1);
  EXPECT_EQ(svc.at("b").string_value(), "x");
}

}  // namespace
}  // namespace sluice::envoy_api
