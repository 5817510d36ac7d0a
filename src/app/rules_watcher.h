// Watches the rules paths and calls back when what they hold changes.
#pragma once

#include <atomic>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace sluice::app {

// inotify on every rules folder (and the folder of every rules file) wakes the watcher at once;
// what decides a reload is a fingerprint of the files the paths expand to (path, device, inode,
// size, mtime, following symlinks), checked on every wake-up and every 250 ms. So a Kubernetes
// ConfigMap's symlink swap (a new `..data` target, renamed into place) is seen as a change, an
// editor's temporary files are not, and a missed event costs at most 250 ms.
//
// A fingerprint that could not be taken for a passing reason (out of file descriptors or
// memory) is no fingerprint: it is not compared, so that neither the failure nor the recovery
// reads as a change (logged once per run of failures as `rules_watch_failed`). The server also
// skips a watcher's reload whose files hold the bytes already loaded.
class RulesWatcher {
 public:
  // Takes the first fingerprint now: construct it before loading the rules, so that a change
  // made while they load is seen once Start() runs.
  RulesWatcher(std::vector<std::string> paths, std::function<void()> on_change);
  ~RulesWatcher();
  void Start();
  void Stop();

 private:
  // nullopt when it could not be taken for a passing reason, then given in `failure`.
  std::optional<std::string> Fingerprint(std::string* failure) const;
  void Run();

  std::vector<std::string> paths_;
  std::function<void()> on_change_;
  std::string last_;  // the fingerprint of the rules last loaded (or being loaded)
  std::atomic<bool> stop_{false};
  std::thread thread_;
  int inotify_fd_ = -1;
};

}  // namespace sluice::app
