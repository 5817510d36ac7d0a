// Entry points: expands the rules paths into files, tells each file's kind and hands it to its
// reader (rules_file.cc, domain_file.cc), and builds the RuleSet from what they all defined.
#include "rules/loader.h"

#include <algorithm>
#include <filesystem>
#include <system_error>

#include "absl/status/status.h"
#include "absl/strings/str_join.h"
#include "rules/loader_internal.h"
#include "rules/strings.h"
#include "yaml/reader.h"

namespace sluice::rules {

namespace internal {

namespace {
constexpr std::string_view kAlgorithmList =
    "fixed_window, sliding_window_counter, sliding_window_log, token_bucket, gcra, leaky_bucket";
}  // namespace

std::optional<Algorithm> ReadAlgorithm(yaml::Reader& reader, const yaml::Field& field) {
  std::optional<std::string> name = reader.String(field);
  if (!name.has_value()) return std::nullopt;
  std::optional<Algorithm> algorithm = ParseAlgorithm(*name);
  if (!algorithm.has_value()) {
    reader.Problem(field.value_pos(),
                   Cat("unknown algorithm '", *name, "' (expected one of ", kAlgorithmList, ")"));
  }
  return algorithm;
}

}  // namespace internal

namespace {

namespace fs = std::filesystem;
using internal::Cat;

bool IsRulesFileName(const std::string& name) {
  if (name.empty() || name.front() == '.') return false;
  return name.ends_with(".yaml") || name.ends_with(".yml");
}

// Loads one file after another into the parts of a RuleSet, collecting problems.
class Loader {
 public:
  // Appends `file`'s problems (if any) and keeps what it defines for Finish.
  void LoadFile(const std::string& file);
  void AddProblem(std::string problem) { problems_.push_back(std::move(problem)); }
  LoadResult Finish();

 private:
  // Tells the kind of file `contents` hold and hands it to that kind's reader.
  void LoadContents(const std::string& contents, yaml::Reader& reader);

  std::vector<std::string> problems_;
  internal::LoadState state_;
};

void Loader::LoadFile(const std::string& file) {
  std::string contents;
  std::string error;
  if (!yaml::ReadFile(file, &contents, &error)) {
    problems_.push_back(Cat(file, ": cannot read: ", error));
    return;
  }
  yaml::Problems problems(file);
  yaml::Reader reader(problems);
  // yaml-cpp reports errors by throwing; nothing may escape the loader, and a syntax error
  // ends that file only.
  yaml::Guard(problems, [&] { LoadContents(contents, reader); });
  problems.MoveTo(&problems_);
}

void Loader::LoadContents(const std::string& contents, yaml::Reader& reader) {
  const std::vector<YAML::Node> docs = YAML::LoadAll(contents);
  if (docs.empty() || docs.front().IsNull()) {
    reader.Problem({1, 1}, "empty file: expected top-level 'rules', 'lists' or 'domain'");
    return;
  }
  if (docs.size() > 1) {
    reader.Problem(yaml::At(docs[1]), "a file may hold only one YAML document");
  }
  const YAML::Node& root = docs.front();
  if (!root.IsMap()) {
    reader.Problem(yaml::At(root),
                   "expected a mapping with top-level 'rules', 'lists' or 'domain'");
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
    reader.Problem(yaml::At(*domain_key),
                   "a file holds either 'rules'/'lists' (Sluice rules) or 'domain' (Envoy "
                   "descriptors), not both");
    return;
  }
  if (has_domain) {
    internal::LoadDomainFile(root, reader, state_);
  } else if (has_sluice) {
    internal::LoadRulesFile(root, reader, state_);
  } else {
    reader.ForEachField(root, "file (expected top-level 'rules', 'lists' or 'domain')",
                        [](const yaml::Field&) { return false; });
    if (root.size() == 0) {
      reader.Problem(yaml::At(root),
                     "empty mapping: expected top-level 'rules', 'lists' or 'domain'");
    }
  }
}

LoadResult Loader::Finish() {
  LoadResult result;
  result.problems = std::move(problems_);
  if (result.problems.empty()) {
    result.rule_set = RuleSet::Create(std::move(state_.rules), std::move(state_.allow),
                                      std::move(state_.deny), std::move(state_.domains));
  }
  return result;
}

// Appends the files of one path to `files`, or a problem to `problems`.
void ExpandPath(const std::string& path, std::vector<std::string>* files,
                std::vector<std::string>* problems) {
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);
  if (ec) {
    problems->push_back(Cat(path, ": cannot read: ", ec.message()));
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
    problems->push_back(Cat(path, ": cannot read: ", ec.message()));
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
