#!/usr/bin/env bash
# NexusFS through FUSE against libfuse's passthrough_hp on the same disk, in one run:
# fio sequential 1 MiB write/read of 2 GiB (ROUNDS rounds, alternating between the two), 4 KiB
# random reads of a cached 1 GiB file (1 and 4 jobs), md_bench (create/stat/rename/unlink, 1 and
# 4 threads) and append_bench (4 KiB O_APPEND latency; NexusFS with and without -o
# writeback_cache).
#
#   bench/fuse_compare.sh WORKDIR PASSTHROUGH_HP_BINARY [nexusfs mount flags...]
#
# passthrough_hp is libfuse's example/passthrough_hp.cc (build it locally; it is not part of this
# repository). WORKDIR must be on the disk to measure; everything is created under it and removed.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
work=${1:?usage: fuse_compare.sh WORKDIR PASSTHROUGH_HP [mount flags]}
pthp=${2:?usage: fuse_compare.sh WORKDIR PASSTHROUGH_HP [mount flags]}
shift 2
nx=$here/build/nexusfs
md=$here/build/bench/md_bench
app=$here/build/bench/append_bench
mkdir -p "$work"
work=$(cd "$work" && pwd)
run=$work/fuse-compare.$$
mkdir -p "$run"/{nx,pt-src,pt}

cleanup() {
  fusermount3 -u "$run/pt" 2>/dev/null || true
  "$nx" umount "$run/nx" 2>/dev/null || true
  rm -rf "$run"
}
trap cleanup EXIT

mount_nx() {
  "$nx" mount "rocksdb://$run/meta" "$run/nx" -d --log "$run/nexusfs.log" "$@"
}
"$nx" format "rocksdb://$run/meta" compare --bucket "$run/data" >/dev/null
"$pthp" "$run/pt-src" "$run/pt" &
for _ in $(seq 50); do mountpoint -q "$run/pt" && break; sleep 0.1; done
mountpoint -q "$run/pt" || { echo "passthrough_hp did not mount" >&2; exit 1; }
mount_nx "$@"

# Waits (at most a minute) until the disk under WORKDIR has written nothing for two seconds:
# deletions and writeback left by a previous run otherwise slow the first write job by half.
wait_disk_idle() {
  local dev
  dev=$(basename "$(df --output=source "$work" | tail -1)")
  grep -q " $dev " /proc/diskstats || return 0
  local last="" now quiet=0
  for _ in $(seq 60); do
    now=$(awk -v d="$dev" '$3 == d {print $10}' /proc/diskstats)
    if [[ "$now" == "$last" ]]; then
      quiet=$((quiet + 1))
      ((quiet >= 2)) && return 0
    else
      quiet=0
    fi
    last=$now
    sleep 1
  done
}

fio_line() {  # fio terse: field 3 job name, 7 read KiB/s, 8 read IOPS, 48 write KiB/s
  fio --directory="$1" "$2" --output-format=terse |
    awk -F';' '{printf "  %-12s read %8.0f MiB/s %9.0f IOPS   write %8.0f MiB/s\n", $3, $7/1024, $8, $48/1024}'
}

echo "== $(date -u +%FT%TZ) $(nproc) cores, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "   disk: $(df -h "$work" | awk 'NR==2{print $1, $2}')"

# Each job starts from a disk with nothing left to write back and an empty page cache:
# otherwise the one measured first pays for whatever ran before (a build, a CI run).
settle() {
  sync
  [[ -w /proc/sys/vm/drop_caches ]] && echo 3 > /proc/sys/vm/drop_caches
  wait_disk_idle
}

# The sequential jobs alternate between the two file systems, ROUNDS times (default 3): on the
# VMs measured here a 2 GiB write into a page cache just emptied runs anywhere from 250 to
# 1,300 MiB/s for the same binary (the host takes freed guest pages back, "Free page reporting",
# and the next writer faults them in again), so one run each says little.
rounds=${ROUNDS:-3}
declare -A seqw seqr
for r in $(seq "$rounds"); do
  for fs in nx pt; do
    settle
    out=$(fio_line "$run/$fs" "$here/bench/fio/seq.fio")
    rm -f "$run/$fs/fio-seq.dat"
    echo "== round $r $fs"
    echo "$out"
    seqw[$fs]+="$(awk '$1 == "seq-write" {print $8}' <<<"$out") "
    seqr[$fs]+="$(awk '$1 == "seq-read" {print $3}' <<<"$out") "
  done
done
median() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
for fs in nx pt; do
  echo "== $fs sequential MiB/s, median of $rounds: write $(median "${seqw[$fs]}") (${seqw[$fs]% })," \
    "read $(median "${seqr[$fs]}") (${seqr[$fs]% })"
done

for fs in nx pt; do
  name=NexusFS
  [[ $fs == pt ]] && name=passthrough_hp
  echo "== $name"
  settle
  fio_line "$run/$fs" "$here/bench/fio/randread.fio"
  rm -f "$run/$fs/fio-rand.dat"
  mkdir -p "$run/$fs/md1" "$run/$fs/md4"
  echo "  $("$md" "$run/$fs/md1" --files 10000 --threads 1)"
  echo "  $("$md" "$run/$fs/md4" --files 2500 --threads 4)"
  echo "  append: $("$app" "$run/$fs/append.dat")"
  rm -f "$run/$fs/append.dat"
done
"$nx" umount "$run/nx"
mount_nx -o writeback_cache "$@"
echo "== NexusFS -o writeback_cache"
echo "  append: $("$app" "$run/nx/append.dat")"
