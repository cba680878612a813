// The data path against an in-memory model: random writes, reads, truncates, flushes,
// compactions and reopens over several files, compared byte for byte.
//
// The "faulty" variant runs over mem:// behind a FaultyStore that fails 10% of the calls and
// delays each by up to 1 ms, under the framed format with lz4 and AES-GCM: the data path's
// retries must lose nothing. The "writeback" variant runs over the same faulty stack with
// writeback on: flushes stage blocks in a local directory and commit at once, uploads run in the
// background (and retry), reads find blocks not uploaded yet in the staging directory, and every
// reopen waits for the uploads. The "framed" variant stores blocks framed (verbatim frames) on
// file://, where large writes go into the block files in place through FrameStore's writer.
//
// NEXUS_SEED (default 1) and NEXUS_MODEL_OPS (default 100000; 20000 for "framed", 1500 for
// "faulty" and "writeback") select the run. Compactions rewrite whole chunks, so 100,000 operations
// push far more bytes through the store than they write; freed slices are deleted at every
// compaction, as the background loop would, so the store holds about the live data only. A local
// sweep:
//   for s in $(seq 1 20); do NEXUS_SEED=$s NEXUS_MODEL_OPS=100000 chunk_model_test; done
#include <fcntl.h>
#include <gtest/gtest.h>
#include <malloc.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>

#include "chunk/chunk_store.h"
#include "meta/kv/engine.h"
#include "meta/meta.h"
#include "object/block_codec.h"
#include "object/object_store.h"

namespace nexus::chunk {
namespace {

namespace fs = std::filesystem;
using meta::Ino;

// The model allocates and frees strings of up to 8 MiB all the time (25 GB in a run). glibc would
// map each large one afresh and give the heap's top back to the kernel again and again, and a
// page fault costs microseconds on the VMs this runs on: 100,000 operations took 165-250 s, of
// which most in faults. Large blocks come from the heap and stay there instead (a 20,000
// operation run on mem: 38 s before, 17 s after). The data path under test allocates its block
// buffers from a pool of its own, so this changes the speed of the harness, not what is tested.
[[maybe_unused]] const bool kMallocTuned = [] {
  mallopt(M_MMAP_THRESHOLD, 32 << 20);  // the largest glibc accepts
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  return true;
}();

uint64_t EnvOr(const char* name, uint64_t dflt) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtoull(v, nullptr, 10) : dflt;
}

// A sparse model of one file: extents of written bytes; everything else reads as zeros.
class SparseFile {
 public:
  void Write(uint64_t off, const std::string& data) {
    Punch(off, data.size());
    extents_[off] = data;
    length_ = std::max<uint64_t>(length_, off + data.size());
  }
  void Truncate(uint64_t len) {
    if (len < length_) Punch(len, length_ - len);
    length_ = len;
  }
  std::string Read(uint64_t off, size_t len) const {
    if (off >= length_) return "";
    len = std::min<uint64_t>(len, length_ - off);
    std::string out(len, '\0');
    auto it = extents_.upper_bound(off);
    if (it != extents_.begin()) --it;
    for (; it != extents_.end() && it->first < off + len; ++it) {
      uint64_t a = std::max(off, it->first), b = std::min(off + len, it->first + it->second.size());
      if (a < b) out.replace(a - off, b - a, it->second, a - it->first, b - a);
    }
    return out;
  }
  uint64_t length() const { return length_; }

 private:
  void Punch(uint64_t off, uint64_t len) {
    const uint64_t end = off + len;
    auto it = extents_.upper_bound(off);
    if (it != extents_.begin()) --it;
    while (it != extents_.end() && it->first < end) {
      uint64_t s = it->first, e = s + it->second.size();
      if (e <= off) {
        ++it;
        continue;
      }
      std::string data = std::move(it->second);
      it = extents_.erase(it);
      if (s < off) extents_[s] = data.substr(0, off - s);
      if (e > end) extents_[end] = data.substr(end - s);
    }
  }
  std::map<uint64_t, std::string> extents_;
  uint64_t length_ = 0;
};

struct Env {
  std::string dir;
  std::unique_ptr<meta::Meta> meta;
  std::unique_ptr<object::ObjectStore> store;
  object::ObjectStore* raw = nullptr;  // the backend under any layers, for listing
  std::unique_ptr<ChunkStore> chunks;
  ChunkOptions opts;

  void Open(const std::string& store_kind) {
    char tmpl[] = "/tmp/nexus-chunk-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir = tmpl;
    auto e = kv::Engine::Open("mem://");
    ASSERT_TRUE(e);
    meta = meta::Meta::Create(std::move(*e));
    meta::Format f;
    f.name = "model";
    ASSERT_TRUE(meta->Format(f, false).ok());
    const bool on_disk = store_kind == "file" || store_kind == "framed";
    auto s = object::ObjectStore::Open(on_disk ? "file://" + dir + "/data" : "mem://");
    ASSERT_TRUE(s) << s.error().ToString();
    store = std::move(*s);
    raw = store.get();
    if (store_kind == "framed") {
      store = object::NewFrameStore(std::move(store), object::FrameOptions{});
    }
    if (store_kind == "faulty" || store_kind == "writeback") {
      object::FaultOptions faults{0.1, 1000, EnvOr("NEXUS_SEED", 1)};
      object::FrameOptions frames;
      frames.compression = object::Compression::kLz4;
      frames.data_key = object::DataKey{1, 2, 3};
      store = object::NewFrameStore(object::NewFaultyStore(std::move(store), faults), frames);
    }
    opts.block_size = 1 << 20;  // small blocks: more block boundaries per byte written
    opts.buffer_size = 32 << 20;
    opts.mem_cache_size = 16 << 20;
    opts.max_uploads = 8;
    opts.background = false;  // the test decides when to flush, compact and delete
    opts.prefix = "model/";
    if (store_kind == "writeback") {
      opts.writeback = true;
      opts.cache_dir = dir + "/cache";
      opts.free_space_ratio = 0;
    }
    Reopen();
  }
  void Reopen() {
    chunks.reset();
    auto c = ChunkStore::Open(meta.get(), store.get(), opts);
    ASSERT_TRUE(c) << c.error().ToString();
    chunks = std::move(*c);
  }
  ~Env() {
    chunks.reset();
    store.reset();  // a file store's spare-file thread goes with it
    if (!dir.empty()) fs::remove_all(dir);
  }
  size_t BlockObjects() {
    auto l = raw->List("model/chunks/", "", 0);
    EXPECT_TRUE(l);
    return l ? l->objects.size() : 0;
  }
};

// Pseudo-random bytes, eight per step (splitmix64): the runs write 25 GB of them.
std::string Pattern(std::mt19937_64& rng, size_t n) {
  std::string s(n, '\0');
  uint64_t x = rng();
  for (size_t i = 0; i < n; i += 8) {
    x += 0x9E3779B97F4A7C15ULL;
    uint64_t z = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    std::memcpy(s.data() + i, &z, std::min<size_t>(8, n - i));
  }
  return s;
}

class ModelTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ModelTest, RandomOperationsMatchTheModel) {
  const std::string& kind = GetParam();
  const uint64_t default_ops = kind == "mem" || kind == "file" ? 100000
                               : kind == "framed"              ? 20000
                                                               : 1500;
  const uint64_t seed = EnvOr("NEXUS_SEED", 1), ops = EnvOr("NEXUS_MODEL_OPS", default_ops);
  Env env;
  ASSERT_NO_FATAL_FAILURE(env.Open(GetParam()));
  std::mt19937_64 rng(seed);
  constexpr int kFiles = 4;
  constexpr uint64_t kMaxOff = 300ULL << 20;
  std::vector<Ino> inos;
  std::vector<SparseFile> model(kFiles);
  meta::Context ctx;
  for (int i = 0; i < kFiles; ++i) {
    auto e = env.meta->Create(ctx, meta::kRootIno, "f" + std::to_string(i), 0644, O_RDWR);
    ASSERT_TRUE(e);
    inos.push_back(e->ino);
  }
  // Offsets cluster in a few regions so that writes overlap and chunks fragment.
  auto offset = [&]() -> uint64_t {
    uint64_t region = (rng() % 6) * (kMaxOff / 6);
    return std::min<uint64_t>(kMaxOff - 1, region + rng() % (12ULL << 20));
  };
  // Sizes log-uniform from 1 byte to 8 MiB.
  auto size = [&]() -> size_t {
    double l = std::uniform_real_distribution<double>(0, std::log(8.0 * (1 << 20)))(rng);
    return std::max<size_t>(1, static_cast<size_t>(std::exp(l)));
  };
  uint64_t writes = 0, reads = 0, bytes = 0;
  for (uint64_t op = 0; op < ops; ++op) {
    int i = static_cast<int>(rng() % kFiles);
    Ino ino = inos[i];
    uint64_t r = rng() % 100;
    if (r < 45) {  // write (sequential runs half of the time)
      uint64_t off = rng() % 2 ? std::max(model[i].length(), uint64_t(0)) % kMaxOff : offset();
      std::string data = Pattern(rng, std::min<uint64_t>(size(), kMaxOff - off));
      ASSERT_TRUE(env.chunks->Write(ino, off, data.data(), data.size()).ok()) << "op " << op;
      model[i].Write(off, data);
      ++writes;
      bytes += data.size();
    } else if (r < 85) {  // read
      uint64_t len_known = env.meta->GetAttr(ino)->length;
      uint64_t off = model[i].length() && rng() % 2 ? rng() % model[i].length() : offset();
      size_t n = size();
      std::string got(n, '\0');
      auto rd = env.chunks->Read(ino, off, got.data(), n, len_known);
      ASSERT_TRUE(rd) << "op " << op << ": " << rd.error().ToString();
      got.resize(*rd);
      ASSERT_EQ(got, model[i].Read(off, n))
          << "op " << op << " seed " << seed << " ino " << ino << " off " << off << " len " << n;
      ++reads;
    } else if (r < 91) {  // flush
      ASSERT_TRUE(env.chunks->Flush(ino).ok());
      ASSERT_EQ(env.meta->GetAttr(ino)->length, model[i].length()) << "op " << op;
    } else if (r < 96) {  // truncate
      uint64_t len = rng() % 3 == 0 ? 0 : offset();
      ASSERT_TRUE(env.chunks->Flush(ino).ok());
      ASSERT_TRUE(env.meta->Truncate(ctx, ino, len));
      env.chunks->Invalidate(ino);
      model[i].Truncate(len);
    } else if (r < 97) {  // compaction of a chunk (rewrites up to 64 MiB: the costliest op)
      ASSERT_TRUE(env.chunks->Flush(ino).ok());
      uint32_t chunk = static_cast<uint32_t>(offset() / meta::kChunkSize);
      ASSERT_TRUE(env.chunks->Compact(ino, chunk).ok()) << "op " << op;
      env.chunks->Invalidate(ino);
      // And release what truncates and compactions freed, as the background loop would: the
      // store then holds the live slices only (100,000 operations write ~25 GB in all).
      auto cleaned = env.chunks->CleanupDeleted();
      ASSERT_TRUE(cleaned) << "op " << op << ": " << cleaned.error().ToString();
    } else {  // close and reopen: a fresh data path over the same volume
      env.Reopen();
    }
  }
  // Everything reads back after a final reopen, then deleting every file frees every block.
  env.Reopen();
  for (int i = 0; i < kFiles; ++i) {
    uint64_t len = env.meta->GetAttr(inos[i])->length;
    ASSERT_EQ(len, model[i].length());
    for (uint64_t off = 0; off < len; off += 16 << 20) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(16 << 20, len - off));
      std::string got(n, '\0');
      auto rd = env.chunks->Read(inos[i], off, got.data(), n, len);
      ASSERT_TRUE(rd);
      ASSERT_EQ(got, model[i].Read(off, n)) << "final read of file " << i << " at " << off;
    }
  }
  EXPECT_GT(env.BlockObjects(), 0u);
  for (int i = 0; i < kFiles; ++i) {
    ASSERT_TRUE(env.meta->Close(inos[i]).ok());
    ASSERT_TRUE(env.meta->Unlink(ctx, meta::kRootIno, "f" + std::to_string(i)).ok());
  }
  auto cleaned = env.chunks->CleanupDeleted();
  ASSERT_TRUE(cleaned) << cleaned.error().ToString();
  env.Reopen();  // and background work has ended (writeback: uploads and their deletions)
  EXPECT_EQ(env.BlockObjects(), 0u) << "block objects left after every file was deleted";
  std::printf("[ %s ] seed %llu: %llu ops, %llu writes (%.1f MiB), %llu reads verified\n",
              GetParam().c_str(), (unsigned long long)seed, (unsigned long long)ops,
              (unsigned long long)writes, bytes / 1048576.0, (unsigned long long)reads);
}

INSTANTIATE_TEST_SUITE_P(Stores, ModelTest,
                         ::testing::Values("mem", "file", "framed", "faulty", "writeback"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace nexus::chunk
