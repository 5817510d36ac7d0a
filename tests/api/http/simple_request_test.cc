// The fast path's parser: what it takes, what it leaves to the general path, and that whatever it
// takes Beast's parser (the general path) reads the same way.
#include "api/http/simple_request.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

#include "boost/beast/http/parser.hpp"
#include "boost/beast/http/string_body.hpp"
#include "tests/testing/http_agreement.h"
#include "tests/testing/random_edits.h"

namespace sluice::http {
namespace {

constexpr std::string_view kCheck =
    "POST /v1/ratelimit/check HTTP/1.1\r\n"
    "Host: localhost:8080\r\n"
    "Content-Type: application/json\r\n"
    "X-Request-Id:  abc \r\n"
    "Content-Length: 15\r\n"
    "\r\n"
    "{\"user_id\":\"u\"}";

bool Parse(std::string_view bytes, SimpleRequest& out, SimpleLimits limits = {}) {
  return ParseSimpleRequest(bytes, limits, out);
}

bool Takes(std::string_view bytes, SimpleLimits limits = {}) {
  SimpleRequest request;
  return Parse(bytes, request, limits);
}

// kCheck with `from` replaced by `to` (once).
std::string With(std::string_view from, std::string_view to) {
  std::string s(kCheck);
  const size_t at = s.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  return s.replace(at, from.size(), to);
}

TEST(SimpleRequest, TakesAPlainCheck) {
  SimpleRequest r;
  ASSERT_TRUE(Parse(kCheck, r));
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.target, "/v1/ratelimit/check");
  EXPECT_EQ(r.version, 11u);
  EXPECT_TRUE(r.keep_alive);
  EXPECT_EQ(r.body, R"({"user_id":"u"})");
  EXPECT_EQ(r.size, kCheck.size());
  EXPECT_EQ(r.field_count, 4u);
  EXPECT_EQ(r.Header("x-request-id"), "abc");  // case-insensitive, without the spaces around
  EXPECT_EQ(r.Header("HOST"), "localhost:8080");
  EXPECT_EQ(r.Header("traceparent"), "");
}

TEST(SimpleRequest, TakesOneRequestOfAPipeline) {
  const std::string two = std::string(kCheck) + std::string(kCheck);
  SimpleRequest r;
  ASSERT_TRUE(Parse(two, r));
  EXPECT_EQ(r.size, kCheck.size());
  ASSERT_TRUE(Parse(std::string_view(two).substr(r.size), r));
  EXPECT_EQ(r.body, R"({"user_id":"u"})");
}

TEST(SimpleRequest, NoBodyWithoutContentLength) {
  SimpleRequest r;
  ASSERT_TRUE(Parse("GET /health HTTP/1.1\r\nHost: a\r\n\r\nGET", r));
  EXPECT_EQ(r.body, "");
  EXPECT_EQ(r.size, 33u);
}

TEST(SimpleRequest, KeepAliveAsEachVersionSays) {
  SimpleRequest r;
  ASSERT_TRUE(Parse(With("Host:", "Connection: close\r\nHost:"), r));
  EXPECT_FALSE(r.keep_alive);
  ASSERT_TRUE(Parse(With("HTTP/1.1", "HTTP/1.0"), r));
  EXPECT_EQ(r.version, 10u);
  EXPECT_FALSE(r.keep_alive);
  ASSERT_TRUE(Parse(With("HTTP/1.1\r\n", "HTTP/1.0\r\nConnection: Keep-Alive\r\n"), r));
  EXPECT_TRUE(r.keep_alive);
  // HTTP/1.0 needs no Host.
  std::string no_host = With("HTTP/1.1", "HTTP/1.0");
  no_host.erase(no_host.find("Host:"), std::string_view("Host: localhost:8080\r\n").size());
  EXPECT_TRUE(Takes(no_host));
}

TEST(SimpleRequest, LeavesWhatIsNotAllThere) {
  for (size_t n = 0; n < kCheck.size(); ++n) {
    EXPECT_FALSE(Takes(kCheck.substr(0, n))) << n;
  }
}

TEST(SimpleRequest, LeavesUnusualFramingToTheGeneralPath) {
  EXPECT_FALSE(Takes(With("Content-Length: 15", "Transfer-Encoding: chunked")));
  EXPECT_FALSE(Takes(With("Host:", "Transfer-Encoding: identity\r\nHost:")));
  EXPECT_FALSE(Takes(With("Host:", "Expect: 100-continue\r\nHost:")));
  EXPECT_FALSE(Takes(With("Host:", "Upgrade: h2c\r\nHost:")));
  EXPECT_FALSE(Takes(With("Host:", "Content-Length: 15\r\nHost:")));  // two, even equal
  EXPECT_FALSE(Takes(With("Content-Length: 15", "Content-Length: +15")));
  EXPECT_FALSE(Takes(With("Content-Length: 15", "Content-Length: 1 5")));
  EXPECT_FALSE(Takes(With("Content-Length: 15", "Content-Length: 0x0f")));
  EXPECT_FALSE(Takes(With("Content-Length: 15", "Content-Length: 999999999999999999999")));
  EXPECT_FALSE(Takes(With("Host:", "Connection: keep-alive, close\r\nHost:")));
  EXPECT_FALSE(Takes(With("Host:", "Connection: upgrade\r\nHost:")));
  EXPECT_FALSE(Takes(With("Host:", "Connection: close\r\nConnection: close\r\nHost:")));
}

TEST(SimpleRequest, LeavesMalformedHeadsToTheGeneralPath) {
  EXPECT_FALSE(Takes(With("POST", "post")));
  EXPECT_FALSE(Takes(With("POST ", "POST  ")));
  EXPECT_FALSE(Takes(With("/v1/ratelimit/check", "http://a/v1/ratelimit/check")));
  EXPECT_FALSE(Takes(With("/v1/ratelimit/check", "*")));
  EXPECT_FALSE(Takes(With("check",
                          "ch\x01"
                          "eck")));
  EXPECT_FALSE(Takes(With("HTTP/1.1", "HTTP/2.0")));
  EXPECT_FALSE(Takes(With("HTTP/1.1", "http/1.1")));
  EXPECT_FALSE(Takes(With("HTTP/1.1\r\n", "HTTP/1.1\n")));  // a bare LF
  EXPECT_FALSE(Takes(With("Content-Type:", "Content-Type :")));
  EXPECT_FALSE(Takes(With("Content-Type:", "Content(Type:")));
  EXPECT_FALSE(Takes(With("Content-Type: application/json\r\n",
                          "Content-Type: application/\r\n json\r\n")));  // obs-fold
  EXPECT_FALSE(Takes(With("abc",
                          "a\x7f"
                          "c")));
  EXPECT_FALSE(Takes(With("abc", "a\xc3\xa9")));  // obs-text: Beast's call
  EXPECT_FALSE(Takes(With("abc", "a\rc")));
  EXPECT_FALSE(Takes("\r\n" + std::string(kCheck)));  // an empty line first: Beast skips it
}

TEST(SimpleRequest, LeavesHostsTheGeneralPathRefuses) {
  std::string no_host(kCheck);
  no_host.erase(no_host.find("Host:"), std::string_view("Host: localhost:8080\r\n").size());
  EXPECT_FALSE(Takes(no_host));
  EXPECT_FALSE(Takes(With("Host:", "Host: b\r\nHost:")));
  EXPECT_FALSE(Takes(With("localhost:8080", "a b")));
  EXPECT_FALSE(Takes(With("localhost:8080", "user@host")));
}

TEST(SimpleRequest, LeavesWhatIsOverTheLimits) {
  EXPECT_TRUE(Takes(kCheck, {.max_header_bytes = kCheck.size() - 15}));
  EXPECT_FALSE(Takes(kCheck, {.max_header_bytes = kCheck.size() - 16}));
  EXPECT_TRUE(Takes(kCheck, {.max_header_fields = 4}));
  EXPECT_FALSE(Takes(kCheck, {.max_header_fields = 3}));
  EXPECT_TRUE(Takes(kCheck, {.max_body_bytes = 15}));
  EXPECT_FALSE(Takes(kCheck, {.max_body_bytes = 14}));
  std::string many(kCheck);
  for (size_t i = 0; i < SimpleRequest::kMaxFields; ++i) {
    many.insert(many.find("Host:"), "X-F: 1\r\n");
  }
  EXPECT_FALSE(Takes(many));
}

// Whatever the fast path takes, Beast's parser reads the same way: same method, target, version,
// body, keep-alive and length. Random byte edits of a check request, so that the fast path's
// acceptance edges meet Beast's.
TEST(SimpleRequest, WhatItTakesBeastReadsTheSameWay) {
  std::mt19937 rng(20261201);
  const std::string alphabet = std::string("\r\n :;,\t/?=-.0123456789aAzZ{}\"\x01\x7f\x80") + '\0';
  size_t taken = 0;
  for (int i = 0; i < 20'000; ++i) {
    std::string bytes(kCheck);
    const int edits = 1 + static_cast<int>(rng() % 3);
    sluice::testing::RandomEdits(bytes, rng, alphabet, edits);
    SimpleRequest fast;
    if (!Parse(bytes, fast)) continue;
    ++taken;
    EXPECT_EQ(sluice::testing::DisagreementWithBeast(bytes, fast), "")
        << ::testing::PrintToString(bytes);
  }
  EXPECT_GT(taken, 1000u) << "the edits left too few requests in the simple form to compare";
}

}  // namespace
}  // namespace sluice::http
