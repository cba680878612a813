#!/usr/bin/env bash
# Runs a command against a freshly formatted and mounted NexusFS volume, then unmounts it and
# removes everything, also when the command fails. The command sees the mount point in $MNT.
# Usage: with_mount.sh NEXUSFS_BIN [--meta SCHEME] [--mount-opts "..."] -- COMMAND ARGS...
set -uo pipefail
bin=$1; shift
scheme=rocksdb
mount_opts=()
while [[ $# -gt 0 && "$1" != "--" ]]; do
  case "$1" in
    --meta) scheme=$2; shift 2 ;;
    --mount-opts) read -r -a mount_opts <<<"$2"; shift 2 ;;
    *) echo "with_mount.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
shift
work=$(mktemp -d /tmp/nexus-it.XXXXXX)
export MNT=$work/mnt
mkdir -p "$MNT"
case "$scheme" in
  rocksdb) meta="rocksdb://$work/meta" ;;
  sqlite3) meta="sqlite3://$work/meta.db" ;;
  *) echo "with_mount.sh: unknown engine $scheme" >&2; exit 2 ;;
esac

cleanup() {
  if mountpoint -q "$MNT"; then
    "$bin" umount "$MNT" >/dev/null 2>&1 || umount -l "$MNT" 2>/dev/null || true
  fi
  # Wait for the mount process to finish its shutdown before removing its files.
  for _ in $(seq 50); do pgrep -f "nexusfs mount $meta" >/dev/null || break; sleep 0.1; done
  rm -rf "$work"
}
trap cleanup EXIT

"$bin" format "$meta" itvol --bucket "$work/data" >/dev/null || { echo "format failed" >&2; exit 1; }
"$bin" mount "$meta" "$MNT" -d --log "$work/mount.log" "${mount_opts[@]}" || {
  echo "mount failed; log:" >&2; cat "$work/mount.log" >&2 2>/dev/null; exit 1; }
"$@"
rc=$?
if [[ $rc -ne 0 && -f "$work/mount.log" ]]; then
  echo "--- mount log (tail) ---" >&2; tail -n 50 "$work/mount.log" >&2
fi
exit $rc
