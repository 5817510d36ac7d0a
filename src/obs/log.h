// Structured logs on spdlog: one line per event, JSON ({"time", "level", "event", fields...}) or
// text ("event key=value ..."), to stderr.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <mutex>
#include <optional>
#include <string_view>
#include <utility>

#include "core/bucket.h"
#include "core/time.h"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"

namespace sluice::obs {

enum class LogFormat { kJson, kText };

// Sets the default spdlog logger: stderr, `level`, `format`. Call once from main.
void InitLogging(spdlog::level::level_enum level, LogFormat format);

using LogField = std::pair<std::string_view, nlohmann::json>;

// The longest string a log field holds (inside arrays and objects too): a field may quote a
// hostile input (a rejected key, a reload error), and one event must stay one bounded line.
inline constexpr size_t kMaxLogFieldBytes = 4096;

// Logs event `event` with `fields`. A string longer than kMaxLogFieldBytes is cut on a UTF-8
// character boundary and ends with "… (N bytes)", its full length. In JSON, invalid UTF-8 is
// replaced (U+FFFD); in text, a string with a control character (a newline) is written as a
// JSON string, so that no field can start a line of its own. Thread-safe.
void LogEvent(spdlog::level::level_enum level, std::string_view event,
              std::initializer_list<LogField> fields = {});

// The request id a caller gave: `x_request_id` (X-Request-Id, gRPC metadata x-request-id) when
// it is 1 to 128 printable ASCII characters, else the trace id of a W3C `traceparent`
// ("00-<32 hex>-<16 hex>-<2 hex>"), else "".
std::string RequestId(std::string_view x_request_id, std::string_view traceparent);
// A random request id: 32 hex digits.
std::string NewRequestId();

// Logs `rate_limit_exceeded` events, at most `per_second` a second with a burst of as many, so
// that an attack cannot flood the log: what it drops is counted and reported as `suppressed` on
// the next line it writes. Keys are the request's own values: LogEvent bounds their length.
// Thread-safe.
class RejectionLog {
 public:
  // `per_second` 0: logs nothing (the embeddable library's default).
  RejectionLog(const Clock& clock, int64_t per_second = 20);
  // `request_id` is the caller's (see RequestId); when empty, a random one is made up, so that
  // every line can be found again.
  void Rejected(std::string_view rule_id, std::string_view key, Micros retry_after,
                std::string_view request_id = {});

 private:
  const Clock& clock_;
  std::optional<Limit> limit_;  // none: per_second 0, nothing is logged
  std::mutex mu_;
  BucketState bucket_;       // guarded by mu_
  uint64_t suppressed_ = 0;  // guarded by mu_
};

}  // namespace sluice::obs
