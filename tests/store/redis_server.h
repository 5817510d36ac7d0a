// A redis-server that a test starts on a free loopback port and stops: the real thing, no mock.
// Plus a synchronous hiredis connection for the test's own look at the data.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace sluice::testing {

// A loopback port that was free a moment ago.
inline int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

struct RedisReplyFree {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using SyncReply = std::unique_ptr<redisReply, RedisReplyFree>;

class RedisServer {
 public:
  // `extra` are more redis-server arguments (e.g. {"--requirepass", "secret"}).
  explicit RedisServer(std::vector<std::string> extra = {}) : extra_(std::move(extra)) {
    for (int attempt = 0; attempt < 5; ++attempt) {
      port_ = FreePort();
      if (Start()) return;
    }
    throw std::runtime_error("could not start redis-server");
  }
  // On exactly `port` (one whose number is also in `extra`, say); throws if it does not come up.
  RedisServer(int port, std::vector<std::string> extra) : extra_(std::move(extra)), port_(port) {
    if (!Start()) {
      throw std::runtime_error("could not start redis-server on port " + std::to_string(port));
    }
  }
  ~RedisServer() { Stop(); }

  int port() const { return port_; }
  bool running() const { return pid_ > 0; }
  std::string url(const std::string& path = "") const {
    return "redis://127.0.0.1:" + std::to_string(port_) + path;
  }

  // Starts it (again) on the same port; false if it did not come up.
  bool Start() {
    std::vector<std::string> args = {
        "redis-server", "--port", std::to_string(port_), "--bind", "127.0.0.1",  "--save", "",
        "--appendonly", "no",     "--daemonize",         "no",     "--loglevel", "warning"};
    args.insert(args.end(), extra_.begin(), extra_.end());
    pid_ = fork();
    if (pid_ == 0) {
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      const int null = open("/dev/null", O_WRONLY);
      dup2(null, 1);
      // Dies with the process that started it, even one that crashed (a fuzz target's abort):
      // no redis-server is left behind holding the test's output pipe open.
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      execvp("redis-server", argv.data());
      _exit(127);
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return false;
      }
      timeval tv{0, 200000};
      redisContext* c = redisConnectWithTimeout("127.0.0.1", port_, tv);
      if (c != nullptr && c->err == 0) {
        redisFree(c);
        return true;
      }
      if (c != nullptr) redisFree(c);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    Stop();
    return false;
  }

  // Kills it (SIGKILL: no goodbye to clients, as a crash).
  void Stop(int sig = SIGKILL) {
    if (pid_ <= 0) return;
    kill(pid_, sig);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  // Freezes it (SIGSTOP): connections stay open and nothing answers.
  void Freeze() { kill(pid_, SIGSTOP); }
  void Thaw() { kill(pid_, SIGCONT); }

  // One command on a fresh synchronous connection (AUTH with `password` and SELECT `db` first
  // when given).
  SyncReply Command(const std::vector<std::string>& args, const std::string& password = "",
                    int db = 0) {
    redisContext* c = redisConnect("127.0.0.1", port_);
    if (c == nullptr || c->err != 0) {
      if (c != nullptr) redisFree(c);
      return nullptr;
    }
    if (!password.empty()) {
      freeReplyObject(redisCommand(c, "AUTH %s", password.c_str()));
    }
    if (db != 0) freeReplyObject(redisCommand(c, "SELECT %d", db));
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (const auto& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    auto* r = static_cast<redisReply*>(
        redisCommandArgv(c, static_cast<int>(args.size()), argv.data(), lens.data()));
    redisFree(c);
    return SyncReply(r);
  }

 private:
  std::vector<std::string> extra_;
  int port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace sluice::testing
