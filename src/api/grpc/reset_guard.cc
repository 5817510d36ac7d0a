#include "api/grpc/reset_guard.h"

#include <sys/socket.h>

#include <algorithm>
#include <charconv>

namespace sluice::grpc_api {

namespace {
constexpr size_t kPruneBansAbove = 4096;
}  // namespace

void ResetGuard::Opened(int fd, int dup_fd, std::string address) {
  MutexLock lock(mu_);
  connections_.insert_or_assign(fd, Connection{.dup_fd = dup_fd,
                                               .address = std::move(address),
                                               .tokens = options_.burst,
                                               .refilled = clock_()});
}

void ResetGuard::Closed(int fd, int dup_fd) {
  MutexLock lock(mu_);
  auto it = connections_.find(fd);
  if (it != connections_.end() && it->second.dup_fd == dup_fd) connections_.erase(it);
}

bool ResetGuard::Banned(const std::string& address) {
  MutexLock lock(mu_);
  if (banned_.empty()) return false;
  auto it = banned_.find(address);
  if (it == banned_.end()) return false;
  if (clock_() < it->second) return true;
  banned_.erase(it);
  return false;
}

std::optional<ResetGuard::Shutdown> ResetGuard::NoteEarlyEnd(int fd) {
  MutexLock lock(mu_);
  auto it = connections_.find(fd);
  if (it == connections_.end()) return std::nullopt;
  Connection& c = it->second;
  const auto now = clock_();
  const double elapsed = std::chrono::duration<double>(now - c.refilled).count();
  c.tokens = std::min(options_.burst, c.tokens + elapsed * options_.per_second);
  c.refilled = now;
  ++c.early_ends;
  c.tokens -= 1;
  if (c.tokens >= 0) return std::nullopt;
  // Past the allowance. The duplicate is still open (Closed comes before its close, under this
  // lock), so this is the connection's own socket.
  ::shutdown(c.dup_fd, SHUT_RDWR);
  if (banned_.size() >= kPruneBansAbove) {
    absl::erase_if(banned_, [now](const auto& ban) { return ban.second <= now; });
  }
  banned_.insert_or_assign(c.address, now + options_.ban);
  Shutdown done{.address = c.address, .early_ends = c.early_ends};
  connections_.erase(it);  // one shutdown per connection
  return done;
}

size_t ResetGuard::banned_addresses() {
  MutexLock lock(mu_);
  return banned_.size();
}

int PeerFd(std::string_view peer) {
  constexpr std::string_view kPrefix = "fd:";
  if (peer.substr(0, kPrefix.size()) != kPrefix) return -1;
  peer.remove_prefix(kPrefix.size());
  int fd = -1;
  const auto [end, error] = std::from_chars(peer.data(), peer.data() + peer.size(), fd);
  if (error != std::errc() || end != peer.data() + peer.size() || fd < 0) return -1;
  return fd;
}

}  // namespace sluice::grpc_api
