// The Server's life: start, reload, stop in the documented order.
#include "app/server.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

namespace sluice::app {
namespace {

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("sluice_server_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
    WriteRules(1);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  void WriteRules(int limit) {
    std::ofstream(dir_ / "rules.yaml")
        << "rules:\n  - {id: r, key: [user_id], limit: " << limit << ", window: 1h}\n";
  }

  ServerConfig Config() {
    ServerConfig config;
    config.http = "127.0.0.1:0";
    config.grpc = "";
    config.rule_paths = {(dir_ / "rules.yaml").string()};
    return config;
  }

  std::filesystem::path dir_;
};

// Verifies that stopping while the watcher reloads rules in a storm is clean: the watcher stops
// before the store goes away, so a reload never reads a store being destroyed (a data race
// ThreadSanitizer reports, and a use-after-free AddressSanitizer can, when the order is wrong).
TEST_F(ServerTest, StopsCleanlyDuringAReloadStorm) {
  for (int round = 0; round < 5; ++round) {
    auto server = Server::Create(Config());
    ASSERT_TRUE(server.ok()) << server.status();
    ASSERT_TRUE((*server)->Start().ok());
    std::atomic<bool> done{false};
    std::thread writer([&] {
      for (int i = 2; !done.load(); ++i) WriteRules(i);
    });
    std::thread sighups([&] {
      while (!done.load()) (*server)->Reload("sighup");
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    done.store(true);
    sighups.join();  // SIGHUP reloads come from main's thread, the one that stops
    (*server)->Stop();
    writer.join();
    (*server)->Stop();  // idempotent
  }
}

// Verifies that invalid rules fail Start and leave nothing running.
TEST_F(ServerTest, InvalidRulesFailStart) {
  std::ofstream(dir_ / "rules.yaml") << "rules:\n  - {id: r, limit: nope}\n";
  auto server = Server::Create(Config());
  ASSERT_TRUE(server.ok());
  EXPECT_FALSE((*server)->Start().ok());
}

// Verifies that a busy port fails Start with the reason.
TEST_F(ServerTest, BusyPortFailsStart) {
  auto first = Server::Create(Config());
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE((*first)->Start().ok());
  ServerConfig config = Config();
  config.http = "127.0.0.1:" + std::to_string((*first)->http_port());
  auto second = Server::Create(config);
  ASSERT_TRUE(second.ok());
  const absl::Status s = (*second)->Start();
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("cannot listen"), absl::string_view::npos) << s;
}

}  // namespace
}  // namespace sluice::app
