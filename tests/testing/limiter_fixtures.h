// Test helpers shared by the limiter and face tests: rule sets from YAML text, and a store that
// can be switched down to exercise the failure policies.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "rules/loader.h"
#include "store/memory/memory_store.h"

namespace sluice::testing {

// Loads `yaml` (a rules file or an Envoy domain file) through the real loader. A load problem
// fails the calling test and gives the empty rule set.
inline std::shared_ptr<const rules::RuleSet> RuleSetFromYaml(const std::string& yaml) {
  static std::atomic<int> n{0};
  const auto path =
      std::filesystem::temp_directory_path() /
      ("sluice_test_rules_" + std::to_string(::getpid()) + "_" + std::to_string(++n) + ".yaml");
  std::ofstream(path) << yaml;
  auto loaded = rules::LoadRuleSet({path.string()});
  std::filesystem::remove(path);
  if (!loaded.ok()) ADD_FAILURE() << loaded.status();
  return loaded.ok() ? *loaded : rules::RuleSet::Empty();
}

// The memory store, unless switched down: then every round trip fails as a refused connection
// would. A test double for the failure policies; real Redis failures are tested in
// tests/integration and tests/store.
class SwitchableStore final : public Store {
 public:
  explicit SwitchableStore(const Clock& clock) : inner_(clock) {}
  void Charge(std::span<const ChargeItem> items, std::span<Decision> decisions,
              Done done) override {
    if (down_.load()) return std::move(done)(absl::UnavailableError("connection refused"));
    inner_.Charge(items, decisions, std::move(done));
  }
  void Release(std::string_view key, std::string_view lease, Done done) override {
    if (down_.load()) return std::move(done)(absl::UnavailableError("connection refused"));
    inner_.Release(key, lease, std::move(done));
  }
  void Reset(std::string_view key, const Limit& limit, Done done) override {
    if (down_.load()) return std::move(done)(absl::UnavailableError("connection refused"));
    inner_.Reset(key, limit, std::move(done));
  }
  std::string_view backend() const override { return "switchable"; }
  void set_down(bool down) { down_.store(down); }

 private:
  MemoryStore inner_;
  std::atomic<bool> down_{false};
};

}  // namespace sluice::testing
