#!/usr/bin/env bash
# Renders the embeddable library's API reference (include/sluice/, Doxygen comments) as HTML.
# Fails on any undocumented or misdocumented part of the API (the tests run it so).
# Usage: scripts/api-docs.sh [OUTPUT_DIR]     (default build/api-docs; open OUTPUT_DIR/html/index.html)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-build/api-docs}
rm -rf "$out"
mkdir -p "$out"
SLUICE_SOURCE_DIR=$PWD SLUICE_API_DOCS_OUT=$(cd "$out" && pwd) doxygen docs/Doxyfile
echo "api-docs: $out/html/index.html"
