// The real `sluice serve` binary as a child process for integration tests: a temporary folder
// with its rules and config, free loopback ports, readiness from its log, SIGTERM and reaping;
// plus a bare HTTP GET and a Prometheus sample reader. Shared by the gRPC test and the
// envoyproxy/ratelimit compatibility suite (tests/compat/).
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#ifndef SLUICE_BIN
#error "SLUICE_BIN must name the sluice binary (set by tests/CMakeLists.txt)"
#endif

namespace sluice::itest {

// Hang detectors, never assertions on speed (sanitizer builds are slow).
constexpr auto kStartTimeout = std::chrono::seconds(20);
constexpr auto kStopTimeout = std::chrono::seconds(15);

// ---------------------------------------------------------------------------------------------
// Harness: temp folder, free ports, fork/exec, readiness, SIGTERM, reaping.

// A loopback port that was free a moment ago; the server may still lose a race for it, which
// SluiceProcess::Start retries.
inline uint16_t FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ADD_FAILURE() << "cannot pick a free port";
  }
  close(fd);
  return ntohs(addr.sin_port);
}

inline std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

using Files = std::map<std::string, std::string>;  // relative path → contents

// One `sluice serve` process with its own temporary folder (rules, log). Killed and reaped on
// destruction if still running.
class SluiceProcess {
 public:
  // `files`: relative path → contents, written before the start. `--rules DIR/rules` is passed
  // when any file is under rules/.
  explicit SluiceProcess(const Files& files) {
    const char* tmp = std::getenv("TMPDIR");
    std::string templ =
        std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/sluice-grpc-it.XXXXXX";
    if (mkdtemp(templ.data()) == nullptr) ADD_FAILURE() << "mkdtemp failed";
    dir_ = templ;
    for (const auto& [rel, text] : files) {
      const auto path = dir_ / rel;
      std::filesystem::create_directories(path.parent_path());
      std::ofstream(path, std::ios::binary) << text;
      if (rel.rfind("rules/", 0) == 0) has_rules_ = true;
    }
  }
  ~SluiceProcess() {
    Kill();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  SluiceProcess(const SluiceProcess&) = delete;
  SluiceProcess& operator=(const SluiceProcess&) = delete;

  // Starts the server on free ports (or `grpc_address` when given) and waits until it logged
  // `started`. Returns false (and records why) when it did not come up.
  bool Start(std::optional<std::string> grpc_address = std::nullopt) {
    for (int attempt = 0; attempt < 5; ++attempt) {
      http_port_ = FreePort();
      grpc_port_ = 0;
      std::string grpc = grpc_address.value_or("");
      if (!grpc_address) {
        do grpc_port_ = FreePort();
        while (grpc_port_ == http_port_);
        grpc = "127.0.0.1:" + std::to_string(grpc_port_);
      }
      Spawn({"serve", "--http", "127.0.0.1:" + std::to_string(http_port_), "--grpc", grpc});
      if (WaitStarted()) return true;
      const bool lost_race = !running() && Log().find("listen_failed") != std::string::npos &&
                             Log().find("in use") != std::string::npos;
      Kill();
      if (!lost_race || grpc_address) break;  // a fixed address cannot be retried
    }
    ADD_FAILURE() << "sluice did not start; log:\n" << Log();
    return false;
  }

  // Runs `sluice serve ARGS` (plus --rules, and --config DIR/sluice.yaml when that file was
  // given) without waiting for anything.
  void Spawn(std::vector<std::string> args) {
    args.insert(args.begin(), SLUICE_BIN);
    if (has_rules_) {
      args.push_back("--rules");
      args.push_back((dir_ / "rules").string());
    }
    if (std::filesystem::exists(dir_ / "sluice.yaml")) {
      args.push_back("--config");
      args.push_back((dir_ / "sluice.yaml").string());
    }
    // Everything the child needs is prepared before fork: after it, only async-signal-safe
    // calls (this process has gRPC threads).
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const std::string log = (dir_ / "server.log").string();
    const int log_fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    const int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    const pid_t parent = getpid();
    const rlim_t nofile = nofile_;
    pid_ = fork();
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive a crashed test
      if (getppid() != parent) _exit(127);
      if (nofile > 0) {  // soft and hard: the server cannot raise it
        const rlimit limit{.rlim_cur = nofile, .rlim_max = nofile};
        setrlimit(RLIMIT_NOFILE, &limit);
      }
      dup2(null_fd, STDIN_FILENO);
      dup2(log_fd, STDOUT_FILENO);
      dup2(log_fd, STDERR_FILENO);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(log_fd);
    close(null_fd);
    if (pid_ < 0) ADD_FAILURE() << "fork failed";
  }

  // Waits until the log says `started` (both listeners up); false when the process exited or
  // the hang detector fired. Learns the gRPC port from the log (for --grpc HOST:0).
  bool WaitStarted() {
    const auto deadline = std::chrono::steady_clock::now() + kStartTimeout;
    while (std::chrono::steady_clock::now() < deadline) {
      // {"time":…,"event":"started","grpc":"127.0.0.1:0 (port 40123)",…}
      const std::string log = Log();
      const size_t started = log.find(R"("event":"started")");
      const size_t grpc = log.find(R"("grpc":")", started == std::string::npos ? 0 : started);
      const size_t port = log.find("(port ", grpc == std::string::npos ? 0 : grpc);
      if (started != std::string::npos && grpc != std::string::npos && port != std::string::npos &&
          port < log.find('"', grpc + 8)) {  // inside the "grpc" value
        grpc_port_ = static_cast<uint16_t>(std::stoi(log.substr(port + 6)));
        return true;
      }
      if (!running()) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }

  bool running() {
    if (pid_ <= 0) return false;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      exit_status_ = status;
      pid_ = -1;
      return false;
    }
    return true;
  }

  // Sends SIGTERM and waits for the exit; the raw wait status (-1 on a hang, then killed).
  int Terminate() { return SignalAndWait(SIGTERM); }

  // The raw wait status once the process has exited by itself (within the start timeout).
  int WaitExit() {
    const auto deadline = std::chrono::steady_clock::now() + kStartTimeout;
    while (running() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (running()) {
      Kill();
      return -1;
    }
    return exit_status_;
  }

  void Kill() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
  }

  std::string Log() const { return ReadFile(dir_ / "server.log"); }
  // The server's limit on open files (soft and hard), from the next Spawn on; 0: inherited.
  void set_nofile(rlim_t n) { nofile_ = n; }
  uint16_t http_port() const { return http_port_; }
  uint16_t grpc_port() const { return grpc_port_; }
  std::string grpc_target() const { return "127.0.0.1:" + std::to_string(grpc_port_); }

 private:
  int SignalAndWait(int sig) {
    if (!running()) return exit_status_;
    kill(pid_, sig);
    const auto deadline = std::chrono::steady_clock::now() + kStopTimeout;
    while (running()) {
      if (std::chrono::steady_clock::now() > deadline) {
        Kill();
        return -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return exit_status_;
  }

  std::filesystem::path dir_;
  bool has_rules_ = false;
  pid_t pid_ = -1;
  int exit_status_ = -1;
  uint16_t http_port_ = 0;
  uint16_t grpc_port_ = 0;
  rlim_t nofile_ = 0;
};

// GET `path` on the HTTP port; the whole response (head and body) as text.
inline std::string HttpGet(uint16_t port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  timeval tv{.tv_sec = 10, .tv_usec = 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string out;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    const std::string req =
        "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if (write(fd, req.data(), req.size()) == static_cast<ssize_t>(req.size())) {
      char buf[65536];
      for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
    }
  }
  close(fd);
  return out;
}

// The value of one Prometheus sample (exact label text), 0 when absent.
inline double MetricValue(const std::string& metrics, const std::string& sample) {
  std::istringstream in(metrics);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(sample + " ", 0) == 0) return std::stod(line.substr(sample.size() + 1));
  }
  return 0;
}

}  // namespace sluice::itest
