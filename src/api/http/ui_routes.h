// The dashboard (CONTRACT §9): GET/HEAD /ui and /ui/<asset>, served from the assets compiled
// into the binary (ui_assets.h). The page needs no token; it asks the user for one and calls
// /v1/admin/* and /v1/stats/* with it from the browser.
//
// What each answer carries:
//   /ui                 301 to /ui/ (the page's relative URLs resolve against /ui/)
//   /ui/                index.html
//   /ui/<path>          that asset; an unknown one: 404 NOT_FOUND (the error object of §5)
//   other methods       405 METHOD_NOT_ALLOWED, Allow: GET, HEAD
//   every asset         Content-Type (from its extension), ETag (its SHA-256), Cache-Control:
//                       no-cache (the browser revalidates, and a new binary's assets are seen at
//                       once), If-None-Match → 304; Content-Security-Policy (scripts, styles,
//                       images and fetches from this origin only: no inline script or style
//                       element, no framing), X-Content-Type-Options: nosniff,
//                       Referrer-Policy: no-referrer.
#pragma once

#include <string_view>

#include "api/http/server.h"

namespace sluice::http {

inline constexpr std::string_view kUiPath = "/ui";

// The policy every dashboard response carries: the page loads its own files only, talks to its
// own origin only, and cannot be framed. `style-src 'self'` still lets the scripts set element
// styles through the DOM (CSSOM), which is all the charts need.
inline constexpr std::string_view kUiContentSecurityPolicy =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'";

// Whether `path` (a request target's path) belongs to the dashboard: /ui or under /ui/.
bool IsUiPath(std::string_view path);

// The answer to a request for a dashboard path. Pure: reads only the request and the compiled-in
// assets. HEAD gets GET's headers; the server leaves out the body.
Response ServeUi(const Request& request);

}  // namespace sluice::http
