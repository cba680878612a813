#!/usr/bin/env bash
# NexusFS against s3fs-fuse on the same S3 server, in one run. One s3rver on 127.0.0.1 (a free
# port, data in WORKDIR) with two buckets: NexusFS (RocksDB metadata in WORKDIR, blocks in bucket
# 1, default mount options) and s3fs (bucket 2). On both:
#   - fio sequential 1 MiB writes of one 1 GiB file (end_fsync=1), then
#   - both file systems are unmounted and mounted again (so the kernel page cache of the file is
#     gone), then fio sequential 1 MiB reads of it. At their defaults s3fs has no local data
#     cache and NexusFS has one (in /var/cache/nexusfs/<uuid> as root, filled by its own
#     writes), so NexusFS is then read once more after a remount with --cache-dir none (and
#     no NX_MOUNT_OPTS): the "cold" row, every block from s3rver;
#   - creation of 1,000 files of 4 KiB (open O_CREAT, one write, close), files/s.
# Prints a table with both and the ratio NexusFS / s3fs, then unmounts everything and stops
# s3rver (also on failure).
#
#   bench/s3fs_compare.sh WORKDIR
#
# The default cache directory of the volume formatted here is removed at the end.
#
# Needs: s3fs (Debian package s3fs), s3rver (scripts/install-deps.sh --test; or $NEXUS_S3RVER),
# fio, perl. Installs nothing. Environment: NEXUSFS (default build/nexusfs), SEQ_SIZE (1G),
# SMALL_FILES (1000), SMALL_SIZE (4096), S3FS_OPTS (extra s3fs -o options, comma-separated),
# NX_MOUNT_OPTS (extra nexusfs mount flags; none by default), NX_FORMAT_OPTS (extra nexusfs
# format flags, e.g. --block-size 16M; none by default), PERF=1 (see perf_start).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
work=${1:?usage: s3fs_compare.sh WORKDIR}
nx=${NEXUSFS:-$here/build/nexusfs}
seq_size=${SEQ_SIZE:-1G}
small_files=${SMALL_FILES:-1000}
small_size=${SMALL_SIZE:-4096}

die() {
  echo "s3fs_compare: $*" >&2
  exit 1
}
command -v s3fs >/dev/null || die "s3fs is not installed (Debian: apt-get install s3fs)"
s3rver=${NEXUS_S3RVER:-}
if [[ -z $s3rver ]]; then
  if [[ -x /opt/nexusfs-test/npm/node_modules/.bin/s3rver ]]; then
    s3rver=/opt/nexusfs-test/npm/node_modules/.bin/s3rver
  else
    s3rver=$(command -v s3rver || true)
  fi
fi
[[ -n $s3rver && -x $s3rver ]] ||
  die "s3rver is not installed (scripts/install-deps.sh --test installs it; or set NEXUS_S3RVER)"
command -v fio >/dev/null || die "fio is not installed (Debian: apt-get install fio)"
command -v perl >/dev/null || die "perl is not installed"
[[ -x $nx ]] || die "no nexusfs binary at $nx (build it, or set NEXUSFS=PATH)"
[[ -e /dev/fuse ]] || die "/dev/fuse is missing"

mkdir -p "$work"
work=$(cd "$work" && pwd)
run=$work/s3fs-compare.$$
mkdir -p "$run"/{s3rver,nx,s3fs}
s3rver_pid='' nx_pid='' s3fs_pid='' nx_cache=''

# PERF=1: record the NexusFS mount process (perf record -g) during each phase into
# WORKDIR/perf-PHASE.data (kept), for `perf report -i`.
perf_pid=''
perf_start() {
  [[ ${PERF:-0} == 1 ]] || return 0
  perf record -g -p "$nx_pid" -o "$work/perf-$1.data" >"$work/perf-$1.log" 2>&1 &
  perf_pid=$!
  sleep 1
}
perf_stop() {
  [[ -n $perf_pid ]] || return 0
  kill -INT "$perf_pid" 2>/dev/null || true
  wait "$perf_pid" 2>/dev/null || true
  perf_pid=''
}

unmount() {  # unmount DIR, then wait for its serving process PID to exit (SIGKILL after 120 s)
  local dir=$1 pid=$2
  if mountpoint -q "$dir"; then
    umount "$dir" 2>/dev/null || fusermount -u "$dir" 2>/dev/null || umount -l "$dir" || true
  fi
  [[ -z $pid ]] && return 0
  for _ in $(seq 1200); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap - EXIT
  perf_stop
  unmount "$run/nx" "$nx_pid"
  unmount "$run/s3fs" "$s3fs_pid"
  if [[ -n $s3rver_pid ]]; then
    kill "$s3rver_pid" 2>/dev/null || true
    wait "$s3rver_pid" 2>/dev/null || true
  fi
  [[ -n $nx_cache ]] && rm -rf "$nx_cache"
  if ((rc != 0)); then
    for log in s3rver.log nexusfs.log nexusfs.out s3fs.log; do
      [[ -s $run/$log ]] && { echo "--- last lines of $log" >&2; tail -n 15 "$run/$log" >&2; }
    done
  fi
  rm -rf "$run"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

free_port() {
  perl -MIO::Socket::INET -e '
    my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => 0, Listen => 1) or die;
    print $s->sockport'
}
accepts() { perl -MIO::Socket::INET -e 'exit(IO::Socket::INET->new("127.0.0.1:$ARGV[0]") ? 0 : 1)' "$1"; }

# s3rver: ListObjectsV2 continuation tokens use DES, only in OpenSSL's legacy provider on Node 17+.
for _ in 1 2 3; do
  port=$(free_port)
  NODE_OPTIONS=--openssl-legacy-provider "$s3rver" -d "$run/s3rver" -a 127.0.0.1 -p "$port" \
    --silent --configure-bucket nexusfs-bench --configure-bucket s3fs-bench \
    >>"$run/s3rver.log" 2>&1 &
  s3rver_pid=$!
  for _ in $(seq 300); do
    accepts "$port" && break
    kill -0 "$s3rver_pid" 2>/dev/null || break
    sleep 0.1
  done
  accepts "$port" && break
  kill "$s3rver_pid" 2>/dev/null || true
  wait "$s3rver_pid" 2>/dev/null || true
  s3rver_pid=
done
[[ -n $s3rver_pid ]] || die "s3rver did not start (see the log above)"
endpoint=http://127.0.0.1:$port

# NexusFS. Mounted in the foreground in a background job (same options as -d) so that its pid is
# known: for the unmount wait, for perf, and for cleanup.
# shellcheck disable=SC2086 # NX_FORMAT_OPTS is a list of flags
"$nx" format "rocksdb://$run/meta" bench --storage s3 --bucket "$endpoint/nexusfs-bench" \
  --access-key S3RVER --secret-key S3RVER ${NX_FORMAT_OPTS:-} >/dev/null
# Where a mount without --cache-dir keeps this volume's disk cache (cmd_mount.cc, DefaultCacheBase).
uuid=$("$nx" status "rocksdb://$run/meta" | sed -n 's/^ *"uuid": "\(.*\)",\{0,1\}$/\1/p')
[[ -n $uuid ]] || die "cannot read the volume's uuid from nexusfs status"
if (($(id -u) == 0)); then
  nx_cache=/var/cache/nexusfs/$uuid
else
  nx_cache=${XDG_CACHE_HOME:-$HOME/.cache}/nexusfs/$uuid
fi
wait_mount() {  # DIR PID NAME
  for _ in $(seq 300); do
    mountpoint -q "$1" && return 0
    kill -0 "$2" 2>/dev/null || die "$3 exited before mounting"
    sleep 0.1
  done
  die "$3 did not mount within 30 s"
}
mount_nx_with() {  # mount flags
  "$nx" mount "rocksdb://$run/meta" "$run/nx" --log "$run/nexusfs.log" "$@" >>"$run/nexusfs.out" 2>&1 &
  nx_pid=$!
  wait_mount "$run/nx" "$nx_pid" nexusfs
}
# shellcheck disable=SC2086 # NX_MOUNT_OPTS is a list of flags
mount_nx() { mount_nx_with ${NX_MOUNT_OPTS:-}; }

# s3fs: path-style requests to the plain-http endpoint; everything else at its defaults.
printf 'S3RVER:S3RVER\n' >"$run/passwd"
chmod 600 "$run/passwd"
s3fs_opts="url=$endpoint,use_path_request_style,passwd_file=$run/passwd${S3FS_OPTS:+,$S3FS_OPTS}"
mount_s3fs() {
  s3fs s3fs-bench "$run/s3fs" -f -o "$s3fs_opts" >>"$run/s3fs.log" 2>&1 &
  s3fs_pid=$!
  wait_mount "$run/s3fs" "$s3fs_pid" s3fs
}
mount_nx
mount_s3fs

declare -A result
bytes=$(numfmt --from=iec "$seq_size")
seq_mib=$((bytes / 1048576))

fio_job() {  # DIR NAME RW -> prints "MiB/s-by-fio MiB/s-by-wall-clock"
  local t0 t1 out
  t0=$(date +%s.%N)
  out=$(fio --name="$2" --directory="$1" --filename=seq.dat --rw="$3" --bs=1M --size="$seq_size" \
    --ioengine=psync --end_fsync=1 --output-format=terse)
  t1=$(date +%s.%N)
  # fio terse v3: field 7 read KiB/s, field 48 write KiB/s.
  awk -F';' -v rw="$3" -v mib="$seq_mib" -v t0="$t0" -v t1="$t1" \
    '{printf "%.0f %.0f\n", (rw == "read" ? $7 : $48) / 1024, mib / (t1 - t0)}' <<<"$out"
}

# SMALL_FILES creations of SMALL_SIZE bytes in DIR/small (open O_CREAT|O_EXCL, one write, close).
# Prints "files/s mean-open-ms mean-write-ms mean-close-ms".
small_create() {
  mkdir "$1/small"
  perl -MTime::HiRes=time -MFcntl -e '
    my ($dir, $n, $size) = @ARGV;
    my $buf = "x" x $size;
    my ($o, $w, $c) = (0, 0, 0);
    my $t0 = time;
    for my $i (1 .. $n) {
      my $t = time;
      sysopen(my $fh, "$dir/f$i", O_WRONLY | O_CREAT | O_EXCL) or die "create $dir/f$i: $!\n";
      my $t1 = time;
      syswrite($fh, $buf) == $size or die "write $dir/f$i: $!\n";
      my $t2 = time;
      close($fh) or die "close $dir/f$i: $!\n";
      my $t3 = time;
      ($o, $w, $c) = ($o + $t1 - $t, $w + $t2 - $t1, $c + $t3 - $t2);
    }
    printf "%.0f %.2f %.2f %.2f\n", $n / (time - $t0), 1000 * $o / $n, 1000 * $w / $n,
      1000 * $c / $n;' "$1/small" "$small_files" "$small_size"
}

cpu_ticks() {  # PID -> user + system clock ticks of the process, all threads
  awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0
}
# phase KEY FS COMMAND...: runs COMMAND (printing its result), keeps the CPU seconds the mount
# process of FS and s3rver used meanwhile in result[FS.KEY.cpu] and result[FS.KEY.srv], and
# records NexusFS with perf when PERF=1.
phase() {
  local key=$1 fs=$2 pid c0 s0
  shift 2
  pid=$nx_pid
  [[ $fs == s3fs ]] && pid=$s3fs_pid
  [[ $fs == nx ]] && perf_start "$key"
  c0=$(cpu_ticks "$pid")
  s0=$(cpu_ticks "$s3rver_pid")
  "$@"
  result[$fs.$key.cpu]=$(awk -v a="$c0" -v b="$(cpu_ticks "$pid")" -v hz="$(getconf CLK_TCK)" \
    'BEGIN{printf "%.1f", (b - a) / hz}')
  result[$fs.$key.srv]=$(awk -v a="$s0" -v b="$(cpu_ticks "$s3rver_pid")" -v hz="$(getconf CLK_TCK)" \
    'BEGIN{printf "%.1f", (b - a) / hz}')
  perf_stop
}

echo "== $(date -u +%FT%TZ) $(nproc) cores, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "   s3rver $("$s3rver" --version) at $endpoint (data in $run/s3rver)"
echo "   $(s3fs --version 2>&1 | head -1)"
echo "   s3fs options: -o ${s3fs_opts//$run/WORK}"
echo "   nexusfs mount options: ${NX_MOUNT_OPTS:-defaults (disk cache in ${nx_cache//$run/WORK})}"
echo "   nexusfs format options: ${NX_FORMAT_OPTS:-defaults (4 MiB blocks)}"

for fs in nx s3fs; do
  phase w "$fs" fio_job "$run/$fs" seqw write >"$run/out"
  read -r "result[$fs.w.fio]" "result[$fs.w.wall]" <"$run/out"
done
# Drop the kernel page cache of the written file: unmount and mount both again.
unmount "$run/nx" "$nx_pid"
unmount "$run/s3fs" "$s3fs_pid"
mount_nx
mount_s3fs
for fs in nx s3fs; do
  [[ $(stat -c %s "$run/$fs/seq.dat") == "$bytes" ]] || die "$fs: seq.dat has the wrong size"
  phase r "$fs" fio_job "$run/$fs" seqr read >"$run/out"
  read -r "result[$fs.r.fio]" "result[$fs.r.wall]" <"$run/out"
done
# NexusFS without its local cache (and without NX_MOUNT_OPTS): every block from s3rver. s3fs
# read that way above already. Then back to the mount under test for the small files.
unmount "$run/nx" "$nx_pid"
mount_nx_with --cache-dir none
phase cold nx fio_job "$run/nx" seqr read >"$run/out"
read -r "result[nx.cold.fio]" "result[nx.cold.wall]" <"$run/out"
result[s3fs.cold.fio]=${result[s3fs.r.fio]} result[s3fs.cold.wall]=${result[s3fs.r.wall]}
rm -f "$run/nx/seq.dat" "$run/s3fs/seq.dat"
unmount "$run/nx" "$nx_pid"
mount_nx
for fs in nx s3fs; do
  phase small "$fs" small_create "$run/$fs" >"$run/out"
  read -r "result[$fs.small]" "result[$fs.open]" "result[$fs.write]" "result[$fs.close]" <"$run/out"
  n=$(find "$run/$fs/small" -type f -size "${small_size}c" | wc -l)
  ((n == small_files)) || die "$fs: $n of $small_files small files have the right size"
done

row() {  # LABEL KEY UNIT TARGET
  local a=${result[nx.$2]} b=${result[s3fs.$2]}
  printf '| %-40s | %9s %-7s | %9s %-7s | %6sx | %-7s |\n' "$1" "$a" "$3" "$b" "$3" \
    "$(awk -v a="$a" -v b="$b" 'BEGIN{printf "%.2f", (b + 0 == 0) ? 0 : a / b}')" "$4"
}
echo
printf '| %-40s | %-17s | %-17s | %-7s | %-7s |\n' test NexusFS s3fs ratio target
echo "|------------------------------------------|-------------------|-------------------|---------|---------|"
row "seq write $seq_size, 1 MiB (fio bw)" w.fio MiB/s ">= 2x"
row "seq write $seq_size, 1 MiB (wall clock)" w.wall MiB/s ">= 2x"
row "seq read after remount (fio bw)" r.fio MiB/s ">= 1.5x"
row "seq read after remount (wall clock)" r.wall MiB/s ">= 1.5x"
row "seq read, NexusFS no cache (fio bw)" cold.fio MiB/s ""
row "seq read, NexusFS no cache (wall clock)" cold.wall MiB/s ""
row "create $small_files x $small_size B (write+close)" small files/s ">= 10x"
echo
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "CPU seconds (client mount process / s3rver) per phase:"
for fs in nx s3fs; do
  printf '  %-7s write %s / %s, read %s / %s, small files %s / %s\n' \
    "$([[ $fs == nx ]] && echo NexusFS || echo s3fs)" "${result[$fs.w.cpu]}" "${result[$fs.w.srv]}" \
    "${result[$fs.r.cpu]}" "${result[$fs.r.srv]}" "${result[$fs.small.cpu]}" "${result[$fs.small.srv]}"
done
printf '  NexusFS read with --cache-dir none %s / %s\n' "${result[nx.cold.cpu]}" "${result[nx.cold.srv]}"
echo "Small files, mean per file:"
for fs in nx s3fs; do
  printf '  %-7s open(O_CREAT) %s ms, write %s ms, close %s ms\n' \
    "$([[ $fs == nx ]] && echo NexusFS || echo s3fs)" "${result[$fs.open]}" "${result[$fs.write]}" \
    "${result[$fs.close]}"
done
