#!/usr/bin/env bash
# Installs what is missing, builds, and runs Sluice on the embedded memory store with the
# example rules in examples/ (HTTP on 127.0.0.1:8080, gRPC on 127.0.0.1:8081).
# Extra arguments go to `sluice serve`, e.g. scripts/run.sh --http 0.0.0.0:8080
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" --target sluice
exec build/src/app/sluice serve --config examples/sluice.yaml "$@"
