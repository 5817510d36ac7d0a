// The HTTP API end to end: bytes written to a real server's socket, the response read back. The
// server is the one `sluice serve` runs (app::Server: the fast path, Beast's parser and its
// framing checks, the router, the check, release, forward-auth, /json, admin and stats APIs,
// /health and /metrics), on the memory store with the example rules and a SQLite rules database,
// started once per process. The admin token is `fuzz-admin-token` (in the dictionary), so that
// the admin API's bodies are reached too.
//
// Per input: a new connection, the bytes, the write side shut, and everything the server sends
// until it closes. Whatever the bytes: the server answers with HTTP/1.x responses or nothing,
// closes the connection once the client is done, and never crashes (a crash on any server
// thread ends the process, which libFuzzer reports with the input).
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "app/config.h"
#include "app/server.h"
#include "base/strings.h"
#include "fuzz/fuzz_support.h"

namespace {

using namespace sluice;

uint16_t StartServer() {
  obs::InitLogging(spdlog::level::off, obs::LogFormat::kJson);
  ::setenv("SLUICE_ADMIN_TOKEN", "fuzz-admin-token", 1);
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("sluice-fuzz-http-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  static fuzz::ScratchFile config(".yaml");
  const std::string yaml =
      Cat("listen:\n  http: 127.0.0.1:0\n  grpc: \"\"\n", "store:\n  backend: memory\n",
          "rules:\n  paths: [", fuzz::SourcePath("examples/rules"), "]\n", "  database: sqlite://",
          (dir / "rules.db").string(), "\n", "log:\n  level: error\n");
  std::vector<std::string> problems;
  app::ServerConfig parsed = app::LoadServerConfig(config.Write(yaml), &problems);
  if (!problems.empty()) fuzz::Fail(problems.front(), yaml);
  auto server = app::Server::Create(std::move(parsed));
  if (!server.ok()) fuzz::Fail(server.status().ToString(), yaml);
  if (absl::Status s = (*server)->Start(); !s.ok()) fuzz::Fail(s.ToString(), yaml);
  static std::unique_ptr<app::Server> running = std::move(*server);  // serves until exit
  return running->http_port();
}

// libFuzzer's -timeout alarm (SIGALRM, every second) interrupts blocking calls: they go on.
bool Connect(int fd, const sockaddr_in& address) {
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0) {
    return true;
  }
  if (errno != EINTR) return false;
  // The connection goes on in the background: wait for it, and read how it ended.
  pollfd p{.fd = fd, .events = POLLOUT, .revents = 0};
  while (::poll(&p, 1, 5000) < 0) {
    if (errno != EINTR) return false;
  }
  int error = 0;
  socklen_t length = sizeof(error);
  ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length);
  errno = error;
  return error == 0;
}

void WriteAll(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // the server closed early (e.g. after a 400): what it sent is read
    bytes.remove_prefix(static_cast<size_t>(n));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const uint16_t port = StartServer();
  const std::string_view input = fuzz::Text(data, size);
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) fuzz::Fail("socket()", input);
  const timeval wait{.tv_sec = 5, .tv_usec = 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof(wait));
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (!Connect(fd, address)) {
    fuzz::Fail(Cat("the server does not accept connections any more: ", std::strerror(errno)),
               input);
  }
  WriteAll(fd, input);
  ::shutdown(fd, SHUT_WR);
  std::string response;
  char buffer[16 * 1024];
  for (;;) {
    const ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
    if (n > 0) {
      response.append(buffer, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      fuzz::Fail("the server neither answered nor closed within 5 s of the client's end", input);
    }
    break;  // closed (or reset after an early refusal)
  }
  // Closed with a reset: the client shut its side first, so a plain close would leave the
  // connection in TIME_WAIT here for a minute, and a thousand runs a second would use up the
  // ephemeral ports within 30 s.
  const linger reset{.l_onoff = 1, .l_linger = 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
  ::close(fd);
  if (!response.empty() && response.rfind("HTTP/1.", 0) != 0) {
    fuzz::Fail(
        "the server sent something other than an HTTP/1.x response: " + response.substr(0, 200),
        input);
  }
  return 0;
}
