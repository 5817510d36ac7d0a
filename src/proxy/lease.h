// The concurrency slots one proxied request holds (CheckResult::lease_id, CONTRACT §10), given
// back exactly once however the request ends: answered, client gone, upstream failed, or the
// session destroyed on shutdown. Header-only.
#pragma once

#include <functional>
#include <string>
#include <utility>

namespace sluice::proxy {

class Lease {
 public:
  // Gives back the slots of a lease id (Limiter::Release, in the server).
  using Releaser = std::function<void(const std::string& lease_id)>;

  Lease() = default;
  // An empty `id` holds nothing: Release does nothing.
  Lease(std::string id, Releaser release) : id_(std::move(id)), release_(std::move(release)) {}
  Lease(Lease&& other) noexcept
      : id_(std::exchange(other.id_, {})), release_(std::move(other.release_)) {}
  Lease& operator=(Lease&& other) noexcept {
    if (this != &other) {
      Release();
      id_ = std::exchange(other.id_, {});
      release_ = std::move(other.release_);
    }
    return *this;
  }
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;
  ~Lease() { Release(); }

  // Gives the slots back; later calls (and the destructor) do nothing.
  void Release() {
    if (id_.empty()) return;
    const std::string id = std::exchange(id_, {});
    if (release_) release_(id);
  }
  bool held() const { return !id_.empty(); }
  // Hands the id over to a caller that gives the slots back itself: this lease then releases
  // nothing.
  std::string Take() { return std::exchange(id_, {}); }

 private:
  std::string id_;
  Releaser release_;
};

}  // namespace sluice::proxy
