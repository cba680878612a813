// Latency of the metadata side of the data path on every embedded engine: committing a slice
// (Meta::WriteSlice, what every flush does per slice), reading a chunk's slice records
// (Meta::ReadChunk, what every uncached read does), and creating a file without opening it
// (Meta::Mknod, one transaction).
//
//   build-*/bench/slice_bench [--benchmark_filter=rocksdb]
#include <benchmark/benchmark.h>
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "meta/kv/engine.h"
#include "meta/meta.h"

namespace nexus::meta {
namespace {

struct Volume {
  explicit Volume(benchmark::State& state, std::string url) {
    char tmpl[] = "/tmp/nexus-slice-bench-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) {
      state.SkipWithError("mkdtemp");
      return;
    }
    dir = tmpl;
    const std::string url_template = url;
    if (size_t at = url.find("<tmp>"); at != std::string::npos) url.replace(at, 5, dir);
    auto engine = kv::Engine::Open(url);
    if (!engine) {
      state.SkipWithError(engine.error().ToString().c_str());
      return;
    }
    // A URL without "<tmp>" (a networked engine) is reused by every run: start it empty.
    if (url == url_template) {
      if (Status r = (*engine)->Reset(); !r.ok()) {
        state.SkipWithError(r.ToString().c_str());
        return;
      }
    }
    meta = Meta::Create(std::move(*engine));
    meta::Format f;
    f.name = "bench";
    f.storage = "mem";
    if (Status s = meta->Format(f, false); !s.ok()) {
      meta.reset();
      state.SkipWithError(s.ToString().c_str());
      return;
    }
  }
  ~Volume() {
    meta.reset();
    if (!dir.empty()) std::filesystem::remove_all(dir);
  }
  std::string dir;
  std::unique_ptr<Meta> meta;
};

void BM_SliceCommit(benchmark::State& state, std::string url) {
  Volume v(state, url);
  if (!v.meta) return;
  uint64_t i = 0;
  Ino ino = 0;
  for (auto _ : state) {
    // A fresh file every 64 slices keeps the chunk record small, as compaction would.
    if (i % 64 == 0) {
      state.PauseTiming();
      auto e = v.meta->Mknod(Context::Root(), kRootIno, "f" + std::to_string(i), FileType::kFile,
                             0644, 0);
      if (!e) return state.SkipWithError(e.error().ToString().c_str());
      ino = e->ino;
      state.ResumeTiming();
    }
    auto id = v.meta->NewSliceId();
    if (!id) return state.SkipWithError(id.error().ToString().c_str());
    Slice s{static_cast<uint32_t>((i % 64) << 20), *id, 1 << 20, 0, 1 << 20};
    if (Status st = v.meta->WriteSlice(ino, 0, s, 1); !st.ok()) {
      return state.SkipWithError(st.ToString().c_str());
    }
    ++i;
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_ReadChunk(benchmark::State& state, std::string url) {
  Volume v(state, url);
  if (!v.meta) return;
  auto e = v.meta->Mknod(Context::Root(), kRootIno, "f", FileType::kFile, 0644, 0);
  if (!e) return state.SkipWithError(e.error().ToString().c_str());
  for (uint32_t k = 0; k < 8; ++k) {
    auto id = v.meta->NewSliceId();
    if (!id) return state.SkipWithError(id.error().ToString().c_str());
    if (!v.meta->WriteSlice(e->ino, 0, Slice{k << 20, *id, 1 << 20, 0, 1 << 20}, 1).ok()) {
      return state.SkipWithError("write slice");
    }
  }
  for (auto _ : state) {
    auto r = v.meta->ReadChunk(e->ino, 0);
    if (!r) return state.SkipWithError(r.error().ToString().c_str());
    benchmark::DoNotOptimize(r->size());
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_Mknod(benchmark::State& state, std::string url) {
  Volume v(state, url);
  if (!v.meta) return;
  uint64_t i = 0;
  for (auto _ : state) {
    auto e = v.meta->Mknod(Context::Root(), kRootIno, "f" + std::to_string(i++), FileType::kFile,
                           0644, 0);
    if (!e) return state.SkipWithError(e.error().ToString().c_str());
  }
  state.SetItemsProcessed(state.iterations());
}

const char* kUrls[][2] = {
    {"mem", "mem://"}, {"rocksdb", "rocksdb://<tmp>/rocks"}, {"sqlite3", "sqlite3://<tmp>/m.db"}};

int Register() {
  std::vector<std::pair<std::string, std::string>> engines;
  for (const auto& [name, url] : kUrls) engines.emplace_back(name, url);
  // A networked engine too, as in meta_bench: NEXUS_META_BENCH_URL='redis://127.0.0.1:6379/1'.
  if (const char* extra = getenv("NEXUS_META_BENCH_URL"); extra && *extra) {
    std::string url = extra;
    engines.emplace_back(url.substr(0, url.find(':')), url);
  }
  for (const auto& [name, url] : engines) {
    benchmark::RegisterBenchmark((std::string("slice_commit/") + name).c_str(), BM_SliceCommit,
                                 std::string(url));
    benchmark::RegisterBenchmark((std::string("read_chunk/") + name).c_str(), BM_ReadChunk,
                                 std::string(url));
    benchmark::RegisterBenchmark((std::string("mknod/") + name).c_str(), BM_Mknod,
                                 std::string(url));
  }
  return 0;
}
const int kRegistered = Register();

}  // namespace
}  // namespace nexus::meta

BENCHMARK_MAIN();
