#include "net/host_port.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace sluice::net {

std::string HostPort::ToString() const {
  return host.find(':') != std::string::npos ? absl::StrCat("[", host, "]:", port)
                                             : absl::StrCat(host, ":", port);
}

absl::StatusOr<HostPort> ParseHostPort(std::string_view text, const HostPortOptions& options) {
  auto bad = [&](std::string_view why) {
    std::string message = "invalid ";
    message.append(options.what).append(" '").append(text).append("': ").append(why);
    message.append(options.default_port ? " (expected host[:port] or [v6][:port])"
                                        : " (expected host:port or [v6]:port)");
    return absl::InvalidArgumentError(message);
  };
  HostPort out;
  std::string_view port;
  bool has_port = false;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string_view::npos) return bad("unclosed '['");
    out.host = std::string(text.substr(1, close - 1));
    const std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return bad("expected ':' after ']'");
      port = rest.substr(1);
      has_port = true;
    }
    if (out.host.empty()) return bad("empty host");
  } else {
    size_t colon = text.find(':');
    if (colon != std::string_view::npos) {
      if (text.find(':', colon + 1) != std::string_view::npos) {
        if (!options.allow_unbracketed_ipv6 || options.default_port) {
          return bad("more than one ':' (put an IPv6 address in brackets)");
        }
        colon = text.rfind(':');
      }
      port = text.substr(colon + 1);
      has_port = true;
    }
    out.host = std::string(text.substr(0, colon));
    if (out.host.empty()) return bad("empty host");
  }
  if (!has_port) {
    if (!options.default_port) return bad("no port");
    out.port = *options.default_port;
    return out;
  }
  if (port.empty()) return bad("empty port");
  uint32_t value = 0;
  for (char c : port) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return bad("port is not a number");
    value = value * 10 + static_cast<uint32_t>(c - '0');
    if (value > 65535) return bad("port out of range (1-65535)");
  }
  if (value == 0 && !options.allow_port_zero) return bad("port 0 (use 1-65535)");
  out.port = static_cast<uint16_t>(value);
  return out;
}

}  // namespace sluice::net
