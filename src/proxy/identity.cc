#include "proxy/identity.h"

#include <utility>

#include "api/http/framing.h"
#include "base/strings.h"
#include "boost/beast/http/field.hpp"

namespace sluice::proxy {

namespace bhttp = boost::beast::http;

namespace {

// Beast 1.74 has no field constants for the X-Forwarded-* family.
constexpr boost::beast::string_view kForwardedFor = "X-Forwarded-For";

std::string_view View(boost::beast::string_view s) { return {s.data(), s.size()}; }

// RFC 9110 §5.6.2 tchar.
bool IsTokenChar(char c) {
  const bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  return alnum || std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// application/x-www-form-urlencoded decoding: "%41" → 'A', '+' → ' '. A '%' not followed by two
// hex digits stays as it is.
std::string FormDecode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out.push_back(' ');
    } else if (s[i] == '%' && i + 2 < s.size() && HexValue(s[i + 1]) >= 0 &&
               HexValue(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(HexValue(s[i + 1]) * 16 + HexValue(s[i + 2])));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

// One X-Forwarded-For entry as an address: "1.2.3.4", "2001:db8::1", and the same with a port
// ("1.2.3.4:80", "[2001:db8::1]:80"). False for anything else.
bool ParseForwardedEntry(std::string_view entry, rules::IpAddress* out) {
  if (rules::ParseIp(entry, out)) return true;
  if (!entry.empty() && entry.front() == '[') {
    const size_t close = entry.find(']');
    if (close == std::string_view::npos) return false;
    return rules::ParseIp(entry.substr(1, close - 1), out);
  }
  // IPv4 with a port: exactly one ':' (an IPv6 address has several and parsed above).
  const size_t colon = entry.find(':');
  if (colon == std::string_view::npos || entry.find(':', colon + 1) != std::string_view::npos) {
    return false;
  }
  return rules::ParseIp(entry.substr(0, colon), out);
}

std::string_view FirstPresent(const std::vector<IdentitySource>& sources,
                              const bhttp::request_header<>& request, std::string* storage) {
  for (const IdentitySource& source : sources) {
    if (source.kind == IdentitySource::Kind::kHeader) {
      const auto it =
          request.find(boost::beast::string_view(source.name.data(), source.name.size()));
      if (it != request.end() && !it->value().empty()) return View(it->value());
    } else {
      std::optional<std::string> value = QueryParameter(View(request.target()), source.name);
      if (value.has_value() && !value->empty()) {
        *storage = std::move(*value);
        return *storage;
      }
    }
  }
  return {};
}

}  // namespace

std::string IdentitySource::ToString() const {
  return Cat(kind == Kind::kHeader ? "header:" : "query:", name);
}

absl::StatusOr<IdentitySource> ParseIdentitySource(std::string_view text) {
  const size_t colon = text.find(':');
  const std::string_view kind = colon == std::string_view::npos ? text : text.substr(0, colon);
  const std::string_view name =
      colon == std::string_view::npos ? std::string_view() : text.substr(colon + 1);
  IdentitySource source;
  if (kind == "header") {
    source.kind = IdentitySource::Kind::kHeader;
  } else if (kind == "query") {
    source.kind = IdentitySource::Kind::kQuery;
  } else {
    return absl::InvalidArgumentError(
        Cat("invalid identity source '", text, "' (expected header:NAME or query:NAME)"));
  }
  if (name.empty()) {
    return absl::InvalidArgumentError(Cat("identity source '", text, "' has no name"));
  }
  if (source.kind == IdentitySource::Kind::kHeader) {
    for (char c : name) {
      if (!IsTokenChar(c)) {
        return absl::InvalidArgumentError(
            Cat("identity source '", text, "': '", name, "' is not a header name"));
      }
    }
  }
  source.name = std::string(name);
  return source;
}

bool TrustedProxies::Contains(const rules::IpAddress& ip) const {
  for (const rules::Cidr& network : networks_) {
    if (network.Contains(ip)) return true;
  }
  return false;
}

rules::IpAddress ClientAddress(const rules::IpAddress& peer, const bhttp::fields& headers,
                               const TrustedProxies& trusted) {
  if (!trusted.Contains(peer)) return peer;
  // The entries, right to left: field lines last to first, each list right to left.
  std::vector<std::string_view> lines;
  auto [first, last] = headers.equal_range(kForwardedFor);
  for (auto it = first; it != last; ++it) lines.push_back(View(it->value()));
  rules::IpAddress client = peer;
  for (auto line = lines.rbegin(); line != lines.rend(); ++line) {
    std::string_view list = *line;
    while (true) {
      const size_t comma = list.rfind(',');
      const std::string_view entry =
          TrimOws(comma == std::string_view::npos ? list : list.substr(comma + 1));
      if (!entry.empty()) {  // "a, , b": empty elements are allowed and skipped
        rules::IpAddress ip;
        if (!ParseForwardedEntry(entry, &ip)) return client;
        client = ip;
        if (!trusted.Contains(ip)) return client;
      }
      if (comma == std::string_view::npos) break;
      list = list.substr(0, comma);
    }
  }
  return client;
}

std::optional<std::string> QueryParameter(std::string_view target, std::string_view name) {
  const size_t question = target.find('?');
  if (question == std::string_view::npos) return std::nullopt;
  std::string_view query = target.substr(question + 1);
  query = query.substr(0, query.find('#'));
  while (!query.empty()) {
    const size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    const size_t eq = pair.find('=');
    const std::string_view key = pair.substr(0, eq);
    const std::string_view value =
        eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
    if (key == name || FormDecode(key) == name) return FormDecode(value);
  }
  return std::nullopt;
}

rules::RequestAttributes ReadAttributes(const bhttp::request_header<>& request,
                                        const rules::IpAddress& peer,
                                        const IdentityConfig& identity,
                                        const TrustedProxies& trusted) {
  rules::RequestAttributes attributes;
  std::string storage;
  attributes.user_id = std::string(FirstPresent(identity.user_id, request, &storage));
  attributes.api_key = std::string(FirstPresent(identity.api_key, request, &storage));
  attributes.tier = std::string(FirstPresent(identity.tier, request, &storage));
  const rules::IpAddress client = ClientAddress(peer, request, trusted);
  attributes.ip_address = client.ToString();
  attributes.ip = client;
  attributes.endpoint = std::string(http::TargetPath(View(request.target())));
  attributes.method = std::string(View(request.method_string()));
  std::vector<std::pair<std::string, std::string>> headers;
  for (const auto& field : request) {
    headers.emplace_back(std::string(View(field.name_string())), std::string(View(field.value())));
  }
  attributes.SetHeaders(std::move(headers));
  return attributes;
}

}  // namespace sluice::proxy
