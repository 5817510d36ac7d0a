#include "rules/attributes.h"

#include <gtest/gtest.h>

namespace sluice::rules {
namespace {

IpAddress Ip(std::string_view text) {
  IpAddress ip;
  EXPECT_TRUE(ParseIp(text, &ip)) << text;
  return ip;
}

// Verifies that IPv4 and IPv6 addresses parse, and IPv4 is stored IPv4-mapped.
TEST(ParseIpTest, ParsesBothFamilies) {
  EXPECT_TRUE(Ip("192.168.1.1").IsV4());
  EXPECT_EQ(Ip("192.168.1.1").bytes[12], 192);
  EXPECT_EQ(Ip("192.168.1.1").bytes[15], 1);
  EXPECT_FALSE(Ip("2001:db8::1").IsV4());
  EXPECT_EQ(Ip("2001:db8::1").bytes[0], 0x20);
  EXPECT_EQ(Ip("2001:db8::1").bytes[15], 1);
  // The IPv4-mapped IPv6 spelling is the same address as the dotted quad.
  EXPECT_EQ(Ip("::ffff:10.0.0.1"), Ip("10.0.0.1"));
  EXPECT_EQ(Ip("2001:DB8:0:0::1"), Ip("2001:db8::1"));
}

// Verifies that anything but a plain address is rejected (the HTTP layer answers 400).
TEST(ParseIpTest, RejectsInvalid) {
  IpAddress ip;
  for (std::string_view bad :
       {"", "1.2.3", "1.2.3.4.5", "256.0.0.1", "01.2.3.4", "1.2.3.4 ", " 1.2.3.4", "1.2.3.4/8",
        "[::1]", "::1%eth0", "1.2.3.4:80", "gggg::1", "1:2:3:4:5:6:7:8:9", "localhost",
        "0x7f.0.0.1", "::1::2"}) {
    EXPECT_FALSE(ParseIp(bad, &ip)) << bad;
  }
  const std::string long_text(100, '1');
  EXPECT_FALSE(ParseIp(long_text, &ip));
}

// Verifies the canonical text form used in counter keys.
TEST(IpAddressTest, ToStringIsCanonical) {
  EXPECT_EQ(Ip("::ffff:10.0.0.1").ToString(), "10.0.0.1");
  EXPECT_EQ(Ip("2001:DB8:0:0:0:0:0:1").ToString(), "2001:db8::1");
  EXPECT_EQ(Ip("::1").ToString(), "::1");
}

// Verifies that Masked keeps exactly the first `bits` bits.
TEST(IpAddressTest, Masked) {
  EXPECT_EQ(Ip("10.1.2.3").Masked(96 + 8), Ip("10.0.0.0"));
  EXPECT_EQ(Ip("10.1.2.3").Masked(96 + 12), Ip("10.0.0.0"));
  EXPECT_EQ(Ip("10.31.2.3").Masked(96 + 12), Ip("10.16.0.0"));
  EXPECT_EQ(Ip("10.1.2.3").Masked(128), Ip("10.1.2.3"));
  EXPECT_EQ(Ip("2001:db8:ffff::1").Masked(32), Ip("2001:db8::"));
  EXPECT_EQ(Ip("2001:db8::1").Masked(0), Ip("::"));
}

// Verifies attribute names, including headers.<name> lowercased.
TEST(AttributeNameTest, ParsesKnownNames) {
  for (std::string_view name : {"user_id", "api_key", "ip_address", "endpoint", "method", "tier"}) {
    std::optional<AttributeRef> ref = ParseAttributeName(name);
    ASSERT_TRUE(ref.has_value()) << name;
    EXPECT_EQ(ref->Name(), name);
  }
  std::optional<AttributeRef> header = ParseAttributeName("headers.X-Client");
  ASSERT_TRUE(header.has_value());
  EXPECT_EQ(header->attribute, Attribute::kHeader);
  EXPECT_EQ(header->header, "x-client");
  EXPECT_EQ(header->Name(), "headers.x-client");
  for (std::string_view bad : {"", "User_Id", "headers", "headers.", "header.x", "ip", "cost"}) {
    EXPECT_FALSE(ParseAttributeName(bad).has_value()) << bad;
  }
}

// Verifies that header names are case-insensitive and a second value replaces the first.
TEST(RequestAttributesTest, HeadersAreCaseInsensitive) {
  RequestAttributes r;
  r.SetHeader("X-Client", "mobile");
  EXPECT_EQ(r.Header("x-client"), "mobile");
  EXPECT_EQ(r.Header("X-CLIENT"), "mobile");
  EXPECT_EQ(r.headers().front().first, "x-client");
  r.SetHeader("x-CLIENT", "web");
  EXPECT_EQ(r.headers().size(), 1u);
  EXPECT_EQ(r.Header("x-client"), "web");
  EXPECT_EQ(r.Header("x-other"), "");
  EXPECT_EQ(r.Get(*ParseAttributeName("headers.X-Client")), "web");
}

// Verifies that SetIpAddress fills the parsed form and reports invalid text.
TEST(RequestAttributesTest, SetIpAddress) {
  RequestAttributes r;
  EXPECT_TRUE(r.SetIpAddress("10.0.0.1"));
  ASSERT_TRUE(r.ip.has_value());
  EXPECT_EQ(*r.ip, Ip("10.0.0.1"));
  EXPECT_FALSE(r.SetIpAddress("not-an-ip"));
  EXPECT_FALSE(r.ip.has_value());
  EXPECT_EQ(r.ip_address, "not-an-ip");
  EXPECT_TRUE(r.SetIpAddress(""));  // absent is fine
  EXPECT_FALSE(r.ip.has_value());
}

}  // namespace
}  // namespace sluice::rules
