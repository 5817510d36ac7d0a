// Structured logs: bounded fields, one line per event whatever the fields hold.
#include "obs/log.h"

#include <gtest/gtest.h>

#include <memory>
#include <sstream>
#include <string>

#include "spdlog/sinks/ostream_sink.h"

namespace sluice::obs {
namespace {

// Logs through InitLogging's logger in `format`, into a string instead of stderr.
class LogCapture {
 public:
  explicit LogCapture(LogFormat format) {
    spdlog::drop("sluice");
    InitLogging(spdlog::level::info, format);
    auto logger = spdlog::default_logger();
    logger->sinks().clear();
    logger->sinks().push_back(std::make_shared<spdlog::sinks::ostream_sink_mt>(out_));
    logger->set_pattern("%v");  // the event and its fields only
  }
  // The lines written so far.
  std::string text() const { return out_.str(); }

 private:
  std::ostringstream out_;
};

// Verifies that a rejection log line with a huge key (the request's own user_id) stays small:
// it used to be as long as the key.
TEST(RejectionLogTest, HugeKeysAreCut) {
  LogCapture capture(LogFormat::kJson);
  ManualClock clock(1'000'000);
  RejectionLog log(clock);
  const std::string key = "rule|r|gcra|1000000|user_id=" + std::string(61 * 1024, 'u');
  log.Rejected("r", key, 1000);
  const std::string line = capture.text();
  EXPECT_LT(line.size(), kMaxLogFieldBytes + 200) << line.size();
  EXPECT_NE(line.find("uuu\u2026 (" + std::to_string(key.size()) + " bytes)\""), std::string::npos);
  const nlohmann::json object = nlohmann::json::parse("{" + line + "}");
  EXPECT_EQ(object["rule_id"], "r");
  EXPECT_EQ(object["retry_after_ms"], 1);
}

// Verifies the cut everywhere in a field (strings inside arrays and objects too), on a character
// boundary, and that invalid UTF-8 still gives valid JSON.
TEST(LogEventTest, JsonFieldsAreBoundedAndValid) {
  LogCapture capture(LogFormat::kJson);
  std::string accents = "x";  // then 2-byte characters: byte 4096 is the middle of one
  for (int i = 0; i < 3000; ++i) accents += "\xc3\xa9";
  LogEvent(spdlog::level::info, "test",
           {{"list", nlohmann::json::array({std::string(10000, 'a'), "short"})},
            {"accents", accents},
            {"bad", std::string("\xff\xfe")},
            {"n", 7}});
  const std::string line = capture.text();
  EXPECT_LT(line.size(), 3 * kMaxLogFieldBytes);
  const nlohmann::json object = nlohmann::json::parse("{" + line + "}");
  EXPECT_EQ(object["list"][0], std::string(kMaxLogFieldBytes, 'a') + "\u2026 (10000 bytes)");
  EXPECT_EQ(object["list"][1], "short");
  EXPECT_EQ(object["accents"], accents.substr(0, kMaxLogFieldBytes - 1) + "\u2026 (6001 bytes)");
  EXPECT_EQ(object["bad"], "\ufffd\ufffd");
  EXPECT_EQ(object["n"], 7);
}

// Verifies that in text format no field can start a line of its own: a string with a control
// character is written as a JSON string.
TEST(LogEventTest, TextFieldsStayOnOneLine) {
  LogCapture capture(LogFormat::kText);
  LogEvent(spdlog::level::info, "test",
           {{"plain", "a b"}, {"forged", "x\n2026-01-01T00:00:00Z error fake"}});
  const std::string line = capture.text();
  EXPECT_EQ(line, "test plain=a b forged=\"x\\n2026-01-01T00:00:00Z error fake\"\n");
}

}  // namespace
}  // namespace sluice::obs
