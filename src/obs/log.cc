#include "obs/log.h"

#include <algorithm>
#include <memory>
#include <random>
#include <string>

#include "spdlog/sinks/stdout_sinks.h"

namespace sluice::obs {

namespace {

LogFormat g_format = LogFormat::kJson;  // set once by InitLogging before any thread starts

// `value` with every string longer than kMaxLogFieldBytes cut, in arrays and objects too.
nlohmann::json Bounded(const nlohmann::json& value) {
  if (value.is_string()) {
    const auto& s = value.get_ref<const std::string&>();
    if (s.size() <= kMaxLogFieldBytes) return value;
    size_t cut = kMaxLogFieldBytes;
    // Back off continuation bytes (10xxxxxx) so as not to split a character.
    while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
    return s.substr(0, cut) + "\u2026 (" + std::to_string(s.size()) + " bytes)";
  }
  if (value.is_array() || value.is_object()) {
    nlohmann::json out = value;
    for (auto& item : out) item = Bounded(item);
    return out;
  }
  return value;
}

bool HasControlCharacter(const std::string& s) {
  return std::any_of(s.begin(), s.end(), [](char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return c < 0x20 || c == 0x7F;
  });
}

std::string Dump(const nlohmann::json& value) {
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

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
    for (const auto& [k, v] : fields) object[std::string(k)] = Bounded(v);
    line = "\"event\":" + nlohmann::json(event).dump();
    const std::string rest = Dump(object);
    if (rest.size() > 2) line += "," + rest.substr(1, rest.size() - 2);
  } else {
    line = std::string(event);
    for (const auto& [k, v] : fields) {
      const nlohmann::json bounded = Bounded(v);
      const bool plain =
          bounded.is_string() && !HasControlCharacter(bounded.get_ref<const std::string&>());
      line += " " + std::string(k) + "=" +
              (plain ? bounded.get_ref<const std::string&>() : Dump(bounded));
    }
  }
  spdlog::log(level, "{}", line);
}

RejectionLog::RejectionLog(const Clock& clock, int64_t per_second)
    : clock_(clock),
      limit_(per_second > 0
                 ? std::optional<Limit>(*Limit::Create({.algorithm = Algorithm::kTokenBucket,
                                                        .limit = per_second,
                                                        .window = kMicrosPerSecond}))
                 : std::nullopt) {}

std::string RequestId(std::string_view x_request_id, std::string_view traceparent) {
  auto printable = [](std::string_view s) {
    for (char c : s) {
      if (c <= 0x20 || c >= 0x7f) return false;
    }
    return true;
  };
  if (!x_request_id.empty() && x_request_id.size() <= 128 && printable(x_request_id)) {
    return std::string(x_request_id);
  }
  auto hex = [](std::string_view s) {
    for (char c : s) {
      if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    }
    return true;
  };
  // version "-" trace-id "-" parent-id "-" flags: 2 + 1 + 32 + 1 + 16 + 1 + 2 characters.
  if (traceparent.size() >= 55 && traceparent[2] == '-' && traceparent[35] == '-' &&
      traceparent[52] == '-') {
    const std::string_view trace_id = traceparent.substr(3, 32);
    if (hex(traceparent.substr(0, 2)) && hex(trace_id) &&
        trace_id.find_first_not_of('0') != std::string_view::npos) {
      return std::string(trace_id);
    }
  }
  return "";
}

std::string NewRequestId() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("{:016x}{:016x}", rng(), rng());
}

void RejectionLog::Rejected(std::string_view rule_id, std::string_view key, Micros retry_after,
                            std::string_view request_id) {
  if (!limit_.has_value()) return;
  uint64_t suppressed;
  {
    std::lock_guard lock(mu_);
    if (!TokenBucket::Admit(bucket_, *limit_, clock_.NowMicros(), 1).allowed) {
      ++suppressed_;
      return;
    }
    suppressed = std::exchange(suppressed_, 0);
  }
  const std::string made_up = request_id.empty() ? NewRequestId() : std::string();
  LogEvent(spdlog::level::info, "rate_limit_exceeded",
           {{"rule_id", rule_id},
            {"key", key},
            {"request_id", request_id.empty() ? std::string_view(made_up) : request_id},
            {"retry_after_ms", retry_after / kMicrosPerMilli},
            {"suppressed", suppressed}});
}

}  // namespace sluice::obs
