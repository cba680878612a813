// DiskCache on a hot cache (files in the page cache): Get of whole blocks; a 4 KiB read served
// through Get (whole block verified) and through ReadRange (one 16 KiB segment verified, what
// the read path does); and for comparison a bare unverified 4 KiB pread of the same files.
//   disk_cache_bench [--benchmark_filter=...]   (cache in $NEXUS_BENCH_DIR or /tmp)
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>

#include "cache/disk_cache.h"

namespace {

using nexus::cache::DiskCache;

struct HotCache {
  std::string root;
  std::unique_ptr<DiskCache> cache;
  std::vector<std::string> keys;

  HotCache(size_t block, int blocks) {
    const char* base = std::getenv("NEXUS_BENCH_DIR");
    std::string tmpl = std::string(base ? base : "/tmp") + "/nexus-dc-bench-XXXXXX";
    root = mkdtemp(tmpl.data());
    cache = std::move(*DiskCache::Open(root + "/cache", 8ULL << 30, 0.0));
    std::mt19937_64 rng(1);
    for (int i = 0; i < blocks; ++i) {
      std::string data(block, '\0');
      for (auto& c : data) c = static_cast<char>(rng());
      keys.push_back("vol/chunks/0/0/" + std::to_string(i) + "_0_" + std::to_string(block));
      cache->Put(keys.back(), std::make_shared<const std::string>(std::move(data)));
      cache->WaitIdle();
    }
    for (const auto& k : keys) cache->Get(k);  // into the page cache
  }
  ~HotCache() {
    cache.reset();
    std::filesystem::remove_all(root);
  }
};

void BM_GetBlock(benchmark::State& state) {
  const size_t block = static_cast<size_t>(state.range(0));
  HotCache hot(block, 16);
  size_t i = 0;
  for (auto _ : state) {
    auto got = hot.cache->Get(hot.keys[i++ % hot.keys.size()]);
    if (!got) state.SkipWithError("miss");
    benchmark::DoNotOptimize(got);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * block));
}
BENCHMARK(BM_GetBlock)->Arg(4 << 20)->Arg(1 << 20)->Arg(64 << 10)->UseRealTime();

// A 4 KiB read at a random offset of a 4 MiB block, served by Get (whole block verified).
void BM_Read4KiBViaGet(benchmark::State& state) {
  HotCache hot(4 << 20, 16);
  std::mt19937_64 rng(2);
  char buf[4096];
  for (auto _ : state) {
    auto got = hot.cache->Get(hot.keys[rng() % hot.keys.size()]);
    if (!got) state.SkipWithError("miss");
    size_t off = (rng() % ((4 << 20) / 4096)) * 4096;
    std::memcpy(buf, got->data() + off, sizeof buf);
    benchmark::DoNotOptimize(buf);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * 4096));
}
BENCHMARK(BM_Read4KiBViaGet)->UseRealTime();

// The same read served by ReadRange (what the read path does for reads under a quarter block):
// only the 16 KiB segment that holds it is read and verified.
void BM_Read4KiBViaReadRange(benchmark::State& state) {
  HotCache hot(4 << 20, 16);
  std::mt19937_64 rng(2);
  char buf[4096];
  for (auto _ : state) {
    size_t off = (rng() % ((4 << 20) / 4096)) * 4096;
    if (!hot.cache->ReadRange(hot.keys[rng() % hot.keys.size()], off, sizeof buf, buf)) {
      state.SkipWithError("miss");
    }
    benchmark::DoNotOptimize(buf);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * 4096));
}
BENCHMARK(BM_Read4KiBViaReadRange)->UseRealTime();

// The floor: open + 4 KiB pread + close of the same files, without any verification.
void BM_Read4KiBBarePread(benchmark::State& state) {
  HotCache hot(4 << 20, 16);
  std::vector<std::string> paths;
  for (auto& e : std::filesystem::recursive_directory_iterator(hot.root + "/cache/blocks")) {
    if (e.is_regular_file()) paths.push_back(e.path());
  }
  std::mt19937_64 rng(3);
  char buf[4096];
  for (auto _ : state) {
    int fd = ::open(paths[rng() % paths.size()].c_str(), O_RDONLY | O_CLOEXEC);
    off_t off = static_cast<off_t>(DiskCache::FileSize(4 << 20) - (4 << 20)) +
                static_cast<off_t>((rng() % ((4 << 20) / 4096)) * 4096);
    if (fd < 0 || ::pread(fd, buf, sizeof buf, off) != static_cast<ssize_t>(sizeof buf)) {
      state.SkipWithError("pread");
    }
    ::close(fd);
    benchmark::DoNotOptimize(buf);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * 4096));
}
BENCHMARK(BM_Read4KiBBarePread)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
