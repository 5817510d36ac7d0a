// The gRPC face in-process, with stores that fail or answer late: what the real binary on the
// memory store cannot show (fail_closed, health following the store, a graceful stop with calls
// in flight, bind errors). The Envoy semantics themselves are in tests/integration/grpc_test.cc.
#include "api/grpc/server.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "envoy/service/ratelimit/v3/rls.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "store/memory/memory_store.h"
#include "tests/testing/limiter_fixtures.h"

namespace sluice::grpc_api {
namespace {

namespace rls = ::envoy::service::ratelimit::v3;
using ::grpc::health::v1::HealthCheckRequest;
using ::grpc::health::v1::HealthCheckResponse;
using Response = rls::RateLimitResponse;

constexpr Micros kNow = int64_t{1764000000} * kMicrosPerSecond;
constexpr auto kCallTimeout = std::chrono::seconds(10);
constexpr auto kPollTimeout = std::chrono::seconds(10);  // a hang detector, not a speed check

std::shared_ptr<const rules::RuleSet> Rules(const std::string& yaml) {
  return testing::RuleSetFromYaml(yaml);
}

constexpr char kDomain[] = R"(
domain: test
descriptors:
  - key: user
    rate_limit:
      unit: hour
      requests_per_unit: 10
)";

rls::RateLimitRequest UserRequest(const std::string& user) {
  rls::RateLimitRequest r;
  r.set_domain("test");
  auto* e = r.add_descriptors()->add_entries();
  e->set_key("user");
  e->set_value(user);
  return r;
}

using testing::SwitchableStore;

// The memory store, answering each Charge `delay` later on a thread of its own.
class SlowStore final : public Store {
 public:
  SlowStore(const Clock& clock, std::chrono::milliseconds delay) : inner_(clock), delay_(delay) {}
  ~SlowStore() override {
    for (auto& t : threads_) t.join();
  }
  void Charge(std::span<const ChargeItem> items, std::span<Decision> decisions,
              Done done) override {
    std::lock_guard lock(mu_);
    ++received_;
    cv_.notify_all();
    threads_.emplace_back([this, items, decisions, done = std::move(done)]() mutable {
      std::this_thread::sleep_for(delay_);
      inner_.Charge(items, decisions, std::move(done));
    });
  }
  void Release(std::string_view key, std::string_view lease, Done done) override {
    inner_.Release(key, lease, std::move(done));
  }
  void Reset(std::string_view key, const Limit& limit, Done done) override {
    inner_.Reset(key, limit, std::move(done));
  }
  std::string_view backend() const override { return "slow"; }
  // Waits until `n` charges have arrived.
  bool WaitReceived(int n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, kPollTimeout, [&] { return received_ >= n; });
  }

 private:
  MemoryStore inner_;
  const std::chrono::milliseconds delay_;
  std::mutex mu_;
  std::condition_variable cv_;
  int received_ = 0;
  std::vector<std::thread> threads_;
};

class GrpcServerTest : public ::testing::Test {
 protected:
  std::unique_ptr<Limiter> MakeLimiter(Store& store, FailurePolicy policy) {
    auto limiter = std::make_unique<Limiter>(store, clock_, metrics_, rejections_,
                                             Limiter::Options{.on_failure = policy});
    limiter->SetRules(Rules(kDomain));
    return limiter;
  }

  static std::unique_ptr<rls::RateLimitService::Stub> Stub(const GrpcServer& server) {
    return rls::RateLimitService::NewStub(::grpc::CreateChannel(
        "127.0.0.1:" + std::to_string(server.port()), ::grpc::InsecureChannelCredentials()));
  }

  static ::grpc::Status Call(rls::RateLimitService::Stub& stub, const rls::RateLimitRequest& req,
                             Response* response) {
    ::grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + kCallTimeout);
    return stub.ShouldRateLimit(&context, req, response);
  }

  static HealthCheckResponse::ServingStatus Health(const GrpcServer& server) {
    auto stub = ::grpc::health::v1::Health::NewStub(::grpc::CreateChannel(
        "127.0.0.1:" + std::to_string(server.port()), ::grpc::InsecureChannelCredentials()));
    ::grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + kCallTimeout);
    HealthCheckResponse response;
    ::grpc::Status s = stub->Check(&context, HealthCheckRequest(), &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response.status();
  }

  // Polls the health status until it is `want`; false after kPollTimeout.
  static bool HealthBecomes(const GrpcServer& server, HealthCheckResponse::ServingStatus want) {
    const auto deadline = std::chrono::steady_clock::now() + kPollTimeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (Health(server) == want) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return false;
  }

  ManualClock clock_{kNow};
  obs::Metrics metrics_;
  obs::RejectionLog rejections_{clock_};
};

// Verifies port 0 (a free port, reported by port()) and one call through the limiter.
TEST_F(GrpcServerTest, ServesOnAnyFreePort) {
  MemoryStore store(clock_);
  auto limiter = MakeLimiter(store, FailurePolicy::kFailOpen);
  GrpcServer server({.address = "127.0.0.1:0"}, *limiter);
  ASSERT_TRUE(server.Start().ok());
  ASSERT_NE(server.port(), 0);
  auto stub = Stub(server);
  Response response;
  ASSERT_TRUE(Call(*stub, UserRequest("a"), &response).ok());
  EXPECT_EQ(response.overall_code(), Response::OK);
  EXPECT_EQ(response.statuses(0).limit_remaining(), 9u);
  server.Stop(std::chrono::seconds(1));
}

// Verifies the failure policy on gRPC: a store failure is OVER_LIMIT under fail_closed and OK
// under fail_open — a response either way, never a gRPC error or a hang.
TEST_F(GrpcServerTest, StoreFailureFollowsThePolicy) {
  SwitchableStore store(clock_);
  store.set_down(true);
  for (auto [policy, want] : {std::pair{FailurePolicy::kFailClosed, Response::OVER_LIMIT},
                              std::pair{FailurePolicy::kFailOpen, Response::OK}}) {
    auto limiter = MakeLimiter(store, policy);
    GrpcServer server({.address = "127.0.0.1:0", .health_probe_interval = {}}, *limiter);
    ASSERT_TRUE(server.Start().ok());
    auto stub = Stub(server);
    Response response;
    ::grpc::Status s = Call(*stub, UserRequest("b"), &response);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(response.overall_code(), want);
    EXPECT_EQ(response.statuses(0).code(), want);
    server.Stop(std::chrono::seconds(1));
  }
}

// Verifies that grpc.health.v1 follows the store under fail_closed: NOT_SERVING while the store
// is down (the server cannot decide), SERVING again once it is back; NOT_SERVING after Stop
// began is covered by the server refusing calls altogether.
TEST_F(GrpcServerTest, HealthFollowsTheStoreUnderFailClosed) {
  SwitchableStore store(clock_);
  auto limiter = MakeLimiter(store, FailurePolicy::kFailClosed);
  GrpcServer server(
      {.address = "127.0.0.1:0", .health_probe_interval = std::chrono::milliseconds(10)}, *limiter);
  ASSERT_TRUE(server.Start().ok());
  EXPECT_EQ(Health(server), HealthCheckResponse::SERVING);
  store.set_down(true);
  EXPECT_TRUE(HealthBecomes(server, HealthCheckResponse::NOT_SERVING));
  store.set_down(false);
  EXPECT_TRUE(HealthBecomes(server, HealthCheckResponse::SERVING));
  server.Stop(std::chrono::seconds(1));
}

// Verifies that Stop lets a call in flight finish with its real answer.
TEST_F(GrpcServerTest, StopFinishesCallsInFlight) {
  SlowStore store(clock_, std::chrono::milliseconds(300));
  auto limiter = MakeLimiter(store, FailurePolicy::kFailOpen);
  GrpcServer server({.address = "127.0.0.1:0"}, *limiter);
  ASSERT_TRUE(server.Start().ok());
  auto stub = Stub(server);
  Response response;
  ::grpc::Status status;
  std::thread client([&] { status = Call(*stub, UserRequest("c"), &response); });
  ASSERT_TRUE(store.WaitReceived(1));
  server.Stop(std::chrono::seconds(5));
  client.join();
  ASSERT_TRUE(status.ok()) << status.error_code() << ": " << status.error_message();
  EXPECT_EQ(response.overall_code(), Response::OK);
  EXPECT_EQ(response.statuses(0).limit_remaining(), 9u);
}

// Verifies that a call still in flight when the grace runs out is cancelled, and that Stop
// returns only once the limiter has answered it (the response buffer stays valid until then).
TEST_F(GrpcServerTest, StopCancelsCallsPastTheGrace) {
  SlowStore store(clock_, std::chrono::milliseconds(500));
  auto limiter = MakeLimiter(store, FailurePolicy::kFailOpen);
  GrpcServer server({.address = "127.0.0.1:0"}, *limiter);
  ASSERT_TRUE(server.Start().ok());
  auto stub = Stub(server);
  Response response;
  ::grpc::Status status;
  std::thread client([&] { status = Call(*stub, UserRequest("d"), &response); });
  ASSERT_TRUE(store.WaitReceived(1));
  server.Stop(std::chrono::milliseconds(20));
  client.join();
  EXPECT_FALSE(status.ok());
}

// Verifies that a busy or impossible address is a Start error naming the address and the
// reason, and that a busy port is never shared silently (no SO_REUSEPORT).
TEST_F(GrpcServerTest, BindFailuresAreClearErrors) {
  MemoryStore store(clock_);
  auto limiter = MakeLimiter(store, FailurePolicy::kFailOpen);
  GrpcServer first({.address = "127.0.0.1:0"}, *limiter);
  ASSERT_TRUE(first.Start().ok());
  const std::string busy = "127.0.0.1:" + std::to_string(first.port());

  GrpcServer second({.address = busy}, *limiter);
  absl::Status s = second.Start();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(s.message().find(busy), absl::string_view::npos) << s;
  EXPECT_NE(s.message().find("Address already in use"), absl::string_view::npos) << s;
  EXPECT_EQ(second.port(), 0);
  second.Stop(std::chrono::seconds(0));  // harmless when never started

  GrpcServer foreign({.address = "192.0.2.1:0"}, *limiter);  // TEST-NET-1: not ours
  s = foreign.Start();
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("Cannot assign requested address"), absl::string_view::npos) << s;
  first.Stop(std::chrono::seconds(1));
}

}  // namespace
}  // namespace sluice::grpc_api
