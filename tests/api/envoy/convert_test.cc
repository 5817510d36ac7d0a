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

// Verifies that ToProto carries the same headers as response_headers_to_add.
TEST(ResponseHeadersTest, ToProtoCarriesThem) {
  DescriptorsResult r;
  r.statuses.push_back(Limited(5, 4, 1'000'000));
  RateLimitResponse proto;
  ToProto(r, &proto);
  ASSERT_EQ(proto.response_headers_to_add_size(), 3);
  EXPECT_EQ(proto.response_headers_to_add(0).key(), "RateLimit-Limit");
  EXPECT_EQ(proto.response_headers_to_add(1).value(), "4");
}

}  // namespace
}  // namespace sluice::envoy_api
