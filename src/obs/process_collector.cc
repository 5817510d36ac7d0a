#include "obs/process_collector.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>

namespace sluice::obs {

namespace {

std::optional<std::string> ReadFile(const char* path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

template <typename T>
bool ParseNumber(std::string_view s, T& out) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && end == s.data() + s.size();
}

// /proc/stat's "btime N": the boot time in seconds since the epoch.
std::optional<double> BootTimeSeconds() {
  std::optional<std::string> text = ReadFile("/proc/stat");
  if (!text) return std::nullopt;
  std::istringstream lines(*text);
  for (std::string line; std::getline(lines, line);) {
    constexpr std::string_view kBtime = "btime ";
    if (line.rfind(kBtime, 0) != 0) continue;
    uint64_t seconds = 0;
    if (!ParseNumber(std::string_view(line).substr(kBtime.size()), seconds)) return std::nullopt;
    return static_cast<double>(seconds);
  }
  return std::nullopt;
}

// Entries of /proc/self/fd, the directory's own descriptor excluded.
std::optional<double> OpenFds() {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return std::nullopt;
  const int own = dirfd(dir);
  double n = 0;
  while (const dirent* e = readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    int fd = -1;
    if (ParseNumber(std::string_view(e->d_name), fd) && fd == own) continue;
    ++n;
  }
  closedir(dir);
  return n;
}

prometheus::MetricFamily One(const char* name, const char* help, prometheus::MetricType type,
                             double value) {
  prometheus::ClientMetric metric;
  if (type == prometheus::MetricType::Counter) {
    metric.counter.value = value;
  } else {
    metric.gauge.value = value;
  }
  return {.name = name, .help = help, .type = type, .metric = {metric}};
}

}  // namespace

std::optional<ProcStat> ParseProcStat(std::string_view text) {
  const size_t close = text.rfind(')');
  if (close == std::string_view::npos) return std::nullopt;
  // Fields from 3 (state) on, split on single spaces.
  std::string_view rest = text.substr(close + 1);
  std::vector<std::string_view> fields;
  while (!rest.empty()) {
    const size_t start = rest.find_first_not_of(" \n");
    if (start == std::string_view::npos) break;
    rest.remove_prefix(start);
    const size_t end = std::min(rest.find_first_of(" \n"), rest.size());
    fields.push_back(rest.substr(0, end));
    rest.remove_prefix(end);
  }
  // fields[k] is field k + 3.
  auto field = [&fields](size_t number) { return fields[number - 3]; };
  if (fields.size() < 24 - 2) return std::nullopt;
  ProcStat stat;
  if (!ParseNumber(field(14), stat.utime_ticks) || !ParseNumber(field(15), stat.stime_ticks) ||
      !ParseNumber(field(22), stat.starttime_ticks) || !ParseNumber(field(23), stat.vsize_bytes) ||
      !ParseNumber(field(24), stat.rss_pages)) {
    return std::nullopt;
  }
  return stat;
}

ProcessCollector::ProcessCollector()
    : ticks_per_second_(static_cast<double>(sysconf(_SC_CLK_TCK))),
      page_bytes_(static_cast<double>(sysconf(_SC_PAGESIZE))),
      boot_time_seconds_(BootTimeSeconds()) {}

std::vector<prometheus::MetricFamily> ProcessCollector::Collect() const {
  using prometheus::MetricType;
  std::vector<prometheus::MetricFamily> families;
  std::optional<std::string> text = ReadFile("/proc/self/stat");
  std::optional<ProcStat> stat = text ? ParseProcStat(*text) : std::nullopt;
  if (stat) {
    families.push_back(
        One("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
            MetricType::Counter,
            static_cast<double>(stat->utime_ticks + stat->stime_ticks) / ticks_per_second_));
  }
  if (auto fds = OpenFds()) {
    families.push_back(
        One("process_open_fds", "Number of open file descriptors.", MetricType::Gauge, *fds));
  }
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
    families.push_back(One("process_max_fds", "Maximum number of open file descriptors.",
                           MetricType::Gauge, static_cast<double>(limit.rlim_cur)));
  }
  if (stat) {
    families.push_back(One("process_virtual_memory_bytes", "Virtual memory size in bytes.",
                           MetricType::Gauge, static_cast<double>(stat->vsize_bytes)));
    families.push_back(One("process_resident_memory_bytes", "Resident memory size in bytes.",
                           MetricType::Gauge, static_cast<double>(stat->rss_pages) * page_bytes_));
    if (boot_time_seconds_) {
      families.push_back(One(
          "process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
          MetricType::Gauge,
          *boot_time_seconds_ + static_cast<double>(stat->starttime_ticks) / ticks_per_second_));
    }
  }
  return families;
}

}  // namespace sluice::obs
