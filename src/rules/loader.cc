#include "rules/loader.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <limits>
#include <system_error>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_join.h"
#include "core/limit.h"
#include "rules/strings.h"
#include "rules/values.h"

namespace sluice::rules {

namespace {

namespace fs = std::filesystem;

constexpr std::string_view kAlgorithmList =
    "fixed_window, sliding_window_counter, sliding_window_log, token_bucket, gcra, leaky_bucket";

bool ReadFile(const std::string& path, std::string* contents, std::string* error) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    *error = std::generic_category().message(errno);
    return false;
  }
  char buf[1 << 14];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) contents->append(buf, n);
  const bool failed = std::ferror(f) != 0;
  const int read_errno = errno;
  std::fclose(f);
  if (failed) *error = std::generic_category().message(read_errno);
  return !failed;
}

bool IsRulesFileName(const std::string& name) {
  if (name.empty() || name.front() == '.') return false;
  return name.ends_with(".yaml") || name.ends_with(".yml");
}

// A position in the file being loaded. yaml-cpp counts from 0; the contract from 1.
struct Pos {
  int line = 0;
  int column = 0;
};

Pos At(const YAML::Node& node) {
  const YAML::Mark m = node.Mark();
  if (m.is_null()) return {1, 1};
  return {m.line + 1, m.column + 1};
}

// Where to report a problem with a key's value: the value itself, except for an empty (null)
// value, whose mark yaml-cpp sets to the next token, possibly lines later.
Pos ValueAt(const YAML::Node& key, const YAML::Node& value) {
  return value.IsNull() ? At(key) : At(value);
}

bool IsPlainScalar(const YAML::Node& node) { return node.IsScalar() && node.Tag() == "?"; }

// Loads one file after another into the parts of a RuleSet, collecting problems.
class Loader {
 public:
  // Appends `file`'s problems (if any) and keeps what it defines for Finish.
  void LoadFile(const std::string& file);
  void AddProblem(std::string problem) { problems_.push_back(std::move(problem)); }
  LoadResult Finish();

 private:
  void LoadFileContents(const std::string& file);
  using FieldFn =
      std::function<bool(std::string_view name, const YAML::Node& key, const YAML::Node& value)>;

  void Problem(Pos pos, std::string_view message) {
    file_problems_.push_back(
        {pos, internal::Cat(file_, ":", pos.line, ":", pos.column, ": ", message)});
  }
  // Moves the current file's problems to `problems_`, in position order.
  void FlushProblems();
  SourceLocation Location(Pos pos) const { return {file_, pos.line, pos.column}; }

  // Calls `fn` for each key of mapping `map`, in order. Reports keys that are not strings,
  // duplicate keys (yaml-cpp keeps both silently), and keys `fn` does not know (returns false).
  void ForEachField(const YAML::Node& map, std::string_view what, const FieldFn& fn);
  // Null (an empty value) counts as an empty list: a list whose items are all commented out.
  bool ExpectSequence(const YAML::Node& key, const YAML::Node& value, std::string_view what);

  // Typed getters: report a problem at the value and return nullopt when it has the wrong type.
  std::optional<std::string> GetString(std::string_view name, const YAML::Node& key,
                                       const YAML::Node& value);
  std::optional<int64_t> GetInteger(std::string_view name, const YAML::Node& key,
                                    const YAML::Node& value, int64_t min, int64_t max);
  std::optional<bool> GetBool(std::string_view name, const YAML::Node& key,
                              const YAML::Node& value);
  std::optional<Algorithm> GetAlgorithm(const YAML::Node& key, const YAML::Node& value);

  void LoadRulesFile(const YAML::Node& root);
  void LoadRule(const YAML::Node& node);
  std::optional<Match> LoadMatch(const YAML::Node& key, const YAML::Node& value);
  std::optional<AttributePattern> LoadPattern(const AttributeRef& ref, const YAML::Node& key,
                                              const YAML::Node& value);
  void LoadLists(const YAML::Node& key, const YAML::Node& value);
  void LoadListEntry(const YAML::Node& node, std::vector<ListEntry>& list);

  void LoadDomainFile(const YAML::Node& root);
  DescriptorLevel LoadDescriptors(Domain& domain, const YAML::Node& seq,
                                  const std::string& parent_key);
  std::optional<DescriptorLimit> LoadRateLimit(const YAML::Node& key, const YAML::Node& node,
                                               std::string full_key);

  std::string file_;
  struct FileProblem {
    Pos pos;
    std::string text;
  };
  std::vector<FileProblem> file_problems_;  // of the file being loaded
  std::vector<std::string> problems_;
  std::vector<Rule> rules_;
  std::vector<ListEntry> allow_;
  std::vector<ListEntry> deny_;
  std::vector<Domain> domains_;
  absl::flat_hash_map<std::string, SourceLocation> rule_ids_;
  absl::flat_hash_map<std::string, SourceLocation> domain_names_;
};

void Loader::ForEachField(const YAML::Node& map, std::string_view what, const FieldFn& fn) {
  absl::flat_hash_set<std::string> seen;
  for (const auto& kv : map) {
    const YAML::Node& key = kv.first;
    const YAML::Node& value = kv.second;
    if (!key.IsScalar()) {
      Problem(At(key), internal::Cat("keys of ", what, " must be strings"));
      continue;
    }
    const std::string& name = key.Scalar();
    if (!seen.insert(name).second) {
      Problem(At(key), internal::Cat("duplicate key '", name, "' in ", what));
      continue;
    }
    if (!fn(name, key, value))
      Problem(At(key), internal::Cat("unknown key '", name, "' in ", what));
  }
}

bool Loader::ExpectSequence(const YAML::Node& key, const YAML::Node& value, std::string_view what) {
  if (value.IsSequence() || value.IsNull()) return true;
  Problem(ValueAt(key, value), internal::Cat("'", key.Scalar(), "' must be a list of ", what));
  return false;
}

std::optional<std::string> Loader::GetString(std::string_view name, const YAML::Node& key,
                                             const YAML::Node& value) {
  if (value.IsScalar()) return value.Scalar();
  Problem(ValueAt(key, value), internal::Cat("'", name, "' must be a string"));
  return std::nullopt;
}

std::optional<int64_t> Loader::GetInteger(std::string_view name, const YAML::Node& key,
                                          const YAML::Node& value, int64_t min, int64_t max) {
  // Plain scalars only: `limit: "20"` is a string in YAML, and silently converting it would
  // accept files that other YAML tools read differently.
  absl::StatusOr<int64_t> n = IsPlainScalar(value)
                                  ? ParseInteger(value.Scalar())
                                  : absl::InvalidArgumentError("not a plain scalar");
  if (!n.ok()) {
    const std::string got = value.IsScalar() ? internal::Cat(", got '", value.Scalar(), "'") : "";
    Problem(ValueAt(key, value), internal::Cat("'", name, "' must be an integer", got));
    return std::nullopt;
  }
  if (*n < min || *n > max) {
    Problem(At(value),
            max == std::numeric_limits<int64_t>::max()
                ? internal::Cat("'", name, "' must be at least ", min, ", got ", *n)
                : internal::Cat("'", name, "' must be between ", min, " and ", max, ", got ", *n));
    return std::nullopt;
  }
  return *n;
}

std::optional<bool> Loader::GetBool(std::string_view name, const YAML::Node& key,
                                    const YAML::Node& value) {
  bool b = false;
  // yaml-cpp's reading: true/false and the YAML 1.1 forms (yes/no, on/off) that
  // envoyproxy/ratelimit's Go YAML parser also accepts.
  if (IsPlainScalar(value) && YAML::convert<bool>::decode(value, b)) return b;
  Problem(ValueAt(key, value), internal::Cat("'", name, "' must be true or false"));
  return std::nullopt;
}

std::optional<Algorithm> Loader::GetAlgorithm(const YAML::Node& key, const YAML::Node& value) {
  std::optional<std::string> name = GetString("algorithm", key, value);
  if (!name.has_value()) return std::nullopt;
  std::optional<Algorithm> algorithm = ParseAlgorithm(*name);
  if (!algorithm.has_value()) {
    Problem(At(value), internal::Cat("unknown algorithm '", *name, "' (expected one of ",
                                     kAlgorithmList, ")"));
  }
  return algorithm;
}

void Loader::FlushProblems() {
  // Checks that run after a mapping's fields (missing keys) report before the fields' own
  // problems; sorting puts them back in reading order.
  std::stable_sort(
      file_problems_.begin(), file_problems_.end(), [](const FileProblem& a, const FileProblem& b) {
        return a.pos.line != b.pos.line ? a.pos.line < b.pos.line : a.pos.column < b.pos.column;
      });
  for (FileProblem& p : file_problems_) problems_.push_back(std::move(p.text));
  file_problems_.clear();
}

void Loader::LoadFile(const std::string& file) {
  LoadFileContents(file);
  FlushProblems();
}

void Loader::LoadFileContents(const std::string& file) {
  file_ = file;
  std::string contents;
  std::string error;
  if (!ReadFile(file, &contents, &error)) {
    problems_.push_back(internal::Cat(file, ": cannot read: ", error));
    return;
  }
  // yaml-cpp reports errors by throwing; nothing may escape the loader, and a syntax error
  // ends that file only.
  try {
    const std::vector<YAML::Node> docs = YAML::LoadAll(contents);
    if (docs.empty() || docs.front().IsNull()) {
      Problem({1, 1}, "empty file: expected top-level 'rules', 'lists' or 'domain'");
      return;
    }
    if (docs.size() > 1) {
      Problem(At(docs[1]), "a file may hold only one YAML document");
    }
    const YAML::Node& root = docs.front();
    if (!root.IsMap()) {
      Problem(At(root), "expected a mapping with top-level 'rules', 'lists' or 'domain'");
      return;
    }
    std::optional<YAML::Node> domain_key;
    bool has_sluice = false;
    for (const auto& kv : root) {
      if (!kv.first.IsScalar()) continue;
      const std::string& name = kv.first.Scalar();
      if (name == "domain" && !domain_key.has_value()) domain_key = kv.first;
      if (name == "rules" || name == "lists") has_sluice = true;
    }
    const bool has_domain = domain_key.has_value();
    if (has_domain && has_sluice) {
      Problem(At(*domain_key),
              "a file holds either 'rules'/'lists' (Sluice rules) or 'domain' (Envoy "
              "descriptors), not both");
      return;
    }
    if (has_domain) {
      LoadDomainFile(root);
    } else if (has_sluice) {
      LoadRulesFile(root);
    } else {
      ForEachField(root, "file (expected top-level 'rules', 'lists' or 'domain')",
                   [](std::string_view, const YAML::Node&, const YAML::Node&) { return false; });
      if (root.size() == 0) {
        Problem(At(root), "empty mapping: expected top-level 'rules', 'lists' or 'domain'");
      }
    }
  } catch (const YAML::Exception& e) {
    Problem(e.mark.is_null() ? Pos{1, 1} : Pos{e.mark.line + 1, e.mark.column + 1}, e.msg);
  } catch (const std::exception& e) {
    Problem({1, 1}, internal::Cat("cannot load: ", e.what()));
  }
}

// ---- Sluice rules files ----

void Loader::LoadRulesFile(const YAML::Node& root) {
  ForEachField(root, "rules file",
               [&](std::string_view name, const YAML::Node& key, const YAML::Node& value) {
                 if (name == "rules") {
                   if (ExpectSequence(key, value, "rules")) {
                     for (const YAML::Node& rule : value) LoadRule(rule);
                   }
                 } else if (name == "lists") {
                   LoadLists(key, value);
                 } else {
                   return false;
                 }
                 return true;
               });
}

void Loader::LoadRule(const YAML::Node& node) {
  if (!node.IsMap()) {
    Problem(At(node), "a rule must be a mapping");
    return;
  }
  const size_t problems_before = file_problems_.size();
  std::string id;
  bool id_seen = false;  // present, even if invalid (then reported): not also "missing"
  std::string group;
  int64_t priority = 100;
  Match match;
  std::vector<AttributeRef> key_attributes;
  std::optional<int64_t> limit;
  bool limit_seen = false;
  std::optional<Micros> window;
  bool window_seen = false;
  Algorithm algorithm = Algorithm::kSlidingWindowCounter;
  int64_t burst = 0;  // 0: Limit::Create defaults it to `limit`
  RuleMode mode = RuleMode::kEnforce;
  bool enabled = true;
  Pos limit_pos;

  ForEachField(
      node, "rule", [&](std::string_view name, const YAML::Node& key, const YAML::Node& value) {
        if (name == "id") {
          id_seen = true;
          std::optional<std::string> s = GetString(name, key, value);
          if (!s.has_value()) return true;
          if (s->empty()) {
            Problem(ValueAt(key, value), "'id' must not be empty");
            return true;
          }
          id = *s;
          const auto [it, inserted] = rule_ids_.try_emplace(id, Location(At(value)));
          if (!inserted) {
            Problem(At(value), internal::Cat("duplicate rule id '", id, "' (first defined at ",
                                             it->second.ToString(), ")"));
          }
        } else if (name == "group") {
          group = GetString(name, key, value).value_or("");
        } else if (name == "priority") {
          priority = GetInteger(name, key, value, std::numeric_limits<int64_t>::min(),
                                std::numeric_limits<int64_t>::max())
                         .value_or(priority);
        } else if (name == "match") {
          match = LoadMatch(key, value).value_or(Match{});
        } else if (name == "key") {
          if (!ExpectSequence(key, value, "attribute names")) return true;
          for (const YAML::Node& item : value) {
            std::optional<AttributeRef> ref;
            if (item.IsScalar()) ref = ParseAttributeName(item.Scalar());
            if (!ref.has_value()) {
              Problem(At(item), internal::Cat("unknown attribute ",
                                              item.IsScalar() ? "'" + item.Scalar() + "'" : "",
                                              " in 'key' (expected user_id, api_key, ip_address, "
                                              "endpoint, method, tier or headers.<name>)"));
            } else if (std::find(key_attributes.begin(), key_attributes.end(), *ref) !=
                       key_attributes.end()) {
              Problem(At(item), internal::Cat("duplicate attribute '", ref->Name(), "' in 'key'"));
            } else {
              key_attributes.push_back(*std::move(ref));
            }
          }
        } else if (name == "limit") {
          limit_seen = true;
          limit_pos = ValueAt(key, value);
          limit = GetInteger(name, key, value, 1, std::numeric_limits<int64_t>::max());
        } else if (name == "window") {
          window_seen = true;
          std::optional<std::string> s = GetString(name, key, value);
          if (!s.has_value()) return true;
          absl::StatusOr<Micros> d = ParseDuration(*s);
          if (!d.ok()) {
            Problem(At(value), internal::Cat("'window': ", d.status().message()));
          } else if (*d <= 0) {
            Problem(At(value), "'window' must be longer than zero");
          } else if (*d > Limit::kMaxWindow) {
            Problem(At(value), "'window' must be at most 10 years");
          } else {
            window = *d;
          }
        } else if (name == "algorithm") {
          algorithm = GetAlgorithm(key, value).value_or(algorithm);
        } else if (name == "burst") {
          // Accepted on every algorithm: those without a bucket ignore it (Limit keeps it unused).
          burst = GetInteger(name, key, value, 1, std::numeric_limits<int64_t>::max()).value_or(0);
        } else if (name == "mode") {
          std::optional<std::string> s = GetString(name, key, value);
          if (s == "enforce") {
            mode = RuleMode::kEnforce;
          } else if (s == "shadow") {
            mode = RuleMode::kShadow;
          } else if (s.has_value()) {
            Problem(At(value),
                    internal::Cat("unknown mode '", *s, "' (expected enforce or shadow)"));
          }
        } else if (name == "enabled") {
          enabled = GetBool(name, key, value).value_or(enabled);
        } else {
          return false;
        }
        return true;
      });

  const Pos rule_pos = At(node);
  for (const auto& [seen, name] :
       {std::pair{id_seen, "id"}, std::pair{limit_seen, "limit"}, {window_seen, "window"}}) {
    if (!seen) Problem(rule_pos, internal::Cat("rule is missing required key '", name, "'"));
  }
  if (file_problems_.size() != problems_before) return;

  absl::StatusOr<Limit> created =
      Limit::Create({.algorithm = algorithm, .limit = *limit, .window = *window, .burst = burst});
  if (!created.ok()) {
    Problem(limit_pos, internal::Cat("invalid limit: ", created.status().message()));
    return;
  }
  rules_.push_back(Rule{.id = std::move(id),
                        .group = std::move(group),
                        .priority = priority,
                        .match = std::move(match),
                        .key = std::move(key_attributes),
                        .limit = *created,
                        .mode = mode,
                        .enabled = enabled,
                        .file_order = 0,
                        .location = Location(rule_pos)});
}

std::optional<AttributePattern> Loader::LoadPattern(const AttributeRef& ref, const YAML::Node& key,
                                                    const YAML::Node& value) {
  const std::string name = ref.Name();
  std::optional<std::string> text = GetString(name, key, value);
  if (!text.has_value()) return std::nullopt;
  absl::StatusOr<AttributePattern> pattern = AttributePattern::Parse(ref, *text);
  if (!pattern.ok()) {
    Problem(ValueAt(key, value), internal::Cat("'", name, "': ", pattern.status().message()));
    return std::nullopt;
  }
  return *std::move(pattern);
}

std::optional<Match> Loader::LoadMatch(const YAML::Node& key, const YAML::Node& value) {
  if (value.IsNull()) return Match{};  // `match:` left empty, like `match: {}`
  if (!value.IsMap()) {
    Problem(ValueAt(key, value), "'match' must be a mapping of attribute to pattern");
    return std::nullopt;
  }
  Match match;
  ForEachField(
      value, "match", [&](std::string_view name, const YAML::Node& k, const YAML::Node& v) {
        std::optional<AttributeRef> ref = ParseAttributeName(name);
        if (!ref.has_value()) return false;
        for (const AttributePattern& existing : match) {
          if (existing.attribute() == *ref) {
            Problem(At(k), internal::Cat("duplicate attribute '", ref->Name(), "' in match"));
            return true;
          }
        }
        if (std::optional<AttributePattern> p = LoadPattern(*ref, k, v)) {
          match.push_back(*std::move(p));
        }
        return true;
      });
  return match;
}

void Loader::LoadLists(const YAML::Node& key, const YAML::Node& value) {
  if (value.IsNull()) return;
  if (!value.IsMap()) {
    Problem(ValueAt(key, value), "'lists' must be a mapping with 'allow' and/or 'deny'");
    return;
  }
  ForEachField(value, "lists",
               [&](std::string_view name, const YAML::Node& k, const YAML::Node& v) {
                 if (name != "allow" && name != "deny") return false;
                 if (ExpectSequence(k, v, "entries")) {
                   for (const YAML::Node& entry : v)
                     LoadListEntry(entry, name == "allow" ? allow_ : deny_);
                 }
                 return true;
               });
}

void Loader::LoadListEntry(const YAML::Node& node, std::vector<ListEntry>& list) {
  if (!node.IsMap()) {
    Problem(At(node), "a list entry must be a mapping of attribute to pattern");
    return;
  }
  const size_t problems_before = file_problems_.size();
  ListEntry entry;
  entry.location = Location(At(node));
  ForEachField(node, "list entry",
               [&](std::string_view name, const YAML::Node& key, const YAML::Node& value) {
                 if (name == "reason") {
                   entry.reason = GetString(name, key, value).value_or("");
                 } else if (name == "expires_at") {
                   std::optional<std::string> s = GetString(name, key, value);
                   if (!s.has_value()) return true;
                   absl::StatusOr<Micros> t = ParseRfc3339(*s);
                   if (t.ok()) {
                     entry.expires_at = *t;
                   } else {
                     Problem(At(value), internal::Cat("'expires_at': ", t.status().message()));
                   }
                 } else if (std::optional<AttributeRef> ref = ParseAttributeName(name)) {
                   for (const AttributePattern& existing : entry.match) {
                     if (existing.attribute() == *ref) {
                       Problem(At(key), internal::Cat("duplicate attribute '", ref->Name(),
                                                      "' in list entry"));
                       return true;
                     }
                   }
                   if (std::optional<AttributePattern> p = LoadPattern(*ref, key, value)) {
                     entry.match.push_back(*std::move(p));
                   }
                 } else {
                   return false;
                 }
                 return true;
               });
  if (file_problems_.size() != problems_before) return;
  if (entry.match.empty()) {
    // An entry without attributes would allow (or deny) every request: surely a mistake.
    Problem(At(node), "a list entry must name at least one attribute");
    return;
  }
  list.push_back(std::move(entry));
}

// ---- Envoy domain files ----

void Loader::LoadDomainFile(const YAML::Node& root) {
  const size_t problems_before = file_problems_.size();
  Domain domain;
  std::optional<YAML::Node> descriptors;
  std::optional<YAML::Node> descriptors_key;
  Pos domain_pos = At(root);
  ForEachField(root, "domain file",
               [&](std::string_view name, const YAML::Node& key, const YAML::Node& value) {
                 if (name == "domain") {
                   domain_pos = ValueAt(key, value);
                   if (value.IsNull() || (value.IsScalar() && value.Scalar().empty())) {
                     Problem(domain_pos, "config file cannot have empty domain");
                   } else {
                     domain.name = GetString(name, key, value).value_or("");
                   }
                 } else if (name == "descriptors") {
                   if (ExpectSequence(key, value, "descriptors")) {
                     descriptors = value;
                     descriptors_key = key;
                   }
                 } else {
                   return false;
                 }
                 return true;
               });
  if (file_problems_.size() != problems_before) return;
  domain.location = Location(domain_pos);
  if (descriptors.has_value()) {
    domain.top = LoadDescriptors(domain, *descriptors, domain.name + ".");
  }
  const auto [it, inserted] = domain_names_.try_emplace(domain.name, domain.location);
  if (!inserted) {
    Problem(domain_pos,
            internal::Cat("duplicate domain '", domain.name, "' in config file (first defined at ",
                          it->second.ToString(), ")"));
    return;
  }
  if (file_problems_.size() != problems_before) return;
  domains_.push_back(std::move(domain));
}

DescriptorLevel Loader::LoadDescriptors(Domain& domain, const YAML::Node& seq,
                                        const std::string& parent_key) {
  DescriptorLevel level;
  if (seq.IsNull()) return level;
  for (const YAML::Node& item : seq) {
    if (!item.IsMap()) {
      Problem(At(item), "a descriptor must be a mapping");
      continue;
    }
    const size_t problems_before = file_problems_.size();
    DescriptorNode node;
    std::optional<YAML::Node> key_node;
    std::optional<std::pair<YAML::Node, YAML::Node>> rate_limit;  // key, value
    std::optional<YAML::Node> children;
    bool shadow_mode = false;
    bool detailed_metric = false;
    ForEachField(item, "descriptor",
                 [&](std::string_view name, const YAML::Node& key, const YAML::Node& value) {
                   if (name == "key") {
                     key_node = key;
                     node.key = GetString(name, key, value).value_or("");
                   } else if (name == "value") {
                     // An empty value is envoyproxy/ratelimit's "no value": the key-only default.
                     if (!value.IsNull()) node.value = GetString(name, key, value).value_or("");
                   } else if (name == "rate_limit") {
                     rate_limit.emplace(key, value);
                   } else if (name == "descriptors") {
                     if (ExpectSequence(key, value, "descriptors")) children = value;
                   } else if (name == "shadow_mode") {
                     shadow_mode = GetBool(name, key, value).value_or(false);
                   } else if (name == "detailed_metric") {
                     detailed_metric = GetBool(name, key, value).value_or(false);
                   } else {
                     return false;
                   }
                   return true;
                 });
    if (node.key.empty()) {
      Problem(key_node.has_value() ? At(*key_node) : At(item), "descriptor has empty key");
      continue;
    }
    const std::string full_key =
        parent_key + node.key + (node.value.empty() ? "" : "_" + node.value);
    if (children.has_value()) node.children = LoadDescriptors(domain, *children, full_key + ".");
    if (rate_limit.has_value()) {
      node.rate_limit = LoadRateLimit(rate_limit->first, rate_limit->second, full_key);
      if (node.rate_limit.has_value()) {
        node.rate_limit->shadow_mode = shadow_mode;
        node.rate_limit->detailed_metric = detailed_metric;
        node.rate_limit->location = Location(At(item));
      }
    }
    DescriptorLevel::KeyNodes& same_key = level.by_key[node.key];
    const bool wildcard = node.value.find('*') != std::string::npos;
    bool duplicate = false;
    if (node.value.empty()) {
      duplicate = same_key.key_only.has_value();
    } else if (wildcard) {
      for (uint32_t i : same_key.wildcards) duplicate |= domain.nodes[i].value == node.value;
    } else {
      duplicate = same_key.exact.contains(node.value);
    }
    if (duplicate) {
      Problem(At(*key_node), internal::Cat("duplicate descriptor composite key '", full_key, "'"));
      continue;
    }
    if (file_problems_.size() != problems_before) continue;
    if (wildcard) {
      // Domain files take every `*` as a wildcard (no escapes), as envoyproxy/ratelimit does.
      node.value_glob = *Glob::Parse(node.value, Glob::Escapes::kNone);
    }
    const auto index = static_cast<uint32_t>(domain.nodes.size());
    if (node.value.empty()) {
      same_key.key_only = index;
    } else if (wildcard) {
      same_key.wildcards.push_back(index);
    } else {
      same_key.exact.emplace(node.value, index);
    }
    domain.nodes.push_back(std::move(node));
  }
  // Keys whose only descriptors had problems leave empty entries behind; drop them so that
  // `empty()` still means "no children".
  absl::erase_if(level.by_key, [](const auto& kv) {
    return kv.second.exact.empty() && kv.second.wildcards.empty() &&
           !kv.second.key_only.has_value();
  });
  return level;
}

std::optional<DescriptorLimit> Loader::LoadRateLimit(const YAML::Node& key, const YAML::Node& node,
                                                     std::string full_key) {
  if (!node.IsMap()) {
    Problem(ValueAt(key, node), "'rate_limit' must be a mapping");
    return std::nullopt;
  }
  const size_t problems_before = file_problems_.size();
  DescriptorLimit dl;
  dl.full_key = std::move(full_key);
  std::optional<RateLimitUnit> unit;
  std::optional<YAML::Node> unit_key;
  std::optional<int64_t> requests_per_unit;
  bool requests_per_unit_seen = false;
  Algorithm algorithm = Algorithm::kFixedWindow;
  int64_t burst = 0;
  Pos requests_pos = At(node);
  Pos multiplier_pos = At(node);
  ForEachField(
      node, "rate_limit", [&](std::string_view name, const YAML::Node& k, const YAML::Node& v) {
        if (name == "unit") {
          unit_key = k;
          std::optional<std::string> s = GetString(name, k, v);
          if (!s.has_value()) return true;
          unit = ParseRateLimitUnit(*s);
          if (!unit.has_value()) {
            Problem(At(v),
                    internal::Cat("invalid rate limit unit '", *s,
                                  "' (expected second, minute, hour, day, week, month or year)"));
          }
        } else if (name == "requests_per_unit") {
          requests_per_unit_seen = true;
          requests_pos = ValueAt(k, v);
          requests_per_unit = GetInteger(name, k, v, 0, std::numeric_limits<uint32_t>::max());
        } else if (name == "unlimited") {
          dl.unlimited = GetBool(name, k, v).value_or(false);
        } else if (name == "name") {
          dl.name = GetString(name, k, v).value_or("");
        } else if (name == "replaces") {
          if (!ExpectSequence(k, v, "{name: ...} entries") || v.IsNull()) return true;
          for (const YAML::Node& item : v) {
            if (!item.IsMap()) {
              Problem(At(item), "a 'replaces' entry must be a mapping with 'name'");
              continue;
            }
            std::string replaced;
            ForEachField(item, "replaces entry",
                         [&](std::string_view n, const YAML::Node& rk, const YAML::Node& rv) {
                           if (n != "name") return false;
                           replaced = GetString(n, rk, rv).value_or("");
                           return true;
                         });
            if (replaced.empty()) {
              Problem(At(item), "should not have an empty replaces entry");
            } else {
              dl.replaces.push_back(std::move(replaced));
            }
          }
        } else if (name == "algorithm") {
          algorithm = GetAlgorithm(k, v).value_or(algorithm);
        } else if (name == "burst") {
          burst = GetInteger(name, k, v, 1, std::numeric_limits<int64_t>::max()).value_or(0);
        } else if (name == "unit_multiplier") {
          multiplier_pos = ValueAt(k, v);
          dl.unit_multiplier =
              GetInteger(name, k, v, 1, std::numeric_limits<int64_t>::max()).value_or(1);
        } else {
          return false;
        }
        return true;
      });
  if (!dl.name.empty() &&
      std::find(dl.replaces.begin(), dl.replaces.end(), dl.name) != dl.replaces.end()) {
    Problem(At(node), "replaces should not contain name of same descriptor");
  }
  if (dl.unlimited) {
    // envoyproxy/ratelimit's rule: a unit next to `unlimited` is a contradiction.
    if (unit_key.has_value()) {
      Problem(At(*unit_key), "should not specify rate limit unit when unlimited");
    }
  } else {
    if (!unit_key.has_value()) Problem(At(node), "rate_limit is missing required key 'unit'");
    if (!requests_per_unit_seen) {
      // envoyproxy/ratelimit would read a missing value as 0 and refuse every request; a
      // silent block is too easy to ship by mistake, so it must be written out.
      Problem(At(node),
              "rate_limit is missing required key 'requests_per_unit' (0 refuses every request)");
    }
  }
  if (file_problems_.size() != problems_before) return std::nullopt;
  if (dl.unlimited) return dl;

  dl.unit = *unit;
  dl.requests_per_unit = static_cast<uint32_t>(*requests_per_unit);
  const Micros unit_micros = RateLimitUnitMicros(dl.unit);
  if (dl.unit_multiplier > Limit::kMaxWindow / unit_micros) {
    Problem(multiplier_pos, "'unit_multiplier' makes the window longer than 10 years");
    return std::nullopt;
  }
  if (dl.requests_per_unit == 0) return dl;  // blocks_all(): no Limit to run
  absl::StatusOr<Limit> limit = Limit::Create({.algorithm = algorithm,
                                               .limit = dl.requests_per_unit,
                                               .window = unit_micros * dl.unit_multiplier,
                                               .burst = burst});
  if (!limit.ok()) {
    Problem(requests_pos, internal::Cat("invalid rate_limit: ", limit.status().message()));
    return std::nullopt;
  }
  dl.limit = *limit;
  return dl;
}

LoadResult Loader::Finish() {
  LoadResult result;
  result.problems = std::move(problems_);
  if (result.problems.empty()) {
    result.rule_set = RuleSet::Create(std::move(rules_), std::move(allow_), std::move(deny_),
                                      std::move(domains_));
  }
  return result;
}

// Appends the files of one path to `files`, or a problem to `problems`.
void ExpandPath(const std::string& path, std::vector<std::string>* files,
                std::vector<std::string>* problems) {
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);
  if (ec) {
    problems->push_back(internal::Cat(path, ": cannot read: ", ec.message()));
    return;
  }
  if (!fs::is_directory(status)) {
    files->push_back(path);  // named explicitly: loaded whatever its extension
    return;
  }
  std::vector<std::string> names;
  fs::directory_iterator it(path, ec);
  for (; !ec && it != fs::directory_iterator(); it.increment(ec)) {
    std::string name = it->path().filename().string();
    std::error_code type_ec;
    // is_regular_file follows symlinks: ConfigMap mounts link each file into place.
    if (IsRulesFileName(name) && it->is_regular_file(type_ec)) names.push_back(std::move(name));
  }
  if (ec) {
    problems->push_back(internal::Cat(path, ": cannot read: ", ec.message()));
    return;
  }
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) files->push_back((fs::path(path) / name).string());
}

}  // namespace

std::vector<std::string> ExpandRulePaths(const std::vector<std::string>& paths,
                                         std::vector<std::string>* problems) {
  std::vector<std::string> files;
  for (const std::string& path : paths) ExpandPath(path, &files, problems);
  return files;
}

LoadResult LoadRules(const std::vector<std::string>& paths) {
  Loader loader;
  for (const std::string& path : paths) {
    std::vector<std::string> files;
    std::vector<std::string> problems;
    ExpandPath(path, &files, &problems);
    for (std::string& problem : problems) loader.AddProblem(std::move(problem));
    for (const std::string& file : files) loader.LoadFile(file);
  }
  return loader.Finish();
}

absl::StatusOr<std::shared_ptr<const RuleSet>> LoadRuleSet(const std::vector<std::string>& paths) {
  LoadResult result = LoadRules(paths);
  if (!result.problems.empty()) {
    return absl::InvalidArgumentError(absl::StrJoin(result.problems, "\n"));
  }
  return std::move(result.rule_set);
}

std::vector<std::string> ValidateRules(const std::vector<std::string>& paths) {
  return LoadRules(paths).problems;
}

}  // namespace sluice::rules
