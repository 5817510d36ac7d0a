#include "rules/counter_key.h"

#include "rules/strings.h"

namespace sluice::rules::internal {

void AppendKeyPart(std::string* out, std::string_view part) {
  for (char c : part) {
    switch (c) {
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
      case '}':
        out->append("%7D");
        break;
      default:
        out->push_back(c);
    }
  }
}

void AppendLimitIdentity(std::string* out, const Limit& limit) {
  out->append(Cat("|", AlgorithmName(limit.algorithm()), "|", limit.window()));
  if (UsesBurst(limit.algorithm())) out->append(Cat("|", limit.limit()));
}

}  // namespace sluice::rules::internal
