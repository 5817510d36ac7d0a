#include "rules/counter_key.h"

#include <charconv>

#include "rules/strings.h"

namespace sluice::rules::internal {

void AppendKeyPart(std::string* out, std::string_view part) {
  // Runs of plain characters are appended whole: the escaped ones are rare.
  constexpr std::string_view kEscaped = "%={|}";
  while (!part.empty()) {
    const size_t plain = part.find_first_of(kEscaped);
    out->append(part.substr(0, plain));
    if (plain == std::string_view::npos) return;
    switch (part[plain]) {
      case '%':
        out->append("%25");
        break;
      case '=':
        out->append("%3D");
        break;
      case '{':
        out->append("%7B");
        break;
      case '|':
        out->append("%7C");
        break;
      default:  // '}'
        out->append("%7D");
    }
    part.remove_prefix(plain + 1);
  }
}

void AppendLimitIdentity(std::string* out, const Limit& limit) {
  char digits[24];
  out->push_back('|');
  out->append(AlgorithmName(limit.algorithm()));
  out->push_back('|');
  out->append(digits, std::to_chars(digits, digits + sizeof(digits), limit.window()).ptr);
  if (UsesBurst(limit.algorithm())) {
    out->push_back('|');
    out->append(digits, std::to_chars(digits, digits + sizeof(digits), limit.limit()).ptr);
  }
}

}  // namespace sluice::rules::internal
