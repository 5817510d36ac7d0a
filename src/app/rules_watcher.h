// Watches the rules paths and calls back when what they hold changes.
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <thread>
#include <vector>

namespace sluice::app {

// inotify on every rules folder (and the folder of every rules file) wakes the watcher at once;
// what decides a reload is a fingerprint of the files the paths expand to (path, device, inode,
// size, mtime, following symlinks), checked on every wake-up and every 250 ms. So a Kubernetes
// ConfigMap's symlink swap (a new `..data` target, renamed into place) is seen as a change, an
// editor's temporary files are not, and a missed event costs at most 250 ms.
class RulesWatcher {
 public:
  // Takes the first fingerprint now: construct it before loading the rules, so that a change
  // made while they load is seen once Start() runs.
  RulesWatcher(std::vector<std::string> paths, std::function<void()> on_change);
  ~RulesWatcher();
  void Start();
  void Stop();

 private:
  std::string Fingerprint() const;
  void Run();

  std::vector<std::string> paths_;
  std::function<void()> on_change_;
  std::string last_;  // the fingerprint of the rules last loaded (or being loaded)
  std::atomic<bool> stop_{false};
  std::thread thread_;
  int inotify_fd_ = -1;
};

}  // namespace sluice::app
