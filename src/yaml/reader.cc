#include "yaml/reader.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <exception>
#include <system_error>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "base/strings.h"
#include "yaml/values.h"

namespace sluice::yaml {

using ::sluice::Cat;

Pos At(const YAML::Mark& mark) {
  if (mark.is_null()) return {1, 1};
  return {mark.line + 1, mark.column + 1};
}

Pos At(const YAML::Node& node) { return At(node.Mark()); }

bool IsPlainScalar(const YAML::Node& node) { return node.IsScalar() && node.Tag() == "?"; }

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

std::string Truncate(std::string_view text, size_t max_bytes) {
  if (text.size() <= max_bytes) return std::string(text);
  size_t cut = max_bytes;
  // Back off continuation bytes (10xxxxxx) so as not to split a character.
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
  return Cat(text.substr(0, cut), "\u2026 (", text.size(), " bytes)");
}

void Problems::Add(Pos pos, std::string_view message) {
  ++added_;
  if (problems_.size() >= max_kept_) return;
  problems_.push_back({pos, Cat(file_, ":", pos.line, ":", pos.column, ": ", prefix_,
                                Truncate(message, kMaxMessageBytes))});
}

void Problems::MoveTo(std::vector<std::string>* out) {
  std::stable_sort(problems_.begin(), problems_.end(),
                   [](const Entry& a, const Entry& b) { return a.pos < b.pos; });
  for (Entry& p : problems_) out->push_back(std::move(p.text));
  problems_.clear();
  added_ = 0;
}

bool Guard(Problems& problems, const std::function<void()>& fn) {
  try {
    fn();
    return true;
  } catch (const YAML::Exception& e) {
    problems.Add(At(e.mark), e.msg);
  } catch (const std::exception& e) {
    problems.Add({1, 1}, Cat("cannot load: ", e.what()));
  }
  return false;
}

void Reader::ForEachField(const YAML::Node& map, std::string_view what, const FieldFn& fn,
                          std::span<const std::string_view> known) {
  if (!map.IsMap()) return;
  absl::flat_hash_set<std::string> seen;
  for (const auto& kv : map) {
    const YAML::Node& key = kv.first;
    if (!key.IsScalar()) {
      Problem(At(key), Cat("keys of ", what, " must be strings"));
      continue;
    }
    const std::string& name = key.Scalar();
    if (!seen.insert(name).second) {
      Problem(At(key), Cat("duplicate key '", name, "' in ", what));
      continue;
    }
    if (fn(Field{name, key, kv.second})) continue;
    std::string message = Cat("unknown key '", name, "' in ", what);
    if (!known.empty()) {
      message += " (known: ";
      for (size_t i = 0; i < known.size(); ++i) message += Cat(i == 0 ? "" : ", ", known[i]);
      message += ")";
    }
    Problem(At(key), message);
  }
}

void Reader::Fields(const YAML::Node& map, std::string_view what, std::initializer_list<Key> keys) {
  std::vector<std::string_view> known;
  for (const Key& k : keys) known.push_back(k.name);
  ForEachField(
      map, what,
      [&](const Field& field) {
        for (const Key& k : keys) {
          if (k.name != field.name) continue;
          k.handler(field);
          return true;
        }
        return false;
      },
      known);
}

void Reader::Section(const Field& field, std::initializer_list<Key> keys) {
  if (field.value.IsNull() || !ExpectMapping(field)) return;
  Fields(field.value, Cat("'", field.name, "'"), keys);
}

bool Reader::ExpectMapping(const Field& field, std::string_view detail) {
  if (field.value.IsMap()) return true;
  Problem(field.value_pos(),
          Cat("'", field.name, "' must be a mapping", detail.empty() ? "" : " ", detail));
  return false;
}

bool Reader::ExpectSequence(const Field& field, std::string_view items) {
  if (field.value.IsSequence() || field.value.IsNull()) return true;
  Problem(field.value_pos(), Cat("'", field.name, "' must be a list of ", items));
  return false;
}

std::optional<std::string> Reader::String(const Field& field) {
  if (field.value.IsScalar()) return field.value.Scalar();
  Problem(field.value_pos(), Cat("'", field.name, "' must be a string"));
  return std::nullopt;
}

std::optional<int64_t> Reader::Integer(const Field& field, int64_t min, int64_t max) {
  // Plain scalars only: `limit: "20"` is a string in YAML, and silently converting it would
  // accept files that other YAML tools read differently.
  const YAML::Node& value = field.value;
  absl::StatusOr<int64_t> n = IsPlainScalar(value)
                                  ? ParseInteger(value.Scalar())
                                  : absl::InvalidArgumentError("not a plain scalar");
  if (!n.ok()) {
    const std::string got = value.IsScalar() ? Cat(", got '", value.Scalar(), "'") : "";
    Problem(field.value_pos(), Cat("'", field.name, "' must be an integer", got));
    return std::nullopt;
  }
  if (*n < min || *n > max) {
    Problem(field.value_pos(),
            max == std::numeric_limits<int64_t>::max()
                ? Cat("'", field.name, "' must be at least ", min, ", got ", *n)
                : Cat("'", field.name, "' must be between ", min, " and ", max, ", got ", *n));
    return std::nullopt;
  }
  return *n;
}

std::optional<bool> Reader::Bool(const Field& field) {
  bool b = false;
  // yaml-cpp's reading: true/false and the YAML 1.1 forms (yes/no, on/off) that
  // envoyproxy/ratelimit's Go YAML parser also accepts.
  if (IsPlainScalar(field.value) && YAML::convert<bool>::decode(field.value, b)) return b;
  Problem(field.value_pos(), Cat("'", field.name, "' must be true or false"));
  return std::nullopt;
}

std::optional<int64_t> Reader::Duration(const Field& field, int64_t max_us,
                                        std::string_view max_text) {
  if (!field.value.IsScalar()) {
    Problem(field.value_pos(), Cat("'", field.name,
                                   "' must be a duration: an integer and a unit (ms, s, m, h, d, "
                                   "w), e.g. 500ms or 1h"));
    return std::nullopt;
  }
  const absl::StatusOr<int64_t> d = ParseDuration(field.value.Scalar());
  if (!d.ok()) {
    const absl::string_view why = d.status().message();
    Problem(field.value_pos(),
            Cat("'", field.name, "': ", std::string_view(why.data(), why.size())));
    return std::nullopt;
  }
  if (*d <= 0) {
    Problem(field.value_pos(), Cat("'", field.name, "' must be longer than zero"));
    return std::nullopt;
  }
  if (*d > max_us) {
    Problem(field.value_pos(), Cat("'", field.name, "' must be at most ", max_text));
    return std::nullopt;
  }
  return *d;
}

std::optional<std::vector<std::string>> Reader::StringList(const Field& field) {
  const std::string message = Cat("'", field.name, "' must be a list of strings");
  if (field.value.IsNull()) return std::vector<std::string>{};
  if (!field.value.IsSequence()) {
    Problem(field.value_pos(), message);
    return std::nullopt;
  }
  std::vector<std::string> out;
  bool ok = true;
  for (const YAML::Node& item : field.value) {
    if (item.IsScalar()) {
      out.push_back(item.Scalar());
    } else {
      Problem(At(item), message);
      ok = false;
    }
  }
  if (!ok) return std::nullopt;
  return out;
}

std::optional<size_t> Reader::OneOf(const Field& field, std::span<const std::string_view> names,
                                    const UnknownFn& unknown) {
  const std::optional<std::string> got = String(field);
  if (!got.has_value()) return std::nullopt;
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i] == *got) return i;
  }
  if (unknown) {
    Problem(field.value_pos(), unknown(*got));
  } else {
    std::string list;
    for (size_t i = 0; i < names.size(); ++i) list += Cat(i == 0 ? "" : ", ", names[i]);
    Problem(field.value_pos(),
            Cat("'", field.name, "' must be one of ", list, ", got '", *got, "'"));
  }
  return std::nullopt;
}

}  // namespace sluice::yaml
