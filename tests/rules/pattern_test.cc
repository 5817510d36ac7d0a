#include "rules/pattern.h"

#include <gtest/gtest.h>

#include "rules/attributes.h"

namespace sluice::rules {
namespace {

Glob SluiceGlob(std::string_view pattern) {
  absl::StatusOr<Glob> g = Glob::Parse(pattern, Glob::Escapes::kBackslash);
  EXPECT_TRUE(g.ok()) << pattern << ": " << g.status();
  return *g;
}

struct GlobCase {
  std::string_view pattern;
  std::string_view value;
  bool matches;
};

// Verifies `*` anywhere in the pattern, table-driven.
TEST(GlobTest, StarMatchesAnyRunAnywhere) {
  const GlobCase cases[] = {
      {"/api/payments*", "/api/payments", true},
      {"/api/payments*", "/api/payments/42", true},
      {"/api/payments*", "/api/payment", false},
      {"*/refund", "/api/payments/refund", true},
      {"*/refund", "/api/payments/refunds", false},
      {"/api/*/refund", "/api/payments/refund", true},
      {"/api/*/refund", "/api/refund", false},  // the slashes around * are literal
      {"/api/*/refund", "/api//refund", true},  // * matches the empty run
      {"*", "anything", true},
      {"**", "x", true},
      {"a*b*c", "abc", true},
      {"a*b*c", "aXbYc", true},
      {"a*b*c", "acb", false},
      {"a*b*c", "abcb", false},  // must end with c
      {"a*a", "a", false},       // prefix and suffix may not overlap
      {"a*a", "aa", true},
      {"*ab*ab*", "xabyab", true},
      {"*ab*ab*", "xaby", false},
      {"exact", "exact", true},
      {"exact", "exactly", false},
  };
  for (const GlobCase& c : cases) {
    EXPECT_EQ(SluiceGlob(c.pattern).Matches(c.value), c.matches) << c.pattern << " vs " << c.value;
  }
}

// Verifies that `\*` is a literal star and `\\` a literal backslash.
TEST(GlobTest, BackslashEscapes) {
  EXPECT_FALSE(SluiceGlob(R"(a\*b)").has_wildcard());
  EXPECT_TRUE(SluiceGlob(R"(a\*b)").Matches("a*b"));
  EXPECT_FALSE(SluiceGlob(R"(a\*b)").Matches("axb"));
  EXPECT_TRUE(SluiceGlob(R"(a\**)").Matches("a*xyz"));
  EXPECT_FALSE(SluiceGlob(R"(a\**)").Matches("axyz"));
  EXPECT_TRUE(SluiceGlob(R"(a\\b)").Matches(R"(a\b)"));
  EXPECT_TRUE(SluiceGlob(R"(a\\*)").Matches(R"(a\anything)"));
}

// Verifies that any other backslash is an error, so new escapes can be added later.
TEST(GlobTest, RejectsBadEscapes) {
  for (std::string_view bad : {R"(a\)", R"(a\b)", R"(\n)"}) {
    absl::StatusOr<Glob> g = Glob::Parse(bad, Glob::Escapes::kBackslash);
    EXPECT_FALSE(g.ok()) << bad;
  }
  EXPECT_EQ(Glob::Parse(R"(a\)", Glob::Escapes::kBackslash).status().message(),
            R"(invalid glob 'a\': '\' must be followed by '*' or '\')");
}

// Verifies Envoy-style globs: every `*` is a wildcard and backslashes are plain.
TEST(GlobTest, EnvoyGlobsHaveNoEscapes) {
  absl::StatusOr<Glob> g = Glob::Parse(R"(a\*)", Glob::Escapes::kNone);
  ASSERT_TRUE(g.ok());
  EXPECT_TRUE(g->has_wildcard());
  EXPECT_TRUE(g->Matches(R"(a\xyz)"));
}

// Verifies case-insensitive globs (used for methods).
TEST(GlobTest, CaseInsensitive) {
  absl::StatusOr<Glob> g = Glob::Parse("P*", Glob::Escapes::kBackslash, true);
  ASSERT_TRUE(g.ok());
  EXPECT_TRUE(g->Matches("post"));
  EXPECT_TRUE(g->Matches("PUT"));
  EXPECT_FALSE(g->Matches("GET"));
}

IpAddress Ip(std::string_view text) {
  IpAddress ip;
  EXPECT_TRUE(ParseIp(text, &ip)) << text;
  return ip;
}

// Verifies IPv4 and IPv6 CIDR parsing and containment.
TEST(CidrTest, ContainsV4AndV6) {
  absl::StatusOr<Cidr> v4 = ParseCidr("10.0.0.0/8");
  ASSERT_TRUE(v4.ok());
  EXPECT_TRUE(v4->Contains(Ip("10.255.1.2")));
  EXPECT_TRUE(v4->Contains(Ip("::ffff:10.1.1.1")));
  EXPECT_FALSE(v4->Contains(Ip("11.0.0.1")));
  EXPECT_FALSE(v4->Contains(Ip("2001:db8::1")));

  absl::StatusOr<Cidr> v6 = ParseCidr("2001:db8::/32");
  ASSERT_TRUE(v6.ok());
  EXPECT_TRUE(v6->Contains(Ip("2001:db8:1234::5")));
  EXPECT_FALSE(v6->Contains(Ip("2001:db9::1")));
  EXPECT_FALSE(v6->Contains(Ip("10.0.0.1")));

  absl::StatusOr<Cidr> all_v4 = ParseCidr("0.0.0.0/0");
  ASSERT_TRUE(all_v4.ok());
  EXPECT_TRUE(all_v4->Contains(Ip("8.8.8.8")));
  EXPECT_FALSE(all_v4->Contains(Ip("::1")));  // /0 of IPv4 is still IPv4 only

  absl::StatusOr<Cidr> host = ParseCidr("192.168.1.1");
  ASSERT_TRUE(host.ok());
  EXPECT_EQ(host->prefix_bits, 128);
  EXPECT_TRUE(host->Contains(Ip("192.168.1.1")));
  EXPECT_FALSE(host->Contains(Ip("192.168.1.2")));

  // Host bits below the prefix are cleared, as nginx does.
  absl::StatusOr<Cidr> sloppy = ParseCidr("10.1.2.3/8");
  ASSERT_TRUE(sloppy.ok());
  EXPECT_EQ(sloppy->network, Ip("10.0.0.0"));
}

// Verifies that malformed networks are rejected with the reason.
TEST(CidrTest, RejectsInvalid) {
  for (std::string_view bad :
       {"10.0.0.0/33", "10.0.0.0/", "10.0.0.0/-1", "10.0.0.0/8/8", "2001:db8::/129", "300.0.0.0/8",
        "10.0.0.0/ 8", "10.0.0/8", "/8", "10.0.0.0/0008"}) {
    EXPECT_FALSE(ParseCidr(bad).ok()) << bad;
  }
  EXPECT_EQ(ParseCidr("10.0.0.0/33").status().message(),
            "invalid CIDR '10.0.0.0/33': prefix length must be 0..32");
  EXPECT_EQ(ParseCidr("10.0.0.300").status().message(), "invalid IP address '10.0.0.300'");
}

AttributePattern Pattern(std::string_view attribute, std::string_view text) {
  absl::StatusOr<AttributePattern> p =
      AttributePattern::Parse(*ParseAttributeName(attribute), text);
  EXPECT_TRUE(p.ok()) << attribute << "=" << text << ": " << p.status();
  return *p;
}

// Verifies which kind each pattern text becomes.
TEST(AttributePatternTest, Kinds) {
  EXPECT_EQ(Pattern("tier", "free").kind(), AttributePattern::Kind::kExact);
  EXPECT_EQ(Pattern("endpoint", "/a*").kind(), AttributePattern::Kind::kGlob);
  EXPECT_EQ(Pattern("endpoint", R"(/a\*)").kind(), AttributePattern::Kind::kExact);
  EXPECT_EQ(Pattern("endpoint", R"(/a\*)").exact(), "/a*");
  EXPECT_EQ(Pattern("ip_address", "10.0.0.1").kind(), AttributePattern::Kind::kCidr);
  EXPECT_EQ(Pattern("ip_address", "10.0.0.0/8").kind(), AttributePattern::Kind::kCidr);
  EXPECT_EQ(Pattern("ip_address", "10.0.*").kind(), AttributePattern::Kind::kGlob);
  EXPECT_EQ(Pattern("method", "post").exact(), "POST");
}

// Verifies matching, with the empty string counting as absent.
TEST(AttributePatternTest, Matches) {
  EXPECT_TRUE(Pattern("tier", "free").Matches("free", nullptr));
  EXPECT_FALSE(Pattern("tier", "free").Matches("Free", nullptr));  // only method ignores case
  EXPECT_TRUE(Pattern("method", "post").Matches("POST", nullptr));
  EXPECT_TRUE(Pattern("method", "PoSt").Matches("post", nullptr));
  EXPECT_TRUE(Pattern("method", "p*").Matches("PATCH", nullptr));
  EXPECT_FALSE(Pattern("endpoint", "*").Matches("", nullptr));
  const IpAddress ip = Ip("10.2.3.4");
  EXPECT_TRUE(Pattern("ip_address", "10.0.0.0/8").Matches("10.2.3.4", &ip));
  EXPECT_FALSE(Pattern("ip_address", "10.0.0.0/8").Matches("10.2.3.4", nullptr));
  EXPECT_TRUE(Pattern("ip_address", "10.2.*").Matches("10.2.3.4", nullptr));  // on the text
}

// Verifies the errors a rules file can get for a pattern.
TEST(AttributePatternTest, Errors) {
  const AttributeRef ip = *ParseAttributeName("ip_address");
  EXPECT_EQ(AttributePattern::Parse(ip, "10.0.0.0/40").status().message(),
            "invalid CIDR '10.0.0.0/40': prefix length must be 0..32");
  EXPECT_EQ(AttributePattern::Parse(ip, "ten").status().message(), "invalid IP address 'ten'");
  const AttributeRef endpoint = *ParseAttributeName("endpoint");
  EXPECT_FALSE(AttributePattern::Parse(endpoint, R"(/x\y)").ok());
  EXPECT_EQ(AttributePattern::Parse(endpoint, "").status().message(),
            "empty pattern for 'endpoint' would never match");
}

}  // namespace
}  // namespace sluice::rules
