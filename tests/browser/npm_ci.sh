#!/bin/sh
# Installs the browser test's npm packages (playwright-core, as package-lock.json pins it) into
# the folder given, which holds copies of package.json and package-lock.json (CMake makes them in
# the build folder). Does nothing when that lock file is already installed there. playwright-core
# downloads no browser: the test drives Debian's chromium.
set -eu
cd "$1"
if cmp -s package-lock.json node_modules/.sluice-installed-lock 2>/dev/null; then
  exit 0
fi
npm ci --no-audit --no-fund --loglevel=error
cp package-lock.json node_modules/.sluice-installed-lock
