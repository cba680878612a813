#!/usr/bin/env bash
# The read jobs of bench/fio (1 MiB sequential reads of a 1 GiB file, 4 KiB random reads of it
# with 1 and 4 jobs) on several NexusFS binaries and passthrough_hp at once, run in turn and
# repeated, so that a busy machine slows them alike:
#
#   bench/fuse_reads.sh WORKDIR PASSTHROUGH_HP ROUNDS SECONDS NEXUSFS_BINARY...
#
# Each binary formats and mounts its own volume (embedded RocksDB, file:// store) under WORKDIR;
# passthrough_hp (libfuse's example/passthrough_hp.cc, built locally) mounts WORKDIR/pt-src.
set -euo pipefail
work=${1:?usage: fuse_reads.sh WORKDIR PASSTHROUGH_HP ROUNDS SECONDS NEXUSFS...}
pthp=${2:?passthrough_hp binary}
rounds=${3:?rounds}
secs=${4:?seconds per random-read job}
shift 4
[[ $# -gt 0 ]] || { echo "name at least one nexusfs binary" >&2; exit 2; }
mkdir -p "$work"
run=$(cd "$work" && pwd)/fuse-reads.$$
mkdir -p "$run/pt-src" "$run/pt"
bins=("$@")
dirs=()
cleanup() {
  fusermount3 -u "$run/pt" 2>/dev/null || true
  for i in "${!bins[@]}"; do "${bins[$i]}" umount "$run/nx$i/mnt" 2>/dev/null || true; done
  rm -rf "$run"
}
trap cleanup EXIT
for i in "${!bins[@]}"; do
  mkdir -p "$run/nx$i/mnt"
  "${bins[$i]}" format "rocksdb://$run/nx$i/meta" reads --bucket "$run/nx$i/data" >/dev/null
  "${bins[$i]}" mount "rocksdb://$run/nx$i/meta" "$run/nx$i/mnt" -d --log "$run/nx$i/log"
  dirs+=("$run/nx$i/mnt")
done
"$pthp" "$run/pt-src" "$run/pt"
for _ in $(seq 50); do mountpoint -q "$run/pt" && break; sleep 0.1; done
mountpoint -q "$run/pt" || { echo "passthrough_hp did not mount" >&2; exit 1; }
dirs+=("$run/pt")
job() {  # name, then fio options
  local name=$1
  shift
  printf '[global]\nioengine=psync\nfilename=fio-reads.dat\nsize=1G\n[%s]\n' "$name"
  printf '%s\n' "$@"
}
job prepare rw=write bs=1M end_fsync=1 >"$run/prep.fio"
job seq-read rw=read bs=1M >"$run/seq.fio"
job randread-1 rw=randread bs=4k runtime="$secs" time_based=1 >"$run/rr1.fio"
job randread-4 rw=randread bs=4k runtime="$secs" time_based=1 numjobs=4 group_reporting=1 \
  >"$run/rr4.fio"
name() {
  if [[ $1 -lt ${#bins[@]} ]]; then echo "${bins[$1]}"; else echo passthrough_hp; fi
}
echo "== $(date -u +%FT%TZ) $(nproc) cores, $(uname -r)"
for d in "${dirs[@]}"; do fio --directory="$d" "$run/prep.fio" --output-format=terse >/dev/null; done
for r in $(seq "$rounds"); do
  echo "-- round $r, load $(cut -d' ' -f1-3 /proc/loadavg)"
  for j in seq rr1 rr4; do
    for i in "${!dirs[@]}"; do
      fio --directory="${dirs[$i]}" "$run/$j.fio" --output-format=terse |
        awk -F';' -v who="$(name "$i")" '{printf "  %-11s %8.0f MiB/s %8.0f IOPS  %s\n", $3, $7/1024, $8, who}'
    done
  done
done
echo "-- end, load $(cut -d' ' -f1-3 /proc/loadavg)"
