#!/usr/bin/env bash
# Installs what is missing, builds, and runs Sluice.
# Today this runs `sluice demo`: the six algorithms on the embedded store.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" --target sluice
exec build/src/app/sluice demo "$@"
