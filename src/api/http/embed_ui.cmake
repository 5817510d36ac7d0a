# Build-time step (cmake -P): compiles the dashboard's files (ui/) into OUTPUT, a C++ file
# defining UiAssets() (see ui_assets.h). ROOT is the ui/ folder; FILES are paths relative to it,
# separated by |. Each asset keeps its bytes (as \x escapes, so any file works, binary too), its
# path, its Content-Type (from the file's extension: an extension not listed here is an error,
# so no file is ever served with a guessed type) and an entity tag made of its SHA-256.
string(REPLACE "|" ";" file_list "${FILES}")
string(REPEAT "[0-9a-f]" 64 line_of_hex)  # 32 bytes per line of the generated file
set(arrays "")
set(entries "")
set(index 0)
foreach(rel IN LISTS file_list)
  get_filename_component(ext "${rel}" LAST_EXT)
  string(TOLOWER "${ext}" ext)
  if(ext STREQUAL ".html")
    set(type "text/html; charset=utf-8")
  elseif(ext STREQUAL ".js" OR ext STREQUAL ".mjs")
    set(type "text/javascript; charset=utf-8")
  elseif(ext STREQUAL ".css")
    set(type "text/css; charset=utf-8")
  elseif(ext STREQUAL ".svg")
    set(type "image/svg+xml")
  elseif(ext STREQUAL ".png")
    set(type "image/png")
  elseif(ext STREQUAL ".ico")
    set(type "image/x-icon")
  elseif(ext STREQUAL ".json")
    set(type "application/json")
  elseif(ext STREQUAL ".webmanifest")
    set(type "application/manifest+json")
  elseif(ext STREQUAL ".woff2")
    set(type "font/woff2")
  elseif(ext STREQUAL ".txt")
    set(type "text/plain; charset=utf-8")
  else()
    message(FATAL_ERROR "ui/${rel}: no Content-Type known for '${ext}' (add it to embed_ui.cmake)")
  endif()
  if(NOT rel MATCHES "^[A-Za-z0-9._/-]+$" OR rel MATCHES "(^|/)\\.")
    message(FATAL_ERROR "ui/${rel}: asset paths are letters, digits and . _ - /, no dot-files")
  endif()
  file(READ "${ROOT}/${rel}" hex HEX)
  file(SHA256 "${ROOT}/${rel}" sha)
  string(SUBSTRING "${sha}" 0 16 tag)
  string(LENGTH "${hex}" hex_length)
  math(EXPR size "${hex_length} / 2")
  string(REGEX REPLACE "(${line_of_hex})" "\\1\n" hex "${hex}")
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "\\\\x\\1" hex "${hex}")
  string(REGEX REPLACE "\n$" "" hex "${hex}")
  string(REPLACE "\n" "\"\n    \"" hex "${hex}")
  string(APPEND arrays "// ui/${rel}\nconstexpr char kAsset${index}[] =\n    \"${hex}\";\n")
  string(APPEND entries
    "    {\"${rel}\", \"${type}\", \"\\\"${tag}\\\"\", {kAsset${index}, ${size}}},\n")
  math(EXPR index "${index} + 1")
endforeach()
file(WRITE "${OUTPUT}"
"// Generated from ui/ by src/api/http/embed_ui.cmake. Do not edit.
#include \"api/http/ui_assets.h\"

namespace sluice::http {

namespace {

${arrays}
constexpr UiAsset kAssets[] = {
${entries}};

}  // namespace

std::span<const UiAsset> UiAssets() { return kAssets; }

}  // namespace sluice::http
")
