// The rules database on a real SQLite file: schema created and migrated on open, one version
// and its audit entries per change, optimistic concurrency, all-or-nothing changes, restore,
// catch-up reads, and concurrent writers (several connections, as several servers on one file).
#include "db/sqlite_database.h"

#include <gtest/gtest.h>

#include <atomic>
#include <sqlite3.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <thread>
#include <vector>

#include "db/schema.h"

namespace sluice::db {
namespace {

class SqliteDatabaseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("sluice-db-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    db_ = OpenOrDie();
  }
  void TearDown() override {
    db_.reset();
    std::filesystem::remove_all(dir_);
  }

  std::unique_ptr<SqliteDatabase> OpenOrDie() {
    auto db = SqliteDatabase::Open({.path = (dir_ / "rules.db").string()});
    EXPECT_TRUE(db.ok()) << db.status();
    return std::move(*db);
  }

  static Write Put(TargetKind kind, std::string id, std::string body) {
    return Write{.op = Write::Op::kPut, .kind = kind, .target = std::move(id),
                 .body = std::move(body)};
  }
  static Write Create(std::string id, std::string body) {
    return Write{.op = Write::Op::kCreate, .kind = TargetKind::kRule, .target = std::move(id),
                 .body = std::move(body)};
  }
  static Write Delete(TargetKind kind, std::string id) {
    return Write{.op = Write::Op::kDelete, .kind = kind, .target = std::move(id)};
  }

  // Rules as id -> body, for comparing whole rule sets.
  static std::map<std::string, std::string> Bodies(const std::vector<Record>& records) {
    std::map<std::string, std::string> out;
    for (const Record& r : records) out[r.id] = r.body;
    return out;
  }

  std::filesystem::path dir_;
  std::unique_ptr<SqliteDatabase> db_;
};

// Verifies that a new file gets the whole schema, and that opening it again migrates nothing.
TEST_F(SqliteDatabaseTest, CreatesTheSchemaOnFirstOpen) {
  EXPECT_EQ(db_->schema_version(), Migrations(Dialect::kSqlite).back().version);
  auto state = db_->Load();
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->version, 0u);
  EXPECT_TRUE(state->rules.empty());
  db_.reset();
  db_ = OpenOrDie();
  EXPECT_EQ(db_->schema_version(), Migrations(Dialect::kSqlite).back().version);
}

// Verifies that each change bumps the version by one and records who did what, before and
// after, and that the objects carry the version that wrote them as their revision.
TEST_F(SqliteDatabaseTest, EveryChangeIsAVersionWithItsAudit) {
  auto c1 = db_->Apply(std::vector<Write>{Create("a", R"({"limit":1})")}, "ops", "create a");
  ASSERT_TRUE(c1.ok()) << c1.status();
  EXPECT_EQ(c1->version, 1u);
  ASSERT_EQ(c1->entries.size(), 1u);
  EXPECT_EQ(c1->entries[0].action, "create");
  EXPECT_FALSE(c1->entries[0].before.has_value());

  auto c2 = db_->Apply(std::vector<Write>{Put(TargetKind::kRule, "a", R"({"limit":2})"),
                                          Put(TargetKind::kTier, "u1", "premium")},
                       "ci", "raise a");
  ASSERT_TRUE(c2.ok()) << c2.status();
  EXPECT_EQ(c2->version, 2u);
  EXPECT_EQ(c2->entries[0].action, "update");
  EXPECT_EQ(c2->entries[0].before, R"({"limit":1})");
  EXPECT_EQ(c2->entries[0].after, R"({"limit":2})");

  auto state = db_->Load();
  ASSERT_TRUE(state.ok());
  EXPECT_EQ(state->version, 2u);
  ASSERT_EQ(state->rules.size(), 1u);
  EXPECT_EQ(state->rules[0].revision, 2u);
  ASSERT_EQ(state->tiers.size(), 1u);
  EXPECT_EQ(state->tiers[0].body, "premium");

  auto audit = db_->Audit(0, 100);
  ASSERT_TRUE(audit.ok());
  ASSERT_EQ(audit->size(), 3u);
  EXPECT_EQ((*audit)[0].actor, "ci");  // newest first
  EXPECT_EQ((*audit)[2].actor, "ops");
  EXPECT_EQ(db_->Audit(1, 100)->size(), 2u);
  EXPECT_EQ(db_->Audit(0, 1)->size(), 1u);
  auto versions = db_->Versions(10);
  ASSERT_TRUE(versions.ok());
  ASSERT_EQ(versions->size(), 2u);
  EXPECT_EQ((*versions)[0].summary, "raise a");
}

// Verifies If-Match, create-only and delete-missing errors, and that a change that fails in
// its second write leaves nothing of its first (one transaction).
TEST_F(SqliteDatabaseTest, AFailedChangeChangesNothing) {
  ASSERT_TRUE(db_->Apply(std::vector<Write>{Create("a", "{}")}, "ops", "").ok());
  Write stale = Put(TargetKind::kRule, "a", R"({"x":1})");
  stale.if_revision = 7;
  EXPECT_EQ(db_->Apply(std::vector<Write>{stale}, "ops", "").status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(db_->Apply(std::vector<Write>{Create("a", "{}")}, "ops", "").status().code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(db_->Apply(std::vector<Write>{Delete(TargetKind::kRule, "nope")}, "ops", "")
                .status()
                .code(),
            absl::StatusCode::kNotFound);
  auto mixed = db_->Apply(
      std::vector<Write>{Put(TargetKind::kRule, "b", "{}"), Create("a", "{}")}, "ops", "");
  EXPECT_EQ(mixed.status().code(), absl::StatusCode::kAlreadyExists);
  auto state = db_->Load();
  EXPECT_EQ(state->version, 1u);
  EXPECT_EQ(state->rules.size(), 1u) << "b must not exist";
  EXPECT_EQ(db_->Audit(0, 100)->size(), 1u);
  Write fresh = Put(TargetKind::kRule, "a", R"({"x":1})");
  fresh.if_revision = 1;
  EXPECT_TRUE(db_->Apply(std::vector<Write>{fresh}, "ops", "").ok());
}

// Verifies that the audit log cannot be rewritten, even by SQL run against the file.
TEST_F(SqliteDatabaseTest, TheAuditLogIsAppendOnly) {
  ASSERT_TRUE(db_->Apply(std::vector<Write>{Create("a", "{}")}, "ops", "").ok());
  db_.reset();
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open((dir_ / "rules.db").c_str(), &raw), SQLITE_OK);
  EXPECT_NE(sqlite3_exec(raw, "UPDATE sluice_audit SET actor = 'someone else'", nullptr, nullptr,
                         nullptr),
            SQLITE_OK);
  EXPECT_NE(sqlite3_exec(raw, "DELETE FROM sluice_audit", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(raw);
  db_ = OpenOrDie();
  EXPECT_EQ((*db_->Audit(0, 10))[0].actor, "ops");
}

// Verifies CONTRACT §8's restore: 10 changes, restore version 3, and the rules, lists and
// tiers equal version 3's exactly, as a new version; the audit log keeps every entry.
TEST_F(SqliteDatabaseTest, RestoreBringsBackAVersionExactly) {
  std::map<std::string, std::string> at3;
  std::vector<Record> tiers_at3;
  for (int v = 1; v <= 10; ++v) {
    std::vector<Write> writes = {
        Put(TargetKind::kRule, "r" + std::to_string(v % 4), R"({"limit":)" + std::to_string(v) + "}")};
    if (v == 2) writes.push_back(Put(TargetKind::kTier, "u1", "premium"));
    if (v == 5) writes.push_back(Delete(TargetKind::kTier, "u1"));
    if (v == 6) writes.push_back(Put(TargetKind::kDenyList, "d1", R"({"ip_address":"10.0.0.1"})"));
    if (v == 8) writes.push_back(Delete(TargetKind::kRule, "r3"));
    ASSERT_TRUE(db_->Apply(writes, "ops", "change " + std::to_string(v)).ok());
    if (v == 3) {
      auto s = db_->Load();
      at3 = Bodies(s->rules);
      tiers_at3 = s->tiers;
    }
  }
  auto restored = db_->Restore(3, "admin");
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(restored->version, 11u);
  for (const AuditEntry& e : restored->entries) EXPECT_EQ(e.action, "restore");
  auto state = db_->Load();
  EXPECT_EQ(state->version, 11u);
  EXPECT_EQ(Bodies(state->rules), at3);
  ASSERT_EQ(state->tiers.size(), tiers_at3.size());
  EXPECT_EQ(state->tiers[0].body, "premium");
  EXPECT_TRUE(state->deny.empty());
  auto versions = db_->Versions(100);
  EXPECT_EQ(versions->size(), 11u);
  EXPECT_EQ((*versions)[0].actor, "admin");
  EXPECT_EQ((*versions)[0].summary, "restore version 3");
  EXPECT_EQ(db_->Restore(12, "admin").status().code(), absl::StatusCode::kNotFound);
  // Restoring version 0 empties everything.
  ASSERT_TRUE(db_->Restore(0, "admin").ok());
  state = db_->Load();
  EXPECT_TRUE(state->rules.empty());
  EXPECT_TRUE(state->tiers.empty());
}

// Verifies the catch-up read: a server holding version V applies ChangesSince(V) in order and
// ends with what Load() gives; counter resets are audited and versioned, never stored.
TEST_F(SqliteDatabaseTest, ChangesSinceReplaysToTheCurrentState) {
  ASSERT_TRUE(db_->Apply(std::vector<Write>{Put(TargetKind::kRule, "a", "1")}, "ops", "").ok());
  auto held = db_->Load();
  ASSERT_TRUE(db_->Apply(std::vector<Write>{Put(TargetKind::kRule, "b", "2")}, "ops", "").ok());
  ASSERT_TRUE(db_->Apply(std::vector<Write>{Put(TargetKind::kRule, "a", "3"),
                                            Delete(TargetKind::kRule, "b")},
                         "ops", "")
                  .ok());
  Write reset{.op = Write::Op::kReset, .kind = TargetKind::kCounter, .target = "free|u1"};
  ASSERT_TRUE(db_->Apply(std::vector<Write>{reset}, "ops", "reset u1").ok());
  auto changes = db_->ChangesSince(held->version);
  ASSERT_TRUE(changes.ok());
  std::map<std::string, std::string> rules = Bodies(held->rules);
  for (const AuditEntry& e : *changes) {
    if (e.kind != TargetKind::kRule) continue;
    if (e.after.has_value()) {
      rules[e.target] = *e.after;
    } else {
      rules.erase(e.target);
    }
  }
  auto now = db_->Load();
  EXPECT_EQ(now->version, 4u);
  EXPECT_EQ(rules, Bodies(now->rules));
  EXPECT_EQ(changes->back().action, "reset");
}

// Verifies that writers on separate connections (as several servers on one file) serialize:
// every change gets its own version, none is lost, and If-Match lets exactly one of two racing
// writers of the same revision win.
TEST_F(SqliteDatabaseTest, ConcurrentWritersGetDistinctVersions) {
  constexpr int kWriters = 4;
  constexpr int kEach = 25;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kWriters; ++t) {
    threads.emplace_back([&, t] {
      auto db = OpenOrDie();
      for (int i = 0; i < kEach; ++i) {
        const std::string id = "w" + std::to_string(t) + "-" + std::to_string(i);
        if (!db->Apply(std::vector<Write>{Put(TargetKind::kRule, id, "{}")}, "w", "").ok()) {
          ++failures;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  auto state = db_->Load();
  EXPECT_EQ(state->version, static_cast<uint64_t>(kWriters * kEach));
  EXPECT_EQ(state->rules.size(), static_cast<size_t>(kWriters * kEach));

  ASSERT_TRUE(db_->Apply(std::vector<Write>{Put(TargetKind::kRule, "race", "0")}, "ops", "").ok());
  const uint64_t revision = db_->Load()->version;
  std::atomic<int> won{0}, lost{0};
  threads.clear();
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      auto db = OpenOrDie();
      Write w = Put(TargetKind::kRule, "race", std::to_string(t + 1));
      w.if_revision = revision;
      auto r = db->Apply(std::vector<Write>{w}, "racer", "");
      if (r.ok()) {
        ++won;
      } else if (r.status().code() == absl::StatusCode::kFailedPrecondition) {
        ++lost;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(won.load(), 1);
  EXPECT_EQ(lost.load(), 1);
}

// Verifies that a file that cannot be a database is an error, not a crash.
TEST_F(SqliteDatabaseTest, AnUnopenablePathIsUnavailable) {
  auto db = SqliteDatabase::Open({.path = (dir_ / "missing-folder" / "rules.db").string()});
  EXPECT_EQ(db.status().code(), absl::StatusCode::kUnavailable);
  std::ofstream(dir_ / "junk.db") << "this is not an sqlite database, not at all, not even close";
  auto junk = SqliteDatabase::Open({.path = (dir_ / "junk.db").string()});
  EXPECT_FALSE(junk.ok());
}

}  // namespace
}  // namespace sluice::db
