#include "db/change_feed.h"

#include <libpq-fe.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <filesystem>
#include <thread>

#include "base/strings.h"
#include "db/open.h"

namespace sluice::db {

namespace {

using Clock = std::chrono::steady_clock;

// The thread, its stop signal (an eventfd) and the poll timer common to both backends.
class FeedBase : public ChangeFeed {
 public:
  explicit FeedBase(ChangeFeedOptions options)
      : options_(std::move(options)), stop_fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}
  ~FeedBase() override {
    // Subclasses call Join() in their destructors, before their members go.
    if (stop_fd_ >= 0) close(stop_fd_);
  }

 protected:
  void Launch() {
    thread_ = std::thread([this] { Run(); });
  }
  void Join() {
    if (!thread_.joinable()) return;
    const uint64_t one = 1;
    (void)!write(stop_fd_, &one, sizeof(one));
    thread_.join();
  }
  virtual void Run() = 0;

  // Waits for `fd` to be readable (fd < 0: only the stop signal and the timeout). Returns
  // false when asked to stop.
  bool Wait(int fd, std::chrono::milliseconds timeout, bool* readable) {
    pollfd fds[2] = {{stop_fd_, POLLIN, 0}, {fd, POLLIN, 0}};
    const int n =
        ::poll(fds, fd >= 0 ? 2 : 1, static_cast<int>(std::max<int64_t>(0, timeout.count())));
    if (n > 0 && (fds[0].revents & POLLIN) != 0) return false;
    *readable = n > 0 && fd >= 0 && (fds[1].revents & (POLLIN | POLLERR | POLLHUP)) != 0;
    return true;
  }
  // Time left until the next poll tick; fires `changed` and restarts the tick when it is due.
  std::chrono::milliseconds Tick() {
    const auto now = Clock::now();
    if (now >= next_poll_) {
      options_.changed();
      next_poll_ = now + options_.poll;
    }
    return std::chrono::duration_cast<std::chrono::milliseconds>(next_poll_ - now) +
           std::chrono::milliseconds(1);
  }
  void Fire() {
    options_.changed();
    next_poll_ = Clock::now() + options_.poll;
  }

  ChangeFeedOptions options_;
  Clock::time_point next_poll_ = Clock::now() + std::chrono::milliseconds(0);

 private:
  const int stop_fd_;
  std::thread thread_;
};

// SQLite: inotify on the folder (the database file may be replaced; its -wal file comes and
// goes), filtered to the file's own names.
//
// A commit's last write to the -wal file comes before SQLite publishes the commit in the -shm
// index, a shared mapping whose writes inotify does not see. A catch-up woken by that write can
// therefore still read the previous snapshot, and nothing else would wake the server before its
// next poll. So each burst of writes is followed by catch-ups once it has settled: kSettle after
// the burst's last write.
class SqliteFeed final : public FeedBase {
 public:
  SqliteFeed(ChangeFeedOptions options, std::filesystem::path path, int inotify)
      : FeedBase(std::move(options)), path_(std::move(path)), inotify_(inotify) {
    next_poll_ = Clock::now() + options_.poll;
    Launch();
  }
  ~SqliteFeed() override {
    Join();
    close(inotify_);
  }

 private:
  static constexpr std::array<std::chrono::milliseconds, 2> kSettle = {
      std::chrono::milliseconds(20), std::chrono::milliseconds(250)};

  void Run() override {
    const std::string name = path_.filename().string();
    alignas(inotify_event) char buffer[16 * 1024];
    Clock::time_point last_write;
    size_t settled = kSettle.size();  // kSettle[settled] after last_write is the next catch-up
    for (;;) {
      std::chrono::milliseconds timeout = Tick();
      if (settled < kSettle.size()) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            last_write + kSettle[settled] - Clock::now());
        timeout =
            std::clamp(left + std::chrono::milliseconds(1), std::chrono::milliseconds(0), timeout);
      }
      bool readable = false;
      if (!Wait(inotify_, timeout, &readable)) return;
      if (settled < kSettle.size() && Clock::now() >= last_write + kSettle[settled]) {
        ++settled;
        Fire();
      }
      if (!readable) continue;
      const ssize_t n = read(inotify_, buffer, sizeof(buffer));
      bool ours = false;
      for (ssize_t at = 0; at < n;) {
        const auto* e = reinterpret_cast<const inotify_event*>(buffer + at);
        const std::string_view file = e->len > 0 ? std::string_view(e->name) : std::string_view();
        ours |= file == name || file == name + "-wal";
        at += static_cast<ssize_t>(sizeof(inotify_event) + e->len);
      }
      if (!ours) continue;
      Fire();
      last_write = Clock::now();
      settled = 0;
    }
  }

  std::filesystem::path path_;
  const int inotify_;
};

// PostgreSQL: LISTEN on a connection of its own.
class PostgresFeed final : public FeedBase {
 public:
  explicit PostgresFeed(ChangeFeedOptions options) : FeedBase(std::move(options)) {
    next_poll_ = Clock::now() + options_.poll;
    Launch();
  }
  ~PostgresFeed() override {
    Join();
    if (conn_ != nullptr) PQfinish(conn_);
  }

 private:
  bool Connect() {
    if (conn_ != nullptr) PQfinish(conn_);
    const char* keywords[] = {"dbname", "connect_timeout", "application_name", nullptr};
    const char* values[] = {options_.url.c_str(), "5", "sluice-feed", nullptr};
    conn_ = PQconnectdbParams(keywords, values, 1);
    if (PQstatus(conn_) != CONNECTION_OK) return false;
    PQsetNoticeProcessor(
        conn_, [](void*, const char*) {}, nullptr);
    PGresult* r = PQexec(conn_, Cat("LISTEN ", kChangeChannel).c_str());
    const bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    return ok;
  }

  void Run() override {
    std::chrono::milliseconds backoff(100);
    bool connected = false;
    for (;;) {
      if (!connected) {
        connected = Connect();
        if (connected) {
          backoff = std::chrono::milliseconds(100);
          Fire();  // whatever changed while not listening
        } else {
          bool ignored = false;
          if (!Wait(-1, std::min(backoff, Tick()), &ignored)) return;
          backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
          continue;
        }
      }
      bool readable = false;
      if (!Wait(PQsocket(conn_), Tick(), &readable)) return;
      if (!readable) continue;
      if (PQconsumeInput(conn_) == 0 || PQstatus(conn_) != CONNECTION_OK) {
        connected = false;
        // The database went away: a catch-up now finds it down at once (/health degraded, the
        // admin API's 503) instead of at the next poll.
        Fire();
        continue;
      }
      bool notified = false;
      while (PGnotify* n = PQnotifies(conn_)) {
        notified = true;
        PQfreemem(n);
      }
      if (notified) Fire();
    }
  }

  PGconn* conn_ = nullptr;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ChangeFeed>> ChangeFeed::Start(ChangeFeedOptions options) {
  if (!options.changed) return absl::InvalidArgumentError("a change feed needs a callback");
  const std::string& url = options.url;
  const std::string_view backend = DatabaseBackend(url);
  if (backend == "postgresql") {
    return std::unique_ptr<ChangeFeed>(std::make_unique<PostgresFeed>(std::move(options)));
  }
  if (backend != "sqlite") {
    return absl::InvalidArgumentError(
        Cat("rules database '", url, "': expected sqlite://PATH or postgresql://..."));
  }
  std::filesystem::path path(url.substr(kSqliteScheme.size()));
  const std::filesystem::path folder =
      path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  const int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0 || inotify_add_watch(fd, folder.c_str(),
                                  IN_MODIFY | IN_CLOSE_WRITE | IN_CREATE | IN_MOVED_TO) < 0) {
    if (fd >= 0) close(fd);
    return absl::InvalidArgumentError(Cat("cannot watch ", folder.string(), " for changes"));
  }
  return std::unique_ptr<ChangeFeed>(
      std::make_unique<SqliteFeed>(std::move(options), std::move(path), fd));
}

}  // namespace sluice::db
