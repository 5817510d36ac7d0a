// Where rules managed through the admin API live (CONTRACT §8): rules, allow/deny list entries
// and user tiers, with a version that moves forward by one per change and an append-only audit
// log. One transaction per change: the data, the new version and its audit entries commit
// together or not at all.
//
// The database stores what it is given: each rule and list entry as its canonical JSON body,
// validated before it gets here (by the same validator as rules files). Backends: SQLite
// (sqlite_database.h); PostgreSQL follows the same schema (migrations.h).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace sluice::db {

// What an audit entry and a change are about.
enum class TargetKind : uint8_t {
  kRule,       // target: the rule id
  kAllowList,  // target: the entry id
  kDenyList,   // target: the entry id
  kTier,       // target: the user id; body: the tier name
  kCounter,    // target: a counter key; never stored (a counter reset is audited only)
};
std::string_view TargetKindName(TargetKind kind);  // "rule", "allow", "deny", "tier", "counter"

// One stored object.
struct Record {
  std::string id;
  std::string body;       // canonical JSON (rules, list entries) or the tier name (tiers)
  uint64_t revision = 0;  // the version that last wrote it: its ETag
};

// Everything in force at `version`.
struct State {
  uint64_t version = 0;
  std::vector<Record> rules;
  std::vector<Record> allow;
  std::vector<Record> deny;
  std::vector<Record> tiers;
};

// One write of a change.
struct Write {
  enum class Op : uint8_t {
    kCreate,  // the target must not exist: kAlreadyExists otherwise
    kPut,     // creates or replaces
    kDelete,  // the target must exist: kNotFound otherwise
    kReset,   // TargetKind::kCounter only: audited, nothing stored
  };
  Op op = Op::kPut;
  TargetKind kind = TargetKind::kRule;
  std::string target;
  std::string body;  // kCreate and kPut
  // If-Match: the revision the caller last read; another one fails the change with
  // kFailedPrecondition and writes nothing.
  std::optional<uint64_t> if_revision;

  static Write Of(Op op, TargetKind kind, std::string target, std::string body = {}) {
    Write w;
    w.op = op;
    w.kind = kind;
    w.target = std::move(target);
    w.body = std::move(body);
    return w;
  }
  static Write Put(TargetKind kind, std::string target, std::string body) {
    return Of(Op::kPut, kind, std::move(target), std::move(body));
  }
  static Write Delete(TargetKind kind, std::string target) {
    return Of(Op::kDelete, kind, std::move(target));
  }
};

struct AuditEntry {
  uint64_t version = 0;
  std::string at;      // RFC 3339, UTC
  std::string actor;   // the token name
  std::string action;  // "create", "update", "delete", "reset", "restore"
  TargetKind kind = TargetKind::kRule;
  std::string target;
  std::optional<std::string> before;  // absent: did not exist
  std::optional<std::string> after;   // absent: does not exist any more
};

struct VersionInfo {
  uint64_t version = 0;
  std::string at;
  std::string actor;
  std::string summary;
};

// The result of a committed change.
struct Commit {
  uint64_t version = 0;
  std::vector<AuditEntry> entries;  // what the change did, in order
};

// Thread-safe. Failures: kUnavailable when the database cannot be reached or is busy beyond
// its timeout; the write errors of Write::Op; kInvalidArgument for a malformed change.
class RulesDatabase {
 public:
  virtual ~RulesDatabase() = default;

  // Everything in force, with its version, read in one transaction.
  virtual absl::StatusOr<State> Load() = 0;
  virtual absl::StatusOr<uint64_t> Version() = 0;
  // The audit entries of the versions after `version`, oldest first: what a server holding
  // `version` applies (their `after`) to catch up without reloading everything.
  virtual absl::StatusOr<std::vector<AuditEntry>> ChangesSince(uint64_t version) = 0;

  // Applies `writes` as one change by `actor`: all of them, a new version and one audit entry
  // per write, in one transaction; or, on any error, nothing.
  virtual absl::StatusOr<Commit> Apply(std::span<const Write> writes, std::string_view actor,
                                       std::string_view summary) = 0;
  // Makes rules, lists and tiers exactly what they were at `version`, as a new version (audit
  // action "restore" per object that changes). When nothing differs, no version is made: the
  // Commit holds the current version and no entries. kNotFound for a version that never
  // existed.
  virtual absl::StatusOr<Commit> Restore(uint64_t version, std::string_view actor) = 0;

  // The audit entries with version > `since`, newest first, at most `limit`.
  virtual absl::StatusOr<std::vector<AuditEntry>> Audit(uint64_t since, size_t limit) = 0;
  // The versions, newest first, at most `limit`.
  virtual absl::StatusOr<std::vector<VersionInfo>> Versions(size_t limit) = 0;
};

}  // namespace sluice::db
