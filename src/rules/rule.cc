#include "rules/rule.h"

#include "rules/strings.h"

namespace sluice::rules {

std::string SourceLocation::ToString() const {
  if (line <= 0) return file;
  return internal::Cat(file, ":", line, ":", column);
}

bool MatchesAll(const Match& match, const RequestAttributes& request, const IpAddress* ip) {
  for (const AttributePattern& p : match) {
    if (!p.Matches(request.Get(p.attribute()), ip)) return false;
  }
  return true;
}

}  // namespace sluice::rules
