#include "api/http/forward_auth.h"

#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "api/http/framing.h"
#include "base/strings.h"

namespace sluice::http {

namespace {

std::string_view View(boost::beast::string_view s) { return {s.data(), s.size()}; }

bool StartsWithIgnoreCase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && EqualsIgnoreCase(s.substr(0, prefix.size()), prefix);
}

// The value of the field `name` ("" when absent), or an error when it is given more than once.
absl::StatusOr<std::string_view> Single(const Request& request, std::string_view name) {
  auto [first, last] = request.equal_range(boost::beast::string_view(name.data(), name.size()));
  if (first == last) return std::string_view();
  if (std::next(first) != last) {
    return absl::InvalidArgumentError(Cat("header '", name, "' given more than once"));
  }
  return View(first->value());
}

// The last non-empty entry of the last X-Forwarded-For field: the address the gateway itself
// saw the request come from (what precedes it is what earlier proxies, or the client, wrote).
std::string_view LastForwardedFor(const Request& request) {
  std::string_view value;
  for (auto [it, end] = request.equal_range("x-forwarded-for"); it != end; ++it) {
    value = View(it->value());
  }
  while (!value.empty()) {
    const size_t comma = value.rfind(',');
    const std::string_view entry =
        TrimOws(comma == std::string_view::npos ? value : value.substr(comma + 1));
    if (!entry.empty()) return entry;
    value = comma == std::string_view::npos ? std::string_view() : value.substr(0, comma);
  }
  return {};
}

// Digits only (no sign, no spaces inside), 0 to 2^63 − 1.
bool ParseCost(std::string_view text, int64_t* out) {
  if (text.empty()) return false;
  uint64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    const uint64_t digit = static_cast<uint64_t>(c - '0');
    if (v > (static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) - digit) / 10) {
      return false;
    }
    v = v * 10 + digit;
  }
  *out = static_cast<int64_t>(v);
  return true;
}

}  // namespace

std::optional<std::string_view> ForwardAuthSuffix(std::string_view path) {
  if (!path.starts_with(kForwardAuthPath)) return std::nullopt;
  std::string_view rest = path.substr(kForwardAuthPath.size());
  if (!rest.empty() && rest.front() != '/') return std::nullopt;
  return rest;
}

absl::StatusOr<CheckRequest> ParseForwardAuth(const Request& request, std::string_view suffix) {
  CheckRequest out;
  rules::RequestAttributes& a = out.attributes;

  // The single-valued X-Sluice-* fields, each into its attribute.
  struct Field {
    std::string_view name;
    std::string* attribute;
  };
  std::string ip;
  std::string cost;
  for (const Field& field :
       {Field{"x-sluice-user-id", &a.user_id}, Field{"x-sluice-api-key", &a.api_key},
        Field{"x-sluice-tier", &a.tier}, Field{"x-sluice-endpoint", &a.endpoint},
        Field{"x-sluice-method", &a.method}, Field{"x-sluice-ip", &ip},
        Field{"x-sluice-cost", &cost}}) {
    absl::StatusOr<std::string_view> value = Single(request, field.name);
    if (!value.ok()) return value.status();
    field.attribute->assign(*value);
  }

  // Fallbacks, each only when the explicit field is absent (or empty).
  auto first_of = [&](std::initializer_list<std::string_view> names) {
    for (std::string_view name : names) {
      auto it = request.find(boost::beast::string_view(name.data(), name.size()));
      if (it != request.end() && !it->value().empty()) return View(it->value());
    }
    return std::string_view();
  };
  if (a.endpoint.empty()) {
    if (!suffix.empty()) {
      a.endpoint.assign(suffix);
    } else {
      a.endpoint.assign(TargetPath(first_of({"x-forwarded-uri", "x-original-uri"})));
    }
  }
  if (a.method.empty()) {
    a.method.assign(first_of({"x-forwarded-method", "x-original-method"}));
    if (a.method.empty() && !suffix.empty()) a.method.assign(View(request.method_string()));
  }
  const bool ip_from_header = !ip.empty();
  if (!ip_from_header) ip.assign(LastForwardedFor(request));
  if (!a.SetIpAddress(ip)) {
    return absl::InvalidArgumentError(
        Cat(ip_from_header ? "header 'X-Sluice-Ip'" : "the last address of 'X-Forwarded-For'",
            " is not an IPv4 or IPv6 address: \"", ip, "\""));
  }

  // Unlike an attribute, an empty X-Sluice-Cost is not absent: a cost was meant and none can be
  // read (as `"cost": null` is a 400 on the check endpoint).
  if (request.find("x-sluice-cost") != request.end() && !ParseCost(cost, &out.cost)) {
    return absl::InvalidArgumentError(
        Cat("header 'X-Sluice-Cost' must be an integer from 0 to 2^63 - 1, not \"", cost, "\""));
  }

  constexpr std::string_view kHeaderPrefix = "x-sluice-header-";
  std::vector<std::pair<std::string, std::string>> headers;
  for (const auto& field : request) {
    const std::string_view name = View(field.name_string());
    if (name.size() > kHeaderPrefix.size() && StartsWithIgnoreCase(name, kHeaderPrefix)) {
      headers.emplace_back(name.substr(kHeaderPrefix.size()), View(field.value()));
    }
  }
  a.SetHeaders(std::move(headers));
  return out;
}

Rendered RenderForwardAuth(const CheckResult& result, bool path_prefix_form) {
  Rendered out = RenderCheckResult(result);
  if (out.status == 503) return out;  // the error object says why
  if (out.status == 200 && !path_prefix_form) out.status = 204;
  out.body.clear();
  // Concurrency rules: the slot's lease id, for a gateway that can release it when its upstream
  // answers (POST /v1/ratelimit/release); one that cannot leaves it to expire after lease_ttl.
  if (!result.lease_id.empty()) out.headers.emplace_back("X-Sluice-Lease-Id", result.lease_id);
  return out;
}

}  // namespace sluice::http
