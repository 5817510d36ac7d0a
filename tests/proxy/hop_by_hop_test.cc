#include "proxy/hop_by_hop.h"

#include <gtest/gtest.h>

#include "boost/beast/http/field.hpp"

namespace sluice::proxy {
namespace {

namespace bhttp = boost::beast::http;

std::vector<std::string> Names(const bhttp::fields& fields) {
  std::vector<std::string> names;
  for (const auto& f : fields) names.emplace_back(f.name_string());
  return names;
}

// Verifies that the fixed hop-by-hop fields go and end-to-end ones stay, in order.
TEST(HopByHopTest, RemovesTheFixedSet) {
  bhttp::fields f;
  f.insert("Host", "example.com");
  f.insert("Connection", "keep-alive");
  f.insert("Keep-Alive", "timeout=5");
  f.insert("Proxy-Connection", "keep-alive");
  f.insert("TE", "trailers");
  f.insert("Trailer", "X-Checksum");
  f.insert("Transfer-Encoding", "chunked");
  f.insert("Upgrade", "websocket");
  f.insert("Proxy-Authorization", "Basic Zm9vOmJhcg==");
  f.insert("Proxy-Authenticate", "Basic");
  f.insert("Content-Length", "3");
  f.insert("Authorization", "Bearer x");
  f.insert("X-Custom", "1");
  RemoveHopByHop(f);
  EXPECT_EQ(Names(f),
            (std::vector<std::string>{"Host", "Content-Length", "Authorization", "X-Custom"}));
}

// Verifies that the fields a Connection (or Proxy-Connection) field names go, whatever their
// case, over several lines and lists with empty elements.
TEST(HopByHopTest, RemovesWhatConnectionNames) {
  bhttp::fields f;
  f.insert("Connection", "close, X-Foo ,, x-bar");
  f.insert("connection", "X-Baz");
  f.insert("Proxy-Connection", "X-Qux");
  f.insert("X-Foo", "1");
  f.insert("X-FOO", "2");
  f.insert("X-Bar", "3");
  f.insert("X-Baz", "4");
  f.insert("X-Qux", "5");
  f.insert("X-Kept", "6");
  RemoveHopByHop(f);
  EXPECT_EQ(Names(f), (std::vector<std::string>{"X-Kept"}));
}

TEST(HopByHopTest, NothingToRemove) {
  bhttp::fields f;
  f.insert("Accept", "*/*");
  RemoveHopByHop(f);
  EXPECT_EQ(Names(f), (std::vector<std::string>{"Accept"}));
}

}  // namespace
}  // namespace sluice::proxy
