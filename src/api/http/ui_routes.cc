#include "api/http/ui_routes.h"

#include <algorithm>
#include <string>

#include "api/http/check_codec.h"
#include "api/http/framing.h"
#include "api/http/routes.h"
#include "api/http/ui_assets.h"
#include "boost/beast/http/field.hpp"
#include "boost/beast/http/status.hpp"

namespace sluice::http {

namespace bhttp = boost::beast::http;

namespace {

// Beast takes its own string_view (Boost's), not std's.
boost::beast::string_view Bsv(std::string_view s) { return {s.data(), s.size()}; }

const UiAsset* FindAsset(std::string_view path) {
  const std::span<const UiAsset> assets = UiAssets();
  const auto it = std::find_if(assets.begin(), assets.end(),
                               [path](const UiAsset& asset) { return asset.path == path; });
  return it == assets.end() ? nullptr : &*it;
}

// Whether an If-None-Match value names `etag` (RFC 9110 §13.1.2: a list of entity tags compared
// weakly, or `*`).
bool NoneMatch(std::string_view header, std::string_view etag) {
  while (!header.empty()) {
    const size_t comma = header.find(',');
    std::string_view tag = header.substr(0, comma);
    header = comma == std::string_view::npos ? std::string_view() : header.substr(comma + 1);
    while (!tag.empty() && (tag.front() == ' ' || tag.front() == '\t')) tag.remove_prefix(1);
    while (!tag.empty() && (tag.back() == ' ' || tag.back() == '\t')) tag.remove_suffix(1);
    if (tag.starts_with("W/")) tag.remove_prefix(2);
    if (tag == "*" || tag == etag) return true;
  }
  return false;
}

void SetCommonHeaders(Response& res) {
  // Beast's field enum knows none of these three by name.
  res.set("Content-Security-Policy", Bsv(kUiContentSecurityPolicy));
  res.set("X-Content-Type-Options", "nosniff");
  res.set("Referrer-Policy", "no-referrer");
}

}  // namespace

bool IsUiPath(std::string_view path) {
  return path == kUiPath || (path.starts_with(kUiPath) && path.substr(kUiPath.size(), 1) == "/");
}

Response ServeUi(const Request& request) {
  const unsigned version = request.version();
  const bhttp::verb method = request.method();
  if (method != bhttp::verb::get && method != bhttp::verb::head) {
    Response res = JsonResponse(
        405, ErrorBody("METHOD_NOT_ALLOWED", "Method not allowed on this endpoint."), version);
    res.set(bhttp::field::allow, "GET, HEAD");
    return res;
  }
  const std::string_view target(request.target().data(), request.target().size());
  const std::string_view path = TargetPath(target);
  if (path == kUiPath) {
    Response res(bhttp::status::moved_permanently, version);
    res.set(bhttp::field::location, "/ui/");
    SetCommonHeaders(res);
    return res;
  }
  std::string_view name = path.substr(kUiPath.size() + 1);  // after "/ui/"
  if (name.empty()) name = "index.html";
  const UiAsset* asset = FindAsset(name);
  if (asset == nullptr) {
    Response res =
        JsonResponse(404, ErrorBody("NOT_FOUND", "No such file in the dashboard."), version);
    SetCommonHeaders(res);
    return res;
  }
  const auto if_none_match = request.find(bhttp::field::if_none_match);
  const bool not_modified =
      if_none_match != request.end() &&
      NoneMatch(std::string_view(if_none_match->value().data(), if_none_match->value().size()),
                asset->etag);
  Response res(not_modified ? bhttp::status::not_modified : bhttp::status::ok, version);
  res.set(bhttp::field::etag, Bsv(asset->etag));
  res.set(bhttp::field::cache_control, "no-cache");
  SetCommonHeaders(res);
  if (!not_modified) {
    res.set(bhttp::field::content_type, Bsv(asset->content_type));
    res.body().assign(asset->body.data(), asset->body.size());
  }
  return res;
}

}  // namespace sluice::http
