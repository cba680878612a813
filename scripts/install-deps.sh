#!/usr/bin/env bash
# Installs the Debian bookworm packages NexusFS needs to build, run and test.
# Usage: scripts/install-deps.sh [--test]   (--test adds the tools the test suite uses)
# Runs `apt-get update` once, and only when something is missing.
set -euo pipefail

pkgs=(build-essential cmake ninja-build pkg-config git
      libfuse3-dev fuse3 librocksdb-dev libsqlite3-dev libhiredis-dev libpq-dev
      libcurl4-openssl-dev libssl-dev libxml2-dev libzstd-dev liblz4-dev libxxhash-dev
      libcli11-dev nlohmann-json3-dev libspdlog-dev libfmt-dev libexpected-dev
      libgtest-dev libgmock-dev libbenchmark-dev)
if [[ "${1:-}" == "--test" ]]; then
  pkgs+=(attr acl fio procps psmisc util-linux etcd-server redis-server postgresql)
fi

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  echo "Installing: ${missing[*]}"
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# s3rver (npm): the S3-compatible server that the s3 object-store and mount tests start.
# Installed once into a fixed prefix; nothing is fetched when it is already there.
if [[ "${1:-}" == "--test" ]]; then
  S3RVER_PREFIX=/opt/nexusfs-test/npm
  if [[ ! -x $S3RVER_PREFIX/node_modules/.bin/s3rver ]]; then
    SUDO=""
    if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
    if ! command -v npm >/dev/null; then
      $SUDO apt-get update -q
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends nodejs npm
    fi
    $SUDO mkdir -p "$S3RVER_PREFIX"
    $SUDO npm install --prefix "$S3RVER_PREFIX" --no-audit --no-fund s3rver@3.7.1
  fi
fi
