// The rules database on a real SQLite file and on a real PostgreSQL server (started by the
// test): the schema created and migrated on open, one version and its audit entries per
// change, optimistic concurrency, all-or-nothing changes, restore, catch-up reads, and
// concurrent writers (several connections, as several servers on one database).
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "db/change_feed.h"
#include "db/postgres.h"
#include "db/schema.h"
#include "db/sqlite.h"
#include "tests/testing/postgres_server.h"

namespace sluice::db {
namespace {

enum class Backend { kSqlite, kPostgres };

testing::PostgresServer& Postgres() {
  static testing::PostgresServer server;
  return server;
}

class RulesDatabaseTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    const std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::string id = name.substr(0, name.find('/'));
    for (char& c : id) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    dir_ = std::filesystem::temp_directory_path() /
           ("sluice-db-" + std::to_string(::getpid()) + "-" + id);
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    if (GetParam() == Backend::kPostgres) {
      database_ = "t_" + id;
      Postgres().CreateDatabase(database_);
    }
    db_ = OpenOrDie();
  }
  void TearDown() override {
    db_.reset();
    std::filesystem::remove_all(dir_);
  }

  // Another connection to the same database, as another server would have.
  std::unique_ptr<SqlDatabase> OpenOrDie() {
    absl::StatusOr<std::unique_ptr<SqlDatabase>> db =
        GetParam() == Backend::kSqlite ? OpenSqlite({.path = (dir_ / "rules.db").string()})
                                       : OpenPostgres({.url = Postgres().url(database_)});
    EXPECT_TRUE(db.ok()) << db.status();
    return std::move(*db);
  }
  std::unique_ptr<SqlConnection> RawConnection() {
    auto c = GetParam() == Backend::kSqlite ? ConnectSqlite({.path = (dir_ / "rules.db").string()})
                                            : ConnectPostgres({.url = Postgres().url(database_)});
    EXPECT_TRUE(c.ok()) << c.status();
    return std::move(*c);
  }
  Dialect dialect() const {
    return GetParam() == Backend::kSqlite ? Dialect::kSqlite : Dialect::kPostgres;
  }

  static Write Put(TargetKind kind, std::string id, std::string body) {
    return Write::Put(kind, std::move(id), std::move(body));
  }
  static Write Create(std::string id, std::string body) {
    return Write::Of(Write::Op::kCreate, TargetKind::kRule, std::move(id), std::move(body));
  }
  static Write Delete(TargetKind kind, std::string id) {
    return Write::Delete(kind, std::move(id));
  }

  // Rules as id -> body, for comparing whole rule sets.
  static std::map<std::string, std::string> Bodies(const std::vector<Record>& records) {
    std::map<std::string, std::string> out;
    for (const Record& r : records) out[r.id] = r.body;
    return out;
  }

  std::filesystem::path dir_;
  std::string database_;
  std::unique_ptr<SqlDatabase> db_;
};

// Verifies that a new file gets the whole schema, and that opening it again migrates nothing.
TEST_P(RulesDatabaseTest, CreatesTheSchemaOnFirstOpen) {
  EXPECT_EQ(db_->schema_version(), Migrations(dialect()).back().version);
  auto state = db_->Load();
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->version, 0u);
  EXPECT_TRUE(state->rules.empty());
  db_.reset();
  db_ = OpenOrDie();
  EXPECT_EQ(db_->schema_version(), Migrations(dialect()).back().version);
}

// Verifies that each change bumps the version by one and records who did what, before and
// after, and that the objects carry the version that wrote them as their revision.
TEST_P(RulesDatabaseTest, EveryChangeIsAVersionWithItsAudit) {
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
TEST_P(RulesDatabaseTest, AFailedChangeChangesNothing) {
  ASSERT_TRUE(db_->Apply(std::vector<Write>{Create("a", "{}")}, "ops", "").ok());
  Write stale = Put(TargetKind::kRule, "a", R"({"x":1})");
  stale.if_revision = 7;
  EXPECT_EQ(db_->Apply(std::vector<Write>{stale}, "ops", "").status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(db_->Apply(std::vector<Write>{Create("a", "{}")}, "ops", "").status().code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(
      db_->Apply(std::vector<Write>{Delete(TargetKind::kRule, "nope")}, "ops", "").status().code(),
      absl::StatusCode::kNotFound);
  auto mixed = db_->Apply(std::vector<Write>{Put(TargetKind::kRule, "b", "{}"), Create("a", "{}")},
                          "ops", "");
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
TEST_P(RulesDatabaseTest, TheAuditLogIsAppendOnly) {
  ASSERT_TRUE(db_->Apply(std::vector<Write>{Create("a", "{}")}, "ops", "").ok());
  auto raw = RawConnection();
  EXPECT_FALSE(raw->Exec("UPDATE sluice_audit SET actor = 'someone else'").ok());
  EXPECT_FALSE(raw->Exec("DELETE FROM sluice_audit").ok());
  db_ = OpenOrDie();
  EXPECT_EQ((*db_->Audit(0, 10))[0].actor, "ops");
}

// Verifies CONTRACT §8's restore: 10 changes, restore version 3, and the rules, lists and
// tiers equal version 3's exactly, as a new version; the audit log keeps every entry.
TEST_P(RulesDatabaseTest, RestoreBringsBackAVersionExactly) {
  std::map<std::string, std::string> at3;
  std::vector<Record> tiers_at3;
  for (int v = 1; v <= 10; ++v) {
    std::vector<Write> writes = {Put(TargetKind::kRule, "r" + std::to_string(v % 4),
                                     R"({"limit":)" + std::to_string(v) + "}")};
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
  // Restoring what is already in force changes nothing: no new version.
  auto again = db_->Restore(3, "admin");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->version, 11u);
  EXPECT_TRUE(again->entries.empty());
  EXPECT_EQ(*db_->Version(), 11u);
  // Restoring version 0 empties everything.
  ASSERT_TRUE(db_->Restore(0, "admin").ok());
  state = db_->Load();
  EXPECT_TRUE(state->rules.empty());
  EXPECT_TRUE(state->tiers.empty());
}

// Verifies the catch-up read: a server holding version V applies ChangesSince(V) in order and
// ends with what Load() gives; counter resets are audited and versioned, never stored.
TEST_P(RulesDatabaseTest, ChangesSinceReplaysToTheCurrentState) {
  ASSERT_TRUE(db_->Apply(std::vector<Write>{Put(TargetKind::kRule, "a", "1")}, "ops", "").ok());
  auto held = db_->Load();
  ASSERT_TRUE(db_->Apply(std::vector<Write>{Put(TargetKind::kRule, "b", "2")}, "ops", "").ok());
  ASSERT_TRUE(db_->Apply(std::vector<Write>{Put(TargetKind::kRule, "a", "3"),
                                            Delete(TargetKind::kRule, "b")},
                         "ops", "")
                  .ok());
  const Write reset = Write::Of(Write::Op::kReset, TargetKind::kCounter, "free|u1");
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
TEST_P(RulesDatabaseTest, ConcurrentWritersGetDistinctVersions) {
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

// Verifies that a database that cannot be reached or is not a database is an error (kUnavailable,
// which the server reports as the database being down), not a crash.
TEST_P(RulesDatabaseTest, AnUnreachableDatabaseIsUnavailable) {
  if (GetParam() == Backend::kSqlite) {
    auto db = OpenSqlite({.path = (dir_ / "missing-folder" / "rules.db").string()});
    EXPECT_EQ(db.status().code(), absl::StatusCode::kUnavailable) << db.status();
    std::ofstream(dir_ / "junk.db") << "this is not an sqlite database, not at all, not even close";
    auto junk = OpenSqlite({.path = (dir_ / "junk.db").string()});
    EXPECT_EQ(junk.status().code(), absl::StatusCode::kUnavailable) << junk.status();
  } else {
    const int closed = testing::FreePort();
    auto db = OpenPostgres(
        {.url = "postgresql://sluice:secret@127.0.0.1:" + std::to_string(closed) + "/x",
         .connect_timeout = std::chrono::seconds(2)});
    EXPECT_EQ(db.status().code(), absl::StatusCode::kUnavailable) << db.status();
    EXPECT_EQ(db.status().message().find("secret"), std::string_view::npos) << db.status();
  }
}

// Verifies that PostgreSQL going down fails statements as kUnavailable, and that the same
// connection works again once it is back, with nothing lost.
TEST_P(RulesDatabaseTest, ReconnectsWhenPostgresComesBack) {
  if (GetParam() != Backend::kPostgres) GTEST_SKIP() << "PostgreSQL only";
  ASSERT_TRUE(db_->Apply(std::vector<Write>{Put(TargetKind::kRule, "a", "1")}, "ops", "").ok());
  Postgres().Stop();
  EXPECT_EQ(db_->Load().status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(
      db_->Apply(std::vector<Write>{Put(TargetKind::kRule, "b", "2")}, "ops", "").status().code(),
      absl::StatusCode::kUnavailable);
  ASSERT_TRUE(Postgres().Start());
  auto state = db_->Load();
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->version, 1u);
  EXPECT_TRUE(db_->Apply(std::vector<Write>{Put(TargetKind::kRule, "b", "2")}, "ops", "").ok());
}

// Counts ChangeFeed callbacks and waits for the next one.
class FeedCounter {
 public:
  std::function<void()> callback() {
    return [this] {
      std::lock_guard lock(mu_);
      ++count_;
      cv_.notify_all();
    };
  }
  int count() {
    std::lock_guard lock(mu_);
    return count_;
  }
  // Whether the count passes `seen` within `timeout` (generous: this is about the push
  // arriving at all, not about its latency, which bench/ measures).
  bool WaitPast(int seen, std::chrono::seconds timeout = std::chrono::seconds(10)) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return count_ > seen; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int count_ = 0;
};

// Verifies that a change committed through another connection (another server) reaches the
// feed by push, with the poll far away: NOTIFY on PostgreSQL, the file on SQLite.
TEST_P(RulesDatabaseTest, ChangeFeedFiresOnAnotherServersChange) {
  FeedCounter counter;
  const std::string url = GetParam() == Backend::kSqlite
                              ? "sqlite://" + (dir_ / "rules.db").string()
                              : Postgres().url(database_);
  auto feed =
      ChangeFeed::Start({.url = url, .poll = std::chrono::hours(1), .changed = counter.callback()});
  ASSERT_TRUE(feed.ok()) << feed.status();
  // PostgreSQL fires once when it first connects (catch-up); let that pass.
  if (GetParam() == Backend::kPostgres) {
    ASSERT_TRUE(counter.WaitPast(0));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const int before = counter.count();
  auto other = OpenOrDie();
  ASSERT_TRUE(
      other->Apply(std::vector<Write>{Put(TargetKind::kRule, "pushed", "{}")}, "ops", "").ok());
  EXPECT_TRUE(counter.WaitPast(before));
  feed->reset();  // stops; no callback after this
  const int after = counter.count();
  ASSERT_TRUE(
      other->Apply(std::vector<Write>{Put(TargetKind::kRule, "later", "{}")}, "ops", "").ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(counter.count(), after);
}

// Verifies that the feed survives PostgreSQL going away and fires when it is back (so the
// server catches up on what it missed), and that the poll fires on its own.
TEST_P(RulesDatabaseTest, ChangeFeedCatchesUpAfterPostgresReturns) {
  FeedCounter counter;
  if (GetParam() == Backend::kSqlite) {
    auto feed = ChangeFeed::Start({.url = "sqlite://" + (dir_ / "rules.db").string(),
                                   .poll = std::chrono::milliseconds(50),
                                   .changed = counter.callback()});
    ASSERT_TRUE(feed.ok()) << feed.status();
    EXPECT_TRUE(counter.WaitPast(2)) << "the poll fires by itself";
    return;
  }
  auto feed = ChangeFeed::Start({.url = Postgres().url(database_),
                                 .poll = std::chrono::hours(1),
                                 .changed = counter.callback()});
  ASSERT_TRUE(feed.ok()) << feed.status();
  ASSERT_TRUE(counter.WaitPast(0));
  const int before = counter.count();
  Postgres().Stop();
  ASSERT_TRUE(Postgres().Start());
  EXPECT_TRUE(counter.WaitPast(before)) << "fired after reconnecting";
  const int reconnected = counter.count();
  auto other = OpenOrDie();
  ASSERT_TRUE(
      other->Apply(std::vector<Write>{Put(TargetKind::kRule, "after", "{}")}, "ops", "").ok());
  EXPECT_TRUE(counter.WaitPast(reconnected)) << "listening again";
}

TEST(ChangeFeedTest, RefusesAnUnknownUrl) {
  EXPECT_EQ(ChangeFeed::Start({.url = "mysql://x", .changed = [] {}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ChangeFeed::Start({.url = "sqlite:///no/such/folder/rules.db", .changed = [] {}})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(Backends, RulesDatabaseTest,
                         ::testing::Values(Backend::kSqlite, Backend::kPostgres),
                         [](const auto& info) {
                           return info.param == Backend::kSqlite ? "sqlite" : "postgresql";
                         });

}  // namespace
}  // namespace sluice::db
