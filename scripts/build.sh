#!/usr/bin/env bash
# Configures and builds NexusFS into build/ (Release with debug info, Ninja, -j2).
# Extra arguments go to cmake, e.g. scripts/build.sh -DNEXUS_SANITIZE=ON.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
ninja -C build -j"${NEXUS_JOBS:-2}"
