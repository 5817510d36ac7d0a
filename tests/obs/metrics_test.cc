// Metrics: series that come and go with the rules.
#include "obs/metrics.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>

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

}  // namespace
}  // namespace sluice::obs
