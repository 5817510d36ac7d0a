// `sluice admin` (src/cli/): the pure parts — the rules diff of `rules apply`, error and table
// rendering, URL parsing — without a server; then the command line and the HTTP client against
// a scripted one-connection-per-request server on loopback, which records what it was sent.
#include "cli/admin_command.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "cli/admin_render.h"
#include "cli/http_client.h"
#include "cli/rules_diff.h"
#include "nlohmann/json.hpp"
#include "rules/loader.h"

namespace sluice::cli {
namespace {

using json = nlohmann::json;
using Kind = RuleChange::Kind;

json Listing(std::vector<json> rules, int version = 7) {
  return json{{"version", version}, {"rules", std::move(rules)}};
}

json DbRule(json rule, int revision) {
  rule["source"] = "database";
  rule["revision"] = revision;
  return rule;
}

FileRule File(const json& rule, std::string location = "rules.yaml:2:5") {
  return {.id = rule.at("id").get<std::string>(), .json = rule.dump(), .location = location};
}

// --- the diff ---

// Verifies a rule only in the file is created, with the file's JSON as the body.
TEST(RulesDiffTest, CreatesRulesNewToTheDatabase) {
  const json rule = {{"id", "a"}, {"limit", 10}, {"window", "1s"}};
  auto diff = DiffRules(std::vector{File(rule)}, Listing({}));
  ASSERT_TRUE(diff.ok()) << diff.status();
  ASSERT_EQ(diff->changes.size(), 1u);
  EXPECT_EQ(diff->changes[0].kind, Kind::kCreate);
  EXPECT_EQ(diff->changes[0].id, "a");
  EXPECT_EQ(json::parse(diff->changes[0].body), rule);
  EXPECT_EQ(RenderDiff(*diff), "+ a\n1 created, 0 updated, 0 deleted\n");
}

// Verifies a database rule equal to the file's (as JSON values: key order and spacing do not
// count, `source` and `revision` are the API's) is left alone.
TEST(RulesDiffTest, EqualRulesAreNoChange) {
  const json rule = {{"id", "a"}, {"limit", 10}, {"window", "1s"}, {"match", {{"tier", "free"}}}};
  FileRule file{.id = "a",
                .json = R"({ "window": "1s", "match": {"tier": "free"}, "limit": 10, "id": "a" })",
                .location = "f:1:1"};
  auto diff = DiffRules(std::vector{file}, Listing({DbRule(rule, 3)}));
  ASSERT_TRUE(diff.ok()) << diff.status();
  EXPECT_TRUE(diff->changes.empty());
  EXPECT_EQ(diff->unchanged, 1u);
  EXPECT_EQ(RenderDiff(*diff), "no changes\n");
}

// Verifies a changed rule is an update carrying its listing revision (for If-Match) and the
// fields that differ, nested ones as dotted paths, added and removed ones as (unset).
TEST(RulesDiffTest, UpdatesChangedRulesFieldByField) {
  const json before = {{"id", "a"},          {"limit", 100},
                       {"window", "1m"},     {"match", {{"tier", "free"}, {"method", "GET"}}},
                       {"description", "x"}, {"key", {"user_id"}}};
  const json after = {{"id", "a"},      {"limit", 200},
                      {"window", "1m"}, {"match", {{"tier", "pro"}, {"method", "GET"}}},
                      {"burst", 40},    {"key", {"user_id", "endpoint"}}};
  auto diff = DiffRules(std::vector{File(after)}, Listing({DbRule(before, 12)}));
  ASSERT_TRUE(diff.ok()) << diff.status();
  ASSERT_EQ(diff->changes.size(), 1u);
  const RuleChange& c = diff->changes[0];
  EXPECT_EQ(c.kind, Kind::kUpdate);
  EXPECT_EQ(c.revision, "12");
  EXPECT_EQ(json::parse(c.body), after);
  EXPECT_EQ(RenderDiff(*diff),
            "~ a\n"
            "  burst: (unset) -> 40\n"
            "  description: \"x\" -> (unset)\n"
            "  key: [\"user_id\"] -> [\"user_id\",\"endpoint\"]\n"
            "  limit: 100 -> 200\n"
            "  match.tier: \"free\" -> \"pro\"\n"
            "0 created, 1 updated, 0 deleted\n");
}

// Verifies a database rule the file does not have is deleted (with its revision), after the
// creates and updates, and that rules from files on the server are never deleted.
TEST(RulesDiffTest, DeletesDatabaseRulesTheFileLacks) {
  const json keep = {{"id", "keep"}, {"limit", 1}, {"window", "1s"}};
  const json gone = {{"id", "gone"}, {"limit", 1}, {"window", "1s"}};
  const json from_file = {{"id", "f"},
                          {"limit", 1},
                          {"window", "1s"},
                          {"source", "file:/etc/sluice/r.yaml"},
                          {"revision", nullptr}};
  const json added = {{"id", "new"}, {"limit", 2}, {"window", "1s"}};
  auto diff = DiffRules(std::vector{File(keep), File(added)},
                        Listing({DbRule(gone, 4), from_file, DbRule(keep, 2)}));
  ASSERT_TRUE(diff.ok()) << diff.status();
  ASSERT_EQ(diff->changes.size(), 2u);
  EXPECT_EQ(diff->changes[0].kind, Kind::kCreate);
  EXPECT_EQ(diff->changes[1].kind, Kind::kDelete);
  EXPECT_EQ(diff->changes[1].id, "gone");
  EXPECT_EQ(diff->changes[1].revision, "4");
  EXPECT_EQ(diff->unchanged, 1u);
  EXPECT_EQ(RenderDiff(*diff), "+ new\n- gone\n1 created, 0 updated, 1 deleted\n");
}

// Verifies an empty file against a database with rules deletes them all, and a string
// revision is kept as it is.
TEST(RulesDiffTest, EmptyFileDeletesEveryDatabaseRule) {
  auto diff =
      DiffRules({}, Listing({DbRule({{"id", "x"}}, 1),
                             json{{"id", "y"}, {"source", "database"}, {"revision", "abc"}}}));
  ASSERT_TRUE(diff.ok()) << diff.status();
  ASSERT_EQ(diff->changes.size(), 2u);
  EXPECT_EQ(diff->changes[1].revision, "abc");
  EXPECT_EQ(DiffSummary(*diff), "0 created, 0 updated, 2 deleted");
}

// Verifies a file rule whose id a file on the server defines is refused, every clash named
// with its location and the server's source, and nothing is planned.
TEST(RulesDiffTest, RefusesIdsOfTheServersFileRules) {
  const json a = {{"id", "a"}, {"limit", 1}, {"window", "1s"}};
  const json b = {{"id", "b"}, {"limit", 1}, {"window", "1s"}};
  json server_a = a;
  server_a["source"] = "file:rules/base.yaml";
  json server_b = b;
  server_b["source"] = "file:rules/other.yaml";
  auto diff = DiffRules(std::vector{File(a, "mine.yaml:3:5"), File(b, "mine.yaml:7:5")},
                        Listing({server_a, server_b}));
  ASSERT_FALSE(diff.ok());
  EXPECT_EQ(diff.status().code(), absl::StatusCode::kFailedPrecondition);
  const std::string message(diff.status().message());
  EXPECT_NE(
      message.find("mine.yaml:3:5: rule 'a' is defined on the server by file:rules/base.yaml"),
      std::string::npos)
      << message;
  EXPECT_NE(message.find("mine.yaml:7:5: rule 'b' is defined on the server by file:rules/other"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("read-only"), std::string::npos) << message;
}

// Verifies a listing that is not {"rules": [...]} with string ids is refused, not guessed at.
TEST(RulesDiffTest, RefusesMalformedListings) {
  for (const json& listing :
       {json::array(), json{{"rules", 5}}, json{{"version", 1}},
        json{{"rules", {json{{"limit", 1}}}}}, json{{"rules", {json{{"id", 5}}}}}}) {
    auto diff = DiffRules({}, listing);
    EXPECT_EQ(diff.status().code(), absl::StatusCode::kInvalidArgument) << listing.dump();
  }
}

// Verifies DiffFields compares values (100 and 100.0 are equal) and non-objects whole.
TEST(RulesDiffTest, DiffFieldsComparesValues) {
  EXPECT_TRUE(DiffFields(json{{"limit", 100}}, json{{"limit", 100.0}}).empty());
  EXPECT_EQ(DiffFields(json{{"key", {"a", "b"}}}, json{{"key", {"b", "a"}}}),
            (std::vector<FieldChange>{{"key", json{"a", "b"}, json{"b", "a"}}}));
  EXPECT_EQ(DiffFields(json{{"match", nullptr}}, json{{"match", {{"tier", "x"}}}}),
            (std::vector<FieldChange>{{"match", json(nullptr), json{{"tier", "x"}}}}));
}

// Verifies a rule loaded from a YAML rules file by the project's loader carries the JSON the
// diff compares: the same rule stored by the API (plus source and revision) is no change,
// whatever the YAML's spelling.
TEST(RulesDiffTest, LoadedFileRulesCompareWithTheApisJson) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("sluice-cli-test-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "rules.yaml").string();
  std::ofstream(path) << "rules:\n"
                         "  - id: free-hourly\n"
                         "    group: quota\n"
                         "    priority: 20\n"
                         "    match: {tier: free, endpoint: \"/api/*\"}\n"
                         "    key: [user_id]\n"
                         "    limit: 100\n"
                         "    window: 1h\n"
                         "    enabled: true\n";
  rules::LoadResult loaded = rules::LoadRules({path});
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(loaded.problems.empty()) << loaded.problems.front();
  const rules::Rule& rule = loaded.rule_set->rules()[0];
  const json stored = {{"id", "free-hourly"}, {"group", "quota"},
                       {"priority", 20},      {"match", {{"endpoint", "/api/*"}, {"tier", "free"}}},
                       {"key", {"user_id"}},  {"limit", 100},
                       {"window", "1h"},      {"enabled", true}};
  std::vector<FileRule> file = {{rule.id, rule.json, rule.location.ToString()}};
  auto same = DiffRules(file, Listing({DbRule(stored, 5)}));
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_TRUE(same->changes.empty()) << RenderDiff(*same);
  json older = stored;
  older["limit"] = 50;
  auto changed = DiffRules(file, Listing({DbRule(older, 5)}));
  ASSERT_TRUE(changed.ok()) << changed.status();
  EXPECT_EQ(RenderDiff(*changed),
            "~ free-hourly\n  limit: 50 -> 100\n0 created, 1 updated, 0 deleted\n");
}

// --- rendering ---

// Verifies the API's error object renders as "error: CODE: message" plus one line per detail.
TEST(RenderTest, FormatsApiErrorsWithDetails) {
  EXPECT_EQ(FormatApiError(422, "Unprocessable Entity",
                           R"({"error": {"code": "INVALID_RULE", "message": "invalid rule",
                                "details": [{"field": "limit", "message": "must be at least 1"},
                                            {"field": "match.ip_address", "message": "bad CIDR"},
                                            {"field": "", "message": "whole rule"}]}})"),
            "error: INVALID_RULE: invalid rule\n"
            "  limit: must be at least 1\n"
            "  match.ip_address: bad CIDR\n"
            "  whole rule\n");
  EXPECT_EQ(
      FormatApiError(412, "", R"({"error":{"code":"PRECONDITION_FAILED","message":"stale"}})"),
      "error: PRECONDITION_FAILED: stale\n");
}

// Verifies an error answer that is not the API's object still says what came back, and that
// control characters from the server never reach the terminal.
TEST(RenderTest, FormatsOtherErrorAnswers) {
  EXPECT_EQ(FormatApiError(502, "Bad Gateway", "<html>upstream down</html>\nmore"),
            "error: HTTP 502 Bad Gateway: <html>upstream down</html>\n");
  EXPECT_EQ(FormatApiError(404, "Not Found", ""), "error: HTTP 404 Not Found\n");
  EXPECT_EQ(FormatApiError(500, "", R"({"error": "flat"})"),
            "error: HTTP 500: {\"error\": \"flat\"}\n");
  EXPECT_EQ(FormatApiError(400, "", "{\"error\":{\"code\":\"X\",\"message\":\"a\\u001b[31mb\"}}"),
            "error: X: a?[31mb\n");
}

// Verifies tables align their columns and rules show §3.1's defaults where left out.
TEST(RenderTest, RendersRulesAsATable) {
  const json listing = Listing(
      {DbRule({{"id", "per-ip"}, {"limit", 20}, {"window", "1s"}, {"algorithm", "token_bucket"}},
              3),
       json{{"id", "free-hourly"},
            {"limit", 100},
            {"window", "1h"},
            {"group", "quota"},
            {"priority", 20},
            {"enabled", false},
            {"source", "file:rules/a.yaml"}}},
      9);
  auto text = RenderRules(listing);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(
      *text,
      "ID           LIMIT  WINDOW  ALGORITHM               GROUP  PRIORITY  MODE      SOURCE\n"
      "per-ip       20     1s      token_bucket            -      100       enforce   database\n"
      "free-hourly  100    1h      sliding_window_counter  quota  20        disabled  "
      "file:rules/a.yaml\n"
      "2 rules, version 9\n");
  EXPECT_FALSE(RenderRules(json{{"rules", {1}}}).ok());
}

// Verifies list entries, audit entries, versions and one rule render their fields.
TEST(RenderTest, RendersListsAuditVersionsAndOneRule) {
  auto lists = RenderListEntries(
      json{{"entries",
            {json{{"id", "e1"}, {"ip_address", "10.0.0.0/8"}, {"source", "database"}},
             json{{"id", "e2"},
                  {"user_id", "bob"},
                  {"api_key", "k"},
                  {"reason", "abuse"},
                  {"expires_at", "2026-12-31T00:00:00Z"},
                  {"source", "file:r.yaml"}}}}});
  ASSERT_TRUE(lists.ok()) << lists.status();
  EXPECT_EQ(*lists,
            "ID  MATCH                  REASON  EXPIRES               SOURCE\n"
            "e1  ip_address=10.0.0.0/8  -       -                     database\n"
            "e2  api_key=k user_id=bob  abuse   2026-12-31T00:00:00Z  file:r.yaml\n");
  auto audit = RenderAudit(json{{"entries",
                                 {json{{"version", 3},
                                       {"at", "2025-01-01T00:00:00Z"},
                                       {"actor", "ops"},
                                       {"action", "update"},
                                       {"target", "a"},
                                       {"before", "{}"},
                                       {"after", "{}"}}}}});
  ASSERT_TRUE(audit.ok()) << audit.status();
  EXPECT_EQ(*audit,
            "VERSION  AT                    ACTOR  ACTION  TARGET\n"
            "3        2025-01-01T00:00:00Z  ops    update  a\n");
  auto versions = RenderVersions(json{
      {"versions",
       {json{
           {"version", 2}, {"at", "2025-01-01T00:00:00Z"}, {"actor", "env"}, {"summary", "x"}}}}});
  ASSERT_TRUE(versions.ok()) << versions.status();
  EXPECT_EQ(
      *versions,
      "VERSION  AT                    ACTOR  SUMMARY\n2        2025-01-01T00:00:00Z  env    x\n");
  EXPECT_FALSE(RenderAudit(json{{"versions", json::array()}}).ok());
  auto rule = RenderRule(DbRule({{"id", "a"}, {"limit", 1}, {"match", {{"tier", "x"}}}}, 4));
  ASSERT_TRUE(rule.ok()) << rule.status();
  EXPECT_EQ(*rule, "id: a\nsource: database\nrevision: 4\nlimit: 1\nmatch: {\"tier\":\"x\"}\n");
}

// --- URLs ---

// Verifies the URL forms taken: host, port (80 by default), IPv6, a path prefix.
TEST(AdminUrlTest, ParsesHostPortAndPathPrefix) {
  struct Case {
    const char* text;
    AdminUrl want;
  };
  for (const Case& c : {Case{"http://127.0.0.1:8080", {"127.0.0.1", 8080, ""}},
                        Case{"http://localhost", {"localhost", 80, ""}},
                        Case{"HTTP://Example.com:81/", {"Example.com", 81, ""}},
                        Case{"http://[::1]:9000/sluice/", {"::1", 9000, "/sluice"}},
                        Case{"http://gw.internal/a/b//", {"gw.internal", 80, "/a/b"}}}) {
    auto url = ParseAdminUrl(c.text);
    ASSERT_TRUE(url.ok()) << c.text << ": " << url.status();
    EXPECT_EQ(*url, c.want) << c.text;
  }
  EXPECT_EQ(ParseAdminUrl("http://[::1]:9000/p")->ToString(), "http://[::1]:9000/p");
  EXPECT_EQ(ParseAdminUrl("http://h")->HostHeader(), "h:80");
}

// Verifies https:// and malformed URLs are refused with the reason, the text quoted — except
// credentials, which are never echoed.
TEST(AdminUrlTest, RefusesHttpsAndBadUrls) {
  struct Case {
    const char* text;
    const char* reason;
  };
  for (const Case& c : {Case{"https://h:8443", "https:// is not supported"},
                        Case{"127.0.0.1:8080", "no scheme"}, Case{"ftp://h", "unsupported scheme"},
                        Case{"http://", "empty host"}, Case{"http:///x", "empty host"},
                        Case{"http://h:99999", "out of range"}, Case{"http://h:x", "not a number"},
                        Case{"http://h:0", "port 0"}, Case{"http://h/?a=1", "query"},
                        Case{"http://h#f", "fragment"}, Case{"http://::1:80", "':'"}}) {
    auto url = ParseAdminUrl(c.text);
    ASSERT_FALSE(url.ok()) << c.text;
    EXPECT_EQ(url.status().code(), absl::StatusCode::kInvalidArgument);
    const std::string message(url.status().message());
    EXPECT_NE(message.find(std::string("'") + c.text + "'"), std::string::npos) << message;
    EXPECT_NE(message.find(c.reason), std::string::npos) << c.text << ": " << message;
  }
  auto secret = ParseAdminUrl("http://ops:s3cret@h:8080");
  ASSERT_FALSE(secret.ok());
  EXPECT_EQ(std::string(secret.status().message()).find("s3cret"), std::string::npos);
  EXPECT_FALSE(ParseAdminUrl("http://h /x").ok());
}

// Verifies ids become one path segment whatever they hold.
TEST(AdminUrlTest, EncodesPathSegments) {
  EXPECT_EQ(EncodePathSegment("free-hourly_1.x~"), "free-hourly_1.x~");
  EXPECT_EQ(EncodePathSegment("a/b c?d%"), "a%2Fb%20c%3Fd%25");
  EXPECT_EQ(EncodePathSegment("caf\xc3\xa9"), "caf%C3%A9");
}

// --- against a scripted server ---

// A loopback server answering each connection with the next scripted response (raw HTTP) and
// recording each request (head and body). A response of "" accepts and never answers.
class ScriptedServer {
 public:
  explicit ScriptedServer(std::vector<std::string> responses) : responses_(std::move(responses)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), len), 0);
    EXPECT_EQ(::listen(fd_, 16), 0);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }
  ~ScriptedServer() {
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
  }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  // Valid once the client is done.
  const std::vector<std::string>& requests() const { return requests_; }

 private:
  void Serve() {
    for (const std::string& response : responses_) {
      const int conn = ::accept(fd_, nullptr, nullptr);
      if (conn < 0) return;
      std::string request;
      char buf[4096];
      size_t want = std::string::npos;
      while (want == std::string::npos || request.size() < want) {
        const ssize_t n = ::read(conn, buf, sizeof(buf));
        if (n <= 0) break;
        request.append(buf, static_cast<size_t>(n));
        const size_t head_end = request.find("\r\n\r\n");
        if (want == std::string::npos && head_end != std::string::npos) {
          size_t length = 0;
          const size_t cl = request.find("Content-Length: ");
          if (cl != std::string::npos && cl < head_end)
            length = std::stoul(request.substr(cl + 16));
          want = head_end + 4 + length;
        }
      }
      requests_.push_back(request);
      if (response.empty()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
      } else {
        (void)!::write(conn, response.data(), response.size());
      }
      ::close(conn);
    }
  }

  std::vector<std::string> responses_;
  std::vector<std::string> requests_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
};

std::string Answer(int status, const std::string& body) {
  return "HTTP/1.1 " + std::to_string(status) + " X\r\nContent-Type: application/json\r\n" +
         "Content-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
}

struct Result {
  int code;
  std::string out;
  std::string err;
};

// Runs `sluice ARGS...` as main() does, minus the process.
Result RunCli(std::vector<std::string> args) {
  CLI::App app{"test", "sluice"};
  app.require_subcommand(1);
  AdminCommand admin(app);
  std::vector<std::string> reversed(args.rbegin(), args.rend());
  try {
    app.parse(reversed);
  } catch (const CLI::ParseError& e) {
    return {2, "", e.what()};
  }
  std::ostringstream out, err;
  const int code = admin.Run(out, err);
  return {code, out.str(), err.str()};
}

// Verifies every synopsis of the documented command line parses, and wrong ones do not.
TEST(AdminCommandTest, ParsesTheDocumentedCommandLines) {
  const std::vector<std::vector<std::string>> good = {
      {"admin", "rules", "list", "--json"},
      {"admin", "--url", "http://h:1", "--token", "t", "rules", "get", "x"},
      {"admin", "rules", "apply", "-f", "r.yaml", "--dry-run"},
      {"admin", "rules", "delete", "x", "--url", "http://h:1"},
      {"admin", "lists", "allow"},
      {"admin", "lists", "deny", "list", "--json"},
      {"admin", "lists", "deny", "add", "--ip", "10.0.0.0/8", "--reason", "r", "--expires-at",
       "2026-12-31T00:00:00Z"},
      {"admin", "lists", "allow", "add", "--user-id", "u", "--api-key", "k"},
      {"admin", "lists", "allow", "delete", "e1"},
      {"admin", "tiers", "get", "u"},
      {"admin", "tiers", "set", "u", "premium"},
      {"admin", "tiers", "delete", "u"},
      {"admin", "audit", "--since", "3", "--limit", "10"},
      {"admin", "versions"},
      {"admin", "restore", "4"}};
  for (const auto& args : good) {
    CLI::App app{"test", "sluice"};
    AdminCommand admin(app);
    std::vector<std::string> reversed(args.rbegin(), args.rend());
    EXPECT_NO_THROW(app.parse(reversed)) << args[2];
  }
  const std::vector<std::vector<std::string>> bad = {
      {"admin"},
      {"admin", "rules"},
      {"admin", "rules", "get"},
      {"admin", "rules", "apply"},
      {"admin", "lists", "allow", "add", "--reason", "no match"},
      {"admin", "lists", "maybe"},
      {"admin", "tiers", "set", "u"},
      {"admin", "audit", "--limit", "0"},
      {"admin", "restore", "-1"},
      {"admin", "rules", "list", "--bogus"}};
  for (const auto& args : bad) {
    CLI::App app{"test", "sluice"};
    app.require_subcommand(1);
    AdminCommand admin(app);
    std::vector<std::string> reversed(args.rbegin(), args.rend());
    EXPECT_THROW(app.parse(reversed), CLI::ParseError) << args.back();
  }
}

// Verifies a bad URL is bad usage (exit 2) and an unreachable server exit 1 with the URL.
TEST(AdminCommandTest, BadUrlAndUnreachableServer) {
  Result https = RunCli({"admin", "--url", "https://h", "versions"});
  EXPECT_EQ(https.code, 2);
  EXPECT_NE(https.err.find("https:// is not supported"), std::string::npos) << https.err;
  EXPECT_NE(https.err.find("Usage"), std::string::npos) << https.err;

  int port;
  {
    ScriptedServer closed({});
    port = std::stoi(closed.url().substr(closed.url().rfind(':') + 1));
  }
  const std::string url = "http://127.0.0.1:" + std::to_string(port);
  Result down = RunCli({"admin", "--url", url, "--token", "secret-token", "versions"});
  EXPECT_EQ(down.code, 1);
  EXPECT_EQ(down.err.rfind("error: cannot reach " + url + ": ", 0), 0u) << down.err;
  EXPECT_EQ(down.err.find("secret-token"), std::string::npos);
}

// Verifies the client sends the bearer token and the path prefix, and an API error exits 1
// printed as the error lines.
TEST(AdminCommandTest, SendsTokenAndRendersApiErrors) {
  ScriptedServer server({Answer(
      422,
      R"({"error":{"code":"INVALID_RULE","message":"bad","details":[{"field":"limit","message":"too small"}]}})")});
  Result r =
      RunCli({"admin", "--url", server.url() + "/gw/", "--token", "tok", "rules", "get", "a/b"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "error: INVALID_RULE: bad\n  limit: too small\n");
  ASSERT_EQ(server.requests().size(), 1u);
  const std::string& req = server.requests()[0];
  EXPECT_EQ(req.rfind("GET /gw/v1/admin/rules/a%2Fb HTTP/1.1\r\n", 0), 0u) << req;
  EXPECT_NE(req.find("Authorization: Bearer tok\r\n"), std::string::npos) << req;
}

// Verifies `rules apply` end to end against a scripted API: the listing, then POST, PUT and
// DELETE with If-Match on the listing's revisions, in the diff's order.
TEST(AdminCommandTest, AppliesARulesFile) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("sluice-cli-apply-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "rules.yaml").string();
  std::ofstream(path) << "rules:\n"
                         "  - {id: same, limit: 1, window: 1s}\n"
                         "  - {id: changed, limit: 200, window: 1m}\n"
                         "  - {id: added, limit: 5, window: 1s}\n"
                         "lists:\n"
                         "  deny:\n"
                         "    - {ip_address: 10.0.0.0/8}\n";
  const json listing =
      Listing({DbRule({{"id", "same"}, {"limit", 1}, {"window", "1s"}}, 1),
               DbRule({{"id", "changed"}, {"limit", 100}, {"window", "1m"}}, 2),
               DbRule({{"id", "gone"}, {"limit", 1}, {"window", "1s"}}, 3),
               json{{"id", "f"}, {"limit", 1}, {"window", "1s"}, {"source", "file:x.yaml"}}});
  {
    ScriptedServer dry({Answer(200, listing.dump())});
    Result r = RunCli({"admin", "--url", dry.url(), "rules", "apply", "-f", path, "--dry-run"});
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.out,
              "~ changed\n  limit: 100 -> 200\n+ added\n- gone\n"
              "1 created, 1 updated, 1 deleted\ndry run: nothing changed\n");
    EXPECT_NE(r.err.find("warning: " + path + ": 0 allow and 1 deny list entries ignored"),
              std::string::npos)
        << r.err;
    EXPECT_EQ(dry.requests().size(), 1u);
  }
  {
    ScriptedServer api({Answer(200, listing.dump()), Answer(200, "{}"), Answer(201, "{}"),
                        "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"});
    Result r = RunCli({"admin", "--url", api.url(), "rules", "apply", "-f", path});
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.out,
              "~ changed\n  limit: 100 -> 200\n+ added\n- gone\n"
              "1 created, 1 updated, 1 deleted\napplied 3 changes\n");
    ASSERT_EQ(api.requests().size(), 4u);
    EXPECT_EQ(api.requests()[1].rfind("PUT /v1/admin/rules/changed ", 0), 0u);
    EXPECT_NE(api.requests()[1].find("If-Match: \"2\"\r\n"), std::string::npos);
    EXPECT_NE(api.requests()[1].find(R"({"id":"changed","limit":200,"window":"1m"})"),
              std::string::npos)
        << api.requests()[1];
    EXPECT_EQ(api.requests()[2].rfind("POST /v1/admin/rules ", 0), 0u);
    EXPECT_EQ(api.requests()[3].rfind("DELETE /v1/admin/rules/gone ", 0), 0u);
    EXPECT_NE(api.requests()[3].find("If-Match: \"3\"\r\n"), std::string::npos);
  }
  {
    // The second change fails: the first stays applied, the third is never sent.
    ScriptedServer api(
        {Answer(200, listing.dump()), Answer(200, "{}"),
         Answer(409, R"({"error":{"code":"CONFLICT","message":"rule 'added' exists"}})")});
    Result r = RunCli({"admin", "--url", api.url(), "rules", "apply", "-f", path});
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("error: CONFLICT: rule 'added' exists\n"
                         "stopped at + added: 1 of 3 changes were applied before the error and "
                         "stay applied\n"),
              std::string::npos)
        << r.err;
    EXPECT_EQ(api.requests().size(), 3u);
  }
  {
    // A file that does not load: its problems, nothing sent.
    std::ofstream(path) << "rules:\n  - {id: x, limit: 0, window: 1s}\n";
    ScriptedServer api({});
    Result r = RunCli({"admin", "--url", api.url(), "rules", "apply", "-f", path});
    EXPECT_EQ(r.code, 1);
    EXPECT_EQ(r.err.rfind(path + ":2:", 0), 0u) << r.err;
  }
  std::filesystem::remove_all(dir);
}

// Verifies the client gives up at its deadline when the server never answers.
TEST(HttpClientTest, TimesOut) {
  ScriptedServer silent({""});
  auto url = ParseAdminUrl(silent.url());
  ASSERT_TRUE(url.ok());
  HttpClient client(*url, "", {.timeout = std::chrono::milliseconds(100)});
  auto response = client.Send("GET", "/v1/admin/versions");
  ASSERT_FALSE(response.ok());
  EXPECT_EQ(response.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(response.status().message(), "no answer within 100 ms");
}

}  // namespace
}  // namespace sluice::cli
