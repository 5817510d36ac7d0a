// The admin API's JSON bodies (CONTRACT §8): a rule and an allow/deny list entry. Whatever the
// bytes, a rule or problems, never a crash. And what the database stores (the canonical form)
// reads back as the same thing: a rule the API accepted cannot fail to load later.
#include "fuzz/fuzz_support.h"
#include "rules/rule_json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sluice;
  const std::string_view json = fuzz::Text(data, size);
  const rules::JsonRule rule = rules::ParseRuleJson(json, "fuzz");
  if (rule.rule.has_value()) {
    const rules::JsonRule again = rules::ParseRuleJson(rule.canonical, "fuzz");
    if (!again.rule.has_value() || again.canonical != rule.canonical) {
      fuzz::Fail("a rule's canonical form does not read back as itself: " + rule.canonical, json);
    }
  }
  const rules::JsonListEntry entry = rules::ParseListEntryJson(json, "fuzz");
  if (entry.entry.has_value()) {
    const rules::JsonListEntry again = rules::ParseListEntryJson(entry.canonical, "fuzz");
    if (!again.entry.has_value() || again.canonical != entry.canonical) {
      fuzz::Fail("an entry's canonical form does not read back as itself: " + entry.canonical,
                 json);
    }
  }
  return 0;
}
