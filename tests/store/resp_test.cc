// The RESP reply reader: replies split across feeds, protocol errors, and the element budget that
// keeps a hostile or corrupt header from allocating gigabytes.
#include "store/redis/resp.h"

#include <gtest/gtest.h>

#include <string>

namespace sluice::redis {
namespace {

TEST(ReplyReaderTest, ReadsNestedRepliesFedByteByByte) {
  ReplyReader reader;
  const std::string bytes = "*2\r\n:1\r\n*2\r\n$3\r\nabc\r\n+OK\r\n-ERR no\r\n";
  std::vector<Reply> replies;
  for (char c : bytes) {
    ASSERT_TRUE(reader.Feed(&c, 1).ok());
    for (;;) {
      absl::StatusOr<Reply> reply = reader.Next();
      ASSERT_TRUE(reply.ok()) << reply.status();
      if (*reply == nullptr) break;
      replies.push_back(std::move(*reply));
    }
  }
  ASSERT_EQ(replies.size(), 2u);
  ASSERT_EQ(replies[0]->type, REDIS_REPLY_ARRAY);
  ASSERT_EQ(replies[0]->elements, 2u);
  EXPECT_EQ(replies[0]->element[0]->integer, 1);
  EXPECT_EQ(std::string(replies[0]->element[1]->element[0]->str), "abc");
  EXPECT_EQ(replies[1]->type, REDIS_REPLY_ERROR);
}

TEST(ReplyReaderTest, RefusesAnArrayBeyondTheBudgetBeforeAllocatingIt) {
  ReplyReader reader;
  // 111 million elements announced in 31 bytes: refused at the header, nothing allocated.
  const std::string bytes = "*1\r\n*1\r\n*111111111\r\n";
  ASSERT_TRUE(reader.Feed(bytes.data(), bytes.size()).ok());
  absl::StatusOr<Reply> reply = reader.Next();
  ASSERT_FALSE(reply.ok());
  EXPECT_NE(reply.status().message().find("array elements"), std::string::npos) << reply.status();
}

TEST(ReplyReaderTest, TheBudgetIsPerReply) {
  constexpr int64_t kBudget = 1000;
  ReplyReader reader(kBudget);
  // Replies whose elements add up past the budget are fine one by one, nested ones counted.
  const int64_t per_reply = kBudget / 2 + 1;
  for (int i = 0; i < 3; ++i) {
    std::string bytes = "*" + std::to_string(per_reply) + "\r\n";
    ASSERT_TRUE(reader.Feed(bytes.data(), bytes.size()).ok());
    ASSERT_TRUE(reader.Next().ok());
    // Fill it in with empty bulk strings, in large pieces.
    std::string body;
    for (int64_t e = 0; e < per_reply; ++e) body += "$0\r\n\r\n";
    ASSERT_TRUE(reader.Feed(body.data(), body.size()).ok());
    absl::StatusOr<Reply> reply = reader.Next();
    ASSERT_TRUE(reply.ok()) << reply.status();
    ASSERT_NE(*reply, nullptr);
    EXPECT_EQ((*reply)->elements, static_cast<size_t>(per_reply));
  }
  const std::string nested = "*2\r\n*600\r\n*600\r\n";
  ASSERT_TRUE(reader.Feed(nested.data(), nested.size()).ok());
  EXPECT_FALSE(reader.Next().ok());
}

TEST(ReplyReaderTest, AProtocolErrorIsAnError) {
  ReplyReader reader;
  const std::string bytes = "!what\r\n";
  ASSERT_TRUE(reader.Feed(bytes.data(), bytes.size()).ok());
  EXPECT_FALSE(reader.Next().ok());
}

}  // namespace
}  // namespace sluice::redis
