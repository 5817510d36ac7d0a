#include "rules/counter_key.h"

#include "base/strings.h"
#include "rules/strings.h"

namespace sluice::rules::internal {

void AppendKeyPart(std::string* out, std::string_view part) {
  // Runs of plain characters are appended whole: the escaped ones are rare.
  auto escaped = [](char c) { return c == '%' || c == '=' || c == '{' || c == '|' || c == '}'; };
  while (!part.empty()) {
    size_t plain = 0;
    while (plain < part.size() && !escaped(part[plain])) ++plain;
    out->append(part.data(), plain);
    if (plain == part.size()) return;
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
  out->push_back('|');
  out->append(AlgorithmName(limit.algorithm()));
  out->push_back('|');
  AppendDecimal(*out, limit.window());
  if (UsesBurst(limit.algorithm())) {
    out->push_back('|');
    AppendDecimal(*out, limit.limit());
  }
}

}  // namespace sluice::rules::internal
