#include "api/http/admin_routes.h"

#include <cctype>
#include <charconv>
#include <optional>
#include <random>
#include <span>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "api/http/bearer_auth.h"
#include "api/http/check_codec.h"
#include "api/http/framing.h"
#include "api/http/request_target.h"
#include "api/http/routes.h"
#include "base/strings.h"
#include "boost/beast/http/field.hpp"
#include "core/int_math.h"
#include "nlohmann/json.hpp"
#include "obs/log.h"
#include "rules/rule_json.h"
#include "yaml/values.h"

namespace sluice::http {

namespace bhttp = boost::beast::http;
using json = nlohmann::json;
using db::TargetKind;

struct AdminRoutes::Call {
  bhttp::verb method = bhttp::verb::get;
  unsigned version = 11;
  RequestTarget target;                                  // segments after /v1/admin/, and the query
  std::vector<std::string>& segments = target.segments;  // (never copied: held by unique_ptr)
  std::string body;
  std::string if_match;  // "" when absent
  std::string actor;     // the token's name
  Respond respond;

  const std::string* Param(std::string_view name) const { return target.Param(name); }
};

namespace {

// ---- Requests ----

// Ids the API creates (rules, list entries) go into URLs, metric labels and log fields: letters,
// digits and . _ - : @ ~, starting with a letter or digit, at most 128 bytes.
bool ValidId(std::string_view id) {
  if (id.empty() || id.size() > 128 || !std::isalnum(static_cast<unsigned char>(id[0]))) {
    return false;
  }
  for (const char c : id) {
    if (!std::isalnum(static_cast<unsigned char>(c)) &&
        std::string_view("._-:@~").find(c) == std::string_view::npos) {
      return false;
    }
  }
  return true;
}
constexpr std::string_view kIdRule =
    "an id is 1 to 128 letters, digits and . _ - : @ ~, starting with a letter or digit";

// A user id as a tier names it: any printable text, 1 to 256 bytes.
bool ValidUserId(std::string_view id) {
  if (id.empty() || id.size() > 256) return false;
  for (const char c : id) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return false;
  }
  return true;
}

std::optional<uint64_t> ParseUint(std::string_view text) {
  uint64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) return std::nullopt;
  return value;
}

// ---- Responses ----

// Invalid UTF-8 (from a request's path, say) is replaced, never thrown: nlohmann throws on it by
// default, and nothing here would catch it.
std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

Response Json(const AdminRoutes::Call& call, unsigned status, const json& body) {
  return JsonResponse(status, Dump(body), call.version);
}

Response Error(const AdminRoutes::Call& call, unsigned status, std::string_view code,
               std::string_view message) {
  return JsonResponse(status, ErrorBody(code, message), call.version);
}

Response Invalid(const AdminRoutes::Call& call, std::string_view code,
                 const std::vector<rules::FieldProblem>& problems) {
  json details = json::array();
  std::string message;
  for (const rules::FieldProblem& p : problems) {
    details.push_back({{"field", p.field}, {"message", p.message}});
    if (message.empty()) message = p.field.empty() ? p.message : Cat(p.field, ": ", p.message);
  }
  if (problems.size() > 1) message += Cat(" (and ", problems.size() - 1, " more)");
  return Json(call, 422,
              {{"error", {{"code", code}, {"message", message}, {"details", std::move(details)}}}});
}

// A database failure as the admin API answers it.
Response DatabaseError(const AdminRoutes::Call& call, const absl::Status& s) {
  const std::string message(s.message());
  switch (s.code()) {
    case absl::StatusCode::kNotFound:
      return Error(call, 404, "NOT_FOUND", message);
    case absl::StatusCode::kAlreadyExists:
      return Error(call, 409, "CONFLICT", message);
    case absl::StatusCode::kFailedPrecondition:
      return Error(call, 412, "PRECONDITION_FAILED", message);
    case absl::StatusCode::kInvalidArgument:
      return Error(call, 400, "INVALID_REQUEST", message);
    default:
      return Error(call, 503, "DATABASE_UNAVAILABLE",
                   Cat("The rules database is unavailable: ", message));
  }
}

std::string Rfc3339(Micros micros) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E*SZ", absl::FromUnixMicros(micros),
                          absl::UTCTimeZone());
}

// A stored JSON body as a value (tiers are plain text).
json BodyValue(TargetKind kind, const std::optional<std::string>& body) {
  if (!body.has_value()) return nullptr;
  if (kind == TargetKind::kTier || kind == TargetKind::kCounter) return *body;
  json parsed = json::parse(*body, nullptr, /*allow_exceptions=*/false);
  return parsed.is_discarded() ? json(*body) : parsed;
}

json RuleJson(const rules::Rule& rule, std::string_view source, uint64_t revision) {
  json j = json::parse(rule.json, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) j = {{"id", rule.id}};
  j["source"] = source;
  j["revision"] = revision;
  return j;
}

std::string FileSource(const rules::SourceLocation& location) {
  return Cat("file:", location.file);
}

// A list entry of a rules file, as the API shows it (file entries have no id of their own: it
// is their place in the file).
json FileEntryJson(const rules::ListEntry& entry) {
  json j = json::object();
  for (const rules::AttributePattern& p : entry.match) {
    const rules::AttributeRef& a = p.attribute();
    if (a.attribute == rules::Attribute::kHeader) {
      j["headers"][a.header] = p.text();
    } else {
      j[a.Name()] = p.text();
    }
  }
  if (!entry.reason.empty()) j["reason"] = entry.reason;
  if (entry.expires_at.has_value()) j["expires_at"] = Rfc3339(*entry.expires_at);
  j["id"] = entry.location.ToString();
  j["source"] = FileSource(entry.location);
  return j;
}

json AuditJson(const db::AuditEntry& e) {
  return {{"version", e.version},
          {"at", e.at},
          {"actor", e.actor},
          {"action", e.action},
          {"kind", db::TargetKindName(e.kind)},
          {"target", e.target},
          {"before", BodyValue(e.kind, e.before)},
          {"after", BodyValue(e.kind, e.after)}};
}

// If-Match: "REV" (a strong or weak entity tag; `*` matches whatever exists). An unparseable
// one matches nothing, so the write fails with 412 as RFC 9110 §13.1.1 has it.
std::optional<uint64_t> IfMatch(const std::string& header, bool* any) {
  *any = false;
  if (header.empty()) return std::nullopt;
  std::string_view v = header;
  while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
  while (!v.empty() && v.back() == ' ') v.remove_suffix(1);
  if (v == "*") {
    *any = true;
    return std::nullopt;
  }
  if (v.starts_with("W/")) v.remove_prefix(2);
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
  return ParseUint(v).value_or(UINT64_MAX);
}

// The body as a JSON object, with the API's read-only fields dropped. nullopt (and `error`)
// when it is not JSON.
std::optional<json> BodyObject(const std::string& body, std::string* error) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    *error = "The request body is not valid JSON.";
    return std::nullopt;
  }
  if (!j.is_object()) {
    *error = "The request body must be a JSON object.";
    return std::nullopt;
  }
  j.erase("source");
  j.erase("revision");
  return j;
}

std::string NewEntryId() {
  thread_local std::mt19937_64 random{std::random_device{}()};
  static constexpr char kDigits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
  std::string id = "e";
  uint64_t bits = random();
  for (int i = 0; i < 12; ++i, bits /= 36) id.push_back(kDigits[bits % 36]);
  return id;
}

}  // namespace

AdminRoutes::AdminRoutes(admin::ManagedRules& managed, Limiter& limiter, admin::Tokens tokens,
                         obs::Metrics& metrics)
    : managed_(managed), limiter_(limiter), tokens_(std::move(tokens)), metrics_(metrics) {
  thread_ = std::thread([this] { Run(); });
}

AdminRoutes::~AdminRoutes() {
  {
    MutexLock lock(mu_);
    stopping_ = true;
  }
  cv_.NotifyAll();
  thread_.join();
}

void AdminRoutes::Run() {
  while (true) {
    absl::AnyInvocable<void() &&> job;
    {
      MutexLock lock(mu_);
      while (!cv_.WaitFor(
          mu_, std::chrono::seconds(60),
          [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !queue_.empty() || stopping_; })) {
      }
      if (queue_.empty()) return;  // stopping, and nothing left
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    std::move(job)();
  }
}

void AdminRoutes::Handle(Request& request, Respond respond) {
  auto call = std::make_unique<Call>();
  call->method = request.method();
  call->version = request.version();
  const std::string_view target(request.target().data(), request.target().size());
  const std::string_view path = TargetPath(target);
  const bhttp::verb method = request.method();
  const bool reads = method == bhttp::verb::get || method == bhttp::verb::head ||
                     path == "/v1/admin/rules:validate";
  if (std::optional<Response> refused =
          Authorize(tokens_, request, reads ? admin::Role::kRead : admin::Role::kWrite, metrics_,
                    &call->actor)) {
    return std::move(respond)(std::move(*refused));
  }
  call->target = ParseRequestTarget(target, kAdminPrefix);
  if (call->target.malformed) {
    metrics_.http_errors("INVALID_REQUEST").Increment();
    return std::move(respond)(
        Error(*call, 400, "INVALID_REQUEST", "Malformed percent-encoding in the request target."));
  }
  const auto header = [&request](bhttp::field f) {
    auto it = request.find(f);
    return it == request.end() ? std::string() : std::string(it->value());
  };
  call->body = request.body();
  call->if_match = header(bhttp::field::if_match);
  call->respond = std::move(respond);
  {
    MutexLock lock(mu_);
    queue_.push_back([this, call = std::move(call)]() mutable { Serve(*call); });
  }
  cv_.NotifyOne();
}

namespace {

// One admin call being served: the routing and each endpoint, on the admin thread.
class Served {
 public:
  Served(AdminRoutes::Call& call, admin::ManagedRules& managed, Limiter& limiter)
      : call_(call), managed_(managed), limiter_(limiter) {}

  Response Route();

 private:
  using Segments = std::vector<std::string>;
  bool Is(bhttp::verb v) const {
    return call_.method == v || (v == bhttp::verb::get && call_.method == bhttp::verb::head);
  }
  Response NotAllowed(std::string_view allow) {
    Response res = Error(call_, 405, "METHOD_NOT_ALLOWED", "Method not allowed on this endpoint.");
    res.set(bhttp::field::allow, std::string(allow));
    return res;
  }
  Response NotFound(std::string_view what) { return Error(call_, 404, "NOT_FOUND", what); }

  // Catches up with the database before a read, so that what is shown is the database's; an
  // error when it cannot be reached.
  std::optional<Response> Fresh() {
    if (absl::Status s = managed_.CatchUp("admin_read"); !s.ok()) return DatabaseError(call_, s);
    return std::nullopt;
  }
  // Writes one change as the call's actor; catches up so that it is in force here before the
  // answer goes. A database error is returned as the response to send.
  absl::StatusOr<db::Commit> Write(std::vector<db::Write> writes, std::string_view summary) {
    db::RulesDatabase* database = managed_.database();
    absl::StatusOr<db::Commit> commit = database->Apply(writes, call_.actor, summary);
    if (!commit.ok()) {
      if (commit.status().code() == absl::StatusCode::kUnavailable) {
        managed_.MarkDown(commit.status());
      }
      return commit.status();
    }
    (void)managed_.CatchUp("admin_write");
    obs::LogEvent(spdlog::level::info, "admin_change",
                  {{"actor", call_.actor}, {"version", commit->version}, {"summary", summary}});
    return commit;
  }
  // The `limit` query parameter of a listing: 100 when absent, else an integer in [1, 10000].
  std::optional<Response> LimitParam(size_t* limit) {
    *limit = 100;
    const std::string* given = call_.Param("limit");
    if (given == nullptr) return std::nullopt;
    std::optional<uint64_t> n = ParseUint(*given);
    if (!n.has_value() || *n == 0 || *n > 10'000) {
      return Error(call_, 400, "INVALID_REQUEST", "'limit' must be an integer in [1, 10000].");
    }
    *limit = *n;
    return std::nullopt;
  }
  std::optional<Response> NeedsDatabase() {
    if (managed_.has_database()) return std::nullopt;
    return Error(call_, 409, "READ_ONLY",
                 "No rules database is configured (rules.database): rules come from files only "
                 "and are read-only here.");
  }

  Response Rules(const Segments& s);
  Response ListRules();
  Response GetRule(const std::string& id);
  Response PutRule(const std::optional<std::string>& path_id);
  Response DeleteRule(const std::string& id);
  Response Validate();
  Response Lists(const Segments& s);
  Response Tiers(const Segments& s);
  Response Counters();
  Response Versions(const Segments& s);
  Response Audit();

  // Where rule `id` is defined now: "database", "file:PATH", or "" when nowhere.
  std::string SourceOf(const std::string& id, uint64_t* revision, std::string* body);

  AdminRoutes::Call& call_;
  admin::ManagedRules& managed_;
  Limiter& limiter_;
};

Response Served::Route() {
  const Segments& s = call_.segments;
  // Every id the API stores or shows is UTF-8: a path that is not names nothing. (PostgreSQL
  // would refuse such an id as a query parameter, which read as the database being down.)
  for (const std::string& segment : s) {
    if (!yaml::IsValidUtf8(segment)) return NotFound("No such endpoint: the path is not UTF-8.");
  }
  const std::string& head = s.empty() ? std::string() : s[0];
  if (head == "rules" || head == "rules:validate") return Rules(s);
  if (head == "lists") return Lists(s);
  if (head == "tiers") return Tiers(s);
  if (head == "counters" && s.size() == 1) return Counters();
  if (head == "versions") return Versions(s);
  if (head == "audit" && s.size() == 1) {
    return Is(bhttp::verb::get) ? Audit() : NotAllowed("GET, HEAD");
  }
  return NotFound("No such endpoint.");
}

std::string Served::SourceOf(const std::string& id, uint64_t* revision, std::string* body) {
  std::string source;
  managed_.Read([&](const admin::DatabaseRules& database, const rules::RuleSet& files) {
    if (const rules::Rule* rule = files.FindRule(id)) {
      source = FileSource(rule->location);
      if (body != nullptr) *body = Dump(RuleJson(*rule, source, 0));
      *revision = 0;
      return;
    }
    auto it = database.rules().find(id);
    if (it == database.rules().end()) return;
    source = "database";
    *revision = it->second.revision;
    if (body != nullptr) *body = Dump(RuleJson(it->second.value, source, it->second.revision));
  });
  return source;
}

Response Served::Rules(const Segments& s) {
  if (s[0] == "rules:validate") {
    if (s.size() != 1) return NotFound("No such endpoint.");
    return Is(bhttp::verb::post) ? Validate() : NotAllowed("POST");
  }
  if (s.size() == 1) {
    if (Is(bhttp::verb::get)) return ListRules();
    if (Is(bhttp::verb::post)) return PutRule(std::nullopt);
    return NotAllowed("GET, HEAD, POST");
  }
  if (s.size() != 2 || s[1].empty()) return NotFound("No such endpoint.");
  if (Is(bhttp::verb::get)) return GetRule(s[1]);
  if (Is(bhttp::verb::put)) return PutRule(s[1]);
  if (Is(bhttp::verb::delete_)) return DeleteRule(s[1]);
  return NotAllowed("GET, HEAD, PUT, DELETE");
}

Response Served::ListRules() {
  if (auto error = Fresh()) return std::move(*error);
  json list = json::array();
  uint64_t version = 0;
  managed_.Read([&](const admin::DatabaseRules& database, const rules::RuleSet& files) {
    version = database.version();
    for (const rules::Rule& rule : files.rules()) {
      list.push_back(RuleJson(rule, FileSource(rule.location), 0));
    }
    for (const auto& [id, held] : database.rules()) {
      list.push_back(RuleJson(held.value, "database", held.revision));
    }
  });
  return Json(call_, 200, {{"version", version}, {"rules", std::move(list)}});
}

Response Served::GetRule(const std::string& id) {
  if (auto error = Fresh()) return std::move(*error);
  uint64_t revision = 0;
  std::string body;
  if (SourceOf(id, &revision, &body).empty()) return NotFound(Cat("No rule '", id, "'."));
  Response res = JsonResponse(200, std::move(body), call_.version);
  res.set(bhttp::field::etag, Cat("\"", revision, "\""));
  return res;
}

Response Served::Validate() {
  std::string error;
  std::optional<json> j = BodyObject(call_.body, &error);
  if (!j.has_value()) return Error(call_, 400, "INVALID_REQUEST", error);
  rules::JsonRule parsed = rules::ParseRuleJson(Dump(*j), "request");
  if (!parsed.problems.empty()) return Invalid(call_, "INVALID_RULE", parsed.problems);
  return Json(call_, 200, {{"valid", true}});
}

Response Served::PutRule(const std::optional<std::string>& path_id) {
  if (auto error = NeedsDatabase()) return std::move(*error);
  std::string error;
  std::optional<json> j = BodyObject(call_.body, &error);
  if (!j.has_value()) return Error(call_, 400, "INVALID_REQUEST", error);
  if (path_id.has_value()) {
    // Checked first: the id goes into the body read below (an id of invalid UTF-8 in a JSON
    // document would not survive it; found by fuzz_http_server).
    if (!ValidId(*path_id)) return Invalid(call_, "INVALID_RULE", {{"id", std::string(kIdRule)}});
    // The path names the rule; a body that names another is a mistake, not a rename.
    if (!j->contains("id")) (*j)["id"] = *path_id;
    if ((*j)["id"].is_string() && (*j)["id"].get<std::string>() != *path_id) {
      return Invalid(call_, "INVALID_RULE",
                     {{"id", Cat("the body names id '", (*j)["id"].get<std::string>(),
                                 "' but the path names '", *path_id, "'")}});
    }
  }
  rules::JsonRule parsed = rules::ParseRuleJson(Dump(*j), "database");
  if (!parsed.problems.empty()) return Invalid(call_, "INVALID_RULE", parsed.problems);
  const std::string& id = parsed.rule->id;
  if (!ValidId(id)) return Invalid(call_, "INVALID_RULE", {{"id", std::string(kIdRule)}});
  uint64_t revision = 0;
  const std::string source = SourceOf(id, &revision, nullptr);
  if (source.starts_with("file:")) {
    return Error(call_, 409, path_id.has_value() ? "READ_ONLY" : "CONFLICT",
                 Cat("Rule '", id, "' is defined in a rules file (", source.substr(5), ")",
                     path_id.has_value() ? " and is read-only here." : "."));
  }
  bool any = false;
  db::Write write =
      db::Write::Of(path_id.has_value() ? db::Write::Op::kPut : db::Write::Op::kCreate,
                    TargetKind::kRule, id, parsed.canonical);
  write.if_revision = IfMatch(call_.if_match, &any);
  if (any && source.empty()) {
    return Error(call_, 412, "PRECONDITION_FAILED",
                 Cat("If-Match: * and rule '", id, "' does not exist."));
  }
  absl::StatusOr<db::Commit> commit =
      Write({std::move(write)}, Cat(path_id.has_value() ? "put" : "create", " rule ", id));
  if (!commit.ok()) {
    if (commit.status().code() == absl::StatusCode::kAlreadyExists) {
      return Error(call_, 409, "CONFLICT", Cat("Rule '", id, "' already exists."));
    }
    return DatabaseError(call_, commit.status());
  }
  const bool created = commit->entries.empty() || !commit->entries.front().before.has_value();
  Response res =
      Json(call_, created ? 201 : 200, RuleJson(*parsed.rule, "database", commit->version));
  res.set(bhttp::field::etag, Cat("\"", commit->version, "\""));
  if (created) res.set(bhttp::field::location, Cat(kAdminPrefix, "rules/", id));
  return res;
}

Response Served::DeleteRule(const std::string& id) {
  if (auto error = NeedsDatabase()) return std::move(*error);
  uint64_t revision = 0;
  const std::string source = SourceOf(id, &revision, nullptr);
  if (source.starts_with("file:")) {
    return Error(call_, 409, "READ_ONLY",
                 Cat("Rule '", id, "' is defined in a rules file (", source.substr(5),
                     ") and is read-only here."));
  }
  bool any = false;
  db::Write write = db::Write::Delete(TargetKind::kRule, id);
  write.if_revision = IfMatch(call_.if_match, &any);
  absl::StatusOr<db::Commit> commit = Write({std::move(write)}, Cat("delete rule ", id));
  if (!commit.ok()) {
    if (commit.status().code() == absl::StatusCode::kNotFound) {
      return NotFound(Cat("No rule '", id, "'."));
    }
    return DatabaseError(call_, commit.status());
  }
  Response res(bhttp::status::no_content, call_.version);
  return res;
}

Response Served::Lists(const Segments& s) {
  if (s.size() < 2 || s.size() > 3 || (s[1] != "allow" && s[1] != "deny")) {
    return NotFound("No such list: lists are /v1/admin/lists/allow and /v1/admin/lists/deny.");
  }
  const TargetKind kind = s[1] == "allow" ? TargetKind::kAllowList : TargetKind::kDenyList;
  if (s.size() == 3) {
    if (!Is(bhttp::verb::delete_)) return NotAllowed("DELETE");
    if (auto error = NeedsDatabase()) return std::move(*error);
    absl::StatusOr<db::Commit> commit =
        Write({db::Write::Delete(kind, s[2])}, Cat("delete ", s[1], " entry ", s[2]));
    if (!commit.ok()) {
      if (commit.status().code() == absl::StatusCode::kNotFound) {
        return NotFound(Cat("No ", s[1], " list entry '", s[2], "' in the database."));
      }
      return DatabaseError(call_, commit.status());
    }
    return Response(bhttp::status::no_content, call_.version);
  }
  if (Is(bhttp::verb::get)) {
    if (auto error = Fresh()) return std::move(*error);
    json entries = json::array();
    managed_.Read([&](const admin::DatabaseRules& database, const rules::RuleSet& files) {
      for (const rules::ListEntry& e :
           kind == TargetKind::kAllowList ? files.allow_list() : files.deny_list()) {
        entries.push_back(FileEntryJson(e));
      }
      for (const auto& [id, held] : database.list(kind)) {
        json j = json::parse(held.json, nullptr, false);
        if (!j.is_object()) j = json::object();
        j["id"] = id;
        j["source"] = "database";
        j["revision"] = held.revision;
        entries.push_back(std::move(j));
      }
    });
    // Keys banned under a rule's penalty, as far as this server knows (Limiter::Bans): read-only,
    // they expire by themselves.
    if (kind == TargetKind::kDenyList) {
      for (const Limiter::BanInfo& ban : limiter_.Bans()) {
        entries.push_back({{"id", ban.key},
                           {"source", "penalty"},
                           {"rule_id", ban.rule_id},
                           {"reason", Cat("penalty:", ban.rule_id)},
                           {"expires_at", Rfc3339(ban.until)}});
      }
    }
    return Json(call_, 200, {{"entries", std::move(entries)}});
  }
  if (!Is(bhttp::verb::post)) return NotAllowed("GET, HEAD, POST");
  if (auto error = NeedsDatabase()) return std::move(*error);
  std::string error;
  std::optional<json> j = BodyObject(call_.body, &error);
  if (!j.has_value()) return Error(call_, 400, "INVALID_REQUEST", error);
  std::string id = NewEntryId();
  if (auto given = j->find("id"); given != j->end()) {
    if (!given->is_string() || !ValidId(given->get<std::string>())) {
      return Invalid(call_, "INVALID_ENTRY", {{"id", std::string(kIdRule)}});
    }
    id = given->get<std::string>();
  }
  rules::JsonListEntry parsed = rules::ParseListEntryJson(Dump(*j), "database");
  if (!parsed.problems.empty()) return Invalid(call_, "INVALID_ENTRY", parsed.problems);
  absl::StatusOr<db::Commit> commit =
      Write({db::Write::Of(db::Write::Op::kCreate, kind, id, parsed.canonical)},
            Cat("add ", s[1], " entry ", id));
  if (!commit.ok()) {
    if (commit.status().code() == absl::StatusCode::kAlreadyExists) {
      return Error(call_, 409, "CONFLICT", Cat("Entry '", id, "' already exists."));
    }
    return DatabaseError(call_, commit.status());
  }
  json out = json::parse(parsed.canonical);
  out["id"] = id;
  out["source"] = "database";
  out["revision"] = commit->version;
  Response res = Json(call_, 201, out);
  res.set(bhttp::field::location, Cat(kAdminPrefix, "lists/", s[1], "/", id));
  return res;
}

Response Served::Tiers(const Segments& s) {
  if (s.size() == 1) {
    if (!Is(bhttp::verb::get)) return NotAllowed("GET, HEAD");
    if (auto error = Fresh()) return std::move(*error);
    json tiers = json::array();
    managed_.Read([&](const admin::DatabaseRules& database, const rules::RuleSet&) {
      for (const auto& [user, held] : database.tiers()) {
        tiers.push_back({{"user_id", user}, {"tier", held.value}, {"revision", held.revision}});
      }
    });
    return Json(call_, 200, {{"tiers", std::move(tiers)}});
  }
  if (s.size() != 2) return NotFound("No such endpoint.");
  const std::string& user = s[1];
  if (!ValidUserId(user)) {
    return Error(call_, 400, "INVALID_REQUEST",
                 "A user id is 1 to 256 bytes of printable text (percent-encoded in the path).");
  }
  if (Is(bhttp::verb::get)) {
    if (auto error = Fresh()) return std::move(*error);
    std::optional<json> found;
    managed_.Read([&](const admin::DatabaseRules& database, const rules::RuleSet&) {
      auto it = database.tiers().find(user);
      if (it != database.tiers().end()) {
        found =
            json{{"user_id", user}, {"tier", it->second.value}, {"revision", it->second.revision}};
      }
    });
    if (!found.has_value()) return NotFound(Cat("No tier stored for user '", user, "'."));
    return Json(call_, 200, *found);
  }
  if (auto error = NeedsDatabase()) return std::move(*error);
  if (Is(bhttp::verb::delete_)) {
    absl::StatusOr<db::Commit> commit =
        Write({db::Write::Delete(TargetKind::kTier, user)}, Cat("delete tier of ", user));
    if (!commit.ok()) {
      if (commit.status().code() == absl::StatusCode::kNotFound) {
        return NotFound(Cat("No tier stored for user '", user, "'."));
      }
      return DatabaseError(call_, commit.status());
    }
    return Response(bhttp::status::no_content, call_.version);
  }
  if (!Is(bhttp::verb::put)) return NotAllowed("GET, HEAD, PUT, DELETE");
  std::string error;
  std::optional<json> j = BodyObject(call_.body, &error);
  if (!j.has_value()) return Error(call_, 400, "INVALID_REQUEST", error);
  std::vector<rules::FieldProblem> problems;
  for (const auto& [name, value] : j->items()) {
    if (name != "tier" && name != "user_id") problems.push_back({name, "unknown field"});
  }
  auto tier = j->find("tier");
  if (tier == j->end()) {
    problems.push_back({"tier", "'tier' is required"});
  } else if (!tier->is_string() || tier->get<std::string>().empty() ||
             !ValidUserId(tier->get<std::string>())) {
    problems.push_back({"tier", "'tier' must be a non-empty string of printable text"});
  }
  if (!problems.empty()) return Invalid(call_, "INVALID_TIER", problems);
  const std::string name = tier->get<std::string>();
  absl::StatusOr<db::Commit> commit = Write({db::Write::Put(TargetKind::kTier, user, name)},
                                            Cat("set tier of ", user, " to ", name));
  if (!commit.ok()) return DatabaseError(call_, commit.status());
  const bool created = commit->entries.empty() || !commit->entries.front().before.has_value();
  return Json(call_, created ? 201 : 200,
              {{"user_id", user}, {"tier", name}, {"revision", commit->version}});
}

Response Served::Counters() {
  const bool reset = Is(bhttp::verb::delete_);
  if (!reset && !Is(bhttp::verb::get)) return NotAllowed("GET, HEAD, DELETE");
  const std::string* rule_id = call_.Param("rule_id");
  if (rule_id == nullptr || rule_id->empty()) {
    return Error(call_, 400, "INVALID_REQUEST",
                 "Name the counter: ?rule_id=RULE and the rule's key attributes (user_id=..., "
                 "headers.x-client=...).");
  }
  rules::RequestAttributes attributes;
  for (const auto& [name, value] : call_.target.query) {
    if (name == "rule_id") continue;
    std::optional<rules::AttributeRef> ref = rules::ParseAttributeName(name);
    if (!ref.has_value()) {
      return Error(call_, 400, "INVALID_REQUEST",
                   Cat("Unknown parameter '", name,
                       "': expected rule_id and request attributes (user_id, api_key, "
                       "ip_address, endpoint, method, tier, headers.NAME)."));
    }
    switch (ref->attribute) {
      case rules::Attribute::kUserId:
        attributes.user_id = value;
        break;
      case rules::Attribute::kApiKey:
        attributes.api_key = value;
        break;
      case rules::Attribute::kIpAddress:
        if (!attributes.SetIpAddress(value)) {
          return Error(call_, 400, "INVALID_REQUEST", "'ip_address' is not an IP address.");
        }
        break;
      case rules::Attribute::kEndpoint:
        attributes.endpoint = value;
        break;
      case rules::Attribute::kMethod:
        attributes.method = value;
        break;
      case rules::Attribute::kTier:
        attributes.tier = value;
        break;
      case rules::Attribute::kHeader:
        attributes.SetHeader(ref->header, value);
        break;
    }
  }
  // The counter's rule must exist before anything is audited.
  uint64_t revision = 0;
  if (SourceOf(*rule_id, &revision, nullptr).empty()) {
    return NotFound(Cat("No rule '", *rule_id, "'."));
  }
  if (reset) {
    if (auto error = NeedsDatabase()) return std::move(*error);
    // Audited first: no reset happens that the log does not show.
    std::string key;
    if (const rules::Rule* rule = limiter_.rules()->FindRule(*rule_id)) {
      if (!rules::RuleSet::CounterKey(*rule, attributes, &key)) key.clear();
    }
    if (!key.empty()) {
      absl::StatusOr<db::Commit> commit =
          Write({db::Write::Of(db::Write::Op::kReset, TargetKind::kCounter, key)},
                Cat("reset counter of rule ", *rule_id));
      if (!commit.ok()) return DatabaseError(call_, commit.status());
    }
  }
  // The limiter answers on a store thread (or at once); the admin thread waits for it, which
  // keeps calls in order.
  Mutex mu;
  CondVar cv;
  std::optional<Limiter::CounterResult> got;
  limiter_.Counter(*rule_id, attributes, reset, [&](Limiter::CounterResult r) {
    MutexLock lock(mu);
    got = std::move(r);
    cv.NotifyAll();
  });
  {
    MutexLock lock(mu);
    while (!cv.WaitFor(mu, std::chrono::seconds(60),
                       [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return got.has_value(); })) {
    }
  }
  const Limiter::CounterResult& r = *got;
  if (!r.status.ok()) {
    switch (r.status.code()) {
      case absl::StatusCode::kNotFound:
        return NotFound(std::string(r.status.message()));
      case absl::StatusCode::kInvalidArgument:
        return Error(call_, 400, "INVALID_REQUEST", std::string(r.status.message()));
      default:
        return Error(call_, 503, "STORE_UNAVAILABLE",
                     Cat("The rate limit store failed: ", r.status.message()));
    }
  }
  if (reset) return Response(bhttp::status::no_content, call_.version);
  const Decision& d = r.decision;
  json out = {{"rule_id", *rule_id},
              {"key", r.key},
              {"algorithm", AlgorithmName(r.rule->limit.algorithm())},
              {"limit", d.limit},
              {"remaining", d.remaining},
              {"reset_at", CeilSeconds(int_math::SatAdd(r.now, d.reset_after))},
              {"allowed", d.allowed}};
  if (!d.allowed) out["retry_after"] = std::max<int64_t>(1, CeilSeconds(d.retry_after));
  return Json(call_, 200, out);
}

Response Served::Versions(const Segments& s) {
  if (s.size() == 1) {
    if (!Is(bhttp::verb::get)) return NotAllowed("GET, HEAD");
    size_t limit = 0;
    if (auto error = LimitParam(&limit)) return std::move(*error);
    if (!managed_.has_database()) return Json(call_, 200, {{"versions", json::array()}});
    absl::StatusOr<std::vector<db::VersionInfo>> versions = managed_.database()->Versions(limit);
    if (!versions.ok()) return DatabaseError(call_, versions.status());
    json list = json::array();
    for (const db::VersionInfo& v : *versions) {
      list.push_back(
          {{"version", v.version}, {"at", v.at}, {"actor", v.actor}, {"summary", v.summary}});
    }
    return Json(call_, 200, {{"versions", std::move(list)}});
  }
  if (s.size() != 3 || s[2] != "restore") return NotFound("No such endpoint.");
  if (!Is(bhttp::verb::post)) return NotAllowed("POST");
  if (auto error = NeedsDatabase()) return std::move(*error);
  std::optional<uint64_t> version = ParseUint(s[1]);
  if (!version.has_value()) return NotFound(Cat("No version '", s[1], "'."));
  absl::StatusOr<db::Commit> commit = managed_.database()->Restore(*version, call_.actor);
  if (!commit.ok()) {
    if (commit.status().code() == absl::StatusCode::kUnavailable) {
      managed_.MarkDown(commit.status());
    }
    if (commit.status().code() == absl::StatusCode::kNotFound) {
      return NotFound(Cat("No version ", *version, "."));
    }
    return DatabaseError(call_, commit.status());
  }
  (void)managed_.CatchUp("admin_restore");
  obs::LogEvent(spdlog::level::info, "admin_restore",
                {{"actor", call_.actor}, {"restored", *version}, {"version", commit->version}});
  return Json(
      call_, 200,
      {{"version", commit->version}, {"restored", *version}, {"changes", commit->entries.size()}});
}

Response Served::Audit() {
  uint64_t since = 0;
  size_t limit = 100;
  if (const std::string* v = call_.Param("since")) {
    std::optional<uint64_t> n = ParseUint(*v);
    if (!n.has_value()) {
      return Error(call_, 400, "INVALID_REQUEST", "'since' must be a version (an integer >= 0).");
    }
    since = *n;
  }
  if (auto error = LimitParam(&limit)) return std::move(*error);
  if (!managed_.has_database()) return Json(call_, 200, {{"entries", json::array()}});
  absl::StatusOr<std::vector<db::AuditEntry>> entries = managed_.database()->Audit(since, limit);
  if (!entries.ok()) return DatabaseError(call_, entries.status());
  json list = json::array();
  for (const db::AuditEntry& e : *entries) list.push_back(AuditJson(e));
  return Json(call_, 200, {{"entries", std::move(list)}});
}

}  // namespace

void AdminRoutes::Serve(Call& call) {
  Response res = Served(call, managed_, limiter_).Route();
  if (res.result_int() >= 400) {
    // The error code, for sluice_http_errors_total.
    json body = json::parse(res.body(), nullptr, false);
    if (body.is_object() && body.contains("error") && body["error"].contains("code")) {
      metrics_.http_errors(body["error"]["code"].get<std::string>()).Increment();
    }
  }
  std::move(call.respond)(std::move(res));
}

}  // namespace sluice::http
