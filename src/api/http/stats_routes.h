// The stats API (CONTRACT §9) under /v1/stats/, behind the admin API's bearer tokens (a read
// token is enough): totals and latency for a window, a per-second timeline for the dashboard's
// chart, the heaviest keys, and one user's rules and recent totals. `scope=cluster` sums every
// server sharing the Redis store (stats/cluster.h).
//
// Local queries run on the calling HTTP thread (a merge of up to an hour of summaries takes some
// milliseconds with top_capacity 10 000, and holds no lock the checks need). A cluster query's
// Redis round trips are asynchronous; its answer is built on the store client's thread.
#pragma once

#include <string_view>

#include "admin/tokens.h"
#include "api/http/server.h"
#include "limiter/limiter.h"
#include "obs/metrics.h"
#include "stats/cluster.h"
#include "stats/recorder.h"

namespace sluice::http {

inline constexpr std::string_view kStatsPrefix = "/v1/stats/";

class StatsRoutes {
 public:
  // Everything must outlive the StatsRoutes; `cluster` may be null (no Redis store: scope=cluster
  // is refused with 400).
  // `enabled` false (stats.enabled: false): every call is authorized, then answered 404.
  StatsRoutes(stats::Recorder& recorder, stats::ClusterStats* cluster, Limiter& limiter,
              admin::Tokens tokens, obs::Metrics& metrics, bool enabled = true);

  // Handles a request whose path starts with kStatsPrefix.
  void Handle(Request& request, Respond respond);

 private:
  stats::Recorder& recorder_;
  stats::ClusterStats* cluster_;
  Limiter& limiter_;
  const admin::Tokens tokens_;
  obs::Metrics& metrics_;
  const bool enabled_;
};

}  // namespace sluice::http
