// A cap on how often one kind of log line is written, for lines a client can cause at will
// (a library's complaint about each malformed request): at most `per_second` in each second,
// the rest counted and reported with the next line let through. Header-only.
#pragma once

#include <chrono>
#include <cstdint>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "base/mutex.h"

namespace sluice::obs {

class LogThrottle {
 public:
  explicit LogThrottle(int per_second) : per_second_(per_second) {}

  // Whether to write the line now; when so, `*suppressed` is how many were dropped since the
  // last line written. Thread-safe. Reads the steady clock itself: its callers are C logging
  // hooks (gRPC's, protobuf's) with nowhere to pass a clock through.
  bool Admit(uint64_t* suppressed) {
    const auto now = std::chrono::steady_clock::now();
    MutexLock lock(mu_);
    if (now - window_start_ >= std::chrono::seconds(1)) {
      window_start_ = now;
      in_window_ = 0;
    }
    if (in_window_ >= per_second_) {
      ++dropped_;
      return false;
    }
    ++in_window_;
    *suppressed = std::exchange(dropped_, 0);
    return true;
  }

 private:
  const int per_second_;
  Mutex mu_;
  std::chrono::steady_clock::time_point window_start_ ABSL_GUARDED_BY(mu_);
  int in_window_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace sluice::obs
