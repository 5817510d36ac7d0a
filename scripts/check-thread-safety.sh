#!/usr/bin/env bash
# Clang's thread-safety analysis over every source file of src/: ABSL_GUARDED_BY and the other
# annotations (with sluice::Mutex, src/base/mutex.h) are checked, and a violation fails. The
# analysis runs in Clang's front end, so the files are only parsed (-fsyntax-only), with the
# flags of a build's compile_commands.json (which must exist: its generated protobuf
# headers are needed too).
# Usage: scripts/check-thread-safety.sh [BUILD_DIR]   (default: build)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
python3 - "$build" <<'PY' | xargs -0 -n1 -P "$(nproc)" bash -c 'eval "$0"'
import json, os, shlex, sys
root = os.getcwd()
for entry in json.load(open(os.path.join(sys.argv[1], "compile_commands.json"))):
    source = os.path.relpath(entry["file"], root)
    if not source.startswith("src/") or "/gen/" in source:
        continue
    args = shlex.split(entry["command"])[1:]
    keep, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        if a in ("-o", "-MF", "-MT"):
            skip = True
            continue
        if a in ("-c", "-MD") or a.startswith("-fsanitize"):
            continue
        keep.append(a)
    cmd = ["clang++", "-fsyntax-only", "-Wno-unknown-warning-option", "-Wthread-safety",
           "-Werror=thread-safety"] + keep
    sys.stdout.write("cd %s && %s\0" % (shlex.quote(entry["directory"]), shlex.join(cmd)))
PY
echo "thread-safety: ok"
