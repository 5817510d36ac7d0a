// Random byte edits of a valid input, for differential tests of a fast reader against the library
// it stands in front of: the edits land near the reader's acceptance edges.
#pragma once

#include <random>
#include <string>
#include <string_view>

namespace sluice::testing {

// Applies `edits` random edits to `s`: each replaces, inserts (a character of `alphabet`) or
// deletes one byte at a random place.
inline void RandomEdits(std::string& s, std::mt19937& rng, std::string_view alphabet, int edits) {
  for (int e = 0; e < edits && !s.empty(); ++e) {
    const size_t at = rng() % s.size();
    switch (rng() % 3) {
      case 0:
        s[at] = alphabet[rng() % alphabet.size()];
        break;
      case 1:
        s.insert(at, 1, alphabet[rng() % alphabet.size()]);
        break;
      default:
        s.erase(at, 1);
    }
  }
}

}  // namespace sluice::testing
