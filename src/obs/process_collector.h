// The standard process_* series of the Prometheus client libraries (client_golang's and
// client_python's process collector, same names, types and help), read from /proc at scrape
// time. Written here because no library Debian packages provides it: prometheus-cpp 1.0 has no
// process collector. Linux only.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"

namespace sluice::obs {

// The fields of /proc/<pid>/stat the collector reads (proc(5)); times in clock ticks.
struct ProcStat {
  uint64_t utime_ticks = 0;      // field 14
  uint64_t stime_ticks = 0;      // field 15
  uint64_t starttime_ticks = 0;  // field 22: since boot
  uint64_t vsize_bytes = 0;      // field 23
  int64_t rss_pages = 0;         // field 24
};

// Parses the text of /proc/<pid>/stat. The command name (field 2) is in parentheses and may hold
// spaces and parentheses itself: fields are counted from its last ')'. nullopt when malformed.
std::optional<ProcStat> ParseProcStat(std::string_view text);

// Exports process_cpu_seconds_total, process_resident_memory_bytes,
// process_virtual_memory_bytes, process_open_fds, process_max_fds and
// process_start_time_seconds for this process. A series whose source cannot be read is left out
// of that scrape. Thread-safe (it holds no state but constants).
class ProcessCollector : public prometheus::Collectable {
 public:
  ProcessCollector();
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  double ticks_per_second_;
  double page_bytes_;
  std::optional<double> boot_time_seconds_;  // /proc/stat btime, read once: it does not change
};

}  // namespace sluice::obs
