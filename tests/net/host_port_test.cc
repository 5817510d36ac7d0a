// The one endpoint parser (src/net/host_port.h): the forms it takes, the ranges it checks, and
// errors that say what is wrong. No sockets.
#include "net/host_port.h"

#include <gtest/gtest.h>

#include <string>

namespace sluice::net {
namespace {

// Verifies the accepted forms: a name, IPv4, bracketed IPv6, the port's full range.
TEST(HostPortTest, ParsesHostAndPort) {
  struct Case {
    const char* text;
    const char* host;
    uint16_t port;
  };
  for (const Case& c :
       {Case{"localhost:6379", "localhost", 6379}, Case{"10.0.0.5:1", "10.0.0.5", 1},
        Case{"[::1]:7000", "::1", 7000}, Case{"[fe80::1%eth0]:65535", "fe80::1%eth0", 65535},
        Case{"redis-0.redis.svc:6380", "redis-0.redis.svc", 6380}, Case{"h:00080", "h", 80}}) {
    auto hp = ParseHostPort(c.text);
    ASSERT_TRUE(hp.ok()) << c.text << ": " << hp.status();
    EXPECT_EQ(hp->host, c.host) << c.text;
    EXPECT_EQ(hp->port, c.port) << c.text;
  }
}

// Verifies each malformed form is refused with InvalidArgument, the text quoted, and the reason.
TEST(HostPortTest, RefusesMalformedTextWithAReason) {
  struct Case {
    const char* text;
    const char* reason;
  };
  for (const Case& c :
       {Case{"localhost", "no port"}, Case{":80", "empty host"}, Case{"[]:80", "empty host"},
        Case{"", "empty host"}, Case{"h:", "empty port"}, Case{"h:0", "port 0"},
        Case{"h:65536", "out of range"}, Case{"h:99999999999", "out of range"},
        Case{"h:-1", "not a number"}, Case{"h:+80", "not a number"}, Case{"h:8o", "not a number"},
        Case{"h: 80", "not a number"}, Case{"[::1:80", "unclosed"}, Case{"[::1]80", "after ']'"},
        Case{"::1:80", "more than one ':'"}, Case{"[::1]", "no port"}}) {
    auto hp = ParseHostPort(c.text);
    ASSERT_FALSE(hp.ok()) << c.text;
    EXPECT_EQ(hp.status().code(), absl::StatusCode::kInvalidArgument);
    const std::string message(hp.status().message());
    EXPECT_NE(message.find(std::string("'") + c.text + "'"), std::string::npos) << message;
    EXPECT_NE(message.find(c.reason), std::string::npos) << c.text << ": " << message;
  }
}

// Verifies the options: port 0 for listen addresses, a default port, Redis's bare IPv6.
TEST(HostPortTest, OptionsWidenWhatIsAccepted) {
  auto zero = ParseHostPort("[::]:0", {.allow_port_zero = true});
  ASSERT_TRUE(zero.ok()) << zero.status();
  EXPECT_EQ(zero->host, "::");
  EXPECT_EQ(zero->port, 0);

  auto defaulted = ParseHostPort("cache", {.default_port = 6379});
  ASSERT_TRUE(defaulted.ok());
  EXPECT_EQ(*defaulted, (HostPort{"cache", 6379}));
  defaulted = ParseHostPort("[::1]", {.default_port = 6379});
  ASSERT_TRUE(defaulted.ok());
  EXPECT_EQ(*defaulted, (HostPort{"::1", 6379}));
  defaulted = ParseHostPort("cache:7000", {.default_port = 6379});
  ASSERT_TRUE(defaulted.ok());
  EXPECT_EQ(defaulted->port, 7000);
  EXPECT_FALSE(ParseHostPort("cache:0", {.default_port = 6379}).ok());
  // With a default port a bare "::1" could be a host or host ":" port 1: refused either way.
  EXPECT_FALSE(ParseHostPort("::1", {.default_port = 6379, .allow_unbracketed_ipv6 = true}).ok());

  auto bare = ParseHostPort("fd00::5:6381", {.allow_unbracketed_ipv6 = true});
  ASSERT_TRUE(bare.ok()) << bare.status();
  EXPECT_EQ(*bare, (HostPort{"fd00::5", 6381}));
}

// Verifies ToString brackets IPv6 and round-trips through the parser.
TEST(HostPortTest, ToStringRoundTrips) {
  for (const HostPort& hp :
       {HostPort{"127.0.0.1", 6379}, HostPort{"::1", 7000}, HostPort{"redis.example", 1}}) {
    auto back = ParseHostPort(hp.ToString());
    ASSERT_TRUE(back.ok()) << hp.ToString();
    EXPECT_EQ(*back, hp);
  }
  EXPECT_EQ((HostPort{"::1", 7000}).ToString(), "[::1]:7000");
}

}  // namespace
}  // namespace sluice::net
