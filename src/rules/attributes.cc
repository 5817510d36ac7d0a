#include "rules/attributes.h"

#include <arpa/inet.h>

#include <cstring>

#include "rules/strings.h"

namespace sluice::rules {

namespace {

constexpr std::array<uint8_t, 12> kV4MappedPrefix = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

constexpr std::string_view kFixedNames[kNumFixedAttributes] = {"user_id",  "api_key", "ip_address",
                                                               "endpoint", "method",  "tier"};

constexpr std::string_view kHeaderPrefix = "headers.";

}  // namespace

bool IpAddress::IsV4() const {
  return std::memcmp(bytes.data(), kV4MappedPrefix.data(), kV4MappedPrefix.size()) == 0;
}

std::string IpAddress::ToString() const {
  char buf[INET6_ADDRSTRLEN];
  const char* text = IsV4() ? inet_ntop(AF_INET, bytes.data() + 12, buf, sizeof(buf))
                            : inet_ntop(AF_INET6, bytes.data(), buf, sizeof(buf));
  return text == nullptr ? std::string() : std::string(text);
}

IpAddress IpAddress::Masked(int bits) const {
  IpAddress out;
  for (int i = 0; i < 16; ++i) {
    const int keep = bits - i * 8;
    if (keep >= 8) {
      out.bytes[i] = bytes[i];
    } else if (keep > 0) {
      out.bytes[i] = static_cast<uint8_t>(bytes[i] & (0xff << (8 - keep)));
    }
  }
  return out;
}

bool ParseIp(std::string_view text, IpAddress* out) {
  // inet_pton needs a NUL-terminated string; the longest IPv6 text is 45 characters. A NUL
  // inside `text` would end it early ("1.2.3.4\0junk" read as 1.2.3.4): refused.
  char buf[INET6_ADDRSTRLEN + 1];
  if (text.empty() || text.size() >= sizeof(buf) || text.find('\0') != std::string_view::npos) {
    return false;
  }
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  IpAddress ip;
  if (text.find(':') == std::string_view::npos) {
    // glibc's inet_pton(AF_INET) accepts exactly four decimal parts and rejects leading zeros,
    // unlike inet_aton, which would read "010.0.0.1" as octal.
    if (inet_pton(AF_INET, buf, ip.bytes.data() + 12) != 1) return false;
    std::memcpy(ip.bytes.data(), kV4MappedPrefix.data(), kV4MappedPrefix.size());
  } else if (inet_pton(AF_INET6, buf, ip.bytes.data()) != 1) {
    return false;
  }
  *out = ip;
  return true;
}

std::string AttributeRef::Name() const {
  if (attribute == Attribute::kHeader) return std::string(kHeaderPrefix) + header;
  return std::string(kFixedNames[static_cast<int>(attribute)]);
}

std::optional<AttributeRef> ParseAttributeName(std::string_view name) {
  for (int i = 0; i < kNumFixedAttributes; ++i) {
    if (name == kFixedNames[i]) return AttributeRef{static_cast<Attribute>(i), ""};
  }
  if (name.starts_with(kHeaderPrefix) && name.size() > kHeaderPrefix.size()) {
    return AttributeRef{Attribute::kHeader,
                        internal::AsciiLower(name.substr(kHeaderPrefix.size()))};
  }
  return std::nullopt;
}

bool RequestAttributes::SetIpAddress(std::string_view text) {
  ip_address = std::string(text);
  IpAddress parsed;
  if (ParseIp(text, &parsed)) {
    ip = parsed;
    return true;
  }
  ip.reset();
  return text.empty();
}

void RequestAttributes::SetHeader(std::string_view name, std::string_view value) {
  std::string lower = internal::AsciiLower(name);
  for (auto& [n, v] : headers_) {
    if (n == lower) {
      v = std::string(value);
      return;
    }
  }
  headers_.emplace_back(std::move(lower), std::string(value));
}

void RequestAttributes::SetHeaders(std::vector<std::pair<std::string, std::string>> headers) {
  constexpr size_t kScanUpTo = 16;  // below this, scanning beats building an index
  if (headers_.size() + headers.size() <= kScanUpTo) {
    for (auto& [name, value] : headers) SetHeader(name, value);
    return;
  }
  // Names (lowercase) → position in headers_. The views point into headers_, which must not
  // reallocate while the index lives: reserved up front.
  headers_.reserve(headers_.size() + headers.size());
  absl::flat_hash_map<std::string_view, size_t, internal::StringHash, internal::StringEq> index;
  index.reserve(headers_.capacity());
  for (size_t i = 0; i < headers_.size(); ++i) index.emplace(headers_[i].first, i);
  for (auto& [name, value] : headers) {
    std::string lower = internal::AsciiLower(name);
    if (const auto it = index.find(lower); it != index.end()) {
      headers_[it->second].second = std::move(value);
      continue;
    }
    headers_.emplace_back(std::move(lower), std::move(value));
    index.emplace(headers_.back().first, headers_.size() - 1);
  }
}

std::string_view RequestAttributes::Header(std::string_view name) const {
  for (const auto& [n, v] : headers_) {
    if (internal::EqualsIgnoreCase(n, name)) return v;
  }
  return {};
}

std::string_view RequestAttributes::Get(Attribute fixed) const {
  switch (fixed) {
    case Attribute::kUserId:
      return user_id;
    case Attribute::kApiKey:
      return api_key;
    case Attribute::kIpAddress:
      return ip_address;
    case Attribute::kEndpoint:
      return endpoint;
    case Attribute::kMethod:
      return method;
    case Attribute::kTier:
      return tier;
    case Attribute::kHeader:
      break;
  }
  return {};
}

std::string_view RequestAttributes::Get(const AttributeRef& ref) const {
  return ref.attribute == Attribute::kHeader ? Header(ref.header) : Get(ref.attribute);
}

}  // namespace sluice::rules
