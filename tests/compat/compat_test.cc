// envoyproxy/ratelimit's own test cases, replayed against the real `sluice` binary (CONTRACT §3.2,
// §6; issue 11). The cases are data: config_cases.yaml (which of upstream's test configs load,
// and the wording of the refusals) and request_cases.yaml (ShouldRateLimit sequences with
// upstream's expected answers). See tests/compat/README.md for the format, the origin of each
// case and the cases left out.
//
// Every case is its own parameterized test, named after the case. A request case starts its own
// server (fresh counters, its own server config), on the memory store and again on a real
// redis-server (each case with its own key prefix).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "envoy/service/ratelimit/v3/rls.grpc.pb.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/wire_format_lite.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "nlohmann/json.hpp"
#include "tests/integration/sluice_process.h"
#include "tests/store/redis_server.h"

#ifndef SLUICE_COMPAT_DIR
#error "SLUICE_COMPAT_DIR must name tests/compat (set by tests/CMakeLists.txt)"
#endif

namespace sluice {
namespace {

namespace fs = std::filesystem;
namespace rls = ::envoy::service::ratelimit::v3;
using ::sluice::itest::Files;
using ::sluice::itest::FreePort;
using ::sluice::itest::HttpGet;
using ::sluice::itest::ReadFile;
using ::sluice::itest::SluiceProcess;
using Response = rls::RateLimitResponse;

constexpr auto kCallTimeout = std::chrono::seconds(10);
constexpr auto kCommandTimeout = std::chrono::seconds(20);

const fs::path kCompatDir = SLUICE_COMPAT_DIR;

// ---------------------------------------------------------------------------------------------
// Case files.

// A case file's cases, or the reason it could not be read (which fails a test of its own, so a
// broken case file cannot pass silently).
struct CaseFile {
  std::vector<YAML::Node> cases;
  std::string error;
};

CaseFile LoadCases(const std::string& file) {
  CaseFile out;
  try {
    const YAML::Node root = YAML::LoadFile((kCompatDir / file).string());
    for (const YAML::Node& c : root["cases"]) out.cases.push_back(c);
  } catch (const std::exception& e) {
    out.error = file + ": " + e.what();
  }
  return out;
}

const CaseFile& ConfigCases() {
  static const CaseFile cases = LoadCases("config_cases.yaml");
  return cases;
}
const CaseFile& RequestCases() {
  static const CaseFile cases = LoadCases("request_cases.yaml");
  return cases;
}

std::vector<std::string> CaseNames(const CaseFile& file) {
  std::vector<std::string> names;
  for (const YAML::Node& c : file.cases) names.push_back(c["name"].as<std::string>());
  return names;
}

YAML::Node FindCase(const CaseFile& file, const std::string& name) {
  for (const YAML::Node& c : file.cases) {
    if (c["name"].as<std::string>() == name) return c;
  }
  return YAML::Node();
}

// A data file by its path under tests/compat/ (upstream/… is upstream's, data/… Sluice's own).
std::string CaseDataFile(const std::string& rel) {
  const fs::path path = kCompatDir / rel;
  EXPECT_TRUE(fs::exists(path)) << path;
  return ReadFile(path);
}

// The rules folder of a case: upstream's files in the order listed (a number in front of each
// name keeps that order, which is also the order envoyproxy/ratelimit reads them in).
Files RulesFolder(const YAML::Node& files) {
  Files out;
  int n = 0;
  for (const YAML::Node& f : files) {
    const std::string rel = f.as<std::string>();
    char prefix[16];
    std::snprintf(prefix, sizeof prefix, "%02d-", ++n);
    out["rules/" + std::string(prefix) + fs::path(rel).filename().string()] = CaseDataFile(rel);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// `sluice validate`: a short-lived command with its output captured.

struct CommandResult {
  int exit_code = -1;  // -1: killed (hang) or not exited normally
  std::string out;
  std::string err;
};

CommandResult RunSluice(const std::vector<std::string>& args, const fs::path& dir) {
  std::vector<std::string> all = {SLUICE_BIN};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  const std::string out_path = (dir / "cmd.out").string();
  const std::string err_path = (dir / "cmd.err").string();
  const int out_fd = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  const int err_fd = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(out_fd, STDOUT_FILENO);
    dup2(err_fd, STDERR_FILENO);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(out_fd);
  close(err_fd);
  CommandResult r;
  const auto deadline = std::chrono::steady_clock::now() + kCommandTimeout;
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      status = -1;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (status != -1 && WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  r.out = ReadFile(out_path);
  r.err = ReadFile(err_path);
  return r;
}

class TempDir {
 public:
  TempDir() {
    std::string templ = (fs::temp_directory_path() / "sluice-compat.XXXXXX").string();
    if (mkdtemp(templ.data()) == nullptr) ADD_FAILURE() << "mkdtemp failed";
    path_ = templ;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// ---------------------------------------------------------------------------------------------
// Config-load cases: `sluice validate FILES` and `sluice serve` on a folder of them.

class ConfigCaseTest : public ::testing::TestWithParam<std::string> {};

TEST(CompatCaseFiles, Readable) {
  EXPECT_EQ(ConfigCases().error, "");
  EXPECT_EQ(RequestCases().error, "");
  EXPECT_FALSE(ConfigCases().cases.empty());
  EXPECT_FALSE(RequestCases().cases.empty());
}

// Verifies that Sluice loads what envoyproxy/ratelimit loads and refuses what it refuses, with
// its wording, naming the file at fault.
TEST_P(ConfigCaseTest, LoadsAsUpstream) {
  const YAML::Node c = FindCase(ConfigCases(), GetParam());
  ASSERT_TRUE(c.IsDefined());
  SCOPED_TRACE(c["source"].as<std::string>(""));
  const bool loads = c["loads"].as<bool>();
  const std::string error = c["error"].as<std::string>("");
  const Files files = RulesFolder(c["files"]);

  // validate, with the files given one by one in the case's order.
  TempDir dir;
  std::vector<std::string> args = {"validate"};
  std::string error_file;
  for (const auto& [rel, text] : files) {
    const fs::path path = dir.path() / fs::path(rel).filename();
    std::ofstream(path, std::ios::binary) << text;
    args.push_back(path.string());
    error_file = path.string();  // upstream names the file it was reading when it failed
  }
  if (c["error_file"]) {
    error_file = (dir.path() / c["error_file"].as<std::string>()).string();
  }
  const CommandResult v = RunSluice(args, dir.path());
  if (loads) {
    EXPECT_EQ(v.exit_code, 0) << v.err;
    EXPECT_EQ(v.out, "ok\n");
  } else {
    EXPECT_EQ(v.exit_code, 1) << v.out << v.err;
    bool found = false;
    std::istringstream lines(v.err);
    for (std::string line; std::getline(lines, line);) {
      found |= line.rfind(error_file, 0) == 0 && line.find(error) != std::string::npos;
    }
    EXPECT_TRUE(found) << "expected a line starting with " << error_file << " and saying \""
                       << error << "\"; stderr:\n"
                       << v.err;
  }

  // serve: starts with the folder, or exits 1 saying why.
  SluiceProcess server(files);
  if (loads) {
    EXPECT_TRUE(server.Start());
    const int status = server.Terminate();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << server.Log();
  } else {
    server.Spawn({"serve", "--http", "127.0.0.1:" + std::to_string(FreePort()), "--grpc",
                  "127.0.0.1:" + std::to_string(FreePort())});
    const int status = server.WaitExit();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1)
        << "wait status " << status << "; log:\n"
        << server.Log();
    EXPECT_NE(server.Log().find(error), std::string::npos) << server.Log();
  }
}

INSTANTIATE_TEST_SUITE_P(Upstream, ConfigCaseTest, ::testing::ValuesIn(CaseNames(ConfigCases())),
                         [](const auto& info) { return info.param; });

// ---------------------------------------------------------------------------------------------
// Request cases.

// Prometheus samples of sluice_requests_total: rule_id → result → value.
using RuleCounts = std::map<std::string, std::map<std::string, double>>;

// Reads one label value (after `="`), undoing the exposition format's escapes.
std::string LabelValue(const std::string& line, size_t pos, size_t* end) {
  std::string out;
  for (; pos < line.size() && line[pos] != '"'; ++pos) {
    if (line[pos] == '\\' && pos + 1 < line.size()) {
      ++pos;
      out.push_back(line[pos] == 'n' ? '\n' : line[pos]);
    } else {
      out.push_back(line[pos]);
    }
  }
  *end = pos;
  return out;
}

RuleCounts RequestCounts(const std::string& metrics) {
  RuleCounts out;
  std::istringstream in(metrics);
  const std::string name = "sluice_requests_total{";
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(name, 0) != 0) continue;
    std::map<std::string, std::string> labels;
    size_t pos = name.size();
    while (pos < line.size() && line[pos] != '}') {
      const size_t eq = line.find("=\"", pos);
      if (eq == std::string::npos) break;
      const std::string label = line.substr(pos, eq - pos);
      size_t end = 0;
      labels[label] = LabelValue(line, eq + 2, &end);
      pos = end + 1;
      if (pos < line.size() && line[pos] == ',') ++pos;
    }
    const size_t space = line.rfind(' ');
    out[labels["rule_id"]][labels["result"]] = std::stod(line.substr(space + 1));
  }
  return out;
}

rls::RateLimitRequest BuildRequest(const YAML::Node& step) {
  rls::RateLimitRequest r;
  r.set_domain(step["domain"].as<std::string>(""));
  if (step["hits_addend"]) r.set_hits_addend(step["hits_addend"].as<uint32_t>());
  for (const YAML::Node& d : step["descriptors"]) {
    auto* desc = r.add_descriptors();
    for (const YAML::Node& e : d["entries"]) {
      auto* entry = desc->add_entries();
      entry->set_key(e[0].as<std::string>());
      entry->set_value(e[1].as<std::string>());
    }
    if (d["limit"]) {
      desc->mutable_limit()->set_requests_per_unit(d["limit"]["requests_per_unit"].as<uint32_t>());
      ::envoy::type::v3::RateLimitUnit unit = ::envoy::type::v3::SECOND;
      EXPECT_TRUE(
          ::envoy::type::v3::RateLimitUnit_Parse(d["limit"]["unit"].as<std::string>(), &unit));
      desc->mutable_limit()->set_unit(unit);
    }
    if (d["hits_addend"]) desc->mutable_hits_addend()->set_value(d["hits_addend"].as<uint64_t>());
  }
  return r;
}

// A YAML scalar or a sequence with one value per repetition.
YAML::Node PerIteration(const YAML::Node& node, int iteration) {
  if (node.IsSequence()) return node[static_cast<size_t>(iteration)];
  return node;
}

// Field 6 of RateLimitResponse (dynamic_metadata, a google.protobuf.Struct) read from the wire
// bytes, so that the check does not depend on the .proto Sluice compiles: null when absent.
nlohmann::json DynamicMetadata(const Response& response) {
  using ::google::protobuf::internal::WireFormatLite;
  const std::string bytes = response.SerializeAsString();
  ::google::protobuf::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(bytes.data()),
                                              static_cast<int>(bytes.size()));
  for (uint32_t tag; (tag = in.ReadTag()) != 0;) {
    if (WireFormatLite::GetTagFieldNumber(tag) == 6 &&
        WireFormatLite::GetTagWireType(tag) == WireFormatLite::WIRETYPE_LENGTH_DELIMITED) {
      std::string payload;
      uint32_t size = 0;
      if (!in.ReadVarint32(&size) || !in.ReadString(&payload, static_cast<int>(size))) break;
      ::google::protobuf::Struct s;
      std::string json;
      if (!s.ParseFromString(payload) ||
          !::google::protobuf::util::MessageToJsonString(s, &json).ok()) {
        return "unparsable dynamic_metadata";
      }
      return nlohmann::json::parse(json);
    }
    if (!WireFormatLite::SkipField(&in, tag)) break;
  }
  return nullptr;
}

nlohmann::json YamlToJson(const YAML::Node& node) {
  if (node.IsMap()) {
    nlohmann::json out = nlohmann::json::object();
    for (const auto& kv : node) out[kv.first.as<std::string>()] = YamlToJson(kv.second);
    return out;
  }
  if (node.IsSequence()) {
    nlohmann::json out = nlohmann::json::array();
    for (const YAML::Node& n : node) out.push_back(YamlToJson(n));
    return out;
  }
  if (node.IsNull()) return nullptr;
  return node.as<std::string>();  // scalars compared as text (Struct numbers are doubles)
}

// `expected` (from YAML, scalars as text) is contained in `actual`.
bool JsonContains(const nlohmann::json& actual, const nlohmann::json& expected) {
  if (expected.is_object()) {
    if (!actual.is_object()) return false;
    for (const auto& [k, v] : expected.items()) {
      if (!actual.contains(k) || !JsonContains(actual[k], v)) return false;
    }
    return true;
  }
  if (expected.is_array()) {
    if (!actual.is_array() || actual.size() != expected.size()) return false;
    for (size_t i = 0; i < expected.size(); ++i) {
      if (!JsonContains(actual[i], expected[i])) return false;
    }
    return true;
  }
  if (expected.is_null()) return actual.is_null();
  const std::string text = expected.get<std::string>();
  if (actual.is_string()) return actual.get<std::string>() == text;
  if (actual.is_number()) return std::stod(text) == actual.get<double>();
  if (actual.is_boolean()) return text == (actual.get<bool>() ? "true" : "false");
  return false;
}

// Whole seconds: an exact number, or {min, max}; `below_previous: true` asks for less than the
// same status of the previous call.
void ExpectDuration(const YAML::Node& want, const Response::DescriptorStatus& s,
                    std::optional<int64_t> previous) {
  if (want.IsScalar() && want.as<std::string>() == "none") {
    EXPECT_FALSE(s.has_duration_until_reset()) << s.duration_until_reset().DebugString();
    return;
  }
  ASSERT_TRUE(s.has_duration_until_reset());
  EXPECT_EQ(s.duration_until_reset().nanos(), 0) << "not whole seconds";
  const int64_t seconds = s.duration_until_reset().seconds();
  if (want.IsScalar()) {
    EXPECT_EQ(seconds, want.as<int64_t>());
    return;
  }
  if (want["min"]) {
    EXPECT_GE(seconds, want["min"].as<int64_t>());
  }
  if (want["max"]) {
    EXPECT_LE(seconds, want["max"].as<int64_t>());
  }
  if (want["below_previous"].as<bool>(false)) {
    ASSERT_TRUE(previous.has_value()) << "no previous call";
    EXPECT_LT(seconds, *previous);
  }
}

void ExpectStatus(const YAML::Node& want, const Response::DescriptorStatus& s, int iteration,
                  std::optional<int64_t> previous_duration) {
  if (want["code"]) {
    EXPECT_EQ(Response::Code_Name(s.code()),
              PerIteration(want["code"], iteration).as<std::string>());
  }
  if (const YAML::Node limit = want["current_limit"]) {
    if (limit.IsScalar() && limit.as<std::string>() == "none") {
      EXPECT_FALSE(s.has_current_limit()) << s.current_limit().DebugString();
    } else {
      ASSERT_TRUE(s.has_current_limit());
      if (limit["requests_per_unit"]) {
        EXPECT_EQ(s.current_limit().requests_per_unit(), limit["requests_per_unit"].as<uint32_t>());
      }
      if (limit["unit"]) {
        EXPECT_EQ(Response::RateLimit::Unit_Name(s.current_limit().unit()),
                  limit["unit"].as<std::string>());
      }
      if (limit["name"]) {
        EXPECT_EQ(s.current_limit().name(), limit["name"].as<std::string>());
      }
    }
  }
  if (want["limit_remaining"]) {
    EXPECT_EQ(s.limit_remaining(), PerIteration(want["limit_remaining"], iteration).as<uint32_t>());
  }
  if (want["duration_until_reset"]) {
    ExpectDuration(want["duration_until_reset"], s, previous_duration);
  }
}

void ExpectResponse(const YAML::Node& want, const rls::RateLimitRequest& request,
                    const ::grpc::Status& status, const Response& r, int iteration,
                    const std::optional<Response>& previous) {
  if (const YAML::Node error = want["grpc_error"]) {
    EXPECT_FALSE(status.ok());
    static const std::map<std::string, ::grpc::StatusCode> kCodes = {
        {"INVALID_ARGUMENT", ::grpc::StatusCode::INVALID_ARGUMENT},
        {"UNAVAILABLE", ::grpc::StatusCode::UNAVAILABLE},
        {"INTERNAL", ::grpc::StatusCode::INTERNAL},
        {"UNKNOWN", ::grpc::StatusCode::UNKNOWN}};
    const auto code = kCodes.find(error["code"].as<std::string>());
    ASSERT_NE(code, kCodes.end()) << "unknown gRPC code in the case file";
    EXPECT_EQ(status.error_code(), code->second) << status.error_message();
    if (error["message"]) {
      EXPECT_NE(status.error_message().find(error["message"].as<std::string>()), std::string::npos)
          << status.error_message();
    }
    return;
  }
  ASSERT_TRUE(status.ok()) << status.error_code() << ": " << status.error_message();
  ASSERT_EQ(r.statuses_size(), request.descriptors_size());
  if (want["overall_code"]) {
    EXPECT_EQ(Response::Code_Name(r.overall_code()),
              PerIteration(want["overall_code"], iteration).as<std::string>());
  }
  if (const YAML::Node statuses = want["statuses"]) {
    ASSERT_EQ(statuses.size(), static_cast<size_t>(r.statuses_size()));
    for (int i = 0; i < r.statuses_size(); ++i) {
      SCOPED_TRACE("status " + std::to_string(i));
      std::optional<int64_t> previous_duration;
      if (previous.has_value() && i < previous->statuses_size() &&
          previous->statuses(i).has_duration_until_reset()) {
        previous_duration = previous->statuses(i).duration_until_reset().seconds();
      }
      ExpectStatus(statuses[static_cast<size_t>(i)], r.statuses(i), iteration, previous_duration);
    }
  }
  if (const YAML::Node headers = want["response_headers_to_add"]) {
    std::vector<std::pair<std::string, std::string>> got;
    for (const auto& h : r.response_headers_to_add()) got.emplace_back(h.key(), h.value());
    std::vector<std::pair<std::string, std::string>> expected;
    for (const auto& kv : headers) {
      expected.emplace_back(kv.first.as<std::string>(), kv.second.as<std::string>());
    }
    // A value "A..B" accepts any integer from A to B (a reset time moves with the clock).
    for (size_t i = 0; i < expected.size() && i < got.size(); ++i) {
      const size_t dots = expected[i].second.find("..");
      if (dots == std::string::npos || got[i].first != expected[i].first) continue;
      const long low = std::stol(expected[i].second.substr(0, dots));
      const long high = std::stol(expected[i].second.substr(dots + 2));
      char* end = nullptr;
      const long value = std::strtol(got[i].second.c_str(), &end, 10);
      if (!got[i].second.empty() && *end == '\0' && value >= low && value <= high) {
        expected[i].second = got[i].second;
      }
    }
    EXPECT_EQ(got, expected);
  }
  if (const YAML::Node meta = want["dynamic_metadata"]) {
    const nlohmann::json actual = DynamicMetadata(r);
    if (meta.IsScalar() && meta.as<std::string>() == "none") {
      EXPECT_TRUE(actual.is_null()) << actual.dump();
    } else {
      EXPECT_TRUE(JsonContains(actual, YamlToJson(meta)))
          << "got " << actual.dump() << "\nwanted at least " << YamlToJson(meta).dump();
    }
  }
}

enum class Backend { kMemory, kRedis };

// Upstream's sequences count against minute, hour and day windows, which all roll over at a
// minute boundary: a case that straddles one sees a fresh window part-way (a request that should
// be over the limit is allowed). Waits, if need be, so that the case's steps (2 s plus their
// sleeps, generous under sanitizers) end before the next boundary.
void WaitForRoomInMinute(const YAML::Node& c) {
  auto needed = std::chrono::milliseconds(2000);
  for (const YAML::Node& step : c["steps"]) {
    if (step["sleep_ms"]) needed += std::chrono::milliseconds(step["sleep_ms"].as<int>());
  }
  const auto into_minute = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::system_clock::now().time_since_epoch()) %
                           std::chrono::minutes(1);
  const auto left = std::chrono::minutes(1) - into_minute;
  if (left < needed) std::this_thread::sleep_for(left + std::chrono::milliseconds(50));
}

// The server config of a case: its `server` snippet plus the store.
std::string ServerConfig(const YAML::Node& c, Backend backend, const std::string& redis_url) {
  YAML::Node config = c["server"] ? YAML::Clone(c["server"]) : YAML::Node(YAML::NodeType::Map);
  if (backend == Backend::kMemory) {
    config["store"]["backend"] = "memory";
  } else {
    config["store"]["backend"] = "redis";
    config["store"]["url"] = redis_url;
    config["store"]["key_prefix"] = "compat-" + c["name"].as<std::string>() + ":";
  }
  YAML::Emitter out;
  out << config;
  return std::string(out.c_str()) + "\n";
}

void RunRequestCase(const std::string& name, Backend backend, const std::string& redis_url) {
  const YAML::Node c = FindCase(RequestCases(), name);
  ASSERT_TRUE(c.IsDefined());
  SCOPED_TRACE(c["source"].as<std::string>(""));
  Files files = RulesFolder(c["rules"]);
  files["sluice.yaml"] = ServerConfig(c, backend, redis_url);
  SluiceProcess server(files);
  ASSERT_TRUE(server.Start()) << "server config:\n" << files["sluice.yaml"];
  auto channel = ::grpc::CreateChannel(server.grpc_target(), ::grpc::InsecureChannelCredentials());
  auto stub = rls::RateLimitService::NewStub(channel);
  WaitForRoomInMinute(c);

  std::optional<Response> previous;
  int step_number = 0;
  for (const YAML::Node& step : c["steps"]) {
    ++step_number;
    const std::string label = step["note"].as<std::string>("");
    SCOPED_TRACE("step " + std::to_string(step_number) + (label.empty() ? "" : ": " + label));
    if (step["sleep_ms"]) {
      std::this_thread::sleep_for(std::chrono::milliseconds(step["sleep_ms"].as<int>()));
      continue;
    }
    if (const YAML::Node metrics = step["metrics"]) {
      const RuleCounts counts = RequestCounts(HttpGet(server.http_port(), "/metrics"));
      for (const auto& rule : metrics) {
        const std::string rule_id = rule.first.as<std::string>();
        for (const auto& result : rule.second) {
          const std::string result_name = result.first.as<std::string>();
          double got = 0;
          if (auto it = counts.find(rule_id); it != counts.end()) {
            if (auto jt = it->second.find(result_name); jt != it->second.end()) got = jt->second;
          }
          EXPECT_EQ(got, result.second.as<double>())
              << "sluice_requests_total{rule_id=\"" << rule_id << "\",result=\"" << result_name
              << "\"}";
        }
      }
      continue;
    }
    const rls::RateLimitRequest request = BuildRequest(step);
    const int repeat = step["repeat"].as<int>(1);
    for (int i = 0; i < repeat; ++i) {
      SCOPED_TRACE("iteration " + std::to_string(i + 1) + " of " + std::to_string(repeat));
      ::grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + kCallTimeout);
      Response response;
      const ::grpc::Status status = stub->ShouldRateLimit(&context, request, &response);
      if (step["expect"]) {
        ExpectResponse(step["expect"], request, status, response, i, previous);
      } else {
        EXPECT_TRUE(status.ok()) << status.error_message();  // a charge whose answer is unused
      }
      previous = response;
    }
  }
}

class RequestCaseTest : public ::testing::TestWithParam<std::string> {};

// Verifies one of upstream's request sequences on the memory store.
TEST_P(RequestCaseTest, Memory) { RunRequestCase(GetParam(), Backend::kMemory, ""); }

// Verifies the same sequence on a real Redis (the store envoyproxy/ratelimit runs on).
TEST_P(RequestCaseTest, Redis) {
  if (FindCase(RequestCases(), GetParam())["memory_only"].as<bool>(false)) {
    GTEST_SKIP() << "memory_only: " << FindCase(RequestCases(), GetParam())["why"];
  }
  static std::unique_ptr<testing::RedisServer> redis;
  if (redis == nullptr) {
    try {
      redis = std::make_unique<testing::RedisServer>();
    } catch (const std::exception& e) {
      GTEST_SKIP() << "no redis-server: " << e.what();
    }
  }
  RunRequestCase(GetParam(), Backend::kRedis, redis->url());
}

INSTANTIATE_TEST_SUITE_P(Upstream, RequestCaseTest, ::testing::ValuesIn(CaseNames(RequestCases())),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace sluice
