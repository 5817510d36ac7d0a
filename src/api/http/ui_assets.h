// The dashboard's files (ui/ at the top of the source tree), compiled into the binary at build
// time by embed_ui.cmake: the dashboard works with no network and no files beside the binary.
#pragma once

#include <span>
#include <string_view>

namespace sluice::http {

struct UiAsset {
  std::string_view path;          // relative to ui/ and to /ui/: "index.html", "js/chart.js"
  std::string_view content_type;  // from the file's extension
  std::string_view etag;          // "\"<first 16 hex digits of its SHA-256>\"", quotes included
  std::string_view body;          // the file's bytes
};

// Every asset, in path order. The generated ui_assets.cc defines it.
std::span<const UiAsset> UiAssets();

}  // namespace sluice::http
