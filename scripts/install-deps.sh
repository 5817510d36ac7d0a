#!/usr/bin/env bash
# Installs the Debian 12 packages Sluice needs to build, test and benchmark.
# Idempotent: does nothing (and needs no root) when everything is already installed.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config clang clang-format
  libclang-rt-14-dev  # clang's sanitizer and libFuzzer runtimes (only recommended by clang)
  libgtest-dev libgmock-dev libbenchmark-dev
  libabsl-dev libxxhash-dev libfmt-dev libspdlog-dev libcli11-dev
  libyaml-cpp-dev nlohmann-json3-dev libboost-dev libboost-system-dev
  libsqlite3-dev libpq-dev postgresql libssl-dev libhiredis-dev libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  prometheus-cpp-dev
  redis-server nginx-light wrk nghttp2-client curl procps python3 faketime
  iproute2 nftables  # the network chaos test: Redis behind a namespace, loss and partitions
  prometheus
  help2man  # sluice(1) from --help, for the Debian package
  doxygen   # the embeddable library's API reference (scripts/api-docs.sh)
  systemd   # systemd-analyze verify on the package's unit (nothing is started)
  chromium   # the dashboard's browser test (driven by playwright-core from npm)
)
# Node.js and npm run the browser test; Debian's packages only where no node is installed at all
# (a node from elsewhere brings its own npm, which Debian's npm package would conflict with).
command -v node >/dev/null 2>&1 || packages+=(nodejs npm)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts the packaged servers on install; the tests start their own on loopback ports.
for svc in redis-server nginx postgresql prometheus; do
  $sudo systemctl stop "$svc" 2>/dev/null || $sudo service "$svc" stop 2>/dev/null || true
done
