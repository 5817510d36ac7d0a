#include "api/grpc/listener.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "net/host_port.h"
#include "obs/log.h"

namespace sluice::grpc_api {

namespace {

// epoll tags: the wake-up eventfd and the listening sockets; anything else is a duplicate's fd.
constexpr uint64_t kWakeTag = uint64_t{1} << 62;
constexpr uint64_t kListenTag = uint64_t{1} << 61;
constexpr int kMaxAcceptsPerWake = 64;  // then let the other listeners and hang-ups have a turn

std::string Errno(int error) { return std::strerror(error); }

// Accept errors that mean "out of descriptors or memory": wait before the next try. Anything
// else concerns one connection only (the peer aborted it, ...): go on at once.
bool OutOfResources(int error) {
  return error == EMFILE || error == ENFILE || error == ENOBUFS || error == ENOMEM;
}

}  // namespace

Listener::Listener(Options options, std::function<void(int fd)> hand_off)
    : options_(std::move(options)),
      hand_off_(std::move(hand_off)),
      caps_(net::ConnectionCaps::Create(options_.caps)),
      resets_(options_.resets) {}

Listener::~Listener() { Stop(); }

absl::Status Listener::Bind() {
  auto fail = [this](const std::string& reason) {
    for (int fd : listen_fds_) close(fd);
    listen_fds_.clear();
    return absl::UnavailableError("cannot listen on " + options_.address + " (gRPC): " + reason);
  };
  auto parsed = net::ParseHostPort(options_.address, {.allow_port_zero = true});
  if (!parsed.ok()) return fail(std::string(parsed.status().message()));
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(parsed->port);
  if (int rc = getaddrinfo(parsed->host.empty() ? nullptr : parsed->host.c_str(), service.c_str(),
                           &hints, &found);
      rc != 0) {
    return fail(gai_strerror(rc));
  }
  bool has_v4 = false;
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) has_v4 |= a->ai_family == AF_INET;
  std::string error;
  uint16_t port = parsed->port;
  for (addrinfo* a = found; a != nullptr && error.empty(); a = a->ai_next) {
    if (a->ai_family != AF_INET && a->ai_family != AF_INET6) continue;
    const int fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
      error = Errno(errno);
      break;
    }
    listen_fds_.push_back(fd);
    const int one = 1;
    // No SO_REUSEPORT (gRPC's default): a second server would bind a busy port silently and
    // take half of its connections. A busy port is a startup error, as it is for HTTP.
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (a->ai_family == AF_INET6) {
      // "[::]" alone serves IPv4 too, as gRPC's listener does; next to an IPv4 address of its
      // own, IPv6 only (else the two binds would collide).
      const int v6only = has_v4 ? 1 : 0;
      setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only);
    }
    sockaddr_storage address{};
    std::memcpy(&address, a->ai_addr, a->ai_addrlen);
    // Port 0: the port the first bind got, for every address.
    if (a->ai_family == AF_INET) {
      reinterpret_cast<sockaddr_in*>(&address)->sin_port = htons(port);
    } else {
      reinterpret_cast<sockaddr_in6*>(&address)->sin6_port = htons(port);
    }
    if (bind(fd, reinterpret_cast<sockaddr*>(&address), a->ai_addrlen) != 0 ||
        listen(fd, SOMAXCONN) != 0) {
      error = Errno(errno);
      break;
    }
    if (port == 0) {
      socklen_t len = sizeof address;
      getsockname(fd, reinterpret_cast<sockaddr*>(&address), &len);
      port = ntohs(address.ss_family == AF_INET
                       ? reinterpret_cast<sockaddr_in*>(&address)->sin_port
                       : reinterpret_cast<sockaddr_in6*>(&address)->sin6_port);
    }
  }
  freeaddrinfo(found);
  if (error.empty() && listen_fds_.empty()) error = "no IPv4 or IPv6 address";
  if (!error.empty()) return fail(error);
  port_ = port;
  return absl::OkStatus();
}

void Listener::Start() {
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  epoll_event wake{.events = EPOLLIN, .data = {.u64 = kWakeTag}};
  epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &wake);
  for (size_t i = 0; i < listen_fds_.size(); ++i) {
    epoll_event ev{.events = EPOLLIN, .data = {.u64 = kListenTag + i}};
    epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fds_[i], &ev);
  }
  thread_ = std::thread([this] { Run(); });
}

void Listener::Stop() {
  if (thread_.joinable()) {
    stopping_.store(true, std::memory_order_relaxed);
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t n = write(wake_fd_, &one, sizeof one);
    thread_.join();
  }
  for (int fd : listen_fds_) close(fd);
  listen_fds_.clear();
  for (auto& [dup_fd, watched] : watched_) {
    resets_.Closed(watched.fd, dup_fd);
    close(dup_fd);
  }
  watched_.clear();
  if (epoll_fd_ >= 0) close(epoll_fd_);
  if (wake_fd_ >= 0) close(wake_fd_);
  epoll_fd_ = wake_fd_ = -1;
}

void Listener::SetListening(bool on) {
  for (size_t i = 0; i < listen_fds_.size(); ++i) {
    epoll_event ev{.events = on ? static_cast<uint32_t>(EPOLLIN) : 0u,
                   .data = {.u64 = kListenTag + i}};
    epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, listen_fds_[i], &ev);
  }
}

void Listener::Run() {
  epoll_event events[64];
  int timeout_ms = -1;  // while backing off: the pause before the next try
  while (!stopping_.load(std::memory_order_relaxed)) {
    const int n = epoll_wait(epoll_fd_, events, 64, timeout_ms);
    if (n < 0 && errno != EINTR) break;
    if (n == 0 && timeout_ms >= 0) {  // the pause is over: try again
      timeout_ms = -1;
      SetListening(true);
      continue;
    }
    for (int i = 0; i < n; ++i) {
      const uint64_t tag = events[i].data.u64;
      if (tag == kWakeTag) continue;  // stopping_ is set
      if (tag >= kListenTag && tag < kListenTag + listen_fds_.size()) {
        if (timeout_ms >= 0) continue;  // paused by an earlier listener this round
        if (const int error = AcceptAll(listen_fds_[tag - kListenTag]); error != 0) {
          bool first = false;
          timeout_ms = static_cast<int>(backoff_.Failed(&first).count());
          SetListening(false);  // level-triggered: the backlog would wake us at once
          if (first) {
            exhausted_.store(true, std::memory_order_relaxed);
            obs::LogEvent(spdlog::level::warn, "accept_failed",
                          {{"listener", "grpc"},
                           {"error", Errno(error)},
                           {"connections", caps_->connections()}});
          }
        }
        continue;
      }
      // A duplicate hung up: gRPC has closed the connection, or the peer reset it. (An error
      // alone is not the end: gRPC reads it and closes, which hangs up.)
      if ((events[i].events & EPOLLHUP) == 0) continue;
      const int dup_fd = static_cast<int>(tag);
      epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, dup_fd, nullptr);
      if (auto it = watched_.find(dup_fd); it != watched_.end()) {
        resets_.Closed(it->second.fd, dup_fd);  // before the number can be reused
        watched_.erase(it);                     // gives the place back
      }
      close(dup_fd);
    }
  }
}

int Listener::AcceptAll(int listen_fd) {
  for (int i = 0; i < kMaxAcceptsPerWake; ++i) {
    sockaddr_storage peer{};
    socklen_t len = sizeof peer;
    const int fd =
        accept4(listen_fd, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
      const int error = errno;
      if (error == EAGAIN || error == EWOULDBLOCK) break;
      if (OutOfResources(error)) return error;
      continue;  // ECONNABORTED, EINTR, a protocol error: that connection only
    }
    if (!Admit(fd, reinterpret_cast<sockaddr*>(&peer))) return EMFILE;
  }
  // Not out of resources (an accept worked, or nothing was waiting): a spell of failures is over.
  if (backoff_.Succeeded()) {
    exhausted_.store(false, std::memory_order_relaxed);
    obs::LogEvent(spdlog::level::info, "accept_resumed", {{"listener", "grpc"}});
  }
  return 0;
}

bool Listener::Admit(int fd, const sockaddr* peer) {
  const std::string address = net::AddressKey(peer);
  if (resets_.Banned(address)) {
    close(fd);  // flooded resets a moment ago (logged then)
    return true;
  }
  net::ConnectionCaps::Verdict verdict = caps_->TryAcquire(address);
  if (!verdict.slot) {
    close(fd);  // over a cap: refused at once rather than queued
    if (verdict.log) {
      const bool per_address = verdict.refusal == net::ConnectionCaps::Refusal::kPerAddress;
      obs::LogEvent(
          spdlog::level::warn, "connection_refused",
          {{"listener", "grpc"},
           {"address", address},
           {"cap", per_address ? "max_connections_per_address" : "max_connections"},
           {"limit", per_address ? options_.caps.max_per_address : options_.caps.max_connections},
           {"suppressed", verdict.suppressed}});
    }
    return true;
  }
  const int dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  epoll_event ev{.events = EPOLLET, .data = {.u64 = static_cast<uint64_t>(dup_fd)}};
  if (dup_fd < 0 || epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, dup_fd, &ev) != 0) {
    // No descriptor to watch it with: out of descriptors all but in name. Refused.
    if (dup_fd >= 0) close(dup_fd);
    close(fd);
    return false;
  }
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  watched_.emplace(dup_fd, Watched{.slot = std::move(verdict.slot), .fd = fd});
  resets_.Opened(fd, dup_fd, address);
  hand_off_(fd);
  return true;
}

void Listener::NoteEarlyEnd(std::string_view peer) {
  const int fd = PeerFd(peer);
  if (fd < 0) return;
  std::optional<ResetGuard::Shutdown> shut = resets_.NoteEarlyEnd(fd);
  if (!shut) return;
  obs::LogEvent(spdlog::level::warn, "grpc_reset_flood",
                {{"address", shut->address},
                 {"early_ends", shut->early_ends},
                 {"ban_seconds",
                  std::chrono::duration_cast<std::chrono::seconds>(options_.resets.ban).count()}});
}

}  // namespace sluice::grpc_api
