// Throughput of the framed block format per stack on 4 MiB blocks, and the cost of a 4 KiB
// ranged read (time and GETs to the backend), over mem:// so that only the codec is measured.
//
//   build/bench/codec_bench --benchmark_min_time=0.5s
//
// Data: "text" compresses about 4:1 (log-like lines), "random" not at all.
#include <benchmark/benchmark.h>

#include <atomic>
#include <random>

#include "object/block_codec.h"
#include "object/stores.h"

namespace nexus::object {
namespace {

constexpr size_t kBlock = 4 << 20;

const std::string& Data(bool random) {
  static const std::string text = [] {
    std::string s;
    std::mt19937_64 rng(1);
    while (s.size() < kBlock) {
      s += "2026-01-01T00:00:" + std::to_string(rng() % 60) + " host" + std::to_string(rng() % 8) +
           " request id=" + std::to_string(rng()) +
           " status=200 bytes=" + std::to_string(rng() % 100000) + "\n";
    }
    s.resize(kBlock);
    return s;
  }();
  static const std::string noise = [] {
    std::string s(kBlock, '\0');
    std::mt19937_64 rng(2);
    for (auto& c : s) c = static_cast<char>(rng());
    return s;
  }();
  return random ? noise : text;
}

FrameOptions Stack(int stack) {
  FrameOptions o;
  if (stack == 1) o.compression = Compression::kLz4;
  if (stack == 2) o.compression = Compression::kZstd;
  if (stack >= 3) o.data_key = DataKey{1, 2, 3};
  if (stack == 4) o.compression = Compression::kLz4;
  if (stack == 5) o.compression = Compression::kZstd;
  return o;
}
const char* kStackNames[] = {"frames", "lz4", "zstd", "aes", "lz4+aes", "zstd+aes"};

void BM_Encode(benchmark::State& state) {
  BlockCodec codec(Stack(static_cast<int>(state.range(0))));
  const std::string& data = Data(state.range(1));
  size_t stored = 0;
  for (auto _ : state) {
    auto out = codec.Encode("vol/chunks/0/0/1_0_4194304", data);
    stored = out->size();
    benchmark::DoNotOptimize(out);
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * kBlock);
  state.counters["ratio"] = double(stored) / kBlock;
  state.SetLabel(std::string(kStackNames[state.range(0)]) + (state.range(1) ? " random" : " text"));
}

void BM_Decode(benchmark::State& state) {
  BlockCodec codec(Stack(static_cast<int>(state.range(0))));
  const std::string key = "vol/chunks/0/0/1_0_4194304";
  const std::string object = *codec.Encode(key, Data(state.range(1)));
  for (auto _ : state) {
    auto out = codec.Decode(key, object);
    benchmark::DoNotOptimize(out);
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * kBlock);
  state.SetLabel(std::string(kStackNames[state.range(0)]) + (state.range(1) ? " random" : " text"));
}

// Counts the GETs that reach the backend.
class CountingStore final : public ObjectStore {
 public:
  explicit CountingStore(std::unique_ptr<ObjectStore> s) : s_(std::move(s)) {}
  Status Put(std::string_view k, std::string_view d) override { return s_->Put(k, d); }
  Result<std::string> Get(std::string_view k, uint64_t o, uint64_t l) override {
    gets++;
    return s_->Get(k, o, l);
  }
  Result<ObjectInfo> Head(std::string_view k) override { return s_->Head(k); }
  Status Delete(std::string_view k) override { return s_->Delete(k); }
  Result<ListResult> List(std::string_view p, std::string_view m, size_t l) override {
    return s_->List(p, m, l);
  }
  std::string Name() const override { return s_->Name(); }
  std::atomic<uint64_t> gets{0};

 private:
  std::unique_ptr<ObjectStore> s_;
};

// A 4 KiB read at a random offset of one of 64 stored 4 MiB blocks; range(1) = 1: the header
// cache is off, so every read also fetches the header and table (a cold block).
void BM_Ranged4K(benchmark::State& state) {
  FrameOptions o = Stack(static_cast<int>(state.range(0)));
  if (state.range(1)) o.header_cache_entries = 0;
  auto counting = std::make_unique<CountingStore>(NewMemStore());
  CountingStore* c = counting.get();
  auto store = NewFrameStore(std::move(counting), o);
  constexpr int kObjects = 64;
  for (int i = 0; i < kObjects; ++i) (void)store->Put("b/" + std::to_string(i), Data(false));
  std::mt19937_64 rng(3);
  c->gets = 0;
  for (auto _ : state) {
    auto got = store->Get("b/" + std::to_string(rng() % kObjects), rng() % (kBlock - 4096), 4096);
    benchmark::DoNotOptimize(got);
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * 4096);
  state.counters["gets_per_read"] = double(c->gets) / double(state.iterations());
  state.SetLabel(std::string(kStackNames[state.range(0)]) +
                 (state.range(1) ? " cold header" : " cached header"));
}

BENCHMARK(BM_Encode)->ArgsProduct({{0, 1, 2, 3, 4, 5}, {0, 1}})->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Decode)->ArgsProduct({{0, 1, 2, 3, 4, 5}, {0, 1}})->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Ranged4K)->ArgsProduct({{0, 2, 5}, {0, 1}})->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace nexus::object

BENCHMARK_MAIN();
