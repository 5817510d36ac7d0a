// A small toolkit for reading Sluice's YAML files (server config, rules files, Envoy domain
// files) with every problem reported as "FILE:LINE:COL: message", LINE and COL from 1, at the
// offending key or value.
//
//   yaml::Problems problems(file);          // the problems of one file
//   yaml::Reader r(problems);
//   r.Fields(root, "'store'", {{"pool", [&](const yaml::Field& f) {
//                                 pool = r.Integer(f, 1, 64).value_or(pool);
//                               }}});
//   problems.MoveTo(&out);                  // in position order
//
// Getters report a problem and return nullopt when a value has the wrong type or is out of
// range; the caller keeps its default and goes on, so that one pass finds every problem.
// Nothing here throws except what yaml-cpp throws while walking a node; Guard turns that into a
// problem.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "yaml/pos.h"

namespace sluice::yaml {

// The position of `node`; {1, 1} for a node without a mark (one not read from text).
Pos At(const YAML::Node& node);
Pos At(const YAML::Mark& mark);

// A scalar written without quotes or a tag. `limit: "20"` is a string in YAML; integers and
// booleans must be plain, so that files mean the same to every YAML tool.
bool IsPlainScalar(const YAML::Node& node);

// Reads the whole file at `path`. False, with `error` set to the system's reason (strerror), when
// it cannot be opened or read.
bool ReadFile(const std::string& path, std::string* contents, std::string* error);

// The problems of one file, kept with their positions.
//
// A hostile file can hold millions of problems, and quote megabytes of its own text in each:
// at most `max_kept` are kept (the first added; the others only counted, see dropped()), and a
// message longer than kMaxMessageBytes is cut, with a marker.
class Problems {
 public:
  static constexpr size_t kMaxMessageBytes = 1024;

  explicit Problems(std::string file, size_t max_kept = std::numeric_limits<size_t>::max())
      : file_(std::move(file)), max_kept_(max_kept) {}

  // FILE as given: it starts every problem.
  const std::string& file() const { return file_; }
  void Add(Pos pos, std::string_view message);
  // Starts every message added from now on (until set again), e.g. the wording another tool
  // uses for a kind of problem.
  void set_prefix(std::string prefix) { prefix_ = std::move(prefix); }
  // The number added since the last MoveTo, dropped ones included: compare before and after a
  // check to tell whether it found anything.
  size_t size() const { return added_; }
  bool empty() const { return added_ == 0; }
  // The number added since the last MoveTo beyond `max_kept`: counted, not kept.
  size_t dropped() const { return added_ - problems_.size(); }
  // Appends "FILE:LINE:COL: message" for each kept problem to `out`, in position order (checks
  // that run after a mapping's fields, such as missing keys, report at the mapping, before the
  // fields' own problems), and forgets them all, dropped ones included. Problems at the same
  // position keep their order.
  void MoveTo(std::vector<std::string>* out);

 private:
  struct Entry {
    Pos pos;
    std::string text;
  };
  std::string file_;
  std::string prefix_;
  size_t max_kept_;
  size_t added_ = 0;
  std::vector<Entry> problems_;
};

// `text` cut to at most `max_bytes` bytes (on a UTF-8 character boundary) followed by
// "… (N bytes)" naming its full length, or `text` itself when it fits. For messages and log
// fields that may quote a hostile input.
std::string Truncate(std::string_view text, size_t max_bytes);

// Runs `fn`, turning a yaml-cpp exception (a syntax error, or a bad node met while walking) into
// a problem at its mark, and any other exception into "cannot load: what" at 1:1. Returns false
// when `fn` threw.
bool Guard(Problems& problems, const std::function<void()>& fn);

// One `key: value` of a mapping, as a Reader hands it to a handler.
struct Field {
  std::string_view name;  // the key's text
  const YAML::Node& key;
  const YAML::Node& value;

  Pos key_pos() const { return At(key); }
  // Where a problem with the value is reported: the value, except for an empty (null) value,
  // which yaml-cpp marks at the next token, possibly lines later: then the key.
  Pos value_pos() const { return value.IsNull() ? At(key) : At(value); }
};

// Reads typed values out of YAML nodes, reporting problems to a Problems. Names in messages are
// the field's key, quoted: "'pool' must be an integer, got '4'".
class Reader {
 public:
  explicit Reader(Problems& problems) : problems_(problems) {}

  Problems& problems() { return problems_; }
  void Problem(Pos pos, std::string_view message) { problems_.Add(pos, message); }

  // Calls `fn` for each field of mapping `map`, in order. Reports, at the key, keys that are not
  // strings ("keys of WHAT must be strings"), duplicate keys, which yaml-cpp keeps silently
  // ("duplicate key 'k' in WHAT"), and keys `fn` does not know, i.e. returns false for
  // ("unknown key 'k' in WHAT", followed by " (known: a, b)" when `known` is not empty).
  // `what` names the mapping as the caller wants it read ("rule", "'store'").
  using FieldFn = std::function<bool(const Field&)>;
  void ForEachField(const YAML::Node& map, std::string_view what, const FieldFn& fn,
                    std::span<const std::string_view> known = {});

  // ForEachField over a fixed set of keys, each with its handler; unknown keys list the known
  // ones, in the order given.
  struct Key {
    std::string_view name;
    std::function<void(const Field&)> handler;
  };
  void Fields(const YAML::Node& map, std::string_view what, std::initializer_list<Key> keys);

  // A section such as `store:`: nothing for an empty (null) value, "'NAME' must be a mapping" for
  // anything but a mapping, else Fields over its keys with WHAT = 'NAME'.
  void Section(const Field& field, std::initializer_list<Key> keys);

  // True for a mapping. Otherwise reports "'NAME' must be a mapping[ DETAIL]" and returns false;
  // an empty value is not a mapping here (check IsNull first where it means "none").
  bool ExpectMapping(const Field& field, std::string_view detail = {});
  // True for a sequence or an empty (null) value: a list whose items are all commented out is an
  // empty list. Otherwise reports "'NAME' must be a list of ITEMS" and returns false.
  bool ExpectSequence(const Field& field, std::string_view items);

  // Any scalar (quoted or not): "'NAME' must be a string" otherwise.
  std::optional<std::string> String(const Field& field);
  // A plain decimal integer (no quotes: `pool: "4"` is a string) within [min, max]:
  // "'NAME' must be an integer, got 'x'", "'NAME' must be at least MIN, got N" or
  // "'NAME' must be between MIN and MAX, got N".
  std::optional<int64_t> Integer(const Field& field,
                                 int64_t min = std::numeric_limits<int64_t>::min(),
                                 int64_t max = std::numeric_limits<int64_t>::max());
  // A plain true/false (also the YAML 1.1 yes/no, on/off that envoyproxy/ratelimit's Go parser
  // reads): "'NAME' must be true or false".
  std::optional<bool> Bool(const Field& field);
  // A positive duration (yaml/values.h), in microseconds, at most `max_us`:
  // "'NAME' must be a duration: ..." (not a scalar), "'NAME': invalid duration ...",
  // "'NAME' must be longer than zero", "'NAME' must be at most MAX_TEXT".
  std::optional<int64_t> Duration(const Field& field,
                                  int64_t max_us = std::numeric_limits<int64_t>::max(),
                                  std::string_view max_text = {});
  // A list of scalars; an empty value is an empty list: "'NAME' must be a list of strings", at
  // the value or at the offending item.
  std::optional<std::vector<std::string>> StringList(const Field& field);

  // One of `names`, returning its index. Anything else is a problem at the value:
  // `unknown(got)` when given, else "'NAME' must be one of a, b, c, got 'x'".
  using UnknownFn = std::function<std::string(std::string_view got)>;
  std::optional<size_t> OneOf(const Field& field, std::span<const std::string_view> names,
                              const UnknownFn& unknown = {});
  // OneOf with the value each name stands for.
  template <typename T>
  std::optional<T> Enum(const Field& field,
                        std::initializer_list<std::pair<std::string_view, T>> choices,
                        const UnknownFn& unknown = {}) {
    std::vector<std::string_view> names;
    for (const auto& [name, value] : choices) names.push_back(name);
    const std::optional<size_t> i = OneOf(field, names, unknown);
    if (!i.has_value()) return std::nullopt;
    return std::data(choices)[*i].second;
  }

 private:
  Problems& problems_;
};

}  // namespace sluice::yaml
