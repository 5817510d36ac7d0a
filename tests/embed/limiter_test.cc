// The embeddable API (include/sluice/sluice.h) through libsluice.so, as a program that links
// Sluice::sluice sees it: rules from files and structs, their problems, reloads that keep the
// last good rules, both Check forms, answers as the HTTP API renders them, leases, metrics, and
// exact admission when many threads hit one key.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "sluice/sluice.h"

namespace {

namespace fs = std::filesystem;
using sluice::embed::Algorithm;
using sluice::embed::Limiter;
using sluice::embed::Options;
using sluice::embed::Request;
using sluice::embed::Result;
using sluice::embed::Rule;
using sluice::embed::Status;
using sluice::embed::Verdict;

class EmbedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("sluice-embed-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string Write(const std::string& name, const std::string& text) {
    const fs::path path = dir_ / name;
    std::ofstream(path) << text;
    return path.string();
  }

  fs::path dir_;
};

constexpr const char* kPerUser =
    "rules:\n"
    "  - {id: per-user, match: {}, key: [user_id], limit: 3, window: 1h, algorithm: "
    "token_bucket}\n"
    "lists:\n"
    "  deny:\n"
    "    - {user_id: mallory, reason: abuse}\n";

TEST_F(EmbedTest, RulesFileLimitsAndAnswersAsTheHttpApi) {
  Status status;
  auto limiter = Limiter::Create({.rules_paths = {Write("rules.yaml", kPerUser)}}, &status);
  ASSERT_NE(limiter, nullptr) << status.message();
  EXPECT_TRUE(status.ok());
  for (int i = 0; i < 3; ++i) {
    const Result r = limiter->Check({.user_id = "alice"});
    EXPECT_EQ(r.verdict, Verdict::kAllowed);
    EXPECT_TRUE(r.allowed());
    EXPECT_TRUE(r.limited);
    EXPECT_EQ(r.rule_id, "per-user");
    EXPECT_EQ(r.limit, 3);
    EXPECT_EQ(r.remaining, 2 - i);
    EXPECT_EQ(r.http_status, 200);
    EXPECT_GT(r.reset_at, 0);
  }
  const Result rejected = limiter->Check({.user_id = "alice"});
  EXPECT_EQ(rejected.verdict, Verdict::kRejected);
  EXPECT_EQ(rejected.http_status, 429);
  EXPECT_GE(rejected.retry_after, std::chrono::seconds(1));
  EXPECT_NE(rejected.body.find("RATE_LIMIT_EXCEEDED"), std::string::npos) << rejected.body;
  std::vector<std::string> names;
  for (const auto& [name, value] : rejected.headers) names.push_back(name);
  EXPECT_EQ(names, (std::vector<std::string>{"X-RateLimit-Limit", "X-RateLimit-Remaining",
                                             "X-RateLimit-Reset", "RateLimit-Policy", "RateLimit",
                                             "Retry-After"}));

  const Result denied = limiter->Check({.user_id = "mallory"});
  EXPECT_EQ(denied.verdict, Verdict::kDenied);
  EXPECT_EQ(denied.http_status, 403);
  EXPECT_EQ(denied.deny_reason, "abuse");

  const Result nobody = limiter->Check({});  // no user_id: the rule does not apply
  EXPECT_EQ(nobody.verdict, Verdict::kAllowed);
  EXPECT_FALSE(nobody.limited);
  EXPECT_TRUE(nobody.headers.empty());

  const std::string metrics = limiter->Metrics();
  EXPECT_NE(metrics.find("sluice_requests_total{result=\"rejected\",rule_id=\"per-user\"} 1"),
            std::string::npos)
      << metrics;
}

TEST_F(EmbedTest, WithoutTheHttpAnswer) {
  auto limiter =
      Limiter::Create({.rules_paths = {Write("rules.yaml", kPerUser)}, .http_answer = false});
  ASSERT_NE(limiter, nullptr);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(limiter->Check({.user_id = "carol"}).http_status, 200);
  const Result r = limiter->Check({.user_id = "carol"});
  EXPECT_EQ(r.verdict, Verdict::kRejected);
  EXPECT_EQ(r.http_status, 429);
  EXPECT_EQ(r.limit, 3);
  EXPECT_GE(r.retry_after, std::chrono::seconds(1));
  EXPECT_TRUE(r.headers.empty());
  EXPECT_TRUE(r.body.empty());
  EXPECT_EQ(limiter->Check({.user_id = "mallory"}).http_status, 403);
}

TEST_F(EmbedTest, ProblemsComeBackWithTheirPlace) {
  Status status;
  const std::string path =
      Write("bad.yaml", "rules:\n  - {id: x, match: {}, limit: -1, window: 1s}\n");
  EXPECT_EQ(Limiter::Create({.rules_paths = {path}}, &status), nullptr);
  EXPECT_FALSE(status.ok());
  EXPECT_NE(status.message().find(path + ":2:"), std::string::npos) << status.message();

  EXPECT_EQ(Limiter::Create({.rules_paths = {(dir_ / "missing").string()}}, &status), nullptr);
  EXPECT_NE(status.message().find("missing"), std::string::npos) << status.message();

  EXPECT_EQ(Limiter::Create({.rules = {{.id = "w", .limit = 5}}}, &status), nullptr);
  EXPECT_NE(status.message().find("rules[0] (w).window"), std::string::npos) << status.message();

  EXPECT_EQ(Limiter::Create({.store = {.pool = 0}}, &status), nullptr);
  EXPECT_NE(status.message().find("store.pool"), std::string::npos) << status.message();
}

TEST_F(EmbedTest, CodeRulesBesideFileRules) {
  Status status;
  auto limiter = Limiter::Create({.rules_paths = {Write("rules.yaml", kPerUser)},
                                  .rules = {{.id = "per-key",
                                             .key = {"api_key"},
                                             .limit = 1,
                                             .window = std::chrono::hours(1),
                                             .algorithm = Algorithm::kFixedWindow}}},
                                 &status);
  ASSERT_NE(limiter, nullptr) << status.message();
  EXPECT_EQ(limiter->Check({.api_key = "k1"}).verdict, Verdict::kAllowed);
  const Result second = limiter->Check({.api_key = "k1"});
  EXPECT_EQ(second.verdict, Verdict::kRejected);
  EXPECT_EQ(second.rule_id, "per-key");

  // An id the files already have, and invalid rules: refused, the rules in force stay.
  const uint64_t version = limiter->rules_version();
  Status clash =
      limiter->SetRules({{.id = "per-user", .limit = 1, .window = std::chrono::seconds(1)}});
  EXPECT_FALSE(clash.ok());
  EXPECT_NE(clash.message().find("per-user"), std::string::npos) << clash.message();
  Status invalid = limiter->SetRules(
      {{.id = "a", .limit = 1, .window = std::chrono::seconds(1)},
       {.id = "a", .limit = 1, .window = std::chrono::seconds(1)},
       {.id = "b", .match = {{"nope", "x"}}, .limit = 1, .window = std::chrono::seconds(1)}});
  EXPECT_FALSE(invalid.ok());
  EXPECT_NE(invalid.message().find("rules[1] (a).id: duplicate rule id"), std::string::npos)
      << invalid.message();
  EXPECT_NE(invalid.message().find("rules[2] (b).match"), std::string::npos) << invalid.message();
  EXPECT_EQ(limiter->rules_version(), version);
  EXPECT_EQ(limiter->Check({.api_key = "k1"}).verdict, Verdict::kRejected);

  // Replacing the code rules keeps the files'.
  ASSERT_TRUE(limiter->SetRules({}).ok());
  EXPECT_GT(limiter->rules_version(), version);
  EXPECT_EQ(limiter->Check({.api_key = "k1"}).verdict, Verdict::kAllowed);
  EXPECT_EQ(limiter->Check({.user_id = "mallory"}).verdict, Verdict::kDenied);
}

TEST_F(EmbedTest, ReloadKeepsTheLastGoodRules) {
  const std::string path = Write("rules.yaml", kPerUser);
  auto limiter = Limiter::Create({.rules_paths = {path}});
  ASSERT_NE(limiter, nullptr);
  Write("rules.yaml", "rules: [{id: broken\n");
  const Status bad = limiter->Reload();
  EXPECT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find(path), std::string::npos) << bad.message();
  EXPECT_EQ(limiter->Check({.user_id = "mallory"}).verdict, Verdict::kDenied);

  Write("rules.yaml", "rules:\n  - {id: one, match: {}, key: [user_id], limit: 1, window: 1h}\n");
  ASSERT_TRUE(limiter->Reload().ok());
  EXPECT_EQ(limiter->Check({.user_id = "mallory"}).verdict, Verdict::kAllowed);
  EXPECT_EQ(limiter->Check({.user_id = "mallory"}).verdict, Verdict::kRejected);
}

TEST_F(EmbedTest, MalformedRequestsAreRefused) {
  auto limiter = Limiter::Create({.rules_paths = {Write("rules.yaml", kPerUser)}});
  ASSERT_NE(limiter, nullptr);
  const Result bad_ip = limiter->Check({.user_id = "alice", .ip_address = "300.1.1.1"});
  EXPECT_EQ(bad_ip.verdict, Verdict::kInvalid);
  EXPECT_EQ(bad_ip.http_status, 400);
  EXPECT_NE(bad_ip.body.find("ip_address"), std::string::npos) << bad_ip.body;
  EXPECT_EQ(limiter->Check({.user_id = "alice", .cost = -1}).verdict, Verdict::kInvalid);
  // Neither was counted.
  EXPECT_EQ(limiter->Check({.user_id = "alice"}).remaining, 2);
  EXPECT_EQ(limiter->Check({.user_id = "alice", .ip_address = "2001:db8::1"}).remaining, 1);
}

TEST_F(EmbedTest, CallbackFormAnswersOnce) {
  auto limiter = Limiter::Create({.rules_paths = {Write("rules.yaml", kPerUser)}});
  ASSERT_NE(limiter, nullptr);
  std::promise<Result> answer;
  std::atomic<int> calls{0};
  limiter->Check({.user_id = "bob", .cost = 2}, [&](Result r) {
    if (calls.fetch_add(1) == 0) answer.set_value(std::move(r));
  });
  const Result r = answer.get_future().get();
  EXPECT_EQ(r.remaining, 1);
  EXPECT_EQ(calls.load(), 1);
}

TEST_F(EmbedTest, ConcurrencySlotsComeBackOnRelease) {
  auto limiter = Limiter::Create(
      {.rules_paths = {Write("rules.yaml",
                             "rules:\n  - {id: inflight, match: {}, key: [user_id], "
                             "algorithm: concurrency, limit: 2, lease_ttl: 30s}\n")}});
  ASSERT_NE(limiter, nullptr);
  const Result first = limiter->Check({.user_id = "u"});
  const Result second = limiter->Check({.user_id = "u"});
  ASSERT_EQ(first.verdict, Verdict::kAllowed);
  ASSERT_EQ(second.verdict, Verdict::kAllowed);
  EXPECT_FALSE(first.lease_id.empty());
  EXPECT_EQ(limiter->Check({.user_id = "u"}).verdict, Verdict::kRejected);
  EXPECT_TRUE(limiter->Release(first.lease_id).ok());
  EXPECT_TRUE(limiter->Release(first.lease_id).ok()) << "a second release is harmless";
  EXPECT_EQ(limiter->Check({.user_id = "u"}).verdict, Verdict::kAllowed);
  EXPECT_FALSE(limiter->Release("not a lease").ok());
}

// Many threads on one key: exactly the limit is admitted, whatever the interleaving.
TEST_F(EmbedTest, ExactUnderConcurrency) {
  for (Algorithm algorithm :
       {Algorithm::kFixedWindow, Algorithm::kSlidingWindowLog, Algorithm::kSlidingWindowCounter,
        Algorithm::kTokenBucket, Algorithm::kGcra, Algorithm::kLeakyBucket}) {
    Status status;
    auto limiter = Limiter::Create({.rules = {{.id = "hot",
                                               .limit = 500,
                                               .window = std::chrono::hours(1),
                                               .algorithm = algorithm}}},
                                   &status);
    ASSERT_NE(limiter, nullptr) << status.message();
    constexpr int kThreads = 8;
    constexpr int kEach = 200;
    std::atomic<int> allowed{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&] {
        for (int i = 0; i < kEach; ++i) {
          if (limiter->Check({.user_id = "everyone"}).allowed()) allowed.fetch_add(1);
        }
      });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(allowed.load(), 500) << "algorithm " << static_cast<int>(algorithm);
  }
}

TEST(EmbedVersion, IsTheProjects) { EXPECT_EQ(sluice::embed::Version(), SLUICE_TEST_VERSION); }

}  // namespace
