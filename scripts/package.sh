#!/usr/bin/env bash
# Builds the Debian packages from a release build: build-package/sluice_VERSION_ARCH.deb (the
# server: binary, /etc/sluice, systemd unit, man page) and libsluice-dev_VERSION_ARCH.deb (the
# embeddable library). Install with `apt install ./build-package/sluice_*.deb`.
# Usage: scripts/package.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build-package -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSLUICE_BUILD_BENCH=OFF \
  -DSLUICE_SANITIZE= >/dev/null
cmake --build build-package -j "$(nproc)"
(cd build-package && cpack -G DEB)
ls -l build-package/*.deb
