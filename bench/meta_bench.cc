// Latency of Meta's namespace operations on every embedded engine (one thread, one client):
// create, mkdir, lookup, getattr, setattr, rename, unlink, and readdir of 1,000 entries.
// A networked engine that counts its round trips (redis) adds the counter "rt": engine round
// trips per operation (create also "close_rt" for the Close that follows each create).
//
//   build/bench/meta_bench [--benchmark_filter=rocksdb] [--benchmark_min_time=0.5s]
//
// Each benchmark formats a fresh volume ("mem://", "rocksdb://<tmp>/rocks",
// "sqlite3://<tmp>/m.db"); the temporary directories are removed at exit.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "meta/kv/engine.h"
#include "meta/meta.h"

namespace nexus::meta {
namespace {

const std::vector<std::pair<std::string, std::string>> kEngines = {
    {"mem", "mem://"}, {"rocksdb", "rocksdb://<tmp>/rocks"}, {"sqlite3", "sqlite3://<tmp>/m.db"}};

// A formatted volume in its own temporary directory, removed with it.
class Volume {
 public:
  explicit Volume(const std::string& url_template) {
    char tmpl[] = "/tmp/nexus-meta-bench-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) return;
    dir_ = tmpl;
    std::string url = url_template;
    if (size_t at = url.find("<tmp>"); at != std::string::npos) url.replace(at, 5, dir_);
    auto engine = kv::Engine::Open(url);
    if (!engine) {
      error_ = engine.error().ToString();
      return;
    }
    // A URL without "<tmp>" (a networked engine) is reused by every run: start it empty.
    if (url == url_template) {
      if (Status r = (*engine)->Reset(); !r.ok()) {
        error_ = r.ToString();
        return;
      }
    }
    meta_ = Meta::Create(std::move(*engine));
    meta::Format f;
    f.name = "bench";
    f.storage = "mem";
    Status s = meta_->Format(f, false);
    if (!s.ok()) {
      error_ = s.ToString();
      meta_.reset();
    }
  }
  ~Volume() {
    meta_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  Meta* meta() const { return meta_.get(); }
  const std::string& error() const { return error_; }

 private:
  std::string dir_;
  std::string error_;
  std::unique_ptr<Meta> meta_;
};

const Context kRoot = Context::Root();

// Opens the volume or marks the benchmark failed; returns nullptr then.
std::unique_ptr<Volume> Open(benchmark::State& state, const std::string& url) {
  auto v = std::make_unique<Volume>(url);
  if (v->meta() == nullptr) {
    state.SkipWithError(("cannot open " + url + ": " + v->error()).c_str());
    return nullptr;
  }
  return v;
}

Ino MustDir(benchmark::State& state, Meta* m, Ino parent, const std::string& name) {
  auto e = m->Mkdir(kRoot, parent, name, 0755);
  if (!e) state.SkipWithError(("mkdir " + name + ": " + e.error().ToString()).c_str());
  return e ? e->ino : 0;
}

void Check(benchmark::State& state, const Status& s, const char* what) {
  if (!s.ok()) state.SkipWithError((std::string(what) + ": " + s.ToString()).c_str());
}

// Engine round trips (EngineStats::round_trips: request/response exchanges with a networked
// server) spent inside the calls wrapped by Count; reported per iteration as the counter
// "rt" (or another name) when the engine counts them (embedded engines report none).
class RoundTrips {
 public:
  explicit RoundTrips(Meta* m) : engine_(m->engine()) {}
  template <typename F>
  auto Count(F&& f) {
    const uint64_t before = engine_->Stats().round_trips;
    auto r = f();
    total_ += engine_->Stats().round_trips - before;
    return r;
  }
  void Report(benchmark::State& state, const char* name = "rt") const {
    if (total_ > 0 && state.iterations() > 0) {
      state.counters[name] = static_cast<double>(total_) / static_cast<double>(state.iterations());
    }
  }

 private:
  kv::Engine* engine_;
  uint64_t total_ = 0;
};

void BM_Create(benchmark::State& state, std::string url) {
  auto v = Open(state, url);
  if (!v) return;
  Ino dir = MustDir(state, v->meta(), kRootIno, "d");
  RoundTrips rt(v->meta()), close_rt(v->meta());
  uint64_t i = 0;
  for (auto _ : state) {
    auto e = rt.Count([&] {
      return v->meta()->Create(kRoot, dir, "f" + std::to_string(i++), 0644, O_RDWR | O_CREAT);
    });
    if (!e) return Check(state, e.error(), "create");
    Check(state, close_rt.Count([&] { return v->meta()->Close(e->ino); }), "close");
  }
  rt.Report(state);
  close_rt.Report(state, "close_rt");
  state.SetItemsProcessed(state.iterations());
}

void BM_Mkdir(benchmark::State& state, std::string url) {
  auto v = Open(state, url);
  if (!v) return;
  Ino dir = MustDir(state, v->meta(), kRootIno, "d");
  RoundTrips rt(v->meta());
  uint64_t i = 0;
  for (auto _ : state) {
    auto e =
        rt.Count([&] { return v->meta()->Mkdir(kRoot, dir, "d" + std::to_string(i++), 0755); });
    if (!e) return Check(state, e.error(), "mkdir");
  }
  rt.Report(state);
  state.SetItemsProcessed(state.iterations());
}

// A directory of `n` files named f0..f<n-1>.
std::vector<Ino> Populate(benchmark::State& state, Meta* m, Ino dir, int n) {
  std::vector<Ino> inos;
  for (int i = 0; i < n; ++i) {
    auto e = m->Mknod(kRoot, dir, "f" + std::to_string(i), FileType::kFile, 0644, 0);
    if (!e) {
      Check(state, e.error(), "mknod");
      return {};
    }
    inos.push_back(e->ino);
  }
  return inos;
}

void BM_Lookup(benchmark::State& state, std::string url) {
  auto v = Open(state, url);
  if (!v) return;
  Ino dir = MustDir(state, v->meta(), kRootIno, "d");
  if (Populate(state, v->meta(), dir, 1000).empty()) return;
  RoundTrips rt(v->meta());
  uint64_t i = 0;
  for (auto _ : state) {
    auto e = rt.Count(
        [&] { return v->meta()->Lookup(kRoot, dir, "f" + std::to_string((i++ * 7919) % 1000)); });
    if (!e) return Check(state, e.error(), "lookup");
    benchmark::DoNotOptimize(e->ino);
  }
  rt.Report(state);
  state.SetItemsProcessed(state.iterations());
}

void BM_GetAttr(benchmark::State& state, std::string url) {
  auto v = Open(state, url);
  if (!v) return;
  auto inos = Populate(state, v->meta(), kRootIno, 1000);
  if (inos.empty()) return;
  RoundTrips rt(v->meta());
  uint64_t i = 0;
  for (auto _ : state) {
    auto a = rt.Count([&] { return v->meta()->GetAttr(inos[(i++ * 7919) % inos.size()]); });
    if (!a) return Check(state, a.error(), "getattr");
    benchmark::DoNotOptimize(a->mode);
  }
  rt.Report(state);
  state.SetItemsProcessed(state.iterations());
}

void BM_SetAttr(benchmark::State& state, std::string url) {
  auto v = Open(state, url);
  if (!v) return;
  auto inos = Populate(state, v->meta(), kRootIno, 100);
  if (inos.empty()) return;
  SetAttrRequest req;
  req.mask = kSetMode | kSetMtimeNow;
  RoundTrips rt(v->meta());
  uint64_t i = 0;
  for (auto _ : state) {
    req.mode = (i & 1) ? 0600 : 0644;
    auto a = rt.Count([&] { return v->meta()->SetAttr(kRoot, inos[i++ % inos.size()], req); });
    if (!a) return Check(state, a.error(), "setattr");
  }
  rt.Report(state);
  state.SetItemsProcessed(state.iterations());
}

void BM_Rename(benchmark::State& state, std::string url) {
  auto v = Open(state, url);
  if (!v) return;
  Ino d1 = MustDir(state, v->meta(), kRootIno, "d1");
  Ino d2 = MustDir(state, v->meta(), kRootIno, "d2");
  if (Populate(state, v->meta(), d1, 1).empty()) return;
  bool there = false;  // f0 moves between d1 (as f0) and d2 (as g0)
  RoundTrips rt(v->meta());
  for (auto _ : state) {
    Status s = rt.Count([&] {
      return there ? v->meta()->Rename(kRoot, d2, "g0", d1, "f0", 0)
                   : v->meta()->Rename(kRoot, d1, "f0", d2, "g0", 0);
    });
    if (!s.ok()) return Check(state, s, "rename");
    there = !there;
  }
  rt.Report(state);
  state.SetItemsProcessed(state.iterations());
}

// Files to unlink are made in batches of 1,000 outside the timed region.
void BM_Unlink(benchmark::State& state, std::string url) {
  auto v = Open(state, url);
  if (!v) return;
  Ino dir = MustDir(state, v->meta(), kRootIno, "d");
  std::vector<std::string> pool;
  uint64_t made = 0;
  RoundTrips rt(v->meta());
  for (auto _ : state) {
    if (pool.empty()) {
      state.PauseTiming();
      for (int i = 0; i < 1000; ++i) {
        std::string name = "f" + std::to_string(made++);
        auto e = v->meta()->Mknod(kRoot, dir, name, FileType::kFile, 0644, 0);
        if (!e) return Check(state, e.error(), "mknod");
        pool.push_back(std::move(name));
      }
      state.ResumeTiming();
    }
    Status s = rt.Count([&] { return v->meta()->Unlink(kRoot, dir, pool.back()); });
    if (!s.ok()) return Check(state, s, "unlink");
    pool.pop_back();
  }
  rt.Report(state);
  state.SetItemsProcessed(state.iterations());
}

void BM_ReadDir1000(benchmark::State& state, std::string url, bool plus) {
  auto v = Open(state, url);
  if (!v) return;
  Ino dir = MustDir(state, v->meta(), kRootIno, "d");
  if (Populate(state, v->meta(), dir, 1000).empty()) return;
  std::vector<DirEntry> out;
  RoundTrips rt(v->meta());
  for (auto _ : state) {
    Status s = rt.Count([&] { return v->meta()->ReadDir(kRoot, dir, "", 0, plus, &out); });
    if (!s.ok() || out.size() != 1000) {
      return Check(
          state,
          s.ok() ? Status::IOError("readdir returned " + std::to_string(out.size()) + " entries")
                 : s,
          "readdir");
    }
  }
  rt.Report(state);
  state.SetItemsProcessed(state.iterations() * 1000);
}

void RegisterAll() {
  auto engines = kEngines;
  // A networked engine is measured when its URL is given, e.g.
  // NEXUS_META_BENCH_URL='etcd://127.0.0.1:2379/bench<tmp>' ("<tmp>" keeps volumes apart).
  if (const char* extra = getenv("NEXUS_META_BENCH_URL"); extra && *extra) {
    std::string url = extra;
    engines.emplace_back(url.substr(0, url.find(':')), url);
  }
  for (const auto& [name, url] : engines) {
    benchmark::RegisterBenchmark(("create/" + name).c_str(), BM_Create, url);
    benchmark::RegisterBenchmark(("mkdir/" + name).c_str(), BM_Mkdir, url);
    benchmark::RegisterBenchmark(("lookup/" + name).c_str(), BM_Lookup, url);
    benchmark::RegisterBenchmark(("getattr/" + name).c_str(), BM_GetAttr, url);
    benchmark::RegisterBenchmark(("setattr/" + name).c_str(), BM_SetAttr, url);
    benchmark::RegisterBenchmark(("rename/" + name).c_str(), BM_Rename, url);
    benchmark::RegisterBenchmark(("unlink/" + name).c_str(), BM_Unlink, url);
    benchmark::RegisterBenchmark(("readdir1000/" + name).c_str(), BM_ReadDir1000, url, false);
    benchmark::RegisterBenchmark(("readdirplus1000/" + name).c_str(), BM_ReadDir1000, url, true);
  }
}

}  // namespace
}  // namespace nexus::meta

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  nexus::meta::RegisterAll();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
