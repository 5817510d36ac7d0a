// What the fuzz targets share: the input as text, a scratch file for the loaders that read
// files, the source tree's files, and a loud failure.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#ifndef SLUICE_SOURCE_DIR
#error "SLUICE_SOURCE_DIR must name the source tree (fuzz/CMakeLists.txt sets it)"
#endif

namespace sluice::fuzz {

inline std::string_view Text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// A property the target checks did not hold: says what and on which input, then aborts, which
// libFuzzer reports as a crash (and saves the input).
[[noreturn]] inline void Fail(std::string_view what, std::string_view input) {
  std::fprintf(stderr, "fuzz property failed: %.*s\ninput (%zu bytes): %.*s\n",
               static_cast<int>(what.size()), what.data(), input.size(),
               static_cast<int>(std::min<size_t>(input.size(), 4096)), input.data());
  std::abort();
}

// A file of the process's own in the temporary folder, rewritten for each input: for the
// loaders, which read files. `suffix` gives it the extension they look at.
class ScratchFile {
 public:
  explicit ScratchFile(std::string_view suffix)
      : path_((std::filesystem::temp_directory_path() /
               ("sluice-fuzz-" + std::to_string(::getpid()) + std::string(suffix)))
                  .string()) {}
  ~ScratchFile() {
    std::error_code ignored;
    std::filesystem::remove(path_, ignored);
  }
  const std::string& Write(std::string_view bytes) {
    std::ofstream(path_, std::ios::binary | std::ios::trunc)
        .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return path_;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// The source tree's path of `relative` (seed rules and configs the targets load).
inline std::string SourcePath(std::string_view relative) {
  return std::string(SLUICE_SOURCE_DIR) + "/" + std::string(relative);
}

}  // namespace sluice::fuzz
