// A position in a YAML file, as problems report it. Free of yaml-cpp, so that structs that
// remember where something was written (for problems found after reading) need not include it.
#pragma once

namespace sluice::yaml {

// LINE and COL count from 1 (yaml-cpp counts from 0).
struct Pos {
  int line = 1;
  int column = 1;

  friend bool operator==(const Pos&, const Pos&) = default;
  friend bool operator<(const Pos& a, const Pos& b) {
    return a.line != b.line ? a.line < b.line : a.column < b.column;
  }
};

}  // namespace sluice::yaml
