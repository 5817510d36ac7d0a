#!/usr/bin/env bash
# Rules propagation between servers sharing a rules database (issue 12): 3 servers on one real
# PostgreSQL (LISTEN/NOTIFY), 2 on one SQLite file (inotify); 200 changes through one server of
# each group, timed until every other server enforces them; then PostgreSQL SIGKILLed and started
# again under running servers. The work is in bench/propagation.py (its docstring says exactly
# what is measured); this wrapper installs the packages and finds or builds the binary.
#
# Usage: bench/propagation.sh [--changes N] [--outages N] [--rules N]   (defaults 200, 3, 10)
# The binary: $SLUICE_BIN, else build/src/app/sluice (built, RelWithDebInfo, when missing).
# Run it on an otherwise idle machine.
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
require python3 taskset
sluice=${SLUICE_BIN:-build/src/app/sluice}
if [ -z "${SLUICE_BIN:-}" ] && [ ! -x "$sluice" ]; then
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build build -j "$(nproc)" --target sluice >/dev/null
fi
PYTHONDONTWRITEBYTECODE=1 SLUICE_BIN=$(realpath "$sluice") python3 bench/propagation.py "$@"
