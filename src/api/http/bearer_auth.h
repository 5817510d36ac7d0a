// CONTRACT §8 "Auth" for the admin and stats APIs: the Authorization header against the
// configured tokens, and the error a refused call gets.
#pragma once

#include <optional>
#include <string>

#include "admin/tokens.h"
#include "api/http/server.h"
#include "obs/metrics.h"

namespace sluice::http {

// Authorizes `request` for `needed`. nullopt when allowed (`*actor` is the token's name);
// otherwise the response to send: 403 ADMIN_DISABLED, 401 UNAUTHORIZED with
// WWW-Authenticate: Bearer, or 403 FORBIDDEN. Counts refusals in sluice_http_errors_total.
std::optional<Response> Authorize(const admin::Tokens& tokens, const Request& request,
                                  admin::Role needed, obs::Metrics& metrics, std::string* actor);

}  // namespace sluice::http
