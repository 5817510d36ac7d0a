#include "api/http/bearer_auth.h"

#include "api/http/check_codec.h"
#include "api/http/routes.h"
#include "base/strings.h"

namespace sluice::http {

namespace bhttp = boost::beast::http;

std::optional<Response> Authorize(const admin::Tokens& tokens, const Request& request,
                                  admin::Role needed, obs::Metrics& metrics, std::string* actor) {
  auto it = request.find(bhttp::field::authorization);
  const std::string authorization = it == request.end() ? std::string() : std::string(it->value());
  const admin::Tokens::Auth auth = tokens.Authorize(authorization, needed);
  const unsigned version = request.version();
  switch (auth.verdict) {
    case admin::Tokens::Verdict::kOk:
      *actor = auth.actor;
      return std::nullopt;
    case admin::Tokens::Verdict::kDisabled:
      metrics.http_errors("ADMIN_DISABLED").Increment();
      return JsonResponse(
          403,
          ErrorBody("ADMIN_DISABLED",
                    "The admin API is off: configure admin.tokens or SLUICE_ADMIN_TOKEN."),
          version);
    case admin::Tokens::Verdict::kUnauthorized: {
      metrics.http_errors("UNAUTHORIZED").Increment();
      Response res =
          JsonResponse(401,
                       ErrorBody("UNAUTHORIZED",
                                 "A valid admin token is required: Authorization: Bearer TOKEN."),
                       version);
      res.set(bhttp::field::www_authenticate, "Bearer realm=\"sluice\"");
      return res;
    }
    case admin::Tokens::Verdict::kForbidden:
      metrics.http_errors("FORBIDDEN").Increment();
      return JsonResponse(403,
                          ErrorBody("FORBIDDEN", Cat("Token '", auth.actor,
                                                     "' may read only; this call needs write.")),
                          version);
  }
  return std::nullopt;
}

}  // namespace sluice::http
