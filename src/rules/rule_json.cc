#include "rules/rule_json.h"

#include <yaml-cpp/yaml.h>

#include <charconv>
#include <cstdio>
#include <map>

#include "nlohmann/json.hpp"
#include "rules/loader_internal.h"
#include "rules/strings.h"
#include "yaml/parse.h"
#include "yaml/values.h"

namespace sluice::rules {

using json = nlohmann::json;

namespace {

// The fields a rule or list entry must give as JSON strings: the reader takes any YAML
// scalar as a string, but in JSON `"id": 5` is a wrong type, not the id "5".
constexpr std::string_view kRuleStringFields[] = {"id",          "group",     "window",
                                                  "algorithm",   "mode",      "description",
                                                  "consistency", "lease_ttl", "max_delay"};

// Positions of every key and value of a YAML tree, as field paths.
class PathIndex {
 public:
  explicit PathIndex(const YAML::Node& root) { Walk(root, ""); }

  // The path of the node at `pos`, or nullopt when no node starts there.
  std::optional<std::string> At(yaml::Pos pos) const {
    auto it = paths_.find({pos.line, pos.column});
    if (it == paths_.end()) return std::nullopt;
    return it->second;
  }

 private:
  void Add(const YAML::Mark& mark, const std::string& path) {
    if (mark.line < 0) return;
    paths_.try_emplace({mark.line + 1, mark.column + 1}, path);
  }
  void Walk(const YAML::Node& node, const std::string& path) {
    if (node.IsMap()) {
      for (const auto& kv : node) {
        const std::string key = kv.first.IsScalar() ? kv.first.Scalar() : std::string("?");
        const std::string child = path.empty() ? key : path + "." + key;
        Add(kv.first.Mark(), child);
        Add(kv.second.Mark(), child);
        Walk(kv.second, child);
      }
    } else if (node.IsSequence()) {
      size_t i = 0;
      for (const YAML::Node& item : node) {
        const std::string child = path + "[" + std::to_string(i++) + "]";
        Add(item.Mark(), child);
        Walk(item, child);
      }
    }
  }

  std::map<std::pair<int, int>, std::string> paths_;
};

// "missing required key 'X'" problems are reported at the mapping: the field is X.
std::string MissingKeyField(std::string_view message, const std::string& at) {
  constexpr std::string_view kMarker = "missing required key '";
  const size_t start = message.find(kMarker);
  if (start == std::string_view::npos) return at;
  const size_t from = start + kMarker.size();
  const size_t end = message.find('\'', from);
  if (end == std::string_view::npos) return at;
  const std::string key(message.substr(from, end - from));
  return at.empty() ? key : at + "." + key;
}

// Turns "SOURCE:LINE:COL: message" problems into field problems.
std::vector<FieldProblem> ToFieldProblems(const std::vector<std::string>& problems,
                                          const PathIndex& paths) {
  std::vector<FieldProblem> out;
  for (const std::string& p : problems) {
    int line = 0;
    int column = 0;
    int consumed = 0;
    // The source is "json" (no colon): "json:L:C: message".
    if (std::sscanf(p.c_str(), "json:%d:%d: %n", &line, &column, &consumed) != 2 || consumed == 0) {
      out.push_back({"", p});
      continue;
    }
    const std::string message = p.substr(static_cast<size_t>(consumed));
    const std::string at = paths.At({line, column}).value_or("");
    out.push_back({MissingKeyField(message, at), message});
  }
  return out;
}

// Parses `text` as a JSON object; on failure fills `problems`.
std::optional<json> ParseObject(std::string_view text, std::string_view what,
                                std::vector<FieldProblem>& problems) {
  json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    problems.push_back({"", Cat(what, " is not valid JSON")});
    return std::nullopt;
  }
  if (!j.is_object()) {
    problems.push_back({"", Cat(what, " must be a JSON object")});
    return std::nullopt;
  }
  return j;
}

// Runs `load` (a rules-file reader entry) over `canonical` read as YAML, with problems as
// field paths.
template <typename Load>
std::vector<FieldProblem> ReadWithFileReader(const std::string& canonical, Load load) {
  yaml::Problems problems("json");
  yaml::Reader reader(problems);
  std::vector<std::string> texts;
  const std::optional<std::vector<YAML::Node>> docs = yaml::Parse(canonical, {}, problems);
  if (!docs.has_value() || docs->empty()) {
    problems.MoveTo(&texts);
    std::vector<FieldProblem> out;
    for (std::string& t : texts) out.push_back({"", std::move(t)});
    return out;
  }
  const YAML::Node& root = docs->front();
  yaml::Guard(problems, [&] { load(root, reader); });
  problems.MoveTo(&texts);
  return ToFieldProblems(texts, PathIndex(root));
}

void AppendJson(const YAML::Node& node, json& out) {
  if (node.IsMap()) {
    out = json::object();
    for (const auto& kv : node) {
      json value;
      AppendJson(kv.second, value);
      out[kv.first.IsScalar() ? kv.first.Scalar() : std::string("?")] = std::move(value);
    }
  } else if (node.IsSequence()) {
    out = json::array();
    for (const YAML::Node& item : node) {
      json value;
      AppendJson(item, value);
      out.push_back(std::move(value));
    }
  } else if (node.IsScalar()) {
    const std::string& s = node.Scalar();
    if (yaml::IsPlainScalar(node)) {
      if (auto v = yaml::ParseInteger(s); v.ok()) {
        out = *v;
        return;
      }
      if (s == "true" || s == "false") {
        out = s == "true";
        return;
      }
      if (s == "null" || s == "~" || s.empty()) {
        out = nullptr;
        return;
      }
    }
    out = s;
  } else {
    out = nullptr;
  }
}

}  // namespace

namespace internal {

std::string YamlToJson(const YAML::Node& node) {
  json out;
  AppendJson(node, out);
  return out.dump();
}

}  // namespace internal

JsonRule ParseRuleJson(std::string_view text, std::string_view source) {
  JsonRule result;
  std::optional<json> j = ParseObject(text, "a rule", result.problems);
  if (!j.has_value()) return result;
  result.canonical = j->dump();
  for (std::string_view field : kRuleStringFields) {
    auto it = j->find(std::string(field));
    if (it != j->end() && !it->is_string()) {
      result.problems.push_back({std::string(field), Cat("'", field, "' must be a string")});
    }
  }
  if (auto key = j->find("key"); key != j->end() && key->is_array()) {
    for (size_t i = 0; i < key->size(); ++i) {
      if (!(*key)[i].is_string()) {
        result.problems.push_back({Cat("key[", i, "]"), "an attribute name must be a string"});
      }
    }
  }
  if (!result.problems.empty()) return result;
  LoadLimits limits;
  internal::LoadState state(limits);
  std::vector<FieldProblem> problems =
      ReadWithFileReader(result.canonical, [&](const YAML::Node& root, yaml::Reader& reader) {
        internal::LoadRuleNode(root, reader, state);
      });
  if (!problems.empty() || state.rules.size() != 1) {
    result.problems = std::move(problems);
    if (result.problems.empty()) result.problems.push_back({"", "not a rule"});
    return result;
  }
  Rule rule = std::move(state.rules.front());
  rule.location = SourceLocation{std::string(source), 0, 0};
  rule.json = result.canonical;
  result.rule = std::move(rule);
  return result;
}

JsonListEntry ParseListEntryJson(std::string_view text, std::string_view source) {
  JsonListEntry result;
  std::optional<json> j = ParseObject(text, "a list entry", result.problems);
  if (!j.has_value()) return result;
  // `id` and `source` are the API's, not the entry's: kept out of what is validated and stored.
  j->erase("id");
  j->erase("source");
  result.canonical = j->dump();
  for (const auto& [name, value] : j->items()) {
    if (!value.is_string()) {
      result.problems.push_back({name, Cat("'", name, "' must be a string")});
    }
  }
  if (!result.problems.empty()) return result;
  LoadLimits limits;
  internal::LoadState state(limits);
  std::vector<ListEntry> entries;
  std::vector<FieldProblem> problems =
      ReadWithFileReader(result.canonical, [&](const YAML::Node& root, yaml::Reader& reader) {
        internal::LoadListEntryNode(root, reader, state, entries);
      });
  if (!problems.empty() || entries.size() != 1) {
    result.problems = std::move(problems);
    if (result.problems.empty()) result.problems.push_back({"", "not a list entry"});
    return result;
  }
  result.entry = std::move(entries.front());
  result.entry->location = SourceLocation{std::string(source), 0, 0};
  return result;
}

}  // namespace sluice::rules
