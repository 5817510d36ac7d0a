// sluice::Mutex: a std::mutex that Clang's thread-safety analysis understands, so that members
// marked ABSL_GUARDED_BY(mu) are checked at compile time (clang -Wthread-safety, run over every
// source file by scripts/check-thread-safety.sh in CI). GCC ignores the annotations.
//
// Not absl::Mutex: Debian's Abseil is built without ThreadSanitizer annotations, so TSan could not
// see absl::Mutex's ordering, while it intercepts the pthread mutex under std::mutex. Not
// std::mutex with std::lock_guard: libstdc++ does not annotate them, so nothing would be checked.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <utility>

#include "absl/base/thread_annotations.h"

namespace sluice {

class ABSL_LOCKABLE Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void unlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }

 private:
  friend class CondVar;
  std::mutex mu_;
};

// Holds a Mutex for its scope, as std::lock_guard does.
class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(Mutex& mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) { mu_.lock(); }
  ~MutexLock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex& mu_;
};

// A std::condition_variable over a Mutex. The caller holds the mutex around a wait; it is
// released while the wait blocks and held again when the wait returns. The predicate runs with
// the mutex held: a lambda reading guarded members says so with
// ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) after its parameter list.
class CondVar {
 public:
  // Returns pred(): false when `deadline` passed first.
  template <class Clock, class Duration, class Predicate>
  bool WaitUntil(Mutex& mu, std::chrono::time_point<Clock, Duration> deadline, Predicate pred)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    std::unique_lock lock(mu.mu_, std::adopt_lock);
    const bool result = cv_.wait_until(lock, deadline, std::move(pred));
    lock.release();  // held again, and still the caller's to unlock
    return result;
  }
  template <class Rep, class Period, class Predicate>
  bool WaitFor(Mutex& mu, std::chrono::duration<Rep, Period> timeout, Predicate pred)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    return WaitUntil(mu, std::chrono::steady_clock::now() + timeout, std::move(pred));
  }

  void NotifyOne() { cv_.notify_one(); }
  void NotifyAll() { cv_.notify_all(); }

 private:
  std::condition_variable cv_;
};

}  // namespace sluice
