// Reading and parsing a YAML file that may be hostile, within limits.
//
// yaml-cpp builds an alias as a second reference to its anchor's node, so an 848-byte file of
// nested aliases (a "billion laughs") is a small node graph that expands to 10^7 nodes as soon as
// anything walks it; an anchor used inside itself (`&a [*a]`) is a cycle, which never ends; and
// each level of nesting is a level of recursion for yaml-cpp and for the code reading the tree.
// Parse therefore runs yaml-cpp's event parser over the text first, counting every node an alias
// stands for, and builds the node tree only when the text is within the limits:
//
//   absl::StatusOr<std::string> text = yaml::ReadFileAtMost(path, limits.max_bytes);
//   yaml::Problems problems(path);
//   if (std::optional<std::vector<YAML::Node>> docs = yaml::Parse(*text, limits, problems)) ...
//
// The check costs one more pass of yaml-cpp's parser, and stops at the first node past a limit.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "yaml/reader.h"

namespace sluice::yaml {

struct Limits {
  // Bytes per file (ReadFileAtMost).
  size_t max_bytes = size_t{16} << 20;
  // Nodes per file, every document together: scalars, nulls, sequences and mappings (keys
  // included), each alias counted as every node it stands for.
  size_t max_nodes = 1'000'000;
  // Sequences and mappings inside one another, through aliases too. Far below yaml-cpp's own
  // limit (about 500 levels), which it reports only as "bad file".
  int max_depth = 64;
};

// The whole file at `path`, unless it cannot be read or holds more than `max_bytes`. The error's
// message is what follows "FILE: " in a problem: "cannot read: REASON" (the system's reason), or
// "too large (N bytes, at most M)" (for a file that grows while it is read, or is not a regular
// file, "too large (more than M bytes)"). Reads at most `max_bytes` + 1 bytes, so /dev/zero is
// refused too.
absl::StatusOr<std::string> ReadFileAtMost(const std::string& path, size_t max_bytes);

// Parses every document of `text`. Returns nullopt after reporting to `problems`:
// - a syntax error, at yaml-cpp's mark, in yaml-cpp's words;
// - "more than N nodes once aliases are expanded (at most N per file)", at the node (or the
//   alias) that crossed the limit;
// - "nesting deeper than N levels", at the sequence or mapping (or the alias) that goes deeper;
// - "alias '*NAME' is used inside its own anchor's node: it would expand for ever", at the alias;
// - "invalid UTF-8 in a string (a YAML file must be UTF-8)", at each such scalar.
// Parsing stops at the first of these but the last. Never throws.
std::optional<std::vector<YAML::Node>> Parse(std::string_view text, const Limits& limits,
                                             Problems& problems);

}  // namespace sluice::yaml
