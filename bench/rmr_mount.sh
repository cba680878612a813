#!/bin/bash
# rmr of a 100,000-file tree through a real mount (docs/benchmarks.md, issue #7).
# usage: bench/rmr_mount.sh NEXUSFS_BIN [extra rmr args]
# Formats a RocksDB + file:// volume in a temp dir, mounts it, creates 500 directories of 200
# files (every 10th with 4 bytes) with 4 processes, times `nexusfs rmr`, unmounts, runs fsck.
set -euo pipefail
BIN=$1
shift
W=$(mktemp -d /tmp/rmrbench.XXXXXX)
trap '"$BIN" umount "$W/mnt" >/dev/null 2>&1 || true; rm -rf "$W"' EXIT
"$BIN" format "rocksdb://$W/meta" benchvol --bucket "$W/data" >/dev/null
mkdir "$W/mnt"
"$BIN" mount "rocksdb://$W/meta" "$W/mnt" -d --log "$W/log"
now() { date +%s.%N; }
s=$(now)
python3 - "$W/mnt/big" <<'PY'
import os, sys
from multiprocessing import Pool
root = sys.argv[1]
def work(t):
    for d in range(t, 500, 4):
        dd = f"{root}/d{d}"
        os.mkdir(dd)
        for f in range(200):
            fd = os.open(f"{dd}/f{f}", os.O_CREAT | os.O_WRONLY, 0o644)
            if f % 10 == 0:
                os.write(fd, b"data")
            os.close(fd)
os.mkdir(root)
with Pool(4) as p:
    p.map(work, range(4))
PY
e=$(now)
secs() { python3 -c "print(round($2 - $1, 2))"; }
echo "create: $(secs "$s" "$e") s; files: $(find "$W/mnt/big" -type f | wc -l)"
s=$(now)
"$BIN" rmr "$W/mnt/big" "$@"
e=$(now)
echo "rmr: $(secs "$s" "$e") s; left: $(ls "$W/mnt" | wc -l); load: $(cut -d' ' -f1-3 /proc/loadavg)"
"$BIN" umount "$W/mnt"
"$BIN" fsck "rocksdb://$W/meta" >/dev/null && echo "fsck clean"
