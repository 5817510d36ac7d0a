#include "cli/rules_diff.h"

#include <map>
#include <set>

#include "base/strings.h"

namespace sluice::cli {

using json = nlohmann::json;

namespace {

// The API's fields that are not the rule's (CONTRACT §8: read-only).
constexpr const char* kApiOnlyFields[] = {"source", "revision"};

std::string RevisionText(const json& rule) {
  auto it = rule.find("revision");
  if (it == rule.end() || it->is_null()) return "";
  return it->is_string() ? it->get<std::string>() : it->dump();
}

std::string Value(const std::optional<json>& value) {
  return value.has_value() ? value->dump() : "(unset)";
}

}  // namespace

size_t RulesDiff::Count(RuleChange::Kind kind) const {
  size_t n = 0;
  for (const RuleChange& c : changes) n += c.kind == kind ? 1 : 0;
  return n;
}

std::vector<FieldChange> DiffFields(const json& before, const json& after,
                                    const std::string& path) {
  std::vector<FieldChange> out;
  if (before == after) return out;
  if (!before.is_object() || !after.is_object()) {
    out.push_back({path, before, after});
    return out;
  }
  std::set<std::string> keys;
  for (const auto& [k, v] : before.items()) keys.insert(k);
  for (const auto& [k, v] : after.items()) keys.insert(k);
  for (const std::string& key : keys) {
    const std::string field = path.empty() ? key : Cat(path, ".", key);
    auto b = before.find(key);
    auto a = after.find(key);
    if (b == before.end()) {
      out.push_back({field, std::nullopt, *a});
    } else if (a == after.end()) {
      out.push_back({field, *b, std::nullopt});
    } else {
      for (FieldChange& c : DiffFields(*b, *a, field)) out.push_back(std::move(c));
    }
  }
  return out;
}

absl::StatusOr<RulesDiff> DiffRules(std::span<const FileRule> file, const json& listing) {
  auto rules = listing.is_object() ? listing.find("rules") : listing.end();
  if (!listing.is_object() || rules == listing.end() || !rules->is_array()) {
    return absl::InvalidArgumentError("the rules listing is not {\"rules\": [...]}");
  }
  // The database's rules by id, in listing order; the other sources' ids with their source.
  std::map<std::string, const json*> database;
  std::vector<std::string> database_order;
  std::map<std::string, std::string> elsewhere;
  for (const json& rule : *rules) {
    auto id = rule.is_object() ? rule.find("id") : rule.end();
    if (!rule.is_object() || id == rule.end() || !id->is_string()) {
      return absl::InvalidArgumentError("a rule of the listing has no string 'id'");
    }
    auto source = rule.find("source");
    const std::string source_text =
        source != rule.end() && source->is_string() ? source->get<std::string>() : "";
    if (source_text == "database") {
      if (database.emplace(id->get<std::string>(), &rule).second) {
        database_order.push_back(id->get<std::string>());
      }
    } else {
      elsewhere.emplace(id->get<std::string>(), source_text.empty() ? "?" : source_text);
    }
  }

  std::string clashes;
  for (const FileRule& r : file) {
    if (auto it = elsewhere.find(r.id); it != elsewhere.end()) {
      if (!clashes.empty()) clashes += "\n";
      clashes += Cat(r.location, ": rule '", r.id, "' is defined on the server by ", it->second,
                     " (file rules are read-only to the admin API)");
    }
  }
  if (!clashes.empty()) return absl::FailedPreconditionError(clashes);

  RulesDiff diff;
  std::set<std::string> in_file;
  for (const FileRule& r : file) {
    in_file.insert(r.id);
    json wanted = json::parse(r.json, nullptr, /*allow_exceptions=*/false);
    if (wanted.is_discarded()) {
      return absl::InvalidArgumentError(Cat(r.location, ": rule '", r.id, "' is not valid JSON"));
    }
    auto it = database.find(r.id);
    if (it == database.end()) {
      diff.changes.push_back({.kind = RuleChange::Kind::kCreate,
                              .id = r.id,
                              .body = r.json,
                              .revision = "",
                              .fields = {}});
      continue;
    }
    json stored = *it->second;
    for (const char* field : kApiOnlyFields) stored.erase(field);
    std::vector<FieldChange> fields = DiffFields(stored, wanted);
    if (fields.empty()) {
      ++diff.unchanged;
      continue;
    }
    diff.changes.push_back({.kind = RuleChange::Kind::kUpdate,
                            .id = r.id,
                            .body = r.json,
                            .revision = RevisionText(*it->second),
                            .fields = std::move(fields)});
  }
  for (const std::string& id : database_order) {
    if (in_file.contains(id)) continue;
    diff.changes.push_back({.kind = RuleChange::Kind::kDelete,
                            .id = id,
                            .body = "",
                            .revision = RevisionText(*database.at(id)),
                            .fields = {}});
  }
  return diff;
}

std::string RenderDiff(const RulesDiff& diff) {
  std::string out;
  for (const RuleChange& c : diff.changes) {
    switch (c.kind) {
      case RuleChange::Kind::kCreate:
        out += Cat("+ ", c.id, "\n");
        break;
      case RuleChange::Kind::kUpdate:
        out += Cat("~ ", c.id, "\n");
        for (const FieldChange& f : c.fields) {
          out += Cat("  ", f.field.empty() ? "(rule)" : f.field, ": ", Value(f.before), " -> ",
                     Value(f.after), "\n");
        }
        break;
      case RuleChange::Kind::kDelete:
        out += Cat("- ", c.id, "\n");
        break;
    }
  }
  out += DiffSummary(diff) + "\n";
  return out;
}

std::string DiffSummary(const RulesDiff& diff) {
  if (diff.changes.empty()) return "no changes";
  return Cat(diff.Count(RuleChange::Kind::kCreate), " created, ",
             diff.Count(RuleChange::Kind::kUpdate), " updated, ",
             diff.Count(RuleChange::Kind::kDelete), " deleted");
}

}  // namespace sluice::cli
