#include "app/rules_watcher.h"

#include <poll.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "obs/log.h"
#include "rules/loader.h"

namespace sluice::app {

RulesWatcher::RulesWatcher(std::vector<std::string> paths, std::function<void()> on_change)
    : paths_(std::move(paths)), on_change_(std::move(on_change)) {
  // Without a first fingerprint, the first one taken is a change: a reload, which the server
  // skips if the files hold what it loaded.
  std::string failure;
  last_ = Fingerprint(&failure).value_or("");
}

RulesWatcher::~RulesWatcher() { Stop(); }

void RulesWatcher::Start() {
  inotify_fd_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  std::set<std::string> folders;
  for (const auto& path : paths_) {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) folders.insert(path);
    const auto parent = std::filesystem::path(path).parent_path().string();
    folders.insert(parent.empty() ? "." : parent);
  }
  if (inotify_fd_ >= 0) {
    for (const auto& folder : folders) {
      inotify_add_watch(inotify_fd_, folder.c_str(),
                        IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE |
                            IN_ATTRIB | IN_MODIFY);
    }
  }
  thread_ = std::thread([this] { Run(); });
}

void RulesWatcher::Stop() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
  if (inotify_fd_ >= 0) close(inotify_fd_);
  inotify_fd_ = -1;
}

std::optional<std::string> RulesWatcher::Fingerprint(std::string* failure) const {
  std::vector<std::string> problems;
  bool transient = false;
  std::string fp;
  const std::vector<std::string> files = rules::ExpandRulePaths(paths_, &problems, &transient);
  if (transient) {
    *failure = absl::StrJoin(problems, "\n");
    return std::nullopt;
  }
  for (const auto& file : files) {
    struct stat st;
    if (stat(file.c_str(), &st) != 0) {
      if (errno == ENOMEM) {
        *failure = absl::StrCat(file, ": ", std::strerror(errno));
        return std::nullopt;
      }
      absl::StrAppend(&fp, file, "|missing\n");
      continue;
    }
    absl::StrAppend(&fp, file, "|", st.st_dev, "|", st.st_ino, "|", st.st_size, "|",
                    st.st_mtim.tv_sec, ".", st.st_mtim.tv_nsec, "\n");
  }
  for (const auto& p : problems) absl::StrAppend(&fp, p, "\n");
  return fp;
}

void RulesWatcher::Run() {
  char buffer[4096];
  bool failing = false;  // the last fingerprint could not be taken
  while (!stop_.load()) {
    pollfd pfd{inotify_fd_, POLLIN, 0};
    const int ready = inotify_fd_ >= 0 ? poll(&pfd, 1, 250) : (usleep(250'000), 0);
    if (ready > 0) {
      // Drain the events, then let a burst of writes (an editor's save, a ConfigMap swap)
      // settle before reading the files.
      while (read(inotify_fd_, buffer, sizeof(buffer)) > 0) {
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      while (read(inotify_fd_, buffer, sizeof(buffer)) > 0) {
      }
    }
    std::string failure;
    std::optional<std::string> now = Fingerprint(&failure);
    if (!now.has_value()) {
      // Out of descriptors, say: try again on the next round, against the last one taken.
      if (!failing) {
        obs::LogEvent(spdlog::level::warn, "rules_watch_failed", {{"error", failure}});
      }
      failing = true;
      continue;
    }
    failing = false;
    if (*now != last_) {
      last_ = *std::move(now);
      on_change_();
    }
  }
}

}  // namespace sluice::app
