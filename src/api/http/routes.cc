#include "api/http/routes.h"

#include "absl/strings/str_cat.h"
#include "api/http/admin_routes.h"
#include "api/http/check_codec.h"
#include "api/http/envoy_json.h"
#include "api/http/forward_auth.h"
#include "api/http/framing.h"
#include "api/http/stats_routes.h"
#include "api/http/ui_routes.h"
#include "boost/beast/http/field.hpp"
#include "boost/beast/http/status.hpp"
#include "nlohmann/json.hpp"
#include "obs/log.h"

namespace sluice::http {

namespace bhttp = boost::beast::http;
using json = nlohmann::json;

namespace {

struct ErrorKind {
  const char* code;
  const char* message;
};

ErrorKind ErrorFor(bhttp::status status) {
  switch (status) {
    case bhttp::status::bad_request:
      return {"INVALID_REQUEST", "Malformed HTTP request."};
    case bhttp::status::payload_too_large:
      return {"PAYLOAD_TOO_LARGE", "Request body exceeds 64 KiB."};
    case bhttp::status::request_header_fields_too_large:
      return {"HEADERS_TOO_LARGE", "Request headers exceed 16 KiB or 100 fields."};
    case bhttp::status::not_found:
      return {"NOT_FOUND", "No such endpoint."};
    case bhttp::status::service_unavailable:
      return {"SERVER_BUSY",
              "The server is at its connection limit: only health checks are answered on this "
              "connection."};
    case bhttp::status::method_not_allowed:
      return {"METHOD_NOT_ALLOWED", "Method not allowed on this endpoint."};
    case bhttp::status::not_implemented:
      return {"NOT_IMPLEMENTED", "Transfer-Encoding other than chunked is not supported."};
    default:
      return {"INTERNAL", "Internal error."};
  }
}

}  // namespace

std::string RequestIdOf(const Request& request) {
  auto header = [&](std::string_view name) {
    auto it = request.find(boost::beast::string_view(name.data(), name.size()));
    return it == request.end() ? std::string_view()
                               : std::string_view(it->value().data(), it->value().size());
  };
  return obs::RequestId(header("x-request-id"), header("traceparent"));
}

Response JsonResponse(unsigned status, std::string body, unsigned version) {
  Response res(static_cast<bhttp::status>(status), version);
  res.set(bhttp::field::content_type, "application/json");
  res.body() = std::move(body);
  return res;
}

Routes::Routes(Limiter& limiter, obs::Metrics& metrics, Info info, EnvoyJsonHandler* envoy,
               AdminRoutes* admin, StatsRoutes* stats)
    : limiter_(limiter),
      metrics_(metrics),
      info_(std::move(info)),
      envoy_(envoy),
      admin_(admin),
      stats_(stats) {}

Response Routes::RenderError(bhttp::status status, unsigned version) {
  const ErrorKind kind = ErrorFor(status);
  metrics_.http_errors(kind.code).Increment();
  return JsonResponse(static_cast<unsigned>(status), ErrorBody(kind.code, kind.message), version);
}

void Routes::Handle(Request& request, Respond respond) {
  const std::string_view target(request.target().data(), request.target().size());
  const std::string_view path = TargetPath(target);
  const bhttp::verb method = request.method();
  // HEAD is GET without the body (RFC 9110 §9.3.2): the server writes the headers only.
  auto only = [&](bhttp::verb allowed) {
    if (method == allowed || (allowed == bhttp::verb::get && method == bhttp::verb::head)) {
      return true;
    }
    Response res = RenderError(bhttp::status::method_not_allowed, request.version());
    res.set(bhttp::field::allow, allowed == bhttp::verb::get ? "GET, HEAD" : "POST");
    std::move(respond)(std::move(res));
    return false;
  };
  if (path == "/v1/ratelimit/check") {
    if (only(bhttp::verb::post)) Check(request, std::move(respond));
  } else if (path == "/v1/ratelimit/release") {
    if (only(bhttp::verb::post)) Release(request, std::move(respond));
  } else if (const std::optional<std::string_view> suffix = ForwardAuthSuffix(path)) {
    // Any method: Envoy's ext_authz asks with the original request's (nginx and Traefik: GET).
    ForwardAuth(request, *suffix, std::move(respond));
  } else if (path.starts_with(kAdminPrefix) || path.starts_with(kStatsPrefix)) {
    const bool stats = path.starts_with(kStatsPrefix);
    if (stats && stats_ != nullptr) {
      stats_->Handle(request, std::move(respond));
    } else if (!stats && admin_ != nullptr) {
      admin_->Handle(request, std::move(respond));
    } else {
      metrics_.http_errors("ADMIN_DISABLED").Increment();
      std::move(respond)(JsonResponse(
          403,
          ErrorBody("ADMIN_DISABLED",
                    "The admin API is off: configure admin.tokens or SLUICE_ADMIN_TOKEN."),
          request.version()));
    }
  } else if (path == "/json" && envoy_ != nullptr) {
    if (only(bhttp::verb::post)) envoy_->Handle(request, std::move(respond));
  } else if (path == "/health") {
    if (only(bhttp::verb::get)) Health(request, std::move(respond), false);
  } else if (path == "/healthcheck") {
    if (only(bhttp::verb::get)) Health(request, std::move(respond), true);
  } else if (path == "/metrics") {
    if (only(bhttp::verb::get)) {
      Response res(bhttp::status::ok, request.version());
      res.set(bhttp::field::content_type, "text/plain; version=0.0.4");
      res.body() = metrics_.Render();
      std::move(respond)(std::move(res));
    }
  } else if (IsUiPath(path)) {
    std::move(respond)(ServeUi(request));
  } else {
    std::move(respond)(RenderError(bhttp::status::not_found, request.version()));
  }
}

Response Routes::InvalidRequest(const absl::Status& status, unsigned version) {
  metrics_.http_errors("INVALID_REQUEST").Increment();
  return JsonResponse(
      400,
      ErrorBody("INVALID_REQUEST", std::string(status.message().data(), status.message().size())),
      version);
}

void Routes::Check(Request& request, Respond respond) {
  absl::StatusOr<CheckRequest> parsed = ParseCheckRequest(request.body());
  if (!parsed.ok()) {
    std::move(respond)(InvalidRequest(parsed.status(), request.version()));
    return;
  }
  parsed->request_id = RequestIdOf(request);
  const unsigned version = request.version();
  limiter_.Check(std::move(*parsed),
                 [respond = std::move(respond), version](CheckResult result) mutable {
                   Rendered rendered = RenderCheckResult(result);
                   Response res = JsonResponse(rendered.status, std::move(rendered.body), version);
                   for (auto& [name, value] : rendered.headers) res.set(name, value);
                   std::move(respond)(std::move(res));
                 });
}

bool Routes::HandleFast(const SimpleRequest& request, WireRespond& respond) {
  if (request.method != "POST" || TargetPath(request.target) != "/v1/ratelimit/check") return false;
  absl::StatusOr<CheckRequest> parsed = ParseCheckRequest(request.body);
  if (!parsed.ok()) return false;  // the general path answers (and counts) the 400
  parsed->request_id =
      obs::RequestId(request.Header("x-request-id"), request.Header("traceparent"));
  limiter_.Check(std::move(*parsed), [respond = std::move(respond)](CheckResult result) mutable {
    // Header lines straight into the wire response, in Check's order: Content-Type, then the
    // limit headers; then the body.
    class WireSink : public HeaderSink {
     public:
      explicit WireSink(std::string& wire) : wire_(wire) {}
      void Add(std::string_view name, std::string_view value) override {
        wire_.append(name).append(": ").append(value).append("\r\n");
      }

     private:
      std::string& wire_;
    };
    WireResponse res;
    res.wire.reserve(384);
    res.wire.append("Content-Type: application/json\r\n");
    WireSink sink(res.wire);
    // The body is rendered after the headers; it goes to its own buffer until they are all in.
    thread_local std::string body;
    body.clear();
    res.status = RenderCheckInto(result, sink, body);
    res.body_offset = res.wire.size();
    res.wire.append(body);
    std::move(respond)(std::move(res));
  });
  return true;
}

void Routes::Release(Request& request, Respond respond) {
  const unsigned version = request.version();
  absl::StatusOr<std::string> lease_id = ParseReleaseRequest(request.body());
  if (!lease_id.ok()) return std::move(respond)(InvalidRequest(lease_id.status(), version));
  limiter_.Release(
      *lease_id, [this, respond = std::move(respond), version](absl::Status status) mutable {
        if (absl::IsInvalidArgument(status)) {
          return std::move(respond)(InvalidRequest(status, version));
        }
        if (!status.ok()) {
          // The slot stays held until its lease_ttl: say so, and let the caller retry.
          metrics_.http_errors("STORE_UNAVAILABLE").Increment();
          Response res = JsonResponse(
              503,
              ErrorBody("STORE_UNAVAILABLE",
                        "The rate limit store could not be reached: the slot is freed when its "
                        "lease_ttl ends, or by a retry."),
              version);
          res.set(bhttp::field::retry_after, "1");
          return std::move(respond)(std::move(res));
        }
        std::move(respond)(JsonResponse(200, R"({"released":true})", version));
      });
}

void Routes::ForwardAuth(Request& request, std::string_view suffix, Respond respond) {
  absl::StatusOr<CheckRequest> parsed = ParseForwardAuth(request, suffix);
  if (!parsed.ok()) {
    std::move(respond)(InvalidRequest(parsed.status(), request.version()));
    return;
  }
  parsed->request_id = RequestIdOf(request);
  const unsigned version = request.version();
  limiter_.Check(std::move(*parsed),
                 [respond = std::move(respond), version,
                  path_prefix_form = !suffix.empty()](CheckResult result) mutable {
                   Rendered rendered = RenderForwardAuth(result, path_prefix_form);
                   Response res(static_cast<bhttp::status>(rendered.status), version);
                   if (!rendered.body.empty()) {
                     res.set(bhttp::field::content_type, "application/json");
                     res.body() = std::move(rendered.body);
                   }
                   for (auto& [name, value] : rendered.headers) res.set(name, value);
                   std::move(respond)(std::move(res));
                 });
}

void Routes::Health(Request& request, Respond respond, bool envoy_style) {
  const unsigned version = request.version();
  limiter_.ProbeStore([this, respond = std::move(respond), version,
                       envoy_style](ProbeResult probe) mutable {
    if (envoy_style) {
      Response res(probe.can_decide ? bhttp::status::ok : bhttp::status::internal_server_error,
                   version);
      res.set(bhttp::field::content_type, "text/plain");
      res.body() = probe.can_decide ? "OK" : "store unavailable";
      std::move(respond)(std::move(res));
      return;
    }
    const auto rules = limiter_.rules();
    // A listener out of file descriptors refuses new clients while those connected are served:
    // degraded, as a store down under fail_open is.
    json listeners = json::object();
    bool exhausted = false;
    if (info_.listeners) {
      for (const ListenerState& listener : info_.listeners()) {
        listeners[listener.name] = listener.exhausted ? "exhausted" : "accepting";
        exhausted |= listener.exhausted;
      }
    }
    const admin::ManagedRules* managed = info_.managed;
    const bool database_down = managed != nullptr && managed->has_database() && !managed->up();
    json body = {
        {"status", !probe.can_decide                                ? "unhealthy"
                   : probe.store_up && !exhausted && !database_down ? "healthy"
                                                                    : "degraded"},
        {"version", info_.version},
        {"uptime_seconds", (limiter_.clock().NowMicros() - info_.started_at) / kMicrosPerSecond},
        {"store",
         {{"backend", limiter_.store_backend()},
          {"status", probe.store_up ? "connected" : "down"},
          {"latency_ms",
           static_cast<double>(static_cast<int64_t>(probe.latency_ms * 1000)) / 1000}}},
        {"rules",
         {{"count", rules->size()},
          {"version", managed != nullptr && managed->has_database() ? managed->version()
                                                                    : limiter_.rules_version()}}},
        {"listeners", std::move(listeners)},
    };
    if (managed != nullptr && managed->has_database()) {
      body["database"] = {{"backend", managed->backend()},
                          {"status", database_down ? "down" : "connected"},
                          {"version", managed->version()}};
    }
    std::move(respond)(JsonResponse(probe.can_decide ? 200 : 503, body.dump(), version));
  });
}

}  // namespace sluice::http
