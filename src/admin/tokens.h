// Who may call the admin and stats APIs (CONTRACT §8 "Auth"): bearer tokens, kept only as their
// SHA-256, each with a name (the audit log's actor) and a role. A presented token is hashed
// and compared with every stored hash in constant time, so neither the comparison nor the
// search tells how close a guess came. Tokens are never logged or stored in clear.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace sluice::admin {

enum class Role : uint8_t { kRead, kWrite };  // write implies read
std::string_view RoleName(Role role);         // "read", "write"

using Sha256 = std::array<uint8_t, 32>;
Sha256 HashToken(std::string_view token);
std::string ToHex(const Sha256& digest);
// 64 hex digits (either case); nullopt otherwise.
std::optional<Sha256> ParseSha256Hex(std::string_view hex);

struct TokenEntry {
  std::string name;
  Sha256 sha256{};
  Role role = Role::kRead;
};

class Tokens {
 public:
  // The configured tokens plus, when `env_token` is set and not empty, SLUICE_ADMIN_TOKEN's
  // write token named "env". kInvalidArgument for an empty or duplicate name.
  static absl::StatusOr<Tokens> Create(std::vector<TokenEntry> configured,
                                       std::optional<std::string_view> env_token);

  // No token at all: the admin API is off.
  bool enabled() const { return !tokens_.empty(); }
  size_t size() const { return tokens_.size(); }

  enum class Verdict : uint8_t {
    kOk,
    kDisabled,      // 403 ADMIN_DISABLED
    kUnauthorized,  // 401 UNAUTHORIZED + WWW-Authenticate: Bearer
    kForbidden,     // 403 FORBIDDEN: a read token on a write call
  };
  struct Auth {
    Verdict verdict = Verdict::kUnauthorized;
    std::string actor;  // the token's name when kOk or kForbidden
  };
  // `authorization` is the request's Authorization header ("" when absent).
  Auth Authorize(std::string_view authorization, Role needed) const;

 private:
  std::vector<TokenEntry> tokens_;
};

}  // namespace sluice::admin
