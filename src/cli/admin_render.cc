#include "cli/admin_render.h"

#include <algorithm>
#include <set>

#include "base/strings.h"

namespace sluice::cli {

using json = nlohmann::json;

namespace {

// A list entry's fields that are not attributes to match (CONTRACT §8).
const std::set<std::string> kListEntryFields = {"id", "reason", "expires_at", "source"};

// `body[key]` when it is an array of objects, else InvalidArgument naming what was expected.
absl::StatusOr<const json*> ArrayOf(const json& body, const char* key) {
  if (body.is_object()) {
    auto it = body.find(key);
    if (it != body.end() && it->is_array() &&
        std::all_of(it->begin(), it->end(), [](const json& e) { return e.is_object(); })) {
      return &*it;
    }
  }
  return absl::InvalidArgumentError(Cat("unexpected answer: expected {\"", key, "\": [...]}"));
}

json Field(const json& object, const char* key) {
  auto it = object.find(key);
  return it == object.end() ? json() : *it;
}

// The field, or `fallback` (a §3.1 default) when the rule leaves it out.
std::string CellOr(const json& object, const char* key, const char* fallback) {
  const json value = Field(object, key);
  return value.is_null() ? fallback : Cell(value);
}

}  // namespace

std::string Printable(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  }
  return out;
}

std::string Cell(const json& value) {
  if (value.is_null()) return "-";
  if (value.is_string()) {
    const auto& s = value.get_ref<const std::string&>();
    return s.empty() ? "-" : Printable(s);
  }
  return Printable(value.dump());
}

std::string FormatApiError(int status, std::string_view reason, std::string_view body) {
  const json j = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  const json* error = nullptr;
  if (j.is_object()) {
    auto it = j.find("error");
    if (it != j.end() && it->is_object() && it->contains("code")) error = &*it;
  }
  if (error == nullptr) {
    std::string out = Cat("error: HTTP ", status);
    if (!reason.empty()) out += Cat(" ", Printable(reason));
    std::string_view first = body.substr(0, body.find('\n'));
    while (!first.empty() && (first.back() == '\r' || first.back() == ' ')) first.remove_suffix(1);
    if (!first.empty()) out += Cat(": ", Printable(first.substr(0, 200)));
    return out + "\n";
  }
  std::string out =
      Cat("error: ", Cell(Field(*error, "code")), ": ", Cell(Field(*error, "message")), "\n");
  const json details = Field(*error, "details");
  if (details.is_array()) {
    for (const json& d : details) {
      if (!d.is_object()) continue;
      const json field = Field(d, "field");
      const std::string message = Cell(Field(d, "message"));
      if (field.is_string() && !field.get_ref<const std::string&>().empty()) {
        out += Cat("  ", Cell(field), ": ", message, "\n");
      } else {
        out += Cat("  ", message, "\n");
      }
    }
  }
  return out;
}

std::string RenderTable(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line.append(widths[i] - row[i].size() + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  return out;
}

absl::StatusOr<std::string> RenderRules(const json& listing) {
  absl::StatusOr<const json*> rules = ArrayOf(listing, "rules");
  if (!rules.ok()) return rules.status();
  std::vector<std::vector<std::string>> rows = {
      {"ID", "LIMIT", "WINDOW", "ALGORITHM", "GROUP", "PRIORITY", "MODE", "SOURCE"}};
  for (const json& r : **rules) {
    const json enabled = Field(r, "enabled");
    rows.push_back({Cell(Field(r, "id")), Cell(Field(r, "limit")), Cell(Field(r, "window")),
                    CellOr(r, "algorithm", "sliding_window_counter"), Cell(Field(r, "group")),
                    CellOr(r, "priority", "100"),
                    enabled == json(false) ? "disabled" : CellOr(r, "mode", "enforce"),
                    Cell(Field(r, "source"))});
  }
  const size_t n = (*rules)->size();
  return Cat(RenderTable(rows), n, n == 1 ? " rule" : " rules", ", version ",
             Cell(Field(listing, "version")), "\n");
}

absl::StatusOr<std::string> RenderRule(const json& rule) {
  if (!rule.is_object()) return absl::InvalidArgumentError("unexpected answer: not a rule object");
  std::string out;
  for (const char* first : {"id", "source", "revision"}) {
    if (rule.contains(first)) out += Cat(first, ": ", Cell(rule.at(first)), "\n");
  }
  for (const auto& [name, value] : rule.items()) {
    if (name == "id" || name == "source" || name == "revision") continue;
    out += Cat(Printable(name), ": ", Cell(value), "\n");
  }
  return out;
}

absl::StatusOr<std::string> RenderListEntries(const json& body) {
  absl::StatusOr<const json*> entries = ArrayOf(body, "entries");
  if (!entries.ok()) return entries.status();
  std::vector<std::vector<std::string>> rows = {{"ID", "MATCH", "REASON", "EXPIRES", "SOURCE"}};
  for (const json& e : **entries) {
    std::string match;
    for (const auto& [name, value] : e.items()) {
      if (kListEntryFields.contains(name)) continue;
      if (!match.empty()) match += " ";
      match += Cat(Printable(name), "=", Cell(value));
    }
    rows.push_back({Cell(Field(e, "id")), match.empty() ? "-" : match, Cell(Field(e, "reason")),
                    Cell(Field(e, "expires_at")), Cell(Field(e, "source"))});
  }
  return RenderTable(rows);
}

absl::StatusOr<std::string> RenderAudit(const json& body) {
  absl::StatusOr<const json*> entries = ArrayOf(body, "entries");
  if (!entries.ok()) return entries.status();
  std::vector<std::vector<std::string>> rows = {{"VERSION", "AT", "ACTOR", "ACTION", "TARGET"}};
  for (const json& e : **entries) {
    rows.push_back({Cell(Field(e, "version")), Cell(Field(e, "at")), Cell(Field(e, "actor")),
                    Cell(Field(e, "action")), Cell(Field(e, "target"))});
  }
  return RenderTable(rows);
}

absl::StatusOr<std::string> RenderVersions(const json& body) {
  absl::StatusOr<const json*> versions = ArrayOf(body, "versions");
  if (!versions.ok()) return versions.status();
  std::vector<std::vector<std::string>> rows = {{"VERSION", "AT", "ACTOR", "SUMMARY"}};
  for (const json& v : **versions) {
    rows.push_back({Cell(Field(v, "version")), Cell(Field(v, "at")), Cell(Field(v, "actor")),
                    Cell(Field(v, "summary"))});
  }
  return RenderTable(rows);
}

}  // namespace sluice::cli
