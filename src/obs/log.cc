#include "obs/log.h"

#include <memory>

#include "spdlog/sinks/stdout_sinks.h"

namespace sluice::obs {

namespace {
LogFormat g_format = LogFormat::kJson;  // set once by InitLogging before any thread starts
}  // namespace

void InitLogging(spdlog::level::level_enum level, LogFormat format) {
  g_format = format;
  auto logger = spdlog::stderr_logger_mt("sluice");
  if (format == LogFormat::kJson) {
    // The message is the rest of the JSON object, built by LogEvent.
    logger->set_pattern(R"({"time":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l",%v})",
                        spdlog::pattern_time_type::utc);
  } else {
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%fZ %l %v", spdlog::pattern_time_type::utc);
  }
  logger->set_level(level);
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(std::move(logger));
}

void LogEvent(spdlog::level::level_enum level, std::string_view event,
              std::initializer_list<LogField> fields) {
  if (!spdlog::should_log(level)) return;
  std::string line;
  if (g_format == LogFormat::kJson) {
    nlohmann::json object = nlohmann::json::object();
    for (const auto& [k, v] : fields) object[std::string(k)] = v;
    line = "\"event\":" + nlohmann::json(event).dump();
    const std::string rest = object.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    if (rest.size() > 2) line += "," + rest.substr(1, rest.size() - 2);
  } else {
    line = std::string(event);
    for (const auto& [k, v] : fields) {
      line += " " + std::string(k) + "=" +
              (v.is_string() ? v.get<std::string>()
                             : v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    }
  }
  spdlog::log(level, "{}", line);
}

RejectionLog::RejectionLog(const Clock& clock, int64_t per_second)
    : clock_(clock),
      limit_(*Limit::Create({.algorithm = Algorithm::kTokenBucket,
                             .limit = per_second,
                             .window = kMicrosPerSecond})) {}

void RejectionLog::Rejected(std::string_view rule_id, std::string_view key, Micros retry_after) {
  uint64_t suppressed;
  {
    std::lock_guard lock(mu_);
    if (!TokenBucket::Admit(bucket_, limit_, clock_.NowMicros(), 1).allowed) {
      ++suppressed_;
      return;
    }
    suppressed = std::exchange(suppressed_, 0);
  }
  LogEvent(spdlog::level::info, "rate_limit_exceeded",
           {{"rule_id", rule_id},
            {"key", key},
            {"retry_after_ms", retry_after / kMicrosPerMilli},
            {"suppressed", suppressed}});
}

}  // namespace sluice::obs
