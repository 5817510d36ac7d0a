// The database's rules as the server holds them: a full load, incremental changes (only newer
// versions), composition with the files' rule set (ids unique across both), lists and tiers,
// on a real SQLite database.
#include "admin/database_rules.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "db/sqlite.h"
#include "rules/loader.h"

namespace sluice::admin {
namespace {

class DatabaseRulesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("sluice-dbrules-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    auto db = db::OpenSqlite({.path = (dir_ / "rules.db").string()});
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = std::move(*db);
  }
  void TearDown() override {
    db_.reset();
    std::filesystem::remove_all(dir_);
  }

  static db::Write Put(db::TargetKind kind, std::string id, std::string body) {
    return db::Write::Put(kind, std::move(id), std::move(body));
  }
  static db::Write Delete(db::TargetKind kind, std::string id) {
    return db::Write::Delete(kind, std::move(id));
  }
  void Change(std::vector<db::Write> writes) { ASSERT_TRUE(db_->Apply(writes, "test", "").ok()); }
  static std::string Rule(const std::string& id, int limit) {
    return R"({"id":")" + id + R"(","limit":)" + std::to_string(limit) +
           R"(,"window":"1h","key":["user_id"],"match":{"endpoint":"/)" + id + R"("}})";
  }
  std::shared_ptr<const rules::RuleSet> Files(const std::string& yaml) {
    const std::string path = (dir_ / "files.yaml").string();
    std::ofstream(path) << yaml;
    auto loaded = rules::LoadRuleSet({path});
    EXPECT_TRUE(loaded.ok()) << loaded.status();
    return *loaded;
  }

  std::filesystem::path dir_;
  std::unique_ptr<db::SqlDatabase> db_;
};

TEST_F(DatabaseRulesTest, LoadsThenFollowsChanges) {
  Change({Put(db::TargetKind::kRule, "a", Rule("a", 5)),
          Put(db::TargetKind::kDenyList, "d1", R"({"user_id":"mallory","reason":"abuse"})"),
          Put(db::TargetKind::kTier, "u1", "premium")});
  DatabaseRules held;
  EXPECT_TRUE(held.Reset(*db_->Load()).empty());
  EXPECT_EQ(held.version(), 1u);
  EXPECT_EQ(held.rule_count(), 1u);
  ASSERT_NE(held.TierOf("u1"), nullptr);
  EXPECT_EQ(*held.TierOf("u1"), "premium");

  Change({Put(db::TargetKind::kRule, "b", Rule("b", 7))});
  Change({Delete(db::TargetKind::kRule, "a"), Put(db::TargetKind::kRule, "b", Rule("b", 9)),
          Delete(db::TargetKind::kTier, "u1")});
  EXPECT_TRUE(held.Apply(*db_->ChangesSince(held.version())).empty());
  EXPECT_EQ(held.version(), 3u);
  auto set = held.Compose(*rules::RuleSet::Empty());
  ASSERT_TRUE(set.ok()) << set.status();
  ASSERT_EQ((*set)->size(), 1u);
  EXPECT_EQ((*set)->rules()[0].id, "b");
  EXPECT_EQ((*set)->rules()[0].limit.limit(), 9);
  EXPECT_EQ((*set)->deny_list().size(), 1u);
  EXPECT_EQ(held.TierOf("u1"), nullptr);

  // Versions only move forward: an old state or old changes change nothing.
  db::State old;
  old.version = 1;
  held.Reset(old);
  EXPECT_EQ(held.rule_count(), 1u);
  held.Apply(*db_->ChangesSince(0));
  EXPECT_EQ(held.version(), 3u);
  EXPECT_EQ((*held.Compose(*rules::RuleSet::Empty()))->rules()[0].limit.limit(), 9);
}

TEST_F(DatabaseRulesTest, FilesAndDatabaseMakeOneRuleSet) {
  // A domain file: the composed set keeps the files' domains too.
  auto files = Files(
      "domain: envoy\ndescriptors:\n  - {key: k, rate_limit: {unit: second, requests_per_unit: "
      "1}}\n");
  Change({Put(db::TargetKind::kRule, "from-db", Rule("from-db", 3))});
  DatabaseRules held;
  held.Reset(*db_->Load());
  auto set = held.Compose(*files);
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ((*set)->size(), 1u);
  EXPECT_TRUE((*set)->HasDomain("envoy"));
  const rules::DescriptorEntry entry{"k", "v"};
  EXPECT_NE((*set)->MatchDescriptor("envoy", {&entry, 1}), nullptr);

  const std::string path = (dir_ / "rules.yaml").string();
  std::ofstream(path) << "rules:\n  - {id: from-db, limit: 1, window: 1s}\n";
  auto clash = held.Compose(**rules::LoadRuleSet({path}));
  EXPECT_EQ(clash.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_NE(clash.status().message().find("from-db"), std::string_view::npos);
}

TEST_F(DatabaseRulesTest, ARecordThatDoesNotLoadIsLeftOutAndSaid) {
  Change({Put(db::TargetKind::kRule, "good", Rule("good", 1)),
          Put(db::TargetKind::kRule, "bad", R"({"id":"bad","limit":0,"window":"1s"})"),
          Put(db::TargetKind::kRule, "renamed", Rule("other", 1))});
  DatabaseRules held;
  const std::vector<std::string> problems = held.Reset(*db_->Load());
  ASSERT_EQ(problems.size(), 2u);
  EXPECT_NE(problems[0].find("database rule 'bad': limit:"), std::string::npos) << problems[0];
  EXPECT_NE(problems[1].find("'renamed'"), std::string::npos) << problems[1];
  EXPECT_EQ(held.rule_count(), 1u);
}

TEST_F(DatabaseRulesTest, OneChangeAmongManyRulesRereadsOnlyIt) {
  constexpr int kRules = 20000;
  std::vector<db::Write> writes;
  for (int i = 0; i < kRules; ++i) {
    writes.push_back(Put(db::TargetKind::kRule, "customer-" + std::to_string(i),
                         R"({"id":"customer-)" + std::to_string(i) +
                             R"(","group":"quota","priority":10,"match":{"user_id":"u)" +
                             std::to_string(i) +
                             R"("},"key":["user_id"],"limit":100,"window":"1h"})"));
  }
  Change(writes);
  DatabaseRules held;
  EXPECT_TRUE(held.Reset(*db_->Load()).empty());
  Change({Put(db::TargetKind::kRule, "customer-7", Rule("customer-7", 1000))});
  const auto changes = *db_->ChangesSince(held.version());
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_TRUE(held.Apply(changes).empty());
  auto set = held.Compose(*rules::RuleSet::Empty());
  ASSERT_TRUE(set.ok());
  EXPECT_EQ((*set)->size(), static_cast<size_t>(kRules));
  EXPECT_EQ((*set)->FindRule("customer-7")->limit.limit(), 1000);
  rules::RequestAttributes request;
  request.user_id = "u12345";
  rules::RuleList applicable;
  (*set)->Applicable(request, applicable);
  ASSERT_EQ(applicable.size(), 1u);
  EXPECT_EQ(applicable[0]->id, "customer-12345");
}

}  // namespace
}  // namespace sluice::admin
