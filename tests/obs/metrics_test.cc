// Metrics: series that come and go with the rules.
#include "obs/metrics.h"

#include <gtest/gtest.h>

#include <chrono>
#include <optional>
#include <regex>
#include <string>

#include "obs/process_collector.h"

namespace sluice::obs {
namespace {

bool Exported(const Metrics& metrics, const std::string& series) {
  return metrics.Render().find(series) != std::string::npos;
}

// Verifies that a series stays while any RequestSeries references it, keeps its value across
// holders, and goes with the last one; and that series taken with Request() never go.
TEST(RequestSeriesTest, SeriesGoWithTheirLastHolder) {
  Metrics metrics;
  metrics.Request("kept", "allowed");
  std::optional<RequestSeries> old_rules(std::in_place, metrics);
  old_rules->ForRule("r", RuleKind::kEnforced).allowed->Increment();
  old_rules->ForRule("kept", RuleKind::kEnforced);
  EXPECT_EQ(metrics.request_series(), 6u);  // {kept,r}/{allowed,rejected,error}
  {
    RequestSeries new_rules(metrics);
    new_rules.ForRule("r", RuleKind::kEnforced).allowed->Increment();
    old_rules.reset();
    EXPECT_TRUE(Exported(metrics, R"(sluice_requests_total{result="allowed",rule_id="r"} 2)"));
    EXPECT_TRUE(Exported(metrics, R"(rule_id="kept")"));
  }
  EXPECT_FALSE(Exported(metrics, R"(rule_id="r")"));
  // Request() took a reference of its own for "kept"/"allowed": it stays; the others go.
  EXPECT_TRUE(Exported(metrics, R"(sluice_requests_total{result="allowed",rule_id="kept"} 0)"));
  EXPECT_FALSE(Exported(metrics, R"({result="rejected",rule_id="kept"})"));
  EXPECT_EQ(metrics.request_series(), 1u);
  // A series made again starts from zero.
  RequestSeries again(metrics);
  again.Request("r", "allowed");
  EXPECT_TRUE(Exported(metrics, R"(sluice_requests_total{result="allowed",rule_id="r"} 0)"));
}

// The value of the sample line that starts with `series ` in `text`, or nullopt.
std::optional<double> Sample(const std::string& text, const std::string& series) {
  const size_t at = text.find("\n" + series + " ");
  if (at == std::string::npos) return std::nullopt;
  return std::stod(text.substr(at + series.size() + 2));
}

// Verifies that sluice_rule_store_duration_seconds series live as the request counters do:
// shared by holders, gone with the last one, never for the lists' kinds.
TEST(RequestSeriesTest, StoreDurationsGoWithTheirLastHolder) {
  Metrics metrics;
  std::optional<RequestSeries> old_rules(std::in_place, metrics);
  RuleCounters r = old_rules->ForRule("r", RuleKind::kEnforced);
  ASSERT_NE(r.store_duration, nullptr);
  r.store_duration->Observe(0.001);
  EXPECT_NE(old_rules->ForRule("s", RuleKind::kShadow).store_duration, nullptr);
  EXPECT_EQ(old_rules->ForRule("deny_list", RuleKind::kDenyList).store_duration, nullptr);
  EXPECT_EQ(old_rules->ForRule("allow_list", RuleKind::kAllowList).store_duration, nullptr);
  EXPECT_EQ(metrics.rule_store_series(), 2u);
  {
    RequestSeries new_rules(metrics);
    EXPECT_EQ(new_rules.ForRule("r", RuleKind::kEnforced).store_duration, r.store_duration);
    old_rules.reset();
    EXPECT_EQ(metrics.rule_store_series(), 1u);
    EXPECT_EQ(Sample(metrics.Render(), R"(sluice_rule_store_duration_seconds_count{rule_id="r"})"),
              1);
  }
  EXPECT_EQ(metrics.rule_store_series(), 0u);
  EXPECT_FALSE(Exported(metrics, "sluice_rule_store_duration_seconds_count"));
}

// Verifies sluice_build_info, the heavy-hitter gauges (both `by` from the start), and that
// sluice_rules_database_up exists only once asked for (a server without a database has none).
TEST(MetricsTest, BuildInfoStatsAndDatabaseGauges) {
  Metrics metrics("1.2.3");
  EXPECT_EQ(Sample(metrics.Render(), R"(sluice_build_info{version="1.2.3"})"), 1);
  EXPECT_EQ(Sample(metrics.Render(), R"(sluice_stats_top_entries{by="rejected"})"), 0);
  metrics.stats_top_entries("requests").Set(42);
  EXPECT_EQ(Sample(metrics.Render(), R"(sluice_stats_top_entries{by="requests"})"), 42);
  EXPECT_EQ(&metrics.stats_top_entries("requests"), &metrics.stats_top_entries("requests"));
  EXPECT_FALSE(Exported(metrics, "sluice_rules_database_up"));
  metrics.rules_database_up().Set(1);
  EXPECT_EQ(Sample(metrics.Render(), "sluice_rules_database_up"), 1);
}

// Verifies the process_* series: each present with the client libraries' type, and values that
// fit this process (started within the last minute or so, some descriptors open).
TEST(MetricsTest, ProcessSeries) {
  Metrics metrics;
  const std::string text = metrics.Render();
  for (const char* type :
       {"# TYPE process_cpu_seconds_total counter", "# TYPE process_resident_memory_bytes gauge",
        "# TYPE process_virtual_memory_bytes gauge", "# TYPE process_open_fds gauge",
        "# TYPE process_max_fds gauge", "# TYPE process_start_time_seconds gauge"}) {
    EXPECT_TRUE(Exported(metrics, type)) << type << "\n" << text;
  }
  const double now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  const std::optional<double> start = Sample(text, "process_start_time_seconds");
  ASSERT_TRUE(start.has_value()) << text;
  EXPECT_LE(*start, now + 1);
  EXPECT_GT(*start, now - 3600);  // a test binary started well within the hour
  EXPECT_GT(Sample(text, "process_open_fds").value_or(0), 0);
  EXPECT_GE(Sample(text, "process_max_fds").value_or(0), Sample(text, "process_open_fds").value());
  EXPECT_GT(Sample(text, "process_resident_memory_bytes").value_or(0), 0);
  EXPECT_GE(Sample(text, "process_virtual_memory_bytes").value_or(0),
            Sample(text, "process_resident_memory_bytes").value());
  EXPECT_GE(Sample(text, "process_cpu_seconds_total").value_or(-1), 0);
}

// Verifies the /proc/<pid>/stat parser: fields counted from the command name's last ')', which
// may itself hold spaces and parentheses; malformed text is refused.
TEST(ProcStatTest, ParsesFieldsAfterTheCommandName) {
  const std::string stat =
      "1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9 0 5000 "
      "123456789 2048 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
  std::optional<ProcStat> parsed = ParseProcStat(stat);
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->utime_ticks, 250u);
  EXPECT_EQ(parsed->stime_ticks, 75u);
  EXPECT_EQ(parsed->starttime_ticks, 5000u);
  EXPECT_EQ(parsed->vsize_bytes, 123456789u);
  EXPECT_EQ(parsed->rss_pages, 2048);
  EXPECT_FALSE(ParseProcStat("1234 (a) S 1 2 3").has_value());
  EXPECT_FALSE(ParseProcStat("no parenthesis at all").has_value());
  EXPECT_FALSE(ParseProcStat(std::regex_replace(stat, std::regex(" 250 "), " x ")).has_value());
}

}  // namespace
}  // namespace sluice::obs
