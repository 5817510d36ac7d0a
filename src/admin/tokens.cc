#include "admin/tokens.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "absl/container/flat_hash_set.h"
#include "base/strings.h"

namespace sluice::admin {

namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string_view RoleName(Role role) { return role == Role::kWrite ? "write" : "read"; }

Sha256 HashToken(std::string_view token) {
  Sha256 digest{};
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), digest.data());
  return digest;
}

std::string ToHex(const Sha256& digest) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(64);
  for (uint8_t b : digest) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 15]);
  }
  return out;
}

std::optional<Sha256> ParseSha256Hex(std::string_view hex) {
  if (hex.size() != 64) return std::nullopt;
  Sha256 out{};
  for (size_t i = 0; i < 32; ++i) {
    const int hi = HexValue(hex[2 * i]);
    const int lo = HexValue(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return out;
}

absl::StatusOr<Tokens> Tokens::Create(std::vector<TokenEntry> configured,
                                      std::optional<std::string_view> env_token) {
  Tokens t;
  absl::flat_hash_set<std::string> names;
  for (TokenEntry& e : configured) {
    if (e.name.empty()) return absl::InvalidArgumentError("an admin token needs a name");
    if (!names.insert(e.name).second) {
      return absl::InvalidArgumentError(Cat("admin token name '", e.name, "' is used twice"));
    }
    t.tokens_.push_back(std::move(e));
  }
  if (env_token.has_value() && !env_token->empty()) {
    if (names.contains("env")) {
      return absl::InvalidArgumentError(
          "admin token name 'env' is taken by SLUICE_ADMIN_TOKEN's token");
    }
    t.tokens_.push_back({"env", HashToken(*env_token), Role::kWrite});
  }
  return t;
}

Tokens::Auth Tokens::Authorize(std::string_view authorization, Role needed) const {
  Auth auth;
  if (!enabled()) {
    auth.verdict = Verdict::kDisabled;
    return auth;
  }
  constexpr std::string_view kScheme = "bearer ";
  if (authorization.size() <= kScheme.size() ||
      !EqualsIgnoreCase(authorization.substr(0, kScheme.size()), kScheme)) {
    return auth;  // kUnauthorized
  }
  std::string_view token = authorization.substr(kScheme.size());
  while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
  while (!token.empty() && token.back() == ' ') token.remove_suffix(1);
  if (token.empty()) return auth;
  const Sha256 presented = HashToken(token);
  // Every stored hash is compared, whatever matched: the time does not depend on which.
  const TokenEntry* match = nullptr;
  for (const TokenEntry& e : tokens_) {
    const bool equal = CRYPTO_memcmp(e.sha256.data(), presented.data(), presented.size()) == 0;
    if (equal && match == nullptr) match = &e;
  }
  if (match == nullptr) return auth;
  auth.actor = match->name;
  auth.verdict =
      needed == Role::kWrite && match->role != Role::kWrite ? Verdict::kForbidden : Verdict::kOk;
  return auth;
}

}  // namespace sluice::admin
