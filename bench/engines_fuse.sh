#!/usr/bin/env bash
# Metadata operations through FUSE on every engine, in one run: for rocksdb, sqlite3, redis,
# postgres and etcd it formats a volume, mounts it twice, and runs md_bench --more (create,
# stat, setattr, readdir of the thread's FILES entries, 4 KiB write + fsync, rename, unlink,
# mkdir, rmdir; each thread in its own directory):
#   - one mount, 1 thread: microseconds per operation (the latency a single process sees);
#   - two mounts at once, 2 threads each (mdtest-style, 4 processes' worth over 2 mounts):
#     operations per second summed over both mounts.
# Beside each networked engine it measures the bare round trip (redis-benchmark -t ping, a
# `SELECT 1` loop over psql, etcd range and put requests over one keep-alive curl).
#
#   [NEXUS_BUILD=build-x] bench/engines_fuse.sh WORKDIR [FILES_PER_THREAD (default 2000)] [ENGINES...]
#
# Servers are started on free loopback ports under WORKDIR and stopped at the end, as in the
# tests (tests/kv/servers.cc, tests/kv/etcd_server.cc). Needs redis-server, postgresql, etcd.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
work=${1:?usage: engines_fuse.sh WORKDIR [FILES_PER_THREAD] [ENGINES...]}
files=${2:-2000}
shift $(($# >= 2 ? 2 : 1))
engines=("$@")
[ ${#engines[@]} -gt 0 ] || engines=(rocksdb sqlite3 redis postgres etcd)
build=${NEXUS_BUILD:-$here/build}  # the build directory whose nexusfs and md_bench run
nx=$build/nexusfs
md=$build/bench/md_bench
mkdir -p "$work"
work=$(cd "$work" && pwd)
run=$work/engines-fuse.$$
mkdir -p "$run"
pids=()
mounts=()

cleanup() {
  for m in "${mounts[@]}"; do "$nx" umount "$m" >/dev/null 2>&1 || fusermount3 -uz "$m" 2>/dev/null || true; done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$run"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start_redis() {
  local port; port=$(free_port)
  mkdir -p "$run/redis"
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$run/redis" \
    >"$run/redis/log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  url="redis://127.0.0.1:$port/1"
  rtt="ping: $(redis-benchmark -p "$port" -t ping -n 20000 -c 1 -q 2>/dev/null | tr '\r' '\n' |
    awk '/PING_INLINE: [0-9]/ {printf "%.1f µs", 1e6 / $2}')"
}

start_postgres() {
  local port bin; port=$(free_port)
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  mkdir -p "$run/pg"
  echo secret >"$run/pg/pw"
  chown -R postgres "$run/pg"
  runuser -u postgres -- "$bin/initdb" -D "$run/pg/data" -U nexus --pwfile="$run/pg/pw" \
    --auth-local=trust --auth-host=scram-sha-256 --no-sync -E UTF8 --locale=C >"$run/pg/initdb.log" 2>&1
  runuser -u postgres -- "$bin/postgres" -D "$run/pg/data" -k "$run/pg" -p "$port" -h 127.0.0.1 \
    -c fsync=off -c full_page_writes=off -c max_connections=200 >"$run/pg/log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do "$bin/pg_isready" -h 127.0.0.1 -p "$port" >/dev/null 2>&1 && break; sleep 0.1; done
  url="postgres://nexus:secret@127.0.0.1:$port/postgres"
  local n=2000 t0 t1
  t0=$(date +%s%N)
  printf 'SELECT 1;\n%.0s' $(seq $n) | PGPASSWORD=secret psql -q -h 127.0.0.1 -p "$port" -U nexus postgres >/dev/null
  t1=$(date +%s%N)
  rtt="SELECT 1: $(((t1 - t0) / n / 1000)) µs (psql loop, one connection)"
}

start_etcd() {
  local cport pport; cport=$(free_port); pport=$(free_port)
  mkdir -p "$run/etcd"
  etcd --name=nexus --data-dir="$run/etcd/data" \
    --listen-client-urls="http://127.0.0.1:$cport" --advertise-client-urls="http://127.0.0.1:$cport" \
    --listen-peer-urls="http://127.0.0.1:$pport" --initial-advertise-peer-urls="http://127.0.0.1:$pport" \
    --initial-cluster="nexus=http://127.0.0.1:$pport" --initial-cluster-state=new \
    --max-txn-ops=20000 --max-request-bytes=16777216 --log-level=warn >"$run/etcd/log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do curl -s "http://127.0.0.1:$cport/health" | grep -q true && break; sleep 0.1; done
  url="etcd://127.0.0.1:$cport/bench"
  # One curl process given the URL n times reuses one keep-alive connection: the gateway's
  # cost per request without a process start per request (the old loop measured 8.8 ms).
  local n=1000 t0 t1 t2 urls
  urls=$(for _ in $(seq $n); do printf 'http://127.0.0.1:%s/v3/kv/range ' "$cport"; done)
  t0=$(date +%s%N)
  # shellcheck disable=SC2086
  curl -s -H 'Content-Type: application/json' -d '{"key":"eA=="}' $urls >/dev/null
  t1=$(date +%s%N)
  # shellcheck disable=SC2086
  curl -s -H 'Content-Type: application/json' -d '{"key":"eA==","value":"eA=="}' \
    ${urls//range/put} >/dev/null
  t2=$(date +%s%N)
  rtt="range $(((t1 - t0) / n / 1000)) µs, put $(((t2 - t1) / n / 1000)) µs (one keep-alive curl)"
}

# md_bench prints "threads=T files=N create=X/s stat=X/s ... rmdir=X/s".
field() { sed -n "s/.* $1=\([0-9]*\)\/s.*/\1/p"; }
ops=(create stat setattr readdir write4k_fsync rename unlink mkdir rmdir)

printf '%-9s | %s | %s\n' engine "1 mount, 1 thread: µs/op ${ops[*]}" \
  "2 mounts × 2 threads: ops/s ${ops[*]} (readdir: listings of FILES entries)"
for e in "${engines[@]}"; do
  rtt="(embedded)"
  case $e in
    rocksdb) url="rocksdb://$run/rocksdb-meta" ;;
    sqlite3) url="sqlite3://$run/sqlite.db" ;;
    redis) start_redis ;;
    postgres) start_postgres ;;
    etcd) start_etcd ;;
    *) echo "unknown engine $e" >&2; exit 2 ;;
  esac
  "$nx" format "$url" "bench-$e" --bucket "$run/data-$e" >/dev/null
  a=$run/mnt-$e-a b=$run/mnt-$e-b
  mkdir -p "$a" "$b"
  mounts+=("$a")
  "$nx" mount "$url" "$a" -d --log "$run/$e-a.log" >/dev/null
  single=""
  if [ "$e" = rocksdb ] || [ "$e" = sqlite3 ]; then
    # Embedded engines belong to one process: one mount, 4 threads instead of 2 × 2.
    mkdir "$a/one" "$a/multi"
    s=$("$md" "$a/one" --files "$files" --threads 1 --more)
    m=$("$md" "$a/multi" --files "$files" --threads 4 --more)
    multi=""
    for op in "${ops[@]}"; do multi+="$(echo "$m" | field "$op") "; done
    multi+="(1 mount × 4 threads)"
  else
    mounts+=("$b")
    "$nx" mount "$url" "$b" -d --log "$run/$e-b.log" >/dev/null
    mkdir "$a/one" "$a/x" "$b/y"
    s=$("$md" "$a/one" --files "$files" --threads 1 --more)
    "$md" "$a/x" --files "$files" --threads 2 --more >"$run/$e-x.out" &
    px=$!
    "$md" "$b/y" --files "$files" --threads 2 --more >"$run/$e-y.out"
    wait $px
    sum() { echo $(($(field "$1" <"$run/$e-x.out") + $(field "$1" <"$run/$e-y.out"))); }
    multi=""
    for op in "${ops[@]}"; do multi+="$(sum "$op") "; done
  fi
  us() { awk -v r="$(echo "$s" | field "$1")" 'BEGIN { printf "%.0f", 1e6 / r }'; }
  single=""
  for op in "${ops[@]}"; do single+="$(us "$op") "; done
  printf '%-9s | %s | %s  [%s]\n' "$e" "$single" "$multi" "$rtt"
  for m in "$a" "$b"; do "$nx" umount "$m" >/dev/null 2>&1 || true; done
done
