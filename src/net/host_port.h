// Endpoints as text: "host:port", "[v6]:port", and with a default port "host" or "[v6]". The one
// parser of such text in Sluice (listen addresses, Redis nodes and URLs, sentinels).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace sluice::net {

struct HostPort {
  std::string host;  // a name, an IPv4 address, or an IPv6 address without brackets
  uint16_t port = 0;
  // "host:port", or "[v6]:port" when the host holds a ':'.
  std::string ToString() const;
  bool operator==(const HostPort&) const = default;
};

struct HostPortOptions {
  // The port when the text names none ("host", "[v6]"); unset: a port is required.
  std::optional<uint16_t> default_port = std::nullopt;
  // Port 0 ("let the OS pick", for listen addresses); otherwise 1-65535.
  bool allow_port_zero = false;
  // "::1:6379": an unbracketed host with several ':' is an IPv6 address and the last ':' starts
  // the port (Redis prints addresses so in MOVED and ASK). Off: such text is refused as
  // ambiguous. Ignored with a default_port, where "::1" could be either.
  bool allow_unbracketed_ipv6 = false;
  // What the text is, for errors: "invalid <what> 'TEXT': why (expected ...)".
  std::string_view what = "address";
};

// Parses "host:port" or "[v6]:port". The host must not be empty; an unbracketed host holds no
// ':' unless allow_unbracketed_ipv6 (an IPv6 address needs brackets, so "::1:80" is refused
// rather than guessed at); the port is decimal digits only. Errors are InvalidArgument and quote
// the text and what is wrong.
absl::StatusOr<HostPort> ParseHostPort(std::string_view text, const HostPortOptions& options = {});

}  // namespace sluice::net
