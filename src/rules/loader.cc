// Entry points: expands the rules paths into files, tells each file's kind and hands it to its
// reader (rules_file.cc, domain_file.cc), and builds the RuleSet from what they all defined.
#include "rules/loader.h"

#include <algorithm>
#include <filesystem>
#include <system_error>

#include "absl/hash/hash.h"
#include "absl/status/status.h"
#include "absl/strings/str_join.h"
#include "rules/loader_internal.h"
#include "rules/strings.h"
#include "yaml/parse.h"
#include "yaml/reader.h"
#include "yaml/values.h"

namespace sluice::rules {

std::optional<Overshoot> ReadOvershoot(yaml::Reader& reader, const yaml::Field& field) {
  std::optional<Overshoot> overshoot;
  if (field.value.IsScalar()) overshoot = Overshoot::Parse(field.value.Scalar());
  if (!overshoot.has_value()) {
    reader.Problem(field.value_pos(),
                   Cat("'", field.name,
                       "' must be a count (an integer) or a percentage of the limit up to 100% "
                       "with at most 4 decimals (\"1%\", \"0.25%\")",
                       field.value.IsScalar() ? Cat(", got '", field.value.Scalar(), "'") : ""));
  }
  return overshoot;
}

namespace internal {

namespace {
constexpr std::string_view kAlgorithmList =
    "fixed_window, sliding_window_counter, sliding_window_log, token_bucket, gcra, leaky_bucket, "
    "concurrency";
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

bool CountRule(LoadState& state, yaml::Reader& reader, yaml::Pos pos) {
  if (++state.rules_seen <= state.limits.max_rules) return true;
  if (state.rules_seen == state.limits.max_rules + 1) {
    reader.Problem(pos, Cat("too many rules: at most ", state.limits.max_rules,
                            " per server, rules and Envoy descriptors of all files together"));
  }
  return false;
}

bool CountListEntry(LoadState& state, yaml::Reader& reader, yaml::Pos pos) {
  if (++state.list_entries_seen <= state.limits.max_list_entries) return true;
  if (state.list_entries_seen == state.limits.max_list_entries + 1) {
    reader.Problem(pos, Cat("too many list entries: at most ", state.limits.max_list_entries,
                            " per server, allow and deny of all files together"));
  }
  return false;
}

bool CheckPrintable(yaml::Reader& reader, const yaml::Field& field, std::string_view value) {
  if (!yaml::HasControlCharacter(value)) return true;
  reader.Problem(field.value_pos(), Cat("'", field.name,
                                        "' must not contain control characters (U+0000 to U+001F, "
                                        "U+007F)"));
  return false;
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
  explicit Loader(const LoadLimits& limits) : limits_(limits), state_(limits) {}

  // Appends `file`'s problems (if any) and keeps what it defines for Finish.
  void LoadFile(const std::string& file);
  void AddProblem(std::string problem);
  LoadResult Finish();

 private:
  // Tells the kind of file `docs` hold and hands it to that kind's reader.
  void LoadContents(const std::vector<YAML::Node>& docs, yaml::Reader& reader);
  // How many more problems may be listed.
  size_t Room() const {
    return problems_.size() < limits_.max_problems ? limits_.max_problems - problems_.size() : 0;
  }

  const LoadLimits& limits_;
  std::vector<std::string> problems_;  // at most limits_.max_problems
  size_t unlisted_ = 0;                // problems found beyond those
  uint64_t digest_ = 0;
  internal::LoadState state_;
};

void Loader::AddProblem(std::string problem) {
  if (Room() > 0) {
    problems_.push_back(std::move(problem));
  } else {
    ++unlisted_;
  }
}

void Loader::LoadFile(const std::string& file) {
  absl::StatusOr<std::string> contents = yaml::ReadFileAtMost(file, limits_.max_file_bytes);
  if (!contents.ok()) {
    AddProblem(Cat(file, ": ", contents.status().message()));
    return;
  }
  digest_ = absl::HashOf(digest_, file, *contents);
  // Kept only as many as may still be listed: a hostile file can hold millions.
  yaml::Problems problems(file, Room());
  yaml::Reader reader(problems);
  // A file that is not YAML says so as envoyproxy/ratelimit does, whatever its kind.
  problems.set_prefix("error loading config file: ");
  const std::optional<std::vector<YAML::Node>> docs =
      yaml::Parse(*contents,
                  {.max_bytes = limits_.max_file_bytes,
                   .max_nodes = limits_.max_nodes_per_file,
                   .max_depth = limits_.max_depth},
                  problems);
  problems.set_prefix("");
  // yaml-cpp reports errors by throwing; nothing may escape the loader, and an error ends that
  // file only.
  if (docs.has_value()) yaml::Guard(problems, [&] { LoadContents(*docs, reader); });
  unlisted_ += problems.dropped();
  problems.MoveTo(&problems_);
}

void Loader::LoadContents(const std::vector<YAML::Node>& docs, yaml::Reader& reader) {
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
                   "error loading config file: expected a mapping with top-level 'rules', "
                   "'lists' or 'domain'");
    return;
  }
  std::optional<YAML::Node> domain_key;
  bool has_sluice = false;
  bool has_descriptors = false;
  for (const auto& kv : root) {
    if (!kv.first.IsScalar()) continue;
    const std::string& name = kv.first.Scalar();
    if (name == "domain" && !domain_key.has_value()) domain_key = kv.first;
    if (name == "rules" || name == "lists") has_sluice = true;
    if (name == "descriptors") has_descriptors = true;
  }
  const bool has_domain = domain_key.has_value();
  if (has_domain && has_sluice) {
    reader.Problem(yaml::At(*domain_key),
                   "a file holds either 'rules'/'lists' (Sluice rules) or 'domain' (Envoy "
                   "descriptors), not both");
    return;
  }
  // `descriptors` alone is a domain file that lacks its domain: the domain reader says so in
  // envoyproxy/ratelimit's words, rather than calling `descriptors` unknown.
  if (has_domain || (has_descriptors && !has_sluice)) {
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
  result.digest = digest_;
  if (unlisted_ > 0) {
    result.problems.push_back(Cat("\u2026 and ", unlisted_, " more problems (only the first ",
                                  limits_.max_problems, " are listed)"));
  }
  if (result.problems.empty()) {
    result.rule_set = RuleSet::Create(std::move(state_.rules), std::move(state_.allow),
                                      std::move(state_.deny), std::move(state_.domains));
  }
  return result;
}

// Whether `ec` may be gone on the next try, whatever the files hold: the process (or the
// system) is out of descriptors or memory.
bool IsTransient(const std::error_code& ec) {
  return ec == std::errc::too_many_files_open || ec == std::errc::too_many_files_open_in_system ||
         ec == std::errc::not_enough_memory || ec == std::errc::no_buffer_space ||
         ec == std::errc::resource_unavailable_try_again || ec == std::errc::interrupted;
}

// Appends the files of one path to `files`, or a problem to `problems` (and sets `*transient`
// when its cause may pass).
void ExpandPath(const std::string& path, std::vector<std::string>* files,
                std::vector<std::string>* problems, bool* transient) {
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);
  if (ec) {
    problems->push_back(Cat(path, ": cannot read: ", ec.message()));
    *transient |= IsTransient(ec);
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
    *transient |= IsTransient(ec);
    return;
  }
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) files->push_back((fs::path(path) / name).string());
}

}  // namespace

std::vector<std::string> ExpandRulePaths(const std::vector<std::string>& paths,
                                         std::vector<std::string>* problems, bool* transient) {
  std::vector<std::string> files;
  bool any_transient = false;
  for (const std::string& path : paths) ExpandPath(path, &files, problems, &any_transient);
  if (transient != nullptr) *transient = any_transient;
  return files;
}

LoadResult LoadRules(const std::vector<std::string>& paths, const LoadLimits& limits) {
  Loader loader(limits);
  for (const std::string& path : paths) {
    std::vector<std::string> files;
    std::vector<std::string> problems;
    bool transient = false;
    ExpandPath(path, &files, &problems, &transient);
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
