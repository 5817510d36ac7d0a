// The server config (CONTRACT §2): whatever the YAML, a config or problems at FILE:LINE:COL,
// never a crash or a hang.
#include "app/config.h"
#include "fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sluice;
  static fuzz::ScratchFile file(".yaml");
  const std::string_view text = fuzz::Text(data, size);
  std::vector<std::string> problems;
  (void)app::LoadServerConfig(file.Write(text), &problems);
  for (const std::string& problem : problems) {
    if (problem.rfind(file.path() + ":", 0) != 0) {
      fuzz::Fail("a problem that does not name its file: " + problem, text);
    }
  }
  return 0;
}
