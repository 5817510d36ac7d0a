#include "api/http/stats_routes.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <memory>
#include <optional>
#include <utility>

#include "api/http/bearer_auth.h"
#include "api/http/check_codec.h"
#include "api/http/framing.h"
#include "api/http/request_target.h"
#include "api/http/routes.h"
#include "base/strings.h"
#include "core/int_math.h"
#include "nlohmann/json.hpp"

namespace sluice::http {

namespace bhttp = boost::beast::http;
using json = nlohmann::json;
using stats::Counts;
using stats::Ranking;

namespace {

constexpr int64_t kDefaultWindow = 300;
constexpr size_t kMaxTimelinePoints = 300;
constexpr size_t kDefaultTopLimit = 10;
constexpr size_t kMaxTopLimit = 1000;

// Milliseconds with three decimals.
double Ms(double ms) { return std::round(ms * 1000) / 1000; }

// "1m" | "5m" | "15m" | "1h" (CONTRACT §9) in seconds; nullopt for anything else.
std::optional<int64_t> WindowSeconds(const std::string* given) {
  if (given == nullptr) return kDefaultWindow;
  if (*given == "1m") return 60;
  if (*given == "5m") return 300;
  if (*given == "15m") return 900;
  if (*given == "1h") return 3600;
  return std::nullopt;
}

json RenderCounts(const Counts& c, int64_t window, std::string_view scope) {
  std::vector<std::pair<std::string, stats::RuleCounts>> rules(c.by_rule.begin(), c.by_rule.end());
  std::sort(rules.begin(), rules.end(), [](const auto& a, const auto& b) {
    if (a.second.rejected != b.second.rejected) return a.second.rejected > b.second.rejected;
    if (a.second.allowed != b.second.allowed) return a.second.allowed > b.second.allowed;
    return a.first < b.first;
  });
  json by_rule = json::array();
  for (const auto& [id, rc] : rules) {
    by_rule.push_back({{"rule_id", id}, {"allowed", rc.allowed}, {"rejected", rc.rejected}});
  }
  return {{"window_seconds", window},
          {"scope", scope},
          {"requests", c.requests},
          {"allowed", c.allowed},
          {"rejected", c.rejected},
          {"blocked", c.blocked},
          {"shadow_rejected", c.shadow_rejected},
          {"errors", c.errors},
          {"rejection_rate", c.requests == 0 ? 0.0
                                             : std::round(static_cast<double>(c.rejected) /
                                                          static_cast<double>(c.requests) * 1e6) /
                                                   1e6},
          {"p50_ms", Ms(c.LatencyQuantileMs(0.5))},
          {"p99_ms", Ms(c.LatencyQuantileMs(0.99))},
          {"by_rule", std::move(by_rule)}};
}

json RenderTimeline(const std::vector<stats::Recorder::Second>& seconds, int64_t window,
                    int64_t step, std::string_view scope) {
  json points = json::array();
  for (size_t i = 0; i < seconds.size(); i += static_cast<size_t>(step)) {
    Counts sum;
    for (size_t j = i; j < std::min(seconds.size(), i + static_cast<size_t>(step)); ++j) {
      sum.Add(seconds[j].counts);
    }
    points.push_back({{"at", seconds[i].at},
                      {"requests", sum.requests},
                      {"allowed", sum.allowed},
                      {"rejected", sum.rejected},
                      {"blocked", sum.blocked},
                      {"shadow_rejected", sum.shadow_rejected},
                      {"errors", sum.errors},
                      {"p50_ms", Ms(sum.LatencyQuantileMs(0.5))},
                      {"p99_ms", Ms(sum.LatencyQuantileMs(0.99))}});
  }
  return {{"window_seconds", window},
          {"step_seconds", step},
          {"scope", scope},
          {"points", std::move(points)}};
}

json RenderKey(const stats::DecodedKey& key) {
  json attributes = json::object();
  for (const auto& [name, value] : key.attributes) attributes[name] = value;
  return attributes;
}

json RenderTop(const stats::SpaceSaving& summary, const std::string* rule_id, size_t limit) {
  // Keys of one rule share a prefix (rules::RuleSet::CounterKey); Envoy descriptors' keys are
  // filtered on their domain after decoding.
  const std::string prefix = rule_id != nullptr ? stats::RuleKeyPrefix(*rule_id) : "";
  std::vector<stats::SpaceSaving::Entry> entries = summary.Top(limit, prefix);
  if (rule_id != nullptr && entries.size() < limit) {
    for (stats::SpaceSaving::Entry& e : summary.Top(summary.size(), "envoy|")) {
      if (entries.size() >= limit) break;
      if (stats::DecodeCounterKey(e.key).rule_id == *rule_id) entries.push_back(std::move(e));
    }
  }
  json out = json::array();
  for (const stats::SpaceSaving::Entry& e : entries) {
    const stats::DecodedKey key = stats::DecodeCounterKey(e.key);
    out.push_back({{"rule_id", key.rule_id},
                   {"key", RenderKey(key)},
                   {"count", e.count},
                   {"error", e.error}});
  }
  return out;
}

// Answers one stats call, possibly from the store client's thread (cluster scope).
struct Reply {
  Respond respond;
  unsigned version;
  obs::Metrics* metrics;

  void Ok(const json& body) {
    std::move(respond)(
        JsonResponse(200, body.dump(-1, ' ', false, json::error_handler_t::replace), version));
  }
  void StoreFailed(const absl::Status& status) {
    metrics->http_errors("STORE_UNAVAILABLE").Increment();
    Response res = JsonResponse(
        503,
        ErrorBody("STORE_UNAVAILABLE", Cat("The shared store did not answer: ", status.message())),
        version);
    res.set(bhttp::field::retry_after, "1");
    std::move(respond)(std::move(res));
  }
};

}  // namespace

StatsRoutes::StatsRoutes(stats::Recorder& recorder, stats::ClusterStats* cluster, Limiter& limiter,
                         admin::Tokens tokens, obs::Metrics& metrics, bool enabled)
    : recorder_(recorder),
      cluster_(cluster),
      limiter_(limiter),
      tokens_(std::move(tokens)),
      metrics_(metrics),
      enabled_(enabled) {}

void StatsRoutes::Handle(Request& request, Respond respond) {
  const unsigned version = request.version();
  auto reply = std::make_shared<Reply>(Reply{std::move(respond), version, &metrics_});
  auto error = [&](unsigned status, std::string_view code, std::string_view message) {
    metrics_.http_errors(code).Increment();
    std::move(reply->respond)(JsonResponse(status, ErrorBody(code, message), version));
  };
  std::string actor;
  if (std::optional<Response> refused =
          Authorize(tokens_, request, admin::Role::kRead, metrics_, &actor)) {
    return std::move(reply->respond)(std::move(*refused));
  }
  if (!enabled_) {
    return error(404, "NOT_FOUND", "The stats are off on this server (stats.enabled: false).");
  }
  if (request.method() != bhttp::verb::get && request.method() != bhttp::verb::head) {
    metrics_.http_errors("METHOD_NOT_ALLOWED").Increment();
    Response res = JsonResponse(
        405, ErrorBody("METHOD_NOT_ALLOWED", "Method not allowed on this endpoint."), version);
    res.set(bhttp::field::allow, "GET, HEAD");
    return std::move(reply->respond)(std::move(res));
  }
  const RequestTarget target = ParseRequestTarget(
      std::string_view(request.target().data(), request.target().size()), kStatsPrefix);
  if (target.malformed) {
    return error(400, "INVALID_REQUEST", "Malformed percent-encoding in the request target.");
  }
  const std::vector<std::string>& segments = target.segments;
  const std::string_view what = segments.empty() ? "" : std::string_view(segments[0]);

  const std::optional<int64_t> window = WindowSeconds(target.Param("window"));
  if (!window.has_value()) {
    return error(400, "INVALID_REQUEST", "window must be one of 1m, 5m, 15m, 1h.");
  }
  const std::string* scope_param = target.Param("scope");
  const bool cluster = scope_param != nullptr && *scope_param == "cluster";
  if (scope_param != nullptr && !cluster && *scope_param != "local") {
    return error(400, "INVALID_REQUEST", "scope must be local or cluster.");
  }
  if (cluster && cluster_ == nullptr) {
    return error(400, "INVALID_REQUEST",
                 "scope=cluster needs a shared Redis store (store.backend redis, redis_cluster or "
                 "redis_sharded); this server counts alone.");
  }
  const std::string_view scope = cluster ? "cluster" : "local";
  if (what == "global" && segments.size() == 1) {
    if (!cluster) return reply->Ok(RenderCounts(recorder_.Window(*window), *window, scope));
    return cluster_->Window(*window,
                            [reply, window = *window, scope](absl::StatusOr<Counts> counts) {
                              if (!counts.ok()) return reply->StoreFailed(counts.status());
                              reply->Ok(RenderCounts(*counts, window, scope));
                            });
  }
  if (what == "timeline" && segments.size() == 1) {
    const int64_t step =
        std::max<int64_t>(1, (*window + kMaxTimelinePoints - 1) / kMaxTimelinePoints);
    const Micros now_us = recorder_.clock().NowMicros();
    const int64_t now = now_us / kMicrosPerSecond;
    // Whole steps ending with the current second.
    const int64_t from = now - (*window / step) * step + 1;
    if (!cluster) {
      return reply->Ok(RenderTimeline(recorder_.Seconds(from, now), *window, step, scope));
    }
    return cluster_->Seconds(from, now,
                             [reply, window = *window, step,
                              scope](absl::StatusOr<std::vector<stats::Recorder::Second>> seconds) {
                               if (!seconds.ok()) return reply->StoreFailed(seconds.status());
                               reply->Ok(RenderTimeline(*seconds, window, step, scope));
                             });
  }
  if (what == "top" && segments.size() == 1) {
    const std::string* by = target.Param("by");
    if (by != nullptr && *by != "rejected" && *by != "requests") {
      return error(400, "INVALID_REQUEST", "by must be rejected or requests.");
    }
    const Ranking ranking =
        by != nullptr && *by == "requests" ? Ranking::kRequests : Ranking::kRejected;
    size_t limit = kDefaultTopLimit;
    if (const std::string* given = target.Param("limit")) {
      const auto [end, ec] = std::from_chars(given->data(), given->data() + given->size(), limit);
      if (ec != std::errc() || end != given->data() + given->size() || limit == 0 ||
          limit > kMaxTopLimit) {
        return error(400, "INVALID_REQUEST",
                     Cat("limit must be an integer from 1 to ", kMaxTopLimit, "."));
      }
    }
    const std::string* rule_param = target.Param("rule_id");
    std::optional<std::string> rule_id;
    if (rule_param != nullptr) rule_id = *rule_param;
    const int64_t minutes = *window / 60;
    if (!cluster) {
      return reply->Ok(RenderTop(recorder_.Top(ranking, minutes),
                                 rule_id.has_value() ? &*rule_id : nullptr, limit));
    }
    return cluster_->Top(
        ranking, minutes,
        [reply, rule_id = std::move(rule_id), limit](absl::StatusOr<stats::SpaceSaving> summary) {
          if (!summary.ok()) return reply->StoreFailed(summary.status());
          reply->Ok(RenderTop(*summary, rule_id.has_value() ? &*rule_id : nullptr, limit));
        });
  }
  if (what == "users" && segments.size() == 2 && !segments[1].empty()) {
    rules::RequestAttributes attributes;
    attributes.user_id = segments[1];
    // The summaries are merged here, on the HTTP thread: the Peek callback may run on the store
    // client's thread, which must not be kept from its other replies.
    auto requests =
        std::make_shared<const stats::SpaceSaving>(recorder_.Top(Ranking::kRequests, 60));
    auto rejected =
        std::make_shared<const stats::SpaceSaving>(recorder_.Top(Ranking::kRejected, 60));
    return limiter_.Peek(
        attributes, [reply, requests, rejected, user = segments[1]](Limiter::PeekResult peek) {
          json rules = json::array();
          // The user's recent totals come from the heavy-hitter summaries of the last hour: each
          // rule counts the user's checks under its key; a check counts once under every rule that
          // applies, so the user's totals are the most any of its rules counted.
          // Every key of any rule counting per this user (whether or not the rule applies to a
          // check with only a user_id): the most any one rule counted.
          uint64_t recent_requests = 0;
          uint64_t recent_rejected = 0;
          uint64_t recent_error = 0;
          auto is_users = [&user](const std::string& key) {
            for (const auto& [name, value] : stats::DecodeCounterKey(key).attributes) {
              if (name == "user_id" && value == user) return true;
            }
            return false;
          };
          for (const stats::SpaceSaving::Entry& e : requests->Top(requests->size())) {
            if (e.count > recent_requests && is_users(e.key)) {
              recent_requests = e.count;
              recent_error = e.error;
            }
          }
          for (const stats::SpaceSaving::Entry& e : rejected->Top(rejected->size())) {
            if (e.count > recent_rejected && is_users(e.key)) recent_rejected = e.count;
          }
          for (size_t i = 0; i < peek.applied.size(); ++i) {
            const rules::Rule& rule = *peek.applied[i];
            const Decision& d = peek.decisions[i];
            const stats::SpaceSaving::Entry req = requests->Estimate(peek.keys[i]);
            const stats::SpaceSaving::Entry rej = rejected->Estimate(peek.keys[i]);
            json entry = {{"rule_id", rule.id},
                          {"algorithm", AlgorithmName(rule.limit.algorithm())},
                          {"limit", rule.limit.limit()},
                          {"window_seconds", CeilSeconds(rule.limit.window())},
                          {"mode", rule.mode == rules::RuleMode::kEnforce ? "enforce" : "shadow"},
                          {"recent",
                           {{"requests", req.count},
                            {"rejected", rej.count},
                            {"error", std::max(req.error, rej.error)}}}};
            if (peek.status.ok()) {
              entry["remaining"] = d.remaining;
              entry["reset_at"] = CeilSeconds(int_math::SatAdd(peek.now, d.reset_after));
            } else {
              entry["remaining"] = nullptr;
              entry["reset_at"] = nullptr;
            }
            rules.push_back(std::move(entry));
          }
          json body = {{"user_id", user},
                       {"tier", peek.tier.empty() ? json(nullptr) : json(peek.tier)},
                       {"rules", std::move(rules)},
                       {"recent",
                        {{"window_seconds", 3600},
                         {"requests", recent_requests},
                         {"allowed", recent_requests - std::min(recent_requests, recent_rejected)},
                         {"rejected", recent_rejected},
                         {"error", recent_error}}}};
          if (!peek.status.ok()) body["store_error"] = std::string(peek.status.message());
          reply->Ok(body);
        });
  }
  error(404, "NOT_FOUND", "No such endpoint.");
}

}  // namespace sluice::http
