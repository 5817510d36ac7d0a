// A limiter on the memory store at a manual clock, for the fuzz targets of the faces that decide
// (POST /json, gRPC).
#pragma once

#include "core/time.h"
#include "fuzz/fuzz_support.h"
#include "limiter/limiter.h"
#include "obs/log.h"
#include "obs/metrics.h"
#include "rules/loader.h"
#include "store/memory/memory_store.h"

namespace sluice::fuzz {

// A limiter on the memory store at a manual clock, with examples/rules/ (a Sluice rules file and
// an Envoy domain file, `edge`) and the Envoy face's every option on. Built once per process.
struct LimiterHarness {
  ManualClock clock{int64_t{1'764'000'000} * kMicrosPerSecond};
  MemoryStore store{clock};
  obs::Metrics metrics;
  obs::RejectionLog rejections{clock};
  EnvoyOptions envoy{.response_headers = true, .dynamic_metadata = true};
  Limiter limiter{store, clock, metrics, rejections, Limiter::Options{.envoy = envoy}};

  LimiterHarness() {
    obs::InitLogging(spdlog::level::off, obs::LogFormat::kJson);
    auto rules = rules::LoadRuleSet({SourcePath("examples/rules")});
    if (!rules.ok()) Fail(rules.status().ToString(), "");
    limiter.SetRules(*rules);
  }
  static LimiterHarness& Get() {
    static LimiterHarness* harness = new LimiterHarness();  // never destroyed: threads may run
    return *harness;
  }
};

}  // namespace sluice::fuzz
