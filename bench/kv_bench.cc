// Latency of the kv engines' basic operations (one thread): point get in a View over 20,000
// keys, a one-put Update, an Increment and an Add Update, an Update followed by Sync (fsync),
// and a scan of 1,000 keys among 20,000 (one "directory" of twenty).
//
//   build/bench/kv_bench [--benchmark_filter=sqlite3] [--benchmark_min_time=0.5s]
//
// Each benchmark opens a fresh engine ("mem://", "rocksdb://<tmp>/rocks",
// "sqlite3://<tmp>/kv.db") in its own temporary directory, removed when it ends.
#include <benchmark/benchmark.h>
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "common/encoding.h"
#include "meta/kv/engine.h"

namespace nexus::kv {
namespace {

const std::vector<std::pair<std::string, std::string>> kEngines = {
    {"mem", "mem://"}, {"rocksdb", "rocksdb://<tmp>/rocks"}, {"sqlite3", "sqlite3://<tmp>/kv.db"}};

constexpr int kDirs = 20, kPerDir = 1000;
const std::string kValue(100, 'v');

// An engine in its own temporary directory, removed with it.
class TempEngine {
 public:
  explicit TempEngine(const std::string& url_template) {
    char tmpl[] = "/tmp/nexus-kv-bench-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) {
      error_ = "mkdtemp failed";
      return;
    }
    dir_ = tmpl;
    std::string url = url_template;
    if (size_t at = url.find("<tmp>"); at != std::string::npos) url.replace(at, 5, dir_);
    auto e = Engine::Open(url);
    if (!e) {
      error_ = e.error().ToString();
      return;
    }
    engine_ = std::move(*e);
  }
  ~TempEngine() {
    engine_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  Engine* get() const { return engine_.get(); }
  const std::string& error() const { return error_; }

 private:
  std::string dir_;
  std::string error_;
  std::unique_ptr<Engine> engine_;
};

// Key of entry `i` of directory `dir`: "d" + BE32(dir) + BE64(i), ordered like Meta's keys.
std::string EntryKey(uint32_t dir, uint64_t i) {
  std::string k = "d";
  PutBE32(&k, dir);
  PutBE64(&k, i);
  return k;
}

std::unique_ptr<TempEngine> Open(benchmark::State& state, const std::string& url) {
  auto e = std::make_unique<TempEngine>(url);
  if (!e->get()) {
    state.SkipWithError(("open " + url + ": " + e->error()).c_str());
    return nullptr;
  }
  return e;
}

bool Check(benchmark::State& state, const Status& s, const char* what) {
  if (s.ok()) return true;
  state.SkipWithError((std::string(what) + ": " + s.ToString()).c_str());
  return false;
}

// Fills kDirs directories of kPerDir entries, 1,000 keys per transaction.
bool Populate(benchmark::State& state, Engine* e) {
  for (uint32_t d = 0; d < kDirs; ++d) {
    Status s = e->Update([&](Txn& t) -> Status {
      for (uint64_t i = 0; i < kPerDir; ++i) NX_TRY(t.Put(EntryKey(d, i), kValue));
      return Status::OK();
    });
    if (!Check(state, s, "populate")) return false;
  }
  return true;
}

void BM_Get(benchmark::State& state, std::string url) {
  auto e = Open(state, url);
  if (!e || !Populate(state, e->get())) return;
  std::mt19937_64 rng(1);
  for (auto _ : state) {
    std::string key = EntryKey(rng() % kDirs, rng() % kPerDir);
    std::optional<std::string> v;
    Status s = e->get()->View([&](Txn& t) -> Status {
      NX_ASSIGN_OR_RETURN(v, t.Get(key));
      return Status::OK();
    });
    if (!Check(state, s.ok() && !v ? Status::NotFound(key) : s, "get")) return;
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_PutTxn(benchmark::State& state, std::string url) {
  auto e = Open(state, url);
  if (!e) return;
  uint64_t i = 0;
  for (auto _ : state) {
    Status s = e->get()->Update([&](Txn& t) { return t.Put(EntryKey(0, i), kValue); });
    if (!Check(state, s, "put")) return;
    ++i;
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_IncrementTxn(benchmark::State& state, std::string url) {
  auto e = Open(state, url);
  if (!e) return;
  for (auto _ : state) {
    Status s = e->get()->Update([](Txn& t) -> Status {
      NX_TRY(t.Increment("counter", 1));
      return Status::OK();
    });
    if (!Check(state, s, "increment")) return;
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_AddTxn(benchmark::State& state, std::string url) {
  auto e = Open(state, url);
  if (!e) return;
  for (auto _ : state) {
    Status s = e->get()->Update([](Txn& t) { return t.Add("counter", 1); });
    if (!Check(state, s, "add")) return;
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_PutTxnSync(benchmark::State& state, std::string url) {
  auto e = Open(state, url);
  if (!e) return;
  uint64_t i = 0;
  for (auto _ : state) {
    Status s = e->get()->Update([&](Txn& t) { return t.Put(EntryKey(0, i), kValue); });
    if (s.ok()) s = e->get()->Sync();
    if (!Check(state, s, "put+sync")) return;
    ++i;
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_Scan1000(benchmark::State& state, std::string url) {
  auto e = Open(state, url);
  if (!e || !Populate(state, e->get())) return;
  std::string prefix = "d";
  PutBE32(&prefix, kDirs / 2);
  for (auto _ : state) {
    size_t n = 0;
    Status s = e->get()->View([&](Txn& t) {
      n = 0;
      return t.ScanPrefix(prefix, 0, [&](std::string_view, std::string_view v) {
        n += v.size() == kValue.size();
        return true;
      });
    });
    if (!Check(state, s.ok() && n != kPerDir ? Status::IOError("short scan") : s, "scan")) return;
  }
  state.SetItemsProcessed(state.iterations() * kPerDir);
}

void RegisterAll() {
  for (const auto& [name, url] : kEngines) {
    benchmark::RegisterBenchmark(("get/" + name).c_str(), BM_Get, url);
    benchmark::RegisterBenchmark(("put_txn/" + name).c_str(), BM_PutTxn, url);
    benchmark::RegisterBenchmark(("increment_txn/" + name).c_str(), BM_IncrementTxn, url);
    benchmark::RegisterBenchmark(("add_txn/" + name).c_str(), BM_AddTxn, url);
    benchmark::RegisterBenchmark(("put_txn_sync/" + name).c_str(), BM_PutTxnSync, url);
    benchmark::RegisterBenchmark(("scan1000/" + name).c_str(), BM_Scan1000, url);
  }
}

}  // namespace
}  // namespace nexus::kv

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  nexus::kv::RegisterAll();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
