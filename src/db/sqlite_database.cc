#include "db/sqlite_database.h"

#include <sqlite3.h>

#include <map>
#include <utility>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/strings.h"
#include "db/schema.h"

namespace sluice::db {

namespace {

// The table of a stored kind: name, key column(s), body column. Only constants reach SQL text;
// every value is a bound parameter.
struct Table {
  const char* select_all;  // -> id, body, revision
  const char* select_one;  // (id) -> body, revision
  const char* upsert;      // (id, body, revision)
  const char* remove;      // (id)
};

const Table& TableOf(TargetKind kind) {
  static const Table kRules = {
      "SELECT id, body, revision FROM sluice_rules ORDER BY id",
      "SELECT body, revision FROM sluice_rules WHERE id = ?1",
      "INSERT INTO sluice_rules (id, body, revision) VALUES (?1, ?2, ?3) "
      "ON CONFLICT (id) DO UPDATE SET body = excluded.body, revision = excluded.revision",
      "DELETE FROM sluice_rules WHERE id = ?1"};
  static const Table kAllow = {
      "SELECT id, body, revision FROM sluice_list_entries WHERE list = 'allow' ORDER BY id",
      "SELECT body, revision FROM sluice_list_entries WHERE list = 'allow' AND id = ?1",
      "INSERT INTO sluice_list_entries (list, id, body, revision) VALUES ('allow', ?1, ?2, ?3) "
      "ON CONFLICT (list, id) DO UPDATE SET body = excluded.body, revision = excluded.revision",
      "DELETE FROM sluice_list_entries WHERE list = 'allow' AND id = ?1"};
  static const Table kDeny = {
      "SELECT id, body, revision FROM sluice_list_entries WHERE list = 'deny' ORDER BY id",
      "SELECT body, revision FROM sluice_list_entries WHERE list = 'deny' AND id = ?1",
      "INSERT INTO sluice_list_entries (list, id, body, revision) VALUES ('deny', ?1, ?2, ?3) "
      "ON CONFLICT (list, id) DO UPDATE SET body = excluded.body, revision = excluded.revision",
      "DELETE FROM sluice_list_entries WHERE list = 'deny' AND id = ?1"};
  static const Table kTiers = {
      "SELECT user_id, tier, revision FROM sluice_user_tiers ORDER BY user_id",
      "SELECT tier, revision FROM sluice_user_tiers WHERE user_id = ?1",
      "INSERT INTO sluice_user_tiers (user_id, tier, revision) VALUES (?1, ?2, ?3) "
      "ON CONFLICT (user_id) DO UPDATE SET tier = excluded.tier, revision = excluded.revision",
      "DELETE FROM sluice_user_tiers WHERE user_id = ?1"};
  switch (kind) {
    case TargetKind::kAllowList:
      return kAllow;
    case TargetKind::kDenyList:
      return kDeny;
    case TargetKind::kTier:
      return kTiers;
    default:
      return kRules;
  }
}

std::optional<TargetKind> ParseKind(std::string_view name) {
  for (TargetKind k : {TargetKind::kRule, TargetKind::kAllowList, TargetKind::kDenyList,
                       TargetKind::kTier, TargetKind::kCounter}) {
    if (TargetKindName(k) == name) return k;
  }
  return std::nullopt;
}

std::string NowRfc3339() {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone());
}

// A database error as a Status: busy and locked are kUnavailable (another writer held the lock
// past the timeout), as is anything that says the file is gone or unreadable.
absl::Status Error(sqlite3* db, int rc, std::string_view what) {
  const std::string message = Cat("sqlite: ", what, ": ", sqlite3_errmsg(db));
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_FULL:
    case SQLITE_READONLY:
      return absl::UnavailableError(message);
    default:
      return absl::InternalError(message);
  }
}

// A prepared statement; finalized on destruction.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) : db_(db) {
    rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr);
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  absl::Status status() const {
    return rc_ == SQLITE_OK ? absl::OkStatus() : Error(db_, rc_, "prepare");
  }
  Statement& Bind(int i, std::string_view text) {
    sqlite3_bind_text(stmt_, i, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Statement& BindOptional(int i, const std::optional<std::string>& text) {
    if (text.has_value()) return Bind(i, *text);
    sqlite3_bind_null(stmt_, i);
    return *this;
  }
  Statement& Bind(int i, int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  // SQLITE_ROW: true; SQLITE_DONE: false; else an error.
  absl::StatusOr<bool> Step() {
    if (rc_ != SQLITE_OK) return status();
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return Error(db_, rc, "step");
  }
  absl::Status Run() {
    auto r = Step();
    return r.ok() ? absl::OkStatus() : r.status();
  }
  std::string Text(int col) const {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
    return p == nullptr ? std::string()
                        : std::string(p, static_cast<size_t>(sqlite3_column_bytes(stmt_, col)));
  }
  std::optional<std::string> OptText(int col) const {
    if (sqlite3_column_type(stmt_, col) == SQLITE_NULL) return std::nullopt;
    return Text(col);
  }
  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_ = SQLITE_OK;
};

absl::Status Exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  const int rc = sqlite3_exec(db, sql, nullptr, nullptr, &err);
  if (rc == SQLITE_OK) return absl::OkStatus();
  absl::Status s = Error(db, rc, err != nullptr ? err : "exec");
  sqlite3_free(err);
  return s;
}

AuditEntry ReadAudit(const Statement& s) {
  // version, at, actor, action, kind, target, before, after
  AuditEntry e;
  e.version = static_cast<uint64_t>(s.Int(0));
  e.at = s.Text(1);
  e.actor = s.Text(2);
  e.action = s.Text(3);
  e.kind = ParseKind(s.Text(4)).value_or(TargetKind::kRule);
  e.target = s.Text(5);
  e.before = s.OptText(6);
  e.after = s.OptText(7);
  return e;
}

constexpr const char* kAuditColumns =
    "SELECT version, at, actor, action, kind, target, before, after FROM sluice_audit ";

}  // namespace

std::string_view TargetKindName(TargetKind kind) {
  switch (kind) {
    case TargetKind::kRule:
      return "rule";
    case TargetKind::kAllowList:
      return "allow";
    case TargetKind::kDenyList:
      return "deny";
    case TargetKind::kTier:
      return "tier";
    case TargetKind::kCounter:
      return "counter";
  }
  return "rule";
}

// A transaction: committed by Commit(), rolled back otherwise (an error, a crash: SQLite's
// journal undoes it).
class SqliteDatabase::Txn {
 public:
  Txn(sqlite3* db, bool write) : db_(db) {
    status_ = Exec(db, write ? "BEGIN IMMEDIATE" : "BEGIN");
    open_ = status_.ok();
  }
  ~Txn() {
    if (open_) Exec(db_, "ROLLBACK").IgnoreError();
  }
  const absl::Status& status() const { return status_; }
  absl::Status Commit() {
    open_ = false;
    return Exec(db_, "COMMIT");
  }

 private:
  sqlite3* db_;
  absl::Status status_;
  bool open_ = false;
};

absl::StatusOr<std::unique_ptr<SqliteDatabase>> SqliteDatabase::Open(
    const SqliteOptions& options) {
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(options.path.c_str(), &raw,
                                 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                                 nullptr);
  if (rc != SQLITE_OK) {
    absl::Status s = absl::UnavailableError(Cat(
        "sqlite: cannot open ", options.path, ": ",
        raw != nullptr ? sqlite3_errmsg(raw) : sqlite3_errstr(rc)));
    sqlite3_close(raw);
    return s;
  }
  std::unique_ptr<SqliteDatabase> db(new SqliteDatabase(raw));
  sqlite3_busy_timeout(raw, static_cast<int>(options.busy_timeout.count()));
  for (const char* pragma : {"PRAGMA journal_mode = WAL", "PRAGMA foreign_keys = ON",
                             "PRAGMA synchronous = NORMAL"}) {
    if (absl::Status s = Exec(raw, pragma); !s.ok()) return s;
  }
  if (absl::Status s = db->Migrate(); !s.ok()) return s;
  return db;
}

SqliteDatabase::~SqliteDatabase() { sqlite3_close_v2(db_); }

absl::Status SqliteDatabase::Migrate() {
  MutexLock lock(mu_);
  if (absl::Status s = Exec(db_,
                            "CREATE TABLE IF NOT EXISTS sluice_schema ("
                            "version INTEGER PRIMARY KEY, description TEXT NOT NULL, "
                            "applied_at TEXT NOT NULL)");
      !s.ok()) {
    return s;
  }
  const std::span<const Migration> migrations = Migrations(Dialect::kSqlite);
  for (;;) {
    Txn txn(db_, /*write=*/true);
    if (!txn.status().ok()) return txn.status();
    Statement current(db_, "SELECT COALESCE(MAX(version), 0) FROM sluice_schema");
    auto row = current.Step();
    if (!row.ok()) return row.status();
    const int at = static_cast<int>(current.Int(0));
    schema_version_ = at;
    if (at > migrations.back().version) {
      return absl::FailedPreconditionError(
          Cat("the rules database has schema version ", at, ", newer than this build's ",
                       migrations.back().version, ": upgrade sluice"));
    }
    if (at == migrations.back().version) return absl::OkStatus();
    const Migration& next = migrations[static_cast<size_t>(at)];  // versions are 1, 2, ...
    if (absl::Status s = Exec(db_, std::string(next.sql).c_str()); !s.ok()) return s;
    Statement record(db_,
                     "INSERT INTO sluice_schema (version, description, applied_at) "
                     "VALUES (?1, ?2, ?3)");
    record.Bind(1, int64_t{next.version}).Bind(2, next.description).Bind(3, NowRfc3339());
    if (absl::Status s = record.Run(); !s.ok()) return s;
    if (absl::Status s = txn.Commit(); !s.ok()) return s;
  }
}

absl::StatusOr<uint64_t> SqliteDatabase::VersionLocked() {
  Statement s(db_, "SELECT COALESCE(MAX(version), 0) FROM sluice_versions");
  auto row = s.Step();
  if (!row.ok()) return row.status();
  return static_cast<uint64_t>(s.Int(0));
}

absl::StatusOr<uint64_t> SqliteDatabase::Version() {
  MutexLock lock(mu_);
  return VersionLocked();
}

absl::StatusOr<State> SqliteDatabase::Load() {
  MutexLock lock(mu_);
  Txn txn(db_, /*write=*/false);
  if (!txn.status().ok()) return txn.status();
  State state;
  auto version = VersionLocked();
  if (!version.ok()) return version.status();
  state.version = *version;
  const std::pair<TargetKind, std::vector<Record>*> kinds[] = {
      {TargetKind::kRule, &state.rules},
      {TargetKind::kAllowList, &state.allow},
      {TargetKind::kDenyList, &state.deny},
      {TargetKind::kTier, &state.tiers}};
  for (const auto& [kind, out] : kinds) {
    Statement s(db_, TableOf(kind).select_all);
    for (;;) {
      auto row = s.Step();
      if (!row.ok()) return row.status();
      if (!*row) break;
      out->push_back({s.Text(0), s.Text(1), static_cast<uint64_t>(s.Int(2))});
    }
  }
  if (absl::Status s = txn.Commit(); !s.ok()) return s;
  return state;
}

absl::StatusOr<std::vector<AuditEntry>> SqliteDatabase::ChangesSince(uint64_t version) {
  MutexLock lock(mu_);
  Statement s(db_, Cat(kAuditColumns, "WHERE version > ?1 ORDER BY seq").c_str());
  s.Bind(1, static_cast<int64_t>(version));
  std::vector<AuditEntry> out;
  for (;;) {
    auto row = s.Step();
    if (!row.ok()) return row.status();
    if (!*row) return out;
    out.push_back(ReadAudit(s));
  }
}

absl::StatusOr<std::vector<AuditEntry>> SqliteDatabase::ApplyLocked(
    std::span<const Write> writes, std::string_view actor, std::string_view action_override,
    uint64_t version, const std::string& at) {
  std::vector<AuditEntry> entries;
  for (const Write& w : writes) {
    AuditEntry e;
    e.version = version;
    e.at = at;
    e.actor = std::string(actor);
    e.kind = w.kind;
    e.target = w.target;
    if (w.target.empty()) return absl::InvalidArgumentError("a change needs a target");
    if (w.op == Write::Op::kReset) {
      if (w.kind != TargetKind::kCounter) {
        return absl::InvalidArgumentError("only counters are reset");
      }
      e.action = "reset";
    } else {
      if (w.kind == TargetKind::kCounter) {
        return absl::InvalidArgumentError("counters are not stored; they are reset");
      }
      const Table& table = TableOf(w.kind);
      Statement read(db_, table.select_one);
      read.Bind(1, w.target);
      auto row = read.Step();
      if (!row.ok()) return row.status();
      std::optional<uint64_t> revision;
      if (*row) {
        e.before = read.Text(0);
        revision = static_cast<uint64_t>(read.Int(1));
      }
      if (w.if_revision.has_value() && revision != w.if_revision) {
        return absl::FailedPreconditionError(Cat(
            TargetKindName(w.kind), " '", w.target, "' is at revision ",
            revision.has_value() ? Cat(*revision) : std::string("none (absent)"),
            ", not ", *w.if_revision));
      }
      if (w.op == Write::Op::kCreate && revision.has_value()) {
        return absl::AlreadyExistsError(
            Cat(TargetKindName(w.kind), " '", w.target, "' already exists"));
      }
      if (w.op == Write::Op::kDelete) {
        if (!revision.has_value()) {
          return absl::NotFoundError(
              Cat(TargetKindName(w.kind), " '", w.target, "' does not exist"));
        }
        Statement del(db_, table.remove);
        del.Bind(1, w.target);
        if (absl::Status s = del.Run(); !s.ok()) return s;
        e.action = "delete";
      } else {
        Statement put(db_, table.upsert);
        put.Bind(1, w.target).Bind(2, w.body).Bind(3, static_cast<int64_t>(version));
        if (absl::Status s = put.Run(); !s.ok()) return s;
        e.after = w.body;
        e.action = revision.has_value() ? "update" : "create";
      }
    }
    if (!action_override.empty()) e.action = std::string(action_override);
    Statement audit(db_,
                    "INSERT INTO sluice_audit (version, at, actor, action, kind, target, before, "
                    "after) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
    audit.Bind(1, static_cast<int64_t>(version))
        .Bind(2, e.at)
        .Bind(3, e.actor)
        .Bind(4, e.action)
        .Bind(5, TargetKindName(e.kind))
        .Bind(6, e.target)
        .BindOptional(7, e.before)
        .BindOptional(8, e.after);
    if (absl::Status s = audit.Run(); !s.ok()) return s;
    entries.push_back(std::move(e));
  }
  return entries;
}

absl::StatusOr<Commit> SqliteDatabase::Apply(std::span<const Write> writes,
                                             std::string_view actor, std::string_view summary) {
  if (writes.empty()) return absl::InvalidArgumentError("a change needs at least one write");
  MutexLock lock(mu_);
  Txn txn(db_, /*write=*/true);
  if (!txn.status().ok()) return txn.status();
  auto current = VersionLocked();
  if (!current.ok()) return current.status();
  Commit commit;
  commit.version = *current + 1;
  const std::string at = NowRfc3339();
  Statement v(db_, "INSERT INTO sluice_versions (version, at, actor, summary) VALUES (?1, ?2, ?3, ?4)");
  v.Bind(1, static_cast<int64_t>(commit.version)).Bind(2, at).Bind(3, actor).Bind(4, summary);
  if (absl::Status s = v.Run(); !s.ok()) return s;
  auto entries = ApplyLocked(writes, actor, "", commit.version, at);
  if (!entries.ok()) return entries.status();
  commit.entries = std::move(*entries);
  if (absl::Status s = txn.Commit(); !s.ok()) return s;
  return commit;
}

absl::StatusOr<Commit> SqliteDatabase::Restore(uint64_t version, std::string_view actor) {
  MutexLock lock(mu_);
  Txn txn(db_, /*write=*/true);
  if (!txn.status().ok()) return txn.status();
  auto current = VersionLocked();
  if (!current.ok()) return current.status();
  if (version > *current) {
    return absl::NotFoundError(Cat("version ", version, " does not exist (the newest is ",
                                            *current, ")"));
  }
  // What each object changed since `version` was at `version`: the `before` of its first audit
  // entry after it. Counters are not stored and so not restored.
  Statement first(db_, Cat(kAuditColumns,
                                    "WHERE seq IN (SELECT MIN(seq) FROM sluice_audit WHERE "
                                    "version > ?1 AND kind <> 'counter' GROUP BY kind, target) "
                                    "ORDER BY seq")
                           .c_str());
  first.Bind(1, static_cast<int64_t>(version));
  std::vector<Write> writes;
  for (;;) {
    auto row = first.Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    const AuditEntry then = ReadAudit(first);
    // The object now, to skip what is already as it was.
    Statement now(db_, TableOf(then.kind).select_one);
    now.Bind(1, then.target);
    auto exists = now.Step();
    if (!exists.ok()) return exists.status();
    const std::optional<std::string> current_body =
        *exists ? std::optional<std::string>(now.Text(0)) : std::nullopt;
    if (current_body == then.before) continue;
    Write w;
    w.kind = then.kind;
    w.target = then.target;
    if (then.before.has_value()) {
      w.op = Write::Op::kPut;
      w.body = *then.before;
    } else {
      w.op = Write::Op::kDelete;
    }
    writes.push_back(std::move(w));
  }
  Commit commit;
  commit.version = *current + 1;
  const std::string at = NowRfc3339();
  Statement v(db_, "INSERT INTO sluice_versions (version, at, actor, summary) VALUES (?1, ?2, ?3, ?4)");
  v.Bind(1, static_cast<int64_t>(commit.version))
      .Bind(2, at)
      .Bind(3, actor)
      .Bind(4, Cat("restore version ", version));
  if (absl::Status s = v.Run(); !s.ok()) return s;
  auto entries = ApplyLocked(writes, actor, "restore", commit.version, at);
  if (!entries.ok()) return entries.status();
  commit.entries = std::move(*entries);
  if (absl::Status s = txn.Commit(); !s.ok()) return s;
  return commit;
}

absl::StatusOr<std::vector<AuditEntry>> SqliteDatabase::Audit(uint64_t since, size_t limit) {
  MutexLock lock(mu_);
  Statement s(db_,
              Cat(kAuditColumns, "WHERE version > ?1 ORDER BY seq DESC LIMIT ?2").c_str());
  s.Bind(1, static_cast<int64_t>(since)).Bind(2, static_cast<int64_t>(limit));
  std::vector<AuditEntry> out;
  for (;;) {
    auto row = s.Step();
    if (!row.ok()) return row.status();
    if (!*row) return out;
    out.push_back(ReadAudit(s));
  }
}

absl::StatusOr<std::vector<VersionInfo>> SqliteDatabase::Versions(size_t limit) {
  MutexLock lock(mu_);
  Statement s(db_,
              "SELECT version, at, actor, summary FROM sluice_versions ORDER BY version DESC "
              "LIMIT ?1");
  s.Bind(1, static_cast<int64_t>(limit));
  std::vector<VersionInfo> out;
  for (;;) {
    auto row = s.Step();
    if (!row.ok()) return row.status();
    if (!*row) return out;
    out.push_back({static_cast<uint64_t>(s.Int(0)), s.Text(1), s.Text(2), s.Text(3)});
  }
}

}  // namespace sluice::db
