// bench_openloop: an open-loop (fixed-rate) HTTP/1.1 load for POST /v1/ratelimit/check, for
// bench/redis_modes.sh. wrk is closed-loop (a connection sends its next request only when the
// last one is answered), and h2load's --rps sends one fixed body (so one user), wakes each client
// at most every 10 ms (bursts) and times each request from when it was actually sent; hence this.
//
//   bench_openloop HOST PORT RATE SECONDS CONNS USERS PREFIX [header]
//
// With `header` (for a peer such as nginx limit_req keyed on a header) each request is instead
// `GET /check` with the user in an `X-User: PREFIX<k>` header.
// Request i is due at start + i / RATE (evenly spaced), on connection i % CONNS, with the body
// {"user_id":"PREFIX<k>"}, k uniform in 1..USERS. It is written when due even if that connection
// still waits for earlier answers (HTTP/1.1 pipelining), so a slow answer never holds back a
// later request, and each latency is measured from the request's DUE time to the end of its
// answer (as wrk2 does: no coordinated omission). Requests are sent for SECONDS; answers still
// missing 2 s later are counted as lost.
//
// Prints one line of key=value: due and sent requests, answers by status (200, 429, other),
// lost, the rate achieved, latency percentiles p50 p90 p99 p99.9 max in ms, and lag_p99_ms: the
// 99th percentile of how late the generator itself wrote a request (over ~0.1 ms means it could
// not keep up and the latencies include its own delay).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

namespace {

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "bench_openloop: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

struct Conn {
  int fd = -1;
  std::string out;          // bytes not yet written
  std::string in;           // bytes read, not yet parsed
  std::deque<int64_t> due;  // due time of each request waiting for its answer
  bool want_write = false;  // EPOLLOUT registered
};

// One complete answer at the front of `in`: its length and status, or 0 when incomplete.
size_t ParseAnswer(std::string_view in, int* status) {
  const size_t end = in.find("\r\n\r\n");
  if (end == std::string_view::npos) return 0;
  if (!in.starts_with("HTTP/1.1 ") && !in.starts_with("HTTP/1.0 ")) {
    std::fprintf(stderr, "bench_openloop: not an HTTP answer: %.40s\n",
                 std::string(in.substr(0, 40)).c_str());
    std::exit(1);
  }
  *status = std::atoi(std::string(in.substr(9, 3)).c_str());
  size_t length = std::string_view::npos;
  for (size_t line = in.find("\r\n") + 2; line < end;) {
    const size_t next = in.find("\r\n", line);
    static constexpr char kName[] = "content-length:";
    if (next - line > sizeof(kName) - 1 &&
        strncasecmp(in.data() + line, kName, sizeof(kName) - 1) == 0) {
      length = std::strtoull(std::string(in.substr(line + sizeof(kName) - 1, next - line)).c_str(),
                             nullptr, 10);
    }
    line = next + 2;
  }
  if (length == std::string_view::npos) {
    std::fprintf(stderr, "bench_openloop: an answer without Content-Length\n");
    std::exit(1);
  }
  const size_t total = end + 4 + length;
  return in.size() >= total ? total : 0;
}

double Percentile(std::vector<int64_t>& v, double p) {  // v sorted, ns → ms
  if (v.empty()) return 0;
  size_t i = static_cast<size_t>(p / 100.0 * static_cast<double>(v.size()));
  return static_cast<double>(v[std::min(i, v.size() - 1)]) / 1e6;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 8 && !(argc == 9 && std::string_view(argv[8]) == "header")) {
    std::fprintf(stderr,
                 "usage: bench_openloop HOST PORT RATE SECONDS CONNS USERS PREFIX [header]\n");
    return 2;
  }
  const char* host = argv[1];
  const int port = std::atoi(argv[2]);
  const double rate = std::atof(argv[3]);
  const double seconds = std::atof(argv[4]);
  const int nconns = std::atoi(argv[5]);
  const long users = std::atol(argv[6]);
  const std::string prefix = argv[7];
  const bool header_mode = argc == 9;
  if (port <= 0 || rate <= 0 || seconds <= 0 || nconns <= 0 || users <= 0) {
    std::fprintf(stderr, "bench_openloop: bad arguments\n");
    return 2;
  }

  const int ep = epoll_create1(0);
  if (ep < 0) Die("epoll_create1");
  std::vector<Conn> conns(nconns);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) Die("inet_pton");
  for (int c = 0; c < nconns; ++c) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) Die("socket");
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) Die("connect");
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    conns[c].fd = fd;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = static_cast<uint32_t>(c);
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) Die("epoll_ctl");
  }
  const int timer = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
  if (timer < 0) Die("timerfd_create");
  {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = UINT32_MAX;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, timer, &ev) != 0) Die("epoll_ctl");
  }

  const std::string head = std::string("POST /v1/ratelimit/check HTTP/1.1\r\nHost: ") + host + ":" +
                           std::to_string(port) +
                           "\r\nContent-Type: application/json\r\nContent-Length: ";
  uint64_t rng = 0x9E3779B97F4A7C15ull;
  const auto next_user = [&] {  // xorshift64*
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return static_cast<long>((rng * 2685821657736338717ull >> 11) % static_cast<uint64_t>(users)) +
           1;
  };

  const double interval_ns = 1e9 / rate;
  const uint64_t total = static_cast<uint64_t>(rate * seconds);
  const int64_t start = NowNs() + 1'000'000;  // 1 ms from now
  const auto due_of = [&](uint64_t i) {
    return start + static_cast<int64_t>(static_cast<double>(i) * interval_ns);
  };
  uint64_t next = 0, answered = 0, ok = 0, rejected = 0, other = 0;
  std::vector<int64_t> latency, lag;
  latency.reserve(total);
  lag.reserve(total);

  const auto flush = [&](int c) {
    Conn& k = conns[c];
    while (!k.out.empty()) {
      const ssize_t n = write(k.fd, k.out.data(), k.out.size());
      if (n < 0) {
        if (errno == EAGAIN) break;
        Die("write");
      }
      k.out.erase(0, static_cast<size_t>(n));
    }
    const bool want = !k.out.empty();
    if (want != k.want_write) {
      epoll_event ev{};
      ev.events = EPOLLIN | (want ? EPOLLOUT : 0u);
      ev.data.u32 = static_cast<uint32_t>(c);
      if (epoll_ctl(ep, EPOLL_CTL_MOD, k.fd, &ev) != 0) Die("epoll_ctl");
      k.want_write = want;
    }
  };

  int64_t deadline = due_of(total) + 2'000'000'000;
  std::vector<epoll_event> events(static_cast<size_t>(nconns) + 1);
  std::vector<char> buf(1 << 16);
  std::vector<int> touched;
  while (answered < total) {
    int64_t now = NowNs();
    if (now > deadline) break;
    // Write every request now due.
    touched.clear();
    while (next < total && due_of(next) <= now) {
      const int c = static_cast<int>(next % static_cast<uint64_t>(nconns));
      Conn& k = conns[c];
      if (header_mode) {
        k.out += "GET /check HTTP/1.1\r\nHost: ";
        k.out += host;
        k.out += "\r\nX-User: " + prefix + std::to_string(next_user()) + "\r\n\r\n";
      } else {
        const std::string body = "{\"user_id\":\"" + prefix + std::to_string(next_user()) + "\"}";
        k.out += head;
        k.out += std::to_string(body.size());
        k.out += "\r\n\r\n";
        k.out += body;
      }
      k.due.push_back(due_of(next));
      lag.push_back(now - due_of(next));
      touched.push_back(c);
      ++next;
    }
    for (int c : touched) flush(c);
    // Sleep until the next request is due, or an answer or writable socket arrives.
    int timeout = -1;
    if (next < total) {
      const int64_t at = due_of(next);
      itimerspec its{};
      its.it_value.tv_sec = at / 1'000'000'000;
      its.it_value.tv_nsec = at % 1'000'000'000;
      if (timerfd_settime(timer, TFD_TIMER_ABSTIME, &its, nullptr) != 0) Die("timerfd_settime");
    } else {
      timeout = static_cast<int>(std::max<int64_t>(1, (deadline - now) / 1'000'000));
    }
    const int n = epoll_wait(ep, events.data(), static_cast<int>(events.size()), timeout);
    if (n < 0) {
      if (errno == EINTR) continue;
      Die("epoll_wait");
    }
    for (int e = 0; e < n; ++e) {
      const uint32_t id = events[e].data.u32;
      if (id == UINT32_MAX) {
        uint64_t expirations;
        [[maybe_unused]] ssize_t r = read(timer, &expirations, sizeof expirations);
        continue;
      }
      Conn& k = conns[id];
      if (events[e].events & EPOLLOUT) flush(static_cast<int>(id));
      if (!(events[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
      for (;;) {
        const ssize_t r = read(k.fd, buf.data(), buf.size());
        if (r < 0) {
          if (errno == EAGAIN) break;
          Die("read");
        }
        if (r == 0) {
          std::fprintf(stderr, "bench_openloop: the server closed a connection\n");
          return 1;
        }
        k.in.append(buf.data(), static_cast<size_t>(r));
      }
      const int64_t done = NowNs();
      size_t used = 0;
      int status = 0;
      for (size_t len; (len = ParseAnswer(std::string_view(k.in).substr(used), &status)) > 0;
           used += len) {
        if (k.due.empty()) {
          std::fprintf(stderr, "bench_openloop: an answer to no request\n");
          return 1;
        }
        latency.push_back(done - k.due.front());
        k.due.pop_front();
        ++answered;
        if (status == 200) {
          ++ok;
        } else if (status == 429) {
          ++rejected;
        } else {
          ++other;
        }
      }
      k.in.erase(0, used);
    }
  }
  const double span_s = static_cast<double>(due_of(total) - start) / 1e9;
  std::sort(latency.begin(), latency.end());
  std::sort(lag.begin(), lag.end());
  std::printf(
      "due=%llu sent=%llu ok=%llu rejected=%llu other=%llu lost=%llu rate=%.0f p50_ms=%.3f "
      "p90_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f lag_p99_ms=%.3f\n",
      static_cast<unsigned long long>(total), static_cast<unsigned long long>(next),
      static_cast<unsigned long long>(ok), static_cast<unsigned long long>(rejected),
      static_cast<unsigned long long>(other), static_cast<unsigned long long>(total - answered),
      static_cast<double>(answered) / span_s, Percentile(latency, 50), Percentile(latency, 90),
      Percentile(latency, 99), Percentile(latency, 99.9),
      latency.empty() ? 0.0 : static_cast<double>(latency.back()) / 1e6, Percentile(lag, 99));
  return 0;
}
