// Rules files and envoyproxy/ratelimit domain files (CONTRACT §3): whatever the YAML, the loader
// gives rules or problems at FILE:LINE:COL, never a crash, a hang or a runaway allocation
// (aliases, nesting).
#include "fuzz/fuzz_support.h"
#include "rules/loader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sluice;
  static fuzz::ScratchFile file(".yaml");
  const std::string_view text = fuzz::Text(data, size);
  rules::LoadResult loaded = rules::LoadRules({file.Write(text)});
  for (const std::string& problem : loaded.problems) {
    if (problem.rfind(file.path() + ":", 0) != 0 && problem.rfind("\u2026 and ", 0) != 0) {
      fuzz::Fail("a problem that does not name its file: " + problem, text);
    }
  }
  return 0;
}
