// The rapid-reset guard (api/grpc/reset_guard.h) on its own, with a clock the test moves and
// real sockets (a socketpair) to see the shutdown.
#include "api/grpc/reset_guard.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

namespace sluice::grpc_api {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using std::chrono::steady_clock;

class ResetGuardTest : public ::testing::Test {
 protected:
  ResetGuardTest()
      : guard_({.burst = 5, .per_second = 10, .ban = seconds(10)}, [this] { return now_; }) {
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds_), 0);
    dup_ = dup(fds_[0]);
  }
  ~ResetGuardTest() override {
    close(fds_[0]);
    close(fds_[1]);
    close(dup_);
  }
  // Whether the server side of the pair was shut down: the client end reads end of stream.
  bool ShutDown() {
    char c;
    return recv(fds_[1], &c, 1, MSG_DONTWAIT) == 0;
  }

  steady_clock::time_point now_ = steady_clock::time_point() + seconds(1000);
  ResetGuard guard_;
  int fds_[2] = {-1, -1};
  int dup_ = -1;
};

TEST_F(ResetGuardTest, ABurstWithinTheAllowanceIsLeftAlone) {
  guard_.Opened(17, dup_, "10.0.0.1");
  for (int i = 0; i < 5; ++i) EXPECT_FALSE(guard_.NoteEarlyEnd(17)) << i;
  EXPECT_FALSE(ShutDown());
  EXPECT_FALSE(guard_.Banned("10.0.0.1"));
}

TEST_F(ResetGuardTest, PastTheAllowanceTheConnectionEndsAndTheAddressIsBanned) {
  guard_.Opened(17, dup_, "10.0.0.1");
  for (int i = 0; i < 5; ++i) ASSERT_FALSE(guard_.NoteEarlyEnd(17));
  std::optional<ResetGuard::Shutdown> shut = guard_.NoteEarlyEnd(17);
  ASSERT_TRUE(shut);
  EXPECT_EQ(shut->address, "10.0.0.1");
  EXPECT_EQ(shut->early_ends, 6u);
  EXPECT_TRUE(ShutDown());
  EXPECT_TRUE(guard_.Banned("10.0.0.1"));
  EXPECT_FALSE(guard_.Banned("10.0.0.2"));
  EXPECT_FALSE(guard_.NoteEarlyEnd(17)) << "one shutdown per connection";
  now_ += seconds(10);
  EXPECT_FALSE(guard_.Banned("10.0.0.1")) << "the ban ends";
}

TEST_F(ResetGuardTest, TheAllowanceRefillsAtItsRate) {
  guard_.Opened(17, dup_, "10.0.0.1");
  // 10 a second: one every 100 ms never runs out, however long it goes on.
  for (int i = 0; i < 100; ++i) {
    ASSERT_FALSE(guard_.NoteEarlyEnd(17)) << i;
    now_ += milliseconds(100);
  }
  EXPECT_FALSE(ShutDown());
}

TEST_F(ResetGuardTest, AClosedConnectionIsForgottenAndAReusedNumberStartsAfresh) {
  guard_.Opened(17, dup_, "10.0.0.1");
  for (int i = 0; i < 5; ++i) ASSERT_FALSE(guard_.NoteEarlyEnd(17));
  guard_.Closed(17, dup_);
  EXPECT_FALSE(guard_.NoteEarlyEnd(17)) << "unknown by now";
  guard_.Opened(17, dup_, "10.0.0.3");  // descriptor 17 again, a new connection
  for (int i = 0; i < 5; ++i) EXPECT_FALSE(guard_.NoteEarlyEnd(17));
  // A late Closed for the old connection's duplicate leaves the new one alone.
  guard_.Closed(17, dup_ + 1000);
  EXPECT_TRUE(guard_.NoteEarlyEnd(17));
}

TEST(PeerFdTest, ReadsGrpcsPeerOfADescriptor) {
  EXPECT_EQ(PeerFd("fd:17"), 17);
  EXPECT_EQ(PeerFd("fd:0"), 0);
  EXPECT_EQ(PeerFd("ipv4:127.0.0.1:5000"), -1);
  EXPECT_EQ(PeerFd("fd:"), -1);
  EXPECT_EQ(PeerFd("fd:12x"), -1);
  EXPECT_EQ(PeerFd("fd:-3"), -1);
  EXPECT_EQ(PeerFd("fd:99999999999"), -1);
}

}  // namespace
}  // namespace sluice::grpc_api
