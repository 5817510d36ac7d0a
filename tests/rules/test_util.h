// Helpers for the rules tests: YAML written to a temporary folder, requests built from
// attribute names.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "rules/attributes.h"
#include "rules/loader.h"
#include "rules/rule_set.h"

namespace sluice::rules::testing {

// A fresh folder under $TMPDIR (or /tmp), removed with everything in it on destruction.
class TempDir {
 public:
  TempDir() {
    const char* tmp = std::getenv("TMPDIR");
    std::string templ =
        std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/sluice_rules_test.XXXXXX";
    if (mkdtemp(templ.data()) == nullptr) ADD_FAILURE() << "mkdtemp failed";
    path_ = templ;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }

  // Writes `contents` to `name` (sub-folders created) and returns the full path.
  std::string Write(std::string_view name, std::string_view contents) const {
    const std::filesystem::path file = std::filesystem::path(path_) / name;
    std::filesystem::create_directories(file.parent_path());
    std::ofstream(file, std::ios::binary) << contents;
    return file.string();
  }

 private:
  std::string path_;
};

// Loads the given files; the test fails (and nullptr comes back) on any problem.
inline std::shared_ptr<const RuleSet> LoadOk(const std::vector<std::string>& paths) {
  LoadResult result = LoadRules(paths);
  for (const std::string& p : result.problems) ADD_FAILURE() << "unexpected problem: " << p;
  return result.rule_set;
}

// Writes `yaml` to a temporary file and loads it; the test fails on any problem.
inline std::shared_ptr<const RuleSet> LoadYaml(std::string_view yaml) {
  TempDir dir;
  return LoadOk({dir.Write("rules.yaml", yaml)});
}

// A request from (attribute name, value) pairs: "tier", "headers.X-Client", "ip_address", ...
inline RequestAttributes Req(
    std::initializer_list<std::pair<std::string_view, std::string_view>> attributes) {
  RequestAttributes r;
  for (const auto& [name, value] : attributes) {
    std::optional<AttributeRef> ref = ParseAttributeName(name);
    if (!ref.has_value()) {
      ADD_FAILURE() << "bad attribute name in test: " << name;
      continue;
    }
    switch (ref->attribute) {
      case Attribute::kUserId:
        r.user_id = value;
        break;
      case Attribute::kApiKey:
        r.api_key = value;
        break;
      case Attribute::kIpAddress:
        r.SetIpAddress(value);
        break;
      case Attribute::kEndpoint:
        r.endpoint = value;
        break;
      case Attribute::kMethod:
        r.method = value;
        break;
      case Attribute::kTier:
        r.tier = value;
        break;
      case Attribute::kHeader:
        // The caller's spelling, not the lowered one: tests check case-insensitivity.
        r.SetHeader(name.substr(std::string_view("headers.").size()), value);
        break;
    }
  }
  return r;
}

// The ids of the rules that apply to `request`, in the order Applicable returns them.
inline std::vector<std::string> Applicable(const RuleSet& set, const RequestAttributes& request) {
  RuleList rules;
  set.Applicable(request, rules);
  std::vector<std::string> ids;
  for (const Rule* r : rules) ids.push_back(r->id);
  return ids;
}

}  // namespace sluice::rules::testing
