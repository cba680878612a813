#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole NexusFS test suite under ctest.
# Unit tests, engine and object-store conformance suites, and integration tests that mount real
# FUSE file systems (needs root and /dev/fuse).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --test
scripts/build.sh -DNEXUS_WERROR=${NEXUS_WERROR:-ON}
ctest --test-dir build --output-on-failure --timeout 900 -j"${NEXUS_TEST_JOBS:-2}" "$@"
