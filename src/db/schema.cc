#include "db/schema.h"

namespace sluice::db {

namespace {

constexpr Migration kSqlite[] = {
    {1, "rules, list entries, user tiers, versions and an append-only audit log", R"sql(
CREATE TABLE sluice_versions (
  version INTEGER PRIMARY KEY,
  at      TEXT NOT NULL,
  actor   TEXT NOT NULL,
  summary TEXT NOT NULL
);
CREATE TABLE sluice_rules (
  id       TEXT PRIMARY KEY,
  body     TEXT NOT NULL,
  revision INTEGER NOT NULL REFERENCES sluice_versions (version)
);
CREATE TABLE sluice_list_entries (
  list     TEXT NOT NULL CHECK (list IN ('allow', 'deny')),
  id       TEXT NOT NULL,
  body     TEXT NOT NULL,
  revision INTEGER NOT NULL REFERENCES sluice_versions (version),
  PRIMARY KEY (list, id)
);
CREATE TABLE sluice_user_tiers (
  user_id  TEXT PRIMARY KEY,
  tier     TEXT NOT NULL,
  revision INTEGER NOT NULL REFERENCES sluice_versions (version)
);
CREATE TABLE sluice_audit (
  seq     INTEGER PRIMARY KEY AUTOINCREMENT,
  version INTEGER NOT NULL REFERENCES sluice_versions (version),
  at      TEXT NOT NULL,
  actor   TEXT NOT NULL,
  action  TEXT NOT NULL,
  kind    TEXT NOT NULL,
  target  TEXT NOT NULL,
  before  TEXT,
  after   TEXT
);
CREATE INDEX sluice_audit_by_version ON sluice_audit (version);
CREATE INDEX sluice_audit_by_target ON sluice_audit (kind, target, seq);
CREATE TRIGGER sluice_audit_no_update BEFORE UPDATE ON sluice_audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER sluice_audit_no_delete BEFORE DELETE ON sluice_audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
)sql"},
};

constexpr Migration kPostgres[] = {
    {1, "rules, list entries, user tiers, versions and an append-only audit log", R"sql(
CREATE TABLE sluice_versions (
  version BIGINT PRIMARY KEY,
  at      TEXT NOT NULL,
  actor   TEXT NOT NULL,
  summary TEXT NOT NULL
);
CREATE TABLE sluice_rules (
  id       TEXT PRIMARY KEY,
  body     TEXT NOT NULL,
  revision BIGINT NOT NULL REFERENCES sluice_versions (version)
);
CREATE TABLE sluice_list_entries (
  list     TEXT NOT NULL CHECK (list IN ('allow', 'deny')),
  id       TEXT NOT NULL,
  body     TEXT NOT NULL,
  revision BIGINT NOT NULL REFERENCES sluice_versions (version),
  PRIMARY KEY (list, id)
);
CREATE TABLE sluice_user_tiers (
  user_id  TEXT PRIMARY KEY,
  tier     TEXT NOT NULL,
  revision BIGINT NOT NULL REFERENCES sluice_versions (version)
);
CREATE TABLE sluice_audit (
  seq     BIGSERIAL PRIMARY KEY,
  version BIGINT NOT NULL REFERENCES sluice_versions (version),
  at      TEXT NOT NULL,
  actor   TEXT NOT NULL,
  action  TEXT NOT NULL,
  kind    TEXT NOT NULL,
  target  TEXT NOT NULL,
  before  TEXT,
  after   TEXT
);
CREATE INDEX sluice_audit_by_version ON sluice_audit (version);
CREATE INDEX sluice_audit_by_target ON sluice_audit (kind, target, seq);
CREATE FUNCTION sluice_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$;
CREATE TRIGGER sluice_audit_no_change BEFORE UPDATE OR DELETE ON sluice_audit
FOR EACH ROW EXECUTE FUNCTION sluice_audit_append_only();
)sql"},
};

}  // namespace

std::span<const Migration> Migrations(Dialect dialect) {
  if (dialect == Dialect::kSqlite) return kSqlite;
  return kPostgres;
}

}  // namespace sluice::db
