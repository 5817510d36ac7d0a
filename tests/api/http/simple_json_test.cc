// The plain check body reader: what it takes, and that for whatever it takes it produces exactly
// nlohmann's SAX events.
#include "api/http/simple_json.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "tests/testing/json_events.h"
#include "tests/testing/random_edits.h"

namespace sluice::http {
namespace {

std::vector<std::string> Simple(std::string_view body) {
  SimpleBody simple;
  if (!simple.Scan(body)) return {"not plain"};
  sluice::testing::JsonEvents r;
  EXPECT_TRUE(simple.Drive(r));
  return r.events;
}

std::vector<std::string> Nlohmann(std::string_view body) {
  return sluice::testing::NlohmannEvents(body);
}

TEST(SimpleBody, ReadsPlainBodies) {
  using V = std::vector<std::string>;
  EXPECT_EQ(Simple(R"({"user_id":"u1"})"), (V{"{", "key user_id", "string u1", "}"}));
  EXPECT_EQ(Simple(" {\n\t\"a\" : \"\" , \"cost\": 0 }\r\n"),
            (V{"{", "key a", "string ", "key cost", "uint 0", "}"}));
  EXPECT_EQ(Simple("{}"), (V{"{", "}"}));
  EXPECT_EQ(Simple(R"({"cost":123456789012345678})"),
            (V{"{", "key cost", "uint 123456789012345678", "}"}));
  EXPECT_EQ(Simple(R"({"a":"1","a":"2"})"),
            (V{"{", "key a", "string 1", "key a", "string 2", "}"}));
}

TEST(SimpleBody, LeavesEverythingElse) {
  for (const char* body : {
           "",
           " ",
           "[]",
           "\"a\"",
           "1",
           "{",
           "}",
           "{\"a\"}",
           "{\"a\":}",
           "{\"a\":\"b\",}",
           "{\"a\":\"b\"} x",
           "{\"a\":\"b\"}{}",
           "{\"a\" \"b\"}",
           "{a:\"b\"}",
           "{'a':'b'}",
           "{\"a\":\"b\\\"c\"}",
           "{\"a\":\"\\u0041\"}",
           "{\"a\":\"\xc3\xa9\"}",
           "{\"a\":\"\x01\"}",
           "{\"a\":\"b\x7f\"}",
           "{\"a\":01}",
           "{\"a\":-1}",
           "{\"a\":1.0}",
           "{\"a\":1e3}",
           "{\"a\":1E3}",
           "{\"a\":1234567890123456789}",
           "{\"a\":null}",
           "{\"a\":true}",
           "{\"a\":{}}",
           "{\"a\":[]}",
           "{\"a\":\"b\"",
           "{\"a\":\"b",
           "\xef\xbb\xbf{}",
       }) {
    SimpleBody simple;
    EXPECT_FALSE(simple.Scan(body)) << ::testing::PrintToString(std::string(body));
  }
  std::string many = "{";
  for (size_t i = 0; i <= SimpleBody::kMaxFields; ++i) many += "\"k\":\"v\",";
  many.back() = '}';
  SimpleBody simple;
  EXPECT_FALSE(simple.Scan(many));
}

// Random edits of plain bodies: whenever SimpleBody takes one, nlohmann's events are the same.
TEST(SimpleBody, WhatItTakesNlohmannReadsTheSameWay) {
  const std::vector<std::string> seeds = {
      R"({"user_id":"user_1","cost":2})", R"({"ip_address":"10.0.0.1","endpoint":"/a"})",
      R"( { "api_key" : "k" , "tier" : "free" , "x" : 0 } )", R"({})"};
  const std::string alphabet = "{}[]\":, \t\r\n\\0123456789.eE-+aZ\x01\x7f\xc3";
  std::mt19937 rng(20261201);
  size_t taken = 0;
  for (int i = 0; i < 50'000; ++i) {
    std::string body = seeds[rng() % seeds.size()];
    const int edits = static_cast<int>(rng() % 3);
    sluice::testing::RandomEdits(body, rng, alphabet, edits);
    const std::vector<std::string> simple = Simple(body);
    if (simple == std::vector<std::string>{"not plain"}) continue;
    ++taken;
    ASSERT_EQ(simple, Nlohmann(body)) << ::testing::PrintToString(body);
  }
  EXPECT_GT(taken, 10'000u) << "too few plain bodies to compare";
}

}  // namespace
}  // namespace sluice::http
