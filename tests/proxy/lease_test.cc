#include "proxy/lease.h"

#include <gtest/gtest.h>

#include "proxy/upstream_pool.h"

namespace sluice::proxy {
namespace {

// Verifies that a lease is released exactly once: by Release, whatever follows.
TEST(LeaseTest, ReleasedOnceExplicitly) {
  int calls = 0;
  std::string released;
  {
    Lease lease("l-1", [&](const std::string& id) {
      ++calls;
      released = id;
    });
    EXPECT_TRUE(lease.held());
    lease.Release();
    lease.Release();
    EXPECT_FALSE(lease.held());
  }
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(released, "l-1");
}

// Verifies release on destruction, and that moving hands the duty over rather than doubling it.
TEST(LeaseTest, ReleasedOnceOnDestructionAndMove) {
  int calls = 0;
  auto count = [&](const std::string&) { ++calls; };
  {
    Lease a("l-2", count);
    Lease b(std::move(a));
    Lease c;
    c = std::move(b);
    EXPECT_EQ(calls, 0);
  }
  EXPECT_EQ(calls, 1);
  // Assigning over a held lease releases the old one.
  {
    Lease a("l-3", count);
    a = Lease("l-4", count);
    EXPECT_EQ(calls, 2);
  }
  EXPECT_EQ(calls, 3);
}

// Verifies that an empty lease id (no concurrency rule applied) releases nothing.
TEST(LeaseTest, EmptyIdHoldsNothing) {
  int calls = 0;
  {
    Lease lease("", [&](const std::string&) { ++calls; });
  }
  EXPECT_EQ(calls, 0);
}

TEST(UpstreamUrlTest, ParsesHttpOnly) {
  auto a = ParseUpstreamUrl("http://127.0.0.1:9000");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 9000);
  EXPECT_EQ(a->authority, "127.0.0.1:9000");
  auto b = ParseUpstreamUrl("HTTP://backend/");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->port, 80);
  auto c = ParseUpstreamUrl("http://[::1]:81");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->host, "::1");
  EXPECT_EQ(c->authority, "[::1]:81");

  auto https = ParseUpstreamUrl("https://backend:443");
  ASSERT_FALSE(https.ok());
  EXPECT_NE(std::string(https.status().message()).find("https is not supported"),
            std::string::npos);
  for (std::string_view bad : {"backend:80", "ftp://x", "http://", "http://h:0", "http://h/api",
                               "http://u@h", "http://h:99999", "http://h?x"}) {
    EXPECT_FALSE(ParseUpstreamUrl(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace sluice::proxy
