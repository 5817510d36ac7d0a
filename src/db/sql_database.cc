#include "db/sql_database.h"

#include <charconv>
#include <utility>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/strings.h"
#include "db/change_feed.h"

namespace sluice::db {

namespace {

// The SQL of a stored kind. Only these constants reach SQL text; every value is bound.
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

constexpr TargetKind kKinds[] = {TargetKind::kRule, TargetKind::kAllowList, TargetKind::kDenyList,
                                 TargetKind::kTier, TargetKind::kCounter};

std::optional<TargetKind> ParseKind(std::string_view name) {
  for (TargetKind k : kKinds) {
    if (TargetKindName(k) == name) return k;
  }
  return std::nullopt;
}

std::string NowRfc3339() {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone());
}

int64_t Int(const std::optional<std::string>& text) {
  int64_t v = 0;
  if (text.has_value()) std::from_chars(text->data(), text->data() + text->size(), v);
  return v;
}

std::string Text(const std::optional<std::string>& text) { return text.value_or(std::string()); }

constexpr std::string_view kAuditSelect =
    "SELECT version, at, actor, action, kind, target, before, after FROM sluice_audit ";

AuditEntry ReadAudit(const SqlRow& r) {
  AuditEntry e;
  e.version = static_cast<uint64_t>(Int(r[0]));
  e.at = Text(r[1]);
  e.actor = Text(r[2]);
  e.action = Text(r[3]);
  e.kind = ParseKind(Text(r[4])).value_or(TargetKind::kRule);
  e.target = Text(r[5]);
  e.before = r[6];
  e.after = r[7];
  return e;
}

SqlParam Nullable(const std::optional<std::string>& text) {
  if (!text.has_value()) return std::monostate{};
  return std::string_view(*text);
}

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

// A transaction: committed by Commit(), rolled back otherwise (an error; a crash is undone by
// the database itself). A write transaction holds the database's writer lock from its start.
class SqlDatabase::Txn {
 public:
  Txn(SqlConnection& sql, bool write) : sql_(sql) {
    const bool sqlite = sql.dialect() == Dialect::kSqlite;
    if (write) {
      status_ = sql.Exec(sqlite ? "BEGIN IMMEDIATE"
                                : "BEGIN; LOCK TABLE sluice_versions IN EXCLUSIVE MODE");
    } else {
      status_ = sql.Exec(sqlite ? "BEGIN" : "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    }
    open_ = status_.ok();
    if (!open_ && !sqlite) sql.Exec("ROLLBACK").IgnoreError();  // after a failed LOCK
  }
  ~Txn() {
    if (open_) sql_.Exec("ROLLBACK").IgnoreError();
  }
  const absl::Status& status() const { return status_; }
  absl::Status Commit() {
    open_ = false;
    absl::Status s = sql_.Exec("COMMIT");
    if (!s.ok()) sql_.Exec("ROLLBACK").IgnoreError();
    return s;
  }

 private:
  SqlConnection& sql_;
  absl::Status status_;
  bool open_ = false;
};

absl::StatusOr<std::unique_ptr<SqlDatabase>> SqlDatabase::Open(std::unique_ptr<SqlConnection> sql) {
  std::unique_ptr<SqlDatabase> db(new SqlDatabase(std::move(sql)));
  if (absl::Status s = db->Migrate(); !s.ok()) return s;
  return db;
}

absl::Status SqlDatabase::Migrate() {
  MutexLock lock(mu_);
  // Two servers starting at once on a new PostgreSQL database can race on this; the loser
  // sees the table the winner made on its second try.
  absl::Status created;
  for (int attempt = 0; attempt < 2; ++attempt) {
    created = sql_->Exec(
        "CREATE TABLE IF NOT EXISTS sluice_schema (version INTEGER PRIMARY KEY, "
        "description TEXT NOT NULL, applied_at TEXT NOT NULL)");
    if (created.ok()) break;
  }
  if (!created.ok()) return created;
  const std::span<const Migration> migrations = Migrations(sql_->dialect());
  const bool sqlite = sql_->dialect() == Dialect::kSqlite;
  for (;;) {
    // Migrations run under the schema table's lock, so servers starting together apply each
    // step once.
    absl::Status begun = sql_->Exec(sqlite ? "BEGIN IMMEDIATE"
                                           : "BEGIN; LOCK TABLE sluice_schema IN EXCLUSIVE MODE");
    if (!begun.ok()) {
      if (!sqlite) sql_->Exec("ROLLBACK").IgnoreError();
      return begun;
    }
    auto rows = sql_->Query("SELECT COALESCE(MAX(version), 0) FROM sluice_schema", {});
    if (!rows.ok()) return RollBack(rows.status());
    const int at = static_cast<int>(Int((*rows)[0][0]));
    schema_version_ = at;
    if (at > migrations.back().version) {
      return RollBack(absl::FailedPreconditionError(
          Cat("the rules database has schema version ", at, ", newer than this build's ",
              migrations.back().version, ": upgrade sluice")));
    }
    if (at == migrations.back().version) return sql_->Exec("COMMIT");
    const Migration& next = migrations[static_cast<size_t>(at)];  // versions are 1, 2, ...
    if (absl::Status s = sql_->Exec(next.sql); !s.ok()) return RollBack(s);
    const std::string now = NowRfc3339();
    const SqlParam record[] = {int64_t{next.version}, next.description, std::string_view(now)};
    auto recorded = sql_->Query(
        "INSERT INTO sluice_schema (version, description, applied_at) VALUES (?1, ?2, ?3)", record);
    if (!recorded.ok()) return RollBack(recorded.status());
    if (absl::Status s = sql_->Exec("COMMIT"); !s.ok()) return RollBack(s);
  }
}

absl::Status SqlDatabase::RollBack(absl::Status cause) {
  sql_->Exec("ROLLBACK").IgnoreError();
  return cause;
}

absl::StatusOr<uint64_t> SqlDatabase::VersionLocked() {
  auto rows = sql_->Query("SELECT COALESCE(MAX(version), 0) FROM sluice_versions", {});
  if (!rows.ok()) return rows.status();
  return static_cast<uint64_t>(Int((*rows)[0][0]));
}

absl::StatusOr<uint64_t> SqlDatabase::Version() {
  MutexLock lock(mu_);
  return VersionLocked();
}

absl::StatusOr<State> SqlDatabase::Load() {
  MutexLock lock(mu_);
  Txn txn(*sql_, /*write=*/false);
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
    auto rows = sql_->Query(TableOf(kind).select_all, {});
    if (!rows.ok()) return rows.status();
    out->reserve(rows->size());
    for (SqlRow& r : *rows) {
      out->push_back({Text(r[0]), Text(r[1]), static_cast<uint64_t>(Int(r[2]))});
    }
  }
  if (absl::Status s = txn.Commit(); !s.ok()) return s;
  return state;
}

absl::StatusOr<std::vector<AuditEntry>> SqlDatabase::AuditQuery(std::string_view where,
                                                                std::span<const SqlParam> params) {
  auto rows = sql_->Query(Cat(kAuditSelect, where), params);
  if (!rows.ok()) return rows.status();
  std::vector<AuditEntry> out;
  out.reserve(rows->size());
  for (const SqlRow& r : *rows) out.push_back(ReadAudit(r));
  return out;
}

absl::StatusOr<std::vector<AuditEntry>> SqlDatabase::ChangesSince(uint64_t version) {
  MutexLock lock(mu_);
  const SqlParam params[] = {static_cast<int64_t>(version)};
  return AuditQuery("WHERE version > ?1 ORDER BY seq", params);
}

absl::StatusOr<std::vector<AuditEntry>> SqlDatabase::Audit(uint64_t since, size_t limit) {
  MutexLock lock(mu_);
  const SqlParam params[] = {static_cast<int64_t>(since), static_cast<int64_t>(limit)};
  return AuditQuery("WHERE version > ?1 ORDER BY seq DESC LIMIT ?2", params);
}

absl::StatusOr<std::vector<VersionInfo>> SqlDatabase::Versions(size_t limit) {
  MutexLock lock(mu_);
  const SqlParam params[] = {static_cast<int64_t>(limit)};
  auto rows = sql_->Query(
      "SELECT version, at, actor, summary FROM sluice_versions ORDER BY version DESC LIMIT ?1",
      params);
  if (!rows.ok()) return rows.status();
  std::vector<VersionInfo> out;
  for (const SqlRow& r : *rows) {
    out.push_back({static_cast<uint64_t>(Int(r[0])), Text(r[1]), Text(r[2]), Text(r[3])});
  }
  return out;
}

absl::StatusOr<Commit> SqlDatabase::CommitLocked(std::span<const Write> writes,
                                                 std::string_view actor, std::string_view summary,
                                                 std::string_view action) {
  auto current = VersionLocked();
  if (!current.ok()) return current.status();
  Commit commit;
  commit.version = *current + 1;
  const int64_t version = static_cast<int64_t>(commit.version);
  const std::string at = NowRfc3339();
  const SqlParam row[] = {version, std::string_view(at), actor, summary};
  auto v = sql_->Query(
      "INSERT INTO sluice_versions (version, at, actor, summary) VALUES (?1, ?2, ?3, ?4)", row);
  if (!v.ok()) return v.status();

  for (const Write& w : writes) {
    AuditEntry e;
    e.version = commit.version;
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
      const SqlParam key[] = {std::string_view(w.target)};
      auto found = sql_->Query(table.select_one, key);
      if (!found.ok()) return found.status();
      std::optional<uint64_t> revision;
      if (!found->empty()) {
        e.before = Text((*found)[0][0]);
        revision = static_cast<uint64_t>(Int((*found)[0][1]));
      }
      if (w.if_revision.has_value() && revision != w.if_revision) {
        return absl::FailedPreconditionError(
            Cat(TargetKindName(w.kind), " '", w.target, "' is at revision ",
                revision.has_value() ? Cat(*revision) : std::string("none (absent)"), ", not ",
                *w.if_revision));
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
        auto removed = sql_->Query(table.remove, key);
        if (!removed.ok()) return removed.status();
        e.action = "delete";
      } else {
        const SqlParam put[] = {std::string_view(w.target), std::string_view(w.body), version};
        auto written = sql_->Query(table.upsert, put);
        if (!written.ok()) return written.status();
        e.after = w.body;
        e.action = revision.has_value() ? "update" : "create";
      }
    }
    if (!action.empty()) e.action = std::string(action);
    const std::string_view kind_name = TargetKindName(e.kind);
    const SqlParam audit[] = {version,
                              std::string_view(e.at),
                              std::string_view(e.actor),
                              std::string_view(e.action),
                              kind_name,
                              std::string_view(e.target),
                              Nullable(e.before),
                              Nullable(e.after)};
    auto appended = sql_->Query(
        "INSERT INTO sluice_audit (version, at, actor, action, kind, target, before, after) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        audit);
    if (!appended.ok()) return appended.status();
    commit.entries.push_back(std::move(e));
  }
  if (sql_->dialect() == Dialect::kPostgres) {
    // Delivered to every listener when the transaction commits, and only then (change_feed.h).
    const std::string payload = Cat(commit.version);
    const SqlParam notify[] = {kChangeChannel, std::string_view(payload)};
    auto sent = sql_->Query("SELECT pg_notify(?1, ?2)", notify);
    if (!sent.ok()) return sent.status();
  }
  return commit;
}

absl::StatusOr<Commit> SqlDatabase::Apply(std::span<const Write> writes, std::string_view actor,
                                          std::string_view summary) {
  if (writes.empty()) return absl::InvalidArgumentError("a change needs at least one write");
  MutexLock lock(mu_);
  Txn txn(*sql_, /*write=*/true);
  if (!txn.status().ok()) return txn.status();
  auto commit = CommitLocked(writes, actor, summary, "");
  if (!commit.ok()) return commit.status();
  if (absl::Status s = txn.Commit(); !s.ok()) return s;
  return commit;
}

absl::StatusOr<Commit> SqlDatabase::Restore(uint64_t version, std::string_view actor) {
  MutexLock lock(mu_);
  Txn txn(*sql_, /*write=*/true);
  if (!txn.status().ok()) return txn.status();
  auto current = VersionLocked();
  if (!current.ok()) return current.status();
  if (version > *current) {
    return absl::NotFoundError(
        Cat("version ", version, " does not exist (the newest is ", *current, ")"));
  }
  // What each object changed since `version` was at `version`: the `before` of its first audit
  // entry after it. Counters are not stored, so not restored.
  const SqlParam since[] = {static_cast<int64_t>(version)};
  auto firsts = AuditQuery(
      "WHERE seq IN (SELECT MIN(seq) FROM sluice_audit WHERE version > ?1 AND kind <> 'counter' "
      "GROUP BY kind, target) ORDER BY seq",
      since);
  if (!firsts.ok()) return firsts.status();
  std::vector<Write> writes;
  for (const AuditEntry& then : *firsts) {
    const SqlParam key[] = {std::string_view(then.target)};
    auto now = sql_->Query(TableOf(then.kind).select_one, key);
    if (!now.ok()) return now.status();
    const std::optional<std::string> current_body =
        now->empty() ? std::nullopt : std::optional<std::string>(Text((*now)[0][0]));
    if (current_body == then.before) continue;  // already as it was
    writes.push_back(then.before.has_value() ? Write::Put(then.kind, then.target, *then.before)
                                             : Write::Delete(then.kind, then.target));
  }
  // Already as it was at `version`: no change, so no new version (nothing for servers to
  // apply, nothing to audit).
  if (writes.empty()) return Commit{.version = *current, .entries = {}};
  auto commit = CommitLocked(writes, actor, Cat("restore version ", version), "restore");
  if (!commit.ok()) return commit.status();
  if (absl::Status s = txn.Commit(); !s.ok()) return s;
  return commit;
}

}  // namespace sluice::db
