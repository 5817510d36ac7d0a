// The HTTP face: routes requests to the limiter and the operational endpoints, and renders every
// error as CONTRACT §5's error object.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "admin/managed_rules.h"
#include "api/http/server.h"
#include "limiter/limiter.h"
#include "obs/metrics.h"

namespace sluice::http {

class EnvoyJsonHandler;  // POST /json, see envoy_json.h
class AdminRoutes;       // /v1/admin/*, see admin_routes.h
class StatsRoutes;       // /v1/stats/*, see stats_routes.h

class Routes {
 public:
  struct ListenerState {
    std::string name;  // "http", "grpc"
    bool exhausted;    // accepting fails for want of file descriptors (it retries)
  };
  struct Info {
    std::string version;
    Micros started_at = 0;  // for uptime_seconds
    // The listeners for /health's "listeners", read on each /health (from any thread); none
    // when unset.
    std::function<std::vector<ListenerState>()> listeners;
    // The rules in force, for /health's "database" and rules.version: with a rules database,
    // the version is the database's. May be null.
    const admin::ManagedRules* managed = nullptr;
  };
  // Everything must outlive the Routes. `envoy` may be null (POST /json answers 404 then), and
  // `admin` and `stats` too (/v1/admin/* and /v1/stats/* answer 403 ADMIN_DISABLED then).
  Routes(Limiter& limiter, obs::Metrics& metrics, Info info, EnvoyJsonHandler* envoy = nullptr,
         AdminRoutes* admin = nullptr, StatsRoutes* stats = nullptr);

  // The server's Handler.
  void Handle(Request& request, Respond respond);
  // The server's FastHandler: takes POST /v1/ratelimit/check with a valid body, and answers it
  // exactly as Handle would; declines everything else (errors included).
  bool HandleFast(const SimpleRequest& request, WireRespond& respond);
  // The server's ErrorRenderer (400, 413, 431, 501 decided before a request reaches Handle).
  Response RenderError(boost::beast::http::status status, unsigned version);

 private:
  void Check(Request& request, Respond respond);
  // POST /v1/ratelimit/release (CONTRACT §10): gives back a check's concurrency slots.
  void Release(Request& request, Respond respond);
  // GET (any method) /v1/ratelimit/auth[/<path>]: CONTRACT §10's forward-auth, see forward_auth.h.
  void ForwardAuth(Request& request, std::string_view suffix, Respond respond);
  // 400 INVALID_REQUEST with `status`'s message, counted.
  Response InvalidRequest(const absl::Status& status, unsigned version);
  void Health(Request& request, Respond respond, bool envoy_style);

  Limiter& limiter_;
  obs::Metrics& metrics_;
  Info info_;
  EnvoyJsonHandler* envoy_;
  AdminRoutes* admin_;
  StatsRoutes* stats_;
};

// The request id a request carries (X-Request-Id, or traceparent's trace id; see
// obs::RequestId), "" when none.
std::string RequestIdOf(const Request& request);

// A JSON response with `status` and `body`.
Response JsonResponse(unsigned status, std::string body, unsigned version = 11);

}  // namespace sluice::http
