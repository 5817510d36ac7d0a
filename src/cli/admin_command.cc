#include "cli/admin_command.h"

#include <algorithm>
#include <charconv>
#include <optional>
#include <ostream>
#include <utility>
#include <vector>

#include "base/strings.h"
#include "cli/admin_render.h"
#include "cli/http_client.h"
#include "cli/rules_diff.h"
#include "nlohmann/json.hpp"
#include "rules/loader.h"
#include "rules/rule_json.h"

namespace sluice::cli {

using json = nlohmann::json;

namespace {

constexpr const char* kDefaultUrl = "http://127.0.0.1:8080";
constexpr const char* kRules = "/v1/admin/rules";

// One run's connection to the API and its output streams. Every failed call has printed its
// error by the time it returns.
class Session {
 public:
  Session(HttpClient client, std::ostream& out, std::ostream& err)
      : client_(std::move(client)), out_(out), err_(err) {}

  std::ostream& out() { return out_; }
  std::ostream& err() { return err_; }

  // The answer when its status is 2xx; nullopt when there was none, or an error status.
  std::optional<HttpResponse> Call(
      std::string_view method, std::string_view path, std::string_view body = {},
      const std::vector<std::pair<std::string, std::string>>& headers = {}) {
    absl::StatusOr<HttpResponse> response = client_.Send(method, path, body, headers);
    if (!response.ok()) {
      err_ << "error: cannot reach " << client_.url().ToString() << ": "
           << response.status().message() << "\n";
      return std::nullopt;
    }
    if (response->status < 200 || response->status > 299) {
      err_ << FormatApiError(response->status, response->reason, response->body);
      return std::nullopt;
    }
    return *std::move(response);
  }

  // The answer's body as JSON; nullopt (error printed) when it is not.
  std::optional<json> Parse(const HttpResponse& response) {
    json j = json::parse(response.body, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) {
      err_ << "error: unexpected answer from " << client_.url().ToString() << ": not JSON\n";
      return std::nullopt;
    }
    return j;
  }

  // GET `path` as JSON; nullopt (error printed) on any failure.
  std::optional<json> GetJson(std::string_view path) {
    std::optional<HttpResponse> response = Call("GET", path);
    if (!response.has_value()) return std::nullopt;
    return Parse(*response);
  }

  // Prints the body as the API sent it (--json).
  int PrintRaw(const HttpResponse& response) {
    out_ << response.body;
    if (!response.body.empty() && response.body.back() != '\n') out_ << "\n";
    return 0;
  }

  // GET `path`, then prints its body raw (`raw`) or rendered.
  template <typename Render>
  int Show(std::string_view path, bool raw, Render render) {
    std::optional<HttpResponse> response = Call("GET", path);
    if (!response.has_value()) return 1;
    if (raw) return PrintRaw(*response);
    std::optional<json> body = Parse(*response);
    if (!body.has_value()) return 1;
    absl::StatusOr<std::string> text = render(*body);
    if (!text.ok()) {
      err_ << "error: " << text.status().message() << "\n";
      return 1;
    }
    out_ << *text;
    return 0;
  }

 private:
  HttpClient client_;
  std::ostream& out_;
  std::ostream& err_;
};

std::vector<std::pair<std::string, std::string>> IfMatch(const std::string& revision) {
  if (revision.empty()) return {};
  return {{"If-Match", Cat("\"", revision, "\"")}};
}

// Decimal digits making a number >= `min` that fits in 64 bits; CLI11's own range checks print
// the bounds as doubles.
CLI::Validator WholeNumber(uint64_t min) {
  return CLI::Validator(
      [min](std::string& text) -> std::string {
        uint64_t value = 0;
        const char* end = text.data() + text.size();
        auto [ptr, ec] = std::from_chars(text.data(), end, value);
        if (text.empty() || ec != std::errc() || ptr != end || value < min) {
          return Cat("expected a whole number from ", min, ", got '", text, "'");
        }
        return "";
      },
      "");
}

const char* Sign(RuleChange::Kind kind) {
  switch (kind) {
    case RuleChange::Kind::kCreate:
      return "+";
    case RuleChange::Kind::kUpdate:
      return "~";
    case RuleChange::Kind::kDelete:
      return "-";
  }
  return "?";
}

// `rules apply`: load FILE, diff against the database's rules, print, send.
int ApplyRules(Session& s, const std::string& file, bool dry_run) {
  rules::LoadResult loaded = rules::LoadRules({file});
  if (!loaded.problems.empty()) {
    for (const std::string& p : loaded.problems) s.err() << p << "\n";
    return 1;
  }
  const rules::RuleSet& set = *loaded.rule_set;
  if (set.domain_count() > 0) {
    s.err() << "error: " << file
            << ": holds an Envoy domain file; only the rules of Sluice rules files can be "
               "applied\n";
    return 1;
  }
  if (!set.allow_list().empty() || !set.deny_list().empty()) {
    s.err() << "warning: " << file << ": " << set.allow_list().size() << " allow and "
            << set.deny_list().size()
            << " deny list entries ignored (manage lists with 'sluice admin lists')\n";
  }
  // The API reads a rule as JSON, stricter than YAML about types (`id: 5` is a number there):
  // refused here, before anything changes, rather than by a 422 halfway through.
  std::vector<FileRule> file_rules;
  bool refused = false;
  for (const rules::Rule& rule : set.rules()) {
    const std::string location = rule.location.ToString();
    for (const rules::FieldProblem& p : rules::ParseRuleJson(rule.json, location).problems) {
      s.err() << location << ": " << (p.field.empty() ? "" : p.field + ": ") << p.message << "\n";
      refused = true;
    }
    file_rules.push_back({.id = rule.id, .json = rule.json, .location = location});
  }
  if (refused) return 1;

  std::optional<json> listing = s.GetJson(kRules);
  if (!listing.has_value()) return 1;
  absl::StatusOr<RulesDiff> diff = DiffRules(file_rules, *listing);
  if (!diff.ok()) {
    const absl::string_view message = diff.status().message();
    std::string_view rest(message.data(), message.size());
    while (!rest.empty()) {
      const size_t end = std::min(rest.find('\n'), rest.size());
      s.err() << "error: " << rest.substr(0, end) << "\n";
      rest.remove_prefix(std::min(end + 1, rest.size()));
    }
    return 1;
  }
  s.out() << RenderDiff(*diff);
  if (dry_run) {
    if (!diff->changes.empty()) s.out() << "dry run: nothing changed\n";
    return 0;
  }
  size_t applied = 0;
  for (const RuleChange& c : diff->changes) {
    const std::string path = Cat(kRules, "/", EncodePathSegment(c.id));
    std::optional<HttpResponse> done;
    switch (c.kind) {
      case RuleChange::Kind::kCreate:
        done = s.Call("POST", kRules, c.body);
        break;
      case RuleChange::Kind::kUpdate:
        done = s.Call("PUT", path, c.body, IfMatch(c.revision));
        break;
      case RuleChange::Kind::kDelete:
        done = s.Call("DELETE", path, {}, IfMatch(c.revision));
        break;
    }
    if (!done.has_value()) {
      s.err() << "stopped at " << Sign(c.kind) << " " << c.id << ": " << applied << " of "
              << diff->changes.size()
              << " changes were applied before the error and stay applied\n";
      return 1;
    }
    ++applied;
  }
  if (applied > 0) s.out() << "applied " << applied << (applied == 1 ? " change\n" : " changes\n");
  return 0;
}

int AddListEntry(Session& s, const std::string& list, const json& entry, bool raw) {
  std::optional<HttpResponse> response =
      s.Call("POST", Cat("/v1/admin/lists/", list), entry.dump());
  if (!response.has_value()) return 1;
  if (raw) return s.PrintRaw(*response);
  std::optional<json> body = s.Parse(*response);
  if (!body.has_value()) return 1;
  s.out() << "added " << Cell(body->is_object() ? body->value("id", json()) : json()) << " to the "
          << list << " list\n";
  return 0;
}

}  // namespace

AdminCommand::AdminCommand(CLI::App& parent) {
  admin_ = parent.add_subcommand("admin", "Manage rules, lists and tiers through the admin API");
  admin_->require_subcommand(1);
  admin_->footer(
      "--url and --token may also follow the sub-command. Output is text for people; --json "
      "(where offered) prints the API's JSON as it came. Exit 0 done, 1 an API error (printed as "
      "'error: CODE: message') or an unreachable server, 2 bad usage.");
  admin_
      ->add_option("--url", flags_.url,
                   "The server, http://HOST[:PORT][/PATH] (plain HTTP only: https:// is refused)")
      ->envname("SLUICE_URL")
      ->default_val(kDefaultUrl)
      ->type_name("URL");
  admin_
      ->add_option("--token", flags_.token,
                   "Bearer token for the admin API (prefer the environment variable: a flag shows "
                   "in the process list)")
      ->envname("SLUICE_ADMIN_TOKEN")
      ->type_name("TOKEN");
  AddRules(*admin_);
  AddLists(*admin_);
  AddTiers(*admin_);
  AddHistory(*admin_);
}

void AdminCommand::AddRules(CLI::App& admin) {
  CLI::App* rules = admin.add_subcommand("rules", "Rules: list, show, apply a file, delete");
  rules->require_subcommand(1)->fallthrough();
  rules_list_ = rules->add_subcommand("list", "List every rule in force, from files too");
  rules_list_->add_flag("--json", flags_.json, "Print the API's JSON as it came");
  rules_get_ = rules->add_subcommand("get", "Show one rule, with its source and revision");
  rules_get_->add_option("ID", flags_.id, "Rule id")->required();
  rules_get_->add_flag("--json", flags_.json, "Print the API's JSON as it came");
  rules_apply_ = rules->add_subcommand(
      "apply", "Make the database's rules match a rules file; prints the diff first");
  rules_apply_->footer(
      "Creates the file's rules the database lacks (POST), updates those whose JSON differs (PUT "
      "with If-Match on the listed revision), deletes database rules the file lacks (DELETE with "
      "If-Match). Prints '+ ID', '~ ID' with '  FIELD: OLD -> NEW' lines, '- ID', then 'N created, "
      "M updated, K deleted' or 'no changes'. Stops at the first error; what was applied before "
      "it stays applied. Rules from files on the server are never touched, and the file "
      "defining one of their ids is an error. List entries in the file are ignored with a "
      "warning (use 'sluice admin lists').");
  rules_apply_
      ->add_option("-f,--file", flags_.file,
                   "Sluice rules file (YAML with rules: and/or lists:), or a folder of them")
      ->required()
      ->type_name("FILE");
  rules_apply_->add_flag("--dry-run", flags_.dry_run, "Print the diff; change nothing");
  rules_delete_ = rules->add_subcommand("delete", "Delete a database rule");
  rules_delete_->add_option("ID", flags_.id, "Rule id")->required();
  for (CLI::App* sub : {rules_list_, rules_get_, rules_apply_, rules_delete_}) sub->fallthrough();
}

CLI::App* AdminCommand::AddList(CLI::App& lists, const std::string& name, ListCommands& c) {
  c.list_app = lists.add_subcommand(name, Cat("The ", name, " list (alone: list its entries)"));
  c.list_app->require_subcommand(0, 1)->fallthrough();
  c.list_app->add_flag("--json", flags_.json, "Print the API's JSON as it came");
  c.list = c.list_app->add_subcommand("list", Cat("List the ", name, " list's entries"));
  c.list->add_flag("--json", flags_.json, "Print the API's JSON as it came");
  c.add = c.list_app->add_subcommand(
      "add", Cat("Add an entry to the ", name,
                 " list; give at least one of --ip, --user-id, --api-key (several: all must "
                 "match)"));
  CLI::Option_group* match =
      c.add->add_option_group("match", "What the entry matches (at least one)");
  match->add_option("--ip", flags_.ip, "IP address or CIDR (ip_address)")->type_name("CIDR");
  match->add_option("--user-id", flags_.user_id, "User id (user_id)")->type_name("U");
  match->add_option("--api-key", flags_.api_key, "API key (api_key)")->type_name("K");
  match->require_option();
  c.add->add_option("--reason", flags_.reason, "Free text, shown in 403 answers and logs")
      ->type_name("R");
  c.add
      ->add_option("--expires-at", flags_.expires_at,
                   "When the entry stops applying, RFC 3339 (2026-12-31T00:00:00Z)")
      ->type_name("RFC3339");
  c.add->add_flag("--json", flags_.json, "Print the created entry's JSON as it came");
  c.remove = c.list_app->add_subcommand("delete", Cat("Remove an entry from the ", name, " list"));
  c.remove->add_option("ID", flags_.id, "Entry id (from the listing)")->required();
  for (CLI::App* sub : {c.list, c.add, c.remove}) sub->fallthrough();
  return c.list_app;
}

void AdminCommand::AddLists(CLI::App& admin) {
  CLI::App* lists = admin.add_subcommand("lists", "Allow and deny list entries in the database");
  lists->require_subcommand(1)->fallthrough();
  AddList(*lists, "allow", allow_);
  AddList(*lists, "deny", deny_);
}

void AdminCommand::AddTiers(CLI::App& admin) {
  CLI::App* tiers = admin.add_subcommand(
      "tiers", "Users' stored tiers (a check with a user_id and no tier is matched with it)");
  tiers->require_subcommand(1)->fallthrough();
  tiers_get_ = tiers->add_subcommand("get", "Print a user's tier");
  tiers_get_->add_option("USER_ID", flags_.tier_user, "User id")->required();
  tiers_get_->add_flag("--json", flags_.json, "Print the API's JSON as it came");
  tiers_set_ = tiers->add_subcommand("set", "Set a user's tier");
  tiers_set_->add_option("USER_ID", flags_.tier_user, "User id")->required();
  tiers_set_->add_option("TIER", flags_.tier, "Tier name, e.g. premium")->required();
  tiers_delete_ = tiers->add_subcommand("delete", "Remove a user's tier");
  tiers_delete_->add_option("USER_ID", flags_.tier_user, "User id")->required();
  for (CLI::App* sub : {tiers_get_, tiers_set_, tiers_delete_}) sub->fallthrough();
}

void AdminCommand::AddHistory(CLI::App& admin) {
  audit_ = admin.add_subcommand("audit", "Show the audit log, newest first");
  since_ = audit_->add_option("--since", flags_.since, "Only entries of versions after V")
               ->check(WholeNumber(0))
               ->type_name("V");
  limit_ = audit_->add_option("--limit", flags_.limit, "At most N entries (server default 100)")
               ->check(WholeNumber(1))
               ->type_name("N");
  audit_->add_flag("--json", flags_.json, "Print the API's JSON as it came");
  versions_ = admin.add_subcommand("versions", "List the rules versions, newest first");
  versions_->add_flag("--json", flags_.json, "Print the API's JSON as it came");
  restore_ = admin.add_subcommand(
      "restore", "Make rules, lists and tiers what they were at version V, as a new version");
  restore_->add_option("V", flags_.version, "Version to restore")
      ->required()
      ->check(WholeNumber(0))
      ->type_name("NUMBER");
  for (CLI::App* sub : {audit_, versions_, restore_}) sub->fallthrough();
}

int AdminCommand::Run(std::ostream& out, std::ostream& err) const {
  absl::StatusOr<AdminUrl> url = ParseAdminUrl(flags_.url);
  if (!url.ok()) {
    err << "error: " << url.status().message() << "\n" << admin_->help("sluice");
    return 2;
  }
  Session s(HttpClient(*url, flags_.token), out, err);
  const bool raw = flags_.json;

  if (rules_list_->parsed()) return s.Show(kRules, raw, RenderRules);
  if (rules_get_->parsed()) {
    return s.Show(Cat(kRules, "/", EncodePathSegment(flags_.id)), raw, RenderRule);
  }
  if (rules_apply_->parsed()) return ApplyRules(s, flags_.file, flags_.dry_run);
  if (rules_delete_->parsed()) {
    if (!s.Call("DELETE", Cat(kRules, "/", EncodePathSegment(flags_.id)))) return 1;
    out << "deleted rule " << Printable(flags_.id) << "\n";
    return 0;
  }

  for (const auto& [name, c] : {std::pair{"allow", &allow_}, std::pair{"deny", &deny_}}) {
    if (!c->list_app->parsed()) continue;
    const std::string path = Cat("/v1/admin/lists/", name);
    if (c->add->parsed()) {
      json entry = json::object();
      for (const auto& [field, value] :
           {std::pair{"ip_address", &flags_.ip}, std::pair{"user_id", &flags_.user_id},
            std::pair{"api_key", &flags_.api_key}, std::pair{"reason", &flags_.reason},
            std::pair{"expires_at", &flags_.expires_at}}) {
        if (!value->empty()) entry[field] = *value;
      }
      return AddListEntry(s, name, entry, raw);
    }
    if (c->remove->parsed()) {
      if (!s.Call("DELETE", Cat(path, "/", EncodePathSegment(flags_.id)))) return 1;
      out << "deleted " << Printable(flags_.id) << " from the " << name << " list\n";
      return 0;
    }
    return s.Show(path, raw, RenderListEntries);
  }

  const std::string tier_path = Cat("/v1/admin/tiers/", EncodePathSegment(flags_.tier_user));
  if (tiers_get_->parsed()) {
    return s.Show(tier_path, raw, [](const json& body) -> absl::StatusOr<std::string> {
      auto tier = body.is_object() ? body.find("tier") : body.end();
      if (!body.is_object() || tier == body.end() || !tier->is_string()) {
        return absl::InvalidArgumentError("unexpected answer: expected {\"tier\": \"...\"}");
      }
      return Cell(*tier) + "\n";
    });
  }
  if (tiers_set_->parsed()) {
    if (!s.Call("PUT", tier_path, json{{"tier", flags_.tier}}.dump())) return 1;
    out << Printable(flags_.tier_user) << ": " << Printable(flags_.tier) << "\n";
    return 0;
  }
  if (tiers_delete_->parsed()) {
    if (!s.Call("DELETE", tier_path)) return 1;
    out << "deleted the tier of " << Printable(flags_.tier_user) << "\n";
    return 0;
  }

  if (audit_->parsed()) {
    std::string query;
    if (since_->count() > 0) query += Cat("since=", flags_.since);
    if (limit_->count() > 0) query += Cat(query.empty() ? "" : "&", "limit=", flags_.limit);
    return s.Show(Cat("/v1/admin/audit", query.empty() ? "" : "?", query), raw, RenderAudit);
  }
  if (versions_->parsed()) return s.Show("/v1/admin/versions", raw, RenderVersions);
  if (restore_->parsed()) {
    std::optional<HttpResponse> response =
        s.Call("POST", Cat("/v1/admin/versions/", flags_.version, "/restore"));
    if (!response.has_value()) return 1;
    out << "restored version " << flags_.version;
    const json body = json::parse(response->body, nullptr, /*allow_exceptions=*/false);
    if (body.is_object() && body.contains("version")) {
      out << " as version " << Cell(body.at("version"));
    }
    out << "\n";
    return 0;
  }
  err << admin_->help("sluice");  // unreachable: CLI11 requires a sub-command
  return 2;
}

}  // namespace sluice::cli
