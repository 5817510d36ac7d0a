#include "proxy/identity.h"

#include <gtest/gtest.h>

#include "boost/beast/http/field.hpp"

namespace sluice::proxy {
namespace {

namespace bhttp = boost::beast::http;

constexpr boost::beast::string_view kForwardedFor = "X-Forwarded-For";

rules::IpAddress Ip(std::string_view text) {
  rules::IpAddress ip;
  EXPECT_TRUE(rules::ParseIp(text, &ip)) << text;
  return ip;
}

TrustedProxies Trusted(std::initializer_list<std::string_view> networks) {
  std::vector<rules::Cidr> cidrs;
  for (std::string_view n : networks) {
    auto cidr = rules::ParseCidr(n);
    EXPECT_TRUE(cidr.ok()) << n;
    cidrs.push_back(*cidr);
  }
  return TrustedProxies(std::move(cidrs));
}

bhttp::request_header<> Request(std::string_view target,
                                std::vector<std::pair<std::string, std::string>> fields = {}) {
  bhttp::request_header<> req;
  req.method(bhttp::verb::post);
  req.target(boost::beast::string_view(target.data(), target.size()));
  req.version(11);
  for (auto& [name, value] : fields) req.insert(name, value);
  return req;
}

IdentitySource Source(std::string_view text) {
  auto source = ParseIdentitySource(text);
  EXPECT_TRUE(source.ok()) << text << ": " << source.status();
  return *source;
}

// Verifies the two source kinds and the errors for anything else.
TEST(IdentitySourceTest, ParsesHeaderAndQuery) {
  EXPECT_EQ(Source("header:X-User-Id"),
            (IdentitySource{IdentitySource::Kind::kHeader, "X-User-Id"}));
  EXPECT_EQ(Source("query:api_key"), (IdentitySource{IdentitySource::Kind::kQuery, "api_key"}));
  EXPECT_EQ(Source("query:api_key").ToString(), "query:api_key");
  for (std::string_view bad :
       {"", "header", "header:", "cookie:x", "X-User-Id", "header:a b", "header:x:y", "query:"}) {
    EXPECT_FALSE(ParseIdentitySource(bad).ok()) << bad;
  }
}

// Verifies that each attribute takes the first source present, in list order, and that empty
// values count as absent.
TEST(IdentityTest, FirstPresentSourceWins) {
  IdentityConfig identity;
  identity.user_id = {Source("header:X-User-Id")};
  identity.api_key = {Source("header:X-API-Key"), Source("query:api_key")};
  identity.tier = {Source("header:X-Tier")};
  const rules::IpAddress peer = Ip("192.0.2.7");

  auto a = ReadAttributes(Request("/v1/items?api_key=from-query&x=1",
                                  {{"x-user-id", "u1"}, {"X-API-Key", "from-header"}}),
                          peer, identity, {});
  EXPECT_EQ(a.user_id, "u1");  // header names in any case
  EXPECT_EQ(a.api_key, "from-header");
  EXPECT_EQ(a.tier, "");

  auto b = ReadAttributes(Request("/v1/items?x=1&api_key=sk%20live+1", {{"X-API-Key", ""}}), peer,
                          identity, {});
  EXPECT_EQ(b.api_key, "sk live 1");  // the empty header skipped; the query decoded
  EXPECT_EQ(b.endpoint, "/v1/items");
  EXPECT_EQ(b.method, "POST");
  EXPECT_EQ(b.ip_address, "192.0.2.7");
}

// Verifies that headers are handed to the rules (headers.<name>), names lowercased.
TEST(IdentityTest, PassesHeaders) {
  auto a = ReadAttributes(Request("/", {{"X-Client", "mobile"}, {"Accept", "*/*"}}),
                          Ip("192.0.2.7"), {}, {});
  EXPECT_EQ(a.Header("x-client"), "mobile");
  EXPECT_EQ(a.Header("ACCEPT"), "*/*");
  EXPECT_EQ(a.Header("x-none"), "");
}

// Verifies the target forms the endpoint is taken from.
TEST(IdentityTest, EndpointIsThePath) {
  EXPECT_EQ(ReadAttributes(Request("/a/b?c=d"), Ip("192.0.2.7"), {}, {}).endpoint, "/a/b");
  EXPECT_EQ(ReadAttributes(Request("http://example.com/a?x"), Ip("192.0.2.7"), {}, {}).endpoint,
            "/a");
}

TEST(QueryParameterTest, FindsDecodesAndMisses) {
  EXPECT_EQ(QueryParameter("/p?a=1&b=2", "b"), "2");
  EXPECT_EQ(QueryParameter("/p?a=1&a=2", "a"), "1");  // the first
  EXPECT_EQ(QueryParameter("/p?a", "a"), "");
  EXPECT_EQ(QueryParameter("/p?a=%4", "a"), "%4");  // a bad escape stays as it is
  EXPECT_EQ(QueryParameter("/p?k%65y=v", "key"), "v");
  EXPECT_EQ(QueryParameter("/p?a=1#b=2", "b"), std::nullopt);
  EXPECT_EQ(QueryParameter("/p", "a"), std::nullopt);
  EXPECT_EQ(QueryParameter("/p?ab=1", "a"), std::nullopt);
}

// Verifies that X-Forwarded-For from a peer that is not trusted is ignored.
TEST(ClientAddressTest, UntrustedPeerIgnoresForwardedFor) {
  bhttp::fields f;
  f.insert(kForwardedFor, "203.0.113.9");
  EXPECT_EQ(ClientAddress(Ip("192.0.2.7"), f, Trusted({"10.0.0.0/8"})).ToString(), "192.0.2.7");
  EXPECT_EQ(ClientAddress(Ip("192.0.2.7"), f, {}).ToString(), "192.0.2.7");
}

// Verifies the right-to-left walk: trusted hops skipped, the first untrusted is the client,
// several field lines make one list.
TEST(ClientAddressTest, WalksRightToLeftSkippingTrusted) {
  const TrustedProxies trusted = Trusted({"10.0.0.0/8", "2001:db8:ff::/48"});
  bhttp::fields f;
  f.insert(kForwardedFor, "198.51.100.1, 203.0.113.9");
  f.insert(kForwardedFor, "10.1.1.1 ,10.2.2.2");
  // 10.2.2.2, 10.1.1.1 trusted: 203.0.113.9 is the client (198.51.100.1 may be forged by it).
  EXPECT_EQ(ClientAddress(Ip("10.0.0.5"), f, trusted).ToString(), "203.0.113.9");

  bhttp::fields all_trusted;
  all_trusted.insert(kForwardedFor, "10.9.9.9, 10.1.1.1");
  EXPECT_EQ(ClientAddress(Ip("10.0.0.5"), all_trusted, trusted).ToString(), "10.9.9.9");

  bhttp::fields none;
  EXPECT_EQ(ClientAddress(Ip("10.0.0.5"), none, trusted).ToString(), "10.0.0.5");
}

// Verifies that the walk stops at an entry that is not an address: the last trusted hop is the
// client then, nothing left of the bad entry believed.
TEST(ClientAddressTest, StopsAtGarbage) {
  const TrustedProxies trusted = Trusted({"10.0.0.0/8"});
  bhttp::fields f;
  f.insert(kForwardedFor, "203.0.113.9, unknown, 10.1.1.1");
  EXPECT_EQ(ClientAddress(Ip("10.0.0.5"), f, trusted).ToString(), "10.1.1.1");
  bhttp::fields g;
  g.insert(kForwardedFor, "bogus");
  EXPECT_EQ(ClientAddress(Ip("10.0.0.5"), g, trusted).ToString(), "10.0.0.5");
}

// Verifies IPv6 peers and entries, ports on entries, and IPv4 in its mapped form.
TEST(ClientAddressTest, Ipv6AndPorts) {
  const TrustedProxies trusted = Trusted({"2001:db8:ff::/48", "10.0.0.0/8"});
  bhttp::fields f;
  f.insert(kForwardedFor, "[2001:db8::1]:4711, 2001:db8:ff::2");
  EXPECT_EQ(ClientAddress(Ip("2001:db8:ff::1"), f, trusted).ToString(), "2001:db8::1");
  bhttp::fields g;
  g.insert(kForwardedFor, "203.0.113.9:80");
  EXPECT_EQ(ClientAddress(Ip("::ffff:10.0.0.1"), g, trusted).ToString(), "203.0.113.9");
  EXPECT_EQ(ClientAddress(Ip("2001:db8:1::1"), g, trusted).ToString(), "2001:db8:1::1");
}

}  // namespace
}  // namespace sluice::proxy
