// Admin tokens (CONTRACT §8 "Auth"): off without tokens, 401 for missing or unknown, 403 for a
// read token on a write call, SLUICE_ADMIN_TOKEN's write token named "env".
#include "admin/tokens.h"

#include <gtest/gtest.h>

namespace sluice::admin {
namespace {

Tokens Make(std::optional<std::string_view> env = std::nullopt) {
  auto t = Tokens::Create({{"ops", HashToken("s3cret-ops"), Role::kWrite},
                           {"grafana", HashToken("s3cret-ro"), Role::kRead}},
                          env);
  EXPECT_TRUE(t.ok()) << t.status();
  return *t;
}

TEST(TokensTest, HashesAreSha256) {
  // sha256("abc"), the FIPS 180-2 test vector.
  EXPECT_EQ(ToHex(HashToken("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  auto parsed = ParseSha256Hex("BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD");
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(*parsed, HashToken("abc"));
  EXPECT_FALSE(ParseSha256Hex("ba7816").has_value());
  EXPECT_FALSE(ParseSha256Hex(std::string(64, 'g')).has_value());
}

TEST(TokensTest, NoTokensMeansDisabledWhateverIsPresented) {
  auto t = Tokens::Create({}, std::nullopt);
  ASSERT_TRUE(t.ok());
  EXPECT_FALSE(t->enabled());
  EXPECT_EQ(t->Authorize("Bearer anything", Role::kRead).verdict, Tokens::Verdict::kDisabled);
  EXPECT_EQ(Tokens::Create({}, "").value().enabled(), false);
}

TEST(TokensTest, RolesAndUnknownTokens) {
  const Tokens t = Make();
  EXPECT_EQ(t.Authorize("Bearer s3cret-ops", Role::kWrite).verdict, Tokens::Verdict::kOk);
  EXPECT_EQ(t.Authorize("Bearer s3cret-ops", Role::kWrite).actor, "ops");
  EXPECT_EQ(t.Authorize("bearer  s3cret-ro ", Role::kRead).verdict, Tokens::Verdict::kOk);
  EXPECT_EQ(t.Authorize("Bearer s3cret-ro", Role::kWrite).verdict, Tokens::Verdict::kForbidden);
  for (std::string_view bad : {"", "Bearer", "Bearer ", "Basic czNjcmV0LW9wcw==",
                               "Bearer s3cret-op", "Bearer s3cret-opsX", "s3cret-ops"}) {
    EXPECT_EQ(t.Authorize(bad, Role::kRead).verdict, Tokens::Verdict::kUnauthorized) << bad;
  }
}

TEST(TokensTest, EnvironmentTokenIsAWriteTokenNamedEnv) {
  const Tokens t = Make("from-the-environment");
  EXPECT_EQ(t.size(), 3u);
  const auto auth = t.Authorize("Bearer from-the-environment", Role::kWrite);
  EXPECT_EQ(auth.verdict, Tokens::Verdict::kOk);
  EXPECT_EQ(auth.actor, "env");
  EXPECT_FALSE(Tokens::Create({{"env", HashToken("x"), Role::kRead}}, "y").ok());
  EXPECT_FALSE(
      Tokens::Create({{"a", HashToken("x"), Role::kRead}, {"a", HashToken("y"), Role::kRead}},
                     std::nullopt)
          .ok());
}

}  // namespace
}  // namespace sluice::admin
