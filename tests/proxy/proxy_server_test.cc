// The gateway's session against a fake limiter (leases and holds the rules cannot make yet) and
// a small blocking upstream: every lease is given back exactly once, however the request ends,
// and a held request waits on a timer without holding up its thread.
#include "proxy/proxy_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace sluice::proxy {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

int Listen(uint16_t* port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  EXPECT_EQ(::listen(fd, 64), 0);
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  *port = ntohs(addr.sin_port);
  return fd;
}

int Connect(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  timeval timeout{.tv_sec = 10, .tv_usec = 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  return fd;
}

void SendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return;
    data.remove_prefix(static_cast<size_t>(n));
  }
}

// One response (Content-Length framed) from `fd`, or what came before the connection closed.
std::string ReadResponse(int fd) {
  std::string data;
  char buf[4096];
  while (true) {
    const size_t head = data.find("\r\n\r\n");
    if (head != std::string::npos) {
      const size_t cl = data.find("Content-Length: ");
      if (cl != std::string::npos && cl < head) {
        const size_t length = std::stoul(data.substr(cl + 16));
        if (data.size() >= head + 4 + length) return data;
      }
    }
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) return data;
    data.append(buf, static_cast<size_t>(n));
  }
}

// A blocking HTTP/1.1 upstream: answers GETs "ok" (keep-alive); "/dribble" sends a header
// promising a long body and then a few bytes every 50 ms for two seconds. Records arrival times.
class TestUpstream {
 public:
  TestUpstream() : fd_(Listen(&port_)) {
    thread_ = std::thread([this] { AcceptLoop(); });
  }
  ~TestUpstream() {
    stopping_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
    {
      std::lock_guard lock(mu_);
      for (const int c : open_) ::shutdown(c, SHUT_RDWR);  // the gateway's pooled connections
    }
    for (auto& t : connections_) t.join();
  }
  uint16_t port() const { return port_; }
  int requests() const { return requests_.load(); }
  Clock::time_point arrival(const std::string& path) {
    std::lock_guard lock(mu_);
    return arrivals_[path];
  }

 private:
  void AcceptLoop() {
    while (!stopping_) {
      const int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      {
        std::lock_guard lock(mu_);
        open_.push_back(c);
      }
      connections_.emplace_back([this, c] { Serve(c); });
    }
  }

  void Serve(int c) {
    std::string data;
    char buf[4096];
    while (!stopping_) {
      const size_t end = data.find("\r\n\r\n");
      if (end == std::string::npos) {
        const ssize_t n = ::recv(c, buf, sizeof(buf), 0);
        if (n <= 0) break;
        data.append(buf, static_cast<size_t>(n));
        continue;
      }
      const std::string head = data.substr(0, end);
      data.erase(0, end + 4);
      const std::string path =
          head.substr(head.find(' ') + 1, head.find(' ', head.find(' ') + 1) - head.find(' ') - 1);
      {
        std::lock_guard lock(mu_);
        arrivals_[path] = Clock::now();
      }
      ++requests_;
      if (path == "/dribble") {
        SendAll(c, "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n");
        for (int i = 0; i < 40 && !stopping_; ++i) {
          SendAll(c, "0123456789");
          std::this_thread::sleep_for(milliseconds(50));
        }
        break;
      }
      SendAll(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    }
    std::lock_guard lock(mu_);
    std::erase(open_, c);
    ::close(c);
  }

  uint16_t port_ = 0;
  const int fd_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> requests_{0};
  std::mutex mu_;
  std::map<std::string, Clock::time_point> arrivals_;
  std::vector<int> open_;  // accepted connections (closed by their threads)
  std::thread thread_;
  std::vector<std::thread> connections_;  // joined at the end; the accept thread only adds
};

// Answers every check "allowed" with a lease id of its own (or a hold, by path), and counts the
// releases of each id.
class FakeLimiter {
 public:
  ProxyLimiter Make() {
    return {.check =
                [this](CheckRequest request, Limiter::Callback done) {
                  CheckResult result;
                  result.outcome = CheckResult::Outcome::kAllowed;
                  if (request.attributes.endpoint == "/rejected") {
                    result.outcome = CheckResult::Outcome::kRejected;
                    result.limited = true;
                  }
                  if (request.attributes.endpoint == "/held") result.hold = 1'000'000;  // us
                  result.lease_id = "lease-" + std::to_string(++issued_);
                  // From another thread, as a Redis store answers.
                  std::lock_guard lock(mu_);
                  answering_.emplace_back(
                      [done = std::move(done), result = std::move(result)]() mutable {
                        std::move(done)(std::move(result));
                      });
                },
            .release =
                [this](const std::string& id) {
                  std::lock_guard lock(mu_);
                  ++released_[id];
                }};
  }
  // Waits for the threads that answered checks: before the server goes.
  void Join() {
    std::vector<std::thread> threads;
    {
      std::lock_guard lock(mu_);
      threads.swap(answering_);
    }
    for (auto& t : threads) t.join();
  }
  int issued() const { return issued_.load(); }
  // Each issued lease released exactly once?
  bool AllReleasedOnce() {
    std::lock_guard lock(mu_);
    if (released_.size() != static_cast<size_t>(issued_.load())) return false;
    for (const auto& [id, count] : released_) {
      if (count != 1) return false;
    }
    return true;
  }
  int releases() {
    std::lock_guard lock(mu_);
    int total = 0;
    for (const auto& [id, count] : released_) total += count;
    return total;
  }

 private:
  std::atomic<int> issued_{0};
  std::mutex mu_;
  std::map<std::string, int> released_;
  std::vector<std::thread> answering_;
};

template <typename F>
bool Eventually(F f) {
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  while (Clock::now() < deadline) {
    if (f()) return true;
    std::this_thread::sleep_for(milliseconds(5));
  }
  return f();
}

class ProxyServerTest : public ::testing::Test {
 protected:
  void Start(uint16_t upstream_port) {
    ProxyOptions options;
    options.address = "127.0.0.1";
    options.port = 0;
    options.threads = 1;  // every connection on one thread: a hold must not block the others
    options.upstream = {.host = "127.0.0.1",
                        .port = upstream_port,
                        .authority = "127.0.0.1:" + std::to_string(upstream_port)};
    options.timeout = milliseconds(2000);
    server_ = std::make_unique<ProxyServer>(std::move(options), limiter_.Make(), metrics_);
    ASSERT_TRUE(server_->Start().ok());
  }
  void TearDown() override {
    limiter_.Join();
    if (server_) server_->Stop(milliseconds(0));
  }

  std::string Get(const std::string& path) {
    const int fd = Connect(server_->port());
    SendAll(fd, "GET " + path + " HTTP/1.1\r\nHost: t\r\n\r\n");
    std::string response = ReadResponse(fd);
    ::close(fd);
    return response;
  }

  obs::Metrics metrics_;
  FakeLimiter limiter_;
  std::unique_ptr<ProxyServer> server_;
};

// Verifies one release per lease when the answer is relayed, on keep-alive and across requests.
TEST_F(ProxyServerTest, ReleasesOnceWhenForwarded) {
  TestUpstream upstream;
  Start(upstream.port());
  const int fd = Connect(server_->port());
  for (int i = 0; i < 3; ++i) {
    SendAll(fd, "GET /a HTTP/1.1\r\nHost: t\r\n\r\n");
    EXPECT_NE(ReadResponse(fd).find("200 OK"), std::string::npos);
  }
  ::close(fd);
  EXPECT_TRUE(Eventually([&] { return limiter_.releases() == 3; }));
  std::this_thread::sleep_for(milliseconds(50));
  EXPECT_EQ(limiter_.issued(), 3);
  EXPECT_TRUE(limiter_.AllReleasedOnce());
}

// Verifies one release when the upstream cannot be reached (502) and when Sluice refuses (429).
TEST_F(ProxyServerTest, ReleasesOnceOnUpstreamErrorAndRejection) {
  uint16_t dead_port = 0;
  ::close(Listen(&dead_port));  // nothing listens there now
  Start(dead_port);
  EXPECT_NE(Get("/a").find("502"), std::string::npos);
  EXPECT_NE(Get("/rejected").find("429"), std::string::npos);
  EXPECT_TRUE(Eventually([&] { return limiter_.releases() == 2; }));
  EXPECT_TRUE(limiter_.AllReleasedOnce());
}

// Verifies one release when the client goes mid-answer, and when the server stops with a
// request in flight.
TEST_F(ProxyServerTest, ReleasesOnceWhenTheClientGoesOrTheServerStops) {
  TestUpstream upstream;
  Start(upstream.port());
  int fd = Connect(server_->port());
  SendAll(fd, "GET /dribble HTTP/1.1\r\nHost: t\r\n\r\n");
  char buf[64];
  ASSERT_GT(::recv(fd, buf, sizeof(buf), 0), 0);  // the header has come
  ::close(fd);
  EXPECT_TRUE(Eventually([&] { return limiter_.releases() == 1; }));

  fd = Connect(server_->port());
  SendAll(fd, "GET /dribble HTTP/1.1\r\nHost: t\r\n\r\n");
  ASSERT_GT(::recv(fd, buf, sizeof(buf), 0), 0);
  limiter_.Join();
  server_->Stop(milliseconds(0));
  ::close(fd);
  EXPECT_EQ(limiter_.releases(), 2);
  EXPECT_TRUE(limiter_.AllReleasedOnce());
}

// Verifies that a held request reaches the upstream after its hold, and that the thread serves
// another connection meanwhile.
TEST_F(ProxyServerTest, HoldWaitsOnATimerWithoutBlockingTheThread) {
  TestUpstream upstream;
  Start(upstream.port());
  const auto sent = Clock::now();
  std::string held;
  std::thread client([&] { held = Get("/held"); });
  std::this_thread::sleep_for(milliseconds(50));
  EXPECT_NE(Get("/quick").find("200 OK"), std::string::npos);
  const auto quick_done = Clock::now();
  client.join();
  EXPECT_NE(held.find("200 OK"), std::string::npos);
  EXPECT_GE(upstream.arrival("/held") - sent, milliseconds(1000));
  EXPECT_LT(upstream.arrival("/quick"), upstream.arrival("/held"));
  EXPECT_LT(quick_done, upstream.arrival("/held"));
}

}  // namespace
}  // namespace sluice::proxy
