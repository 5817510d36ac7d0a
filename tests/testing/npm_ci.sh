#!/bin/sh
# Installs a node test's npm packages (as its package-lock.json pins them) into the folder given,
# which holds copies of its package.json and package-lock.json (CMake's sluice_node_test makes
# them in the build folder). Does nothing when that lock file is already installed there.
set -eu
cd "$1"
if cmp -s package-lock.json node_modules/.sluice-installed-lock 2>/dev/null; then
  exit 0
fi
npm ci --no-audit --no-fund --loglevel=error
cp package-lock.json node_modules/.sluice-installed-lock
