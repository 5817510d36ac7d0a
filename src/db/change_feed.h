// Tells a server that the rules database may have changed, so that it catches up
// (RulesDatabase::ChangesSince) within CONTRACT §8's second instead of at its next poll:
//   - PostgreSQL: LISTEN on the channel every committed change NOTIFYs (sql_database.cc), on a
//     connection of its own, re-established when lost (backoff from 100 ms, doubling to 1 s);
//   - SQLite: inotify on the database file's folder (the file and its -wal journal), since
//     another process's commit is a write to those files; and again 20 ms and 250 ms after
//     the last of a burst of writes (the commit becomes visible a moment after its last write).
// Either way it also fires every `poll` (the catch-up for anything missed, e.g. while
// PostgreSQL was down), when the PostgreSQL connection is lost (so that the server sees the
// database down at once) and once after it comes back.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace sluice::db {

// The channel every change is announced on (payload: the new version).
inline constexpr std::string_view kChangeChannel = "sluice_rules_changed";

struct ChangeFeedOptions {
  // "sqlite://PATH" or "postgresql://..." (as rules.database).
  std::string url;
  std::chrono::milliseconds poll{5000};
  // Called from the feed's thread, never concurrently with itself. Must not block for long.
  std::function<void()> changed;
};

class ChangeFeed {
 public:
  virtual ~ChangeFeed() = default;  // stops the thread; `changed` is not called afterwards
  // Starts watching. kInvalidArgument for a URL it does not know, or a SQLite folder that
  // cannot be watched. A PostgreSQL that cannot be reached is not an error: the feed keeps
  // trying (with backoff) and fires when it connects.
  static absl::StatusOr<std::unique_ptr<ChangeFeed>> Start(ChangeFeedOptions options);
};

}  // namespace sluice::db
