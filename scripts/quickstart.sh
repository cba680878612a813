#!/usr/bin/env bash
# From a fresh Debian bookworm machine to a mounted NexusFS volume on the embedded default:
# RocksDB metadata in /var/lib/nexusfs/meta, data blocks in /var/lib/nexusfs/data, mounted at
# /mnt/nexusfs (override with NEXUS_MOUNT=/path).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
mnt=${NEXUS_MOUNT:-/mnt/nexusfs}
meta=/var/lib/nexusfs/meta
mkdir -p /var/lib/nexusfs "$mnt"
if ! build/nexusfs status "$meta" >/dev/null 2>&1; then
  build/nexusfs format "$meta" myvolume --bucket /var/lib/nexusfs/data
fi
if mountpoint -q "$mnt"; then
  echo "$mnt is already mounted"
else
  build/nexusfs mount "$meta" "$mnt" -d --log /var/log/nexusfs.log
fi
echo
echo "NexusFS volume 'myvolume' is mounted at $mnt (log: /var/log/nexusfs.log)."
echo "Unmount it with:  $(pwd)/build/nexusfs umount $mnt"
