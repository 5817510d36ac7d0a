#include "net/connection_caps.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

namespace sluice::net {

std::string AddressKey(const sockaddr* address) {
  char text[INET6_ADDRSTRLEN] = {};
  if (address->sa_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(address);
    inet_ntop(AF_INET, &v4->sin_addr, text, sizeof text);
    return text;
  }
  if (address->sa_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(address);
    if (IN6_IS_ADDR_V4MAPPED(&v6->sin6_addr)) {  // a dual-stack socket's IPv4 client
      inet_ntop(AF_INET, &v6->sin6_addr.s6_addr[12], text, sizeof text);
    } else {
      inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof text);
    }
    return text;
  }
  return "";
}

void ConnectionCaps::Slot::Release() {
  if (caps_ == nullptr) return;
  caps_->Release(address_, reserved_);
  caps_.reset();
}

ConnectionCaps::Verdict ConnectionCaps::TryAcquire(const std::string& address) {
  Verdict verdict;
  MutexLock lock(mu_);
  size_t& from_address = per_address_[address];
  const bool full = total_ >= options_.max_connections;
  if (full && reserved_ >= options_.health_reserve) {
    verdict.refusal = Refusal::kTotal;
  } else if (options_.max_per_address > 0 && from_address >= options_.max_per_address) {
    verdict.refusal = Refusal::kPerAddress;
  }
  if (verdict.refusal != Refusal::kNone) {
    if (from_address == 0) per_address_.erase(address);
    ++refused_;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_log_ >= std::chrono::seconds(1)) {
      last_log_ = now;
      verdict.log = true;
      verdict.suppressed = std::exchange(unlogged_, 0);
    } else {
      ++unlogged_;
    }
    return verdict;
  }
  ++from_address;
  ++(full ? reserved_ : total_);
  verdict.slot = Slot(shared_from_this(), address, /*reserved=*/full);
  return verdict;
}

void ConnectionCaps::Release(const std::string& address, bool reserved) {
  MutexLock lock(mu_);
  --(reserved ? reserved_ : total_);
  auto it = per_address_.find(address);
  if (it != per_address_.end() && --it->second == 0) per_address_.erase(it);
}

size_t ConnectionCaps::connections() const {
  MutexLock lock(mu_);
  return total_ + reserved_;
}

uint64_t ConnectionCaps::refused() const {
  MutexLock lock(mu_);
  return refused_;
}

}  // namespace sluice::net
