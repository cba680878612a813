// DiskCache against a real directory: round trips, the index rebuilt at Open, LRU eviction,
// corrupt and truncated files, leftover temp files, the bounded writer queue, concurrency and
// bad directories.
#include "cache/disk_cache.h"

#include <gtest/gtest.h>
#include <unistd.h>
#include <xxhash.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>
#include <vector>

namespace nexus::cache {
namespace {

namespace fs = std::filesystem;
// Bytes on disk for a block of n bytes, and where its payload starts.
uint64_t FileSize(uint64_t n) { return DiskCache::FileSize(n); }
uint64_t PayloadAt(uint64_t n) { return DiskCache::FileSize(n) - n; }

std::shared_ptr<const std::string> Block(std::string_view key, size_t n) {
  std::string s(n, '\0');
  uint64_t x = XXH3_64bits(key.data(), key.size()) | 1;
  for (size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    s[i] = static_cast<char>(x);
  }
  return std::make_shared<const std::string>(std::move(s));
}

class DiskCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/nexus-disk-cache-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    dir_ = root_ + "/cache";
  }
  void TearDown() override { fs::remove_all(root_); }

  std::unique_ptr<DiskCache> OpenCache(uint64_t capacity = 1ULL << 30, DiskCacheOptions o = {}) {
    auto c = DiskCache::Open(dir_, capacity, 0.0, o);
    EXPECT_TRUE(c) << c.error().ToString();
    return c ? std::move(*c) : nullptr;
  }
  // The block files (not temp files) under the cache directory.
  std::vector<fs::path> Files(bool temp = false) {
    std::vector<fs::path> out;
    for (auto& e : fs::recursive_directory_iterator(dir_ + "/blocks")) {
      if (!e.is_regular_file()) continue;
      bool is_tmp = e.path().filename().string().starts_with(".tmp.");
      if (is_tmp == temp) out.push_back(e.path());
    }
    return out;
  }

  std::string root_, dir_;
};

TEST_F(DiskCacheTest, PutThenGetRoundTrips) {
  auto c = OpenCache();
  ASSERT_TRUE(c);
  auto data = Block("vol/chunks/0/0/7_0_65536", 65536);
  EXPECT_TRUE(c->Put("vol/chunks/0/0/7_0_65536", data));
  c->WaitIdle();
  auto got = c->Get("vol/chunks/0/0/7_0_65536");
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, *data);
  EXPECT_EQ(c->Get("vol/chunks/0/0/8_0_65536"), nullptr);
  DiskCacheStats s = c->Stats();
  EXPECT_EQ(s.hits, 1u);
  EXPECT_EQ(s.misses, 1u);
  EXPECT_EQ(s.files, 1u);
  EXPECT_EQ(s.writes, 1u);
  EXPECT_EQ(s.bytes, FileSize(65536));
  EXPECT_EQ(Files().size(), 1u);
  // Blocks are immutable: a second Put of a cached key writes nothing.
  EXPECT_TRUE(c->Put("vol/chunks/0/0/7_0_65536", data));
  c->WaitIdle();
  EXPECT_EQ(c->Stats().writes, 1u);
  // An empty block is a valid block.
  EXPECT_TRUE(c->Put("empty", std::make_shared<const std::string>()));
  c->WaitIdle();
  auto empty = c->Get("empty");
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->empty());
}

TEST_F(DiskCacheTest, IndexIsRebuiltAcrossReopen) {
  const std::vector<std::string> keys = {"vol/chunks/0/0/1_0_4096", "odd%name/with%2Fescapes",
                                         ".starts-with-dot", "plain"};
  {
    auto c = OpenCache();
    ASSERT_TRUE(c);
    for (auto& k : keys) EXPECT_TRUE(c->Put(k, Block(k, 4096 + k.size())));
    c->WaitIdle();
    EXPECT_EQ(c->Stats().files, keys.size());
  }
  auto c = OpenCache();
  ASSERT_TRUE(c);
  DiskCacheStats s = c->Stats();
  EXPECT_EQ(s.files, keys.size());
  uint64_t want_bytes = 0;
  for (auto& k : keys) want_bytes += FileSize(4096 + k.size());
  EXPECT_EQ(s.bytes, want_bytes);
  for (auto& k : keys) {
    auto got = c->Get(k);
    ASSERT_TRUE(got) << k;
    EXPECT_EQ(*got, *Block(k, 4096 + k.size())) << k;
  }
  // A second process (or a second Open) of the same directory is refused.
  auto again = DiskCache::Open(dir_, 1 << 20, 0.0);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code(), EBUSY);
}

TEST_F(DiskCacheTest, EvictsLeastRecentlyUsedByBytes) {
  const uint64_t n = 64 << 10;
  auto c = OpenCache(3 * FileSize(n));
  ASSERT_TRUE(c);
  for (std::string k : {"a", "b", "c"}) {
    ASSERT_TRUE(c->Put(k, Block(k, n)));
    c->WaitIdle();
  }
  ASSERT_TRUE(c->Get("a"));  // b is now the least recently used
  ASSERT_TRUE(c->Put("d", Block("d", n)));
  c->WaitIdle();
  EXPECT_EQ(c->Get("b"), nullptr);
  for (std::string k : {"a", "c", "d"}) {
    auto got = c->Get(k);
    ASSERT_TRUE(got) << k;
    EXPECT_EQ(*got, *Block(k, n));
  }
  DiskCacheStats s = c->Stats();
  EXPECT_EQ(s.evictions, 1u);
  EXPECT_EQ(s.files, 3u);
  EXPECT_EQ(s.corrupt, 0u);
  EXPECT_EQ(Files().size(), 3u);  // the evicted file is gone from the disk
  // A block larger than the whole cache is not taken.
  EXPECT_FALSE(c->Put("huge", Block("huge", 4 * n)));
  c.reset();
  // Reopening with a smaller capacity evicts down to it at once.
  c = OpenCache(2 * FileSize(n));
  ASSERT_TRUE(c);
  EXPECT_EQ(c->Stats().files, 2u);
  EXPECT_LE(c->Stats().bytes, 2 * FileSize(n));
  EXPECT_EQ(Files().size(), 2u);
}

TEST_F(DiskCacheTest, RangedReadsVerifyOnlyTheirSegments) {
  auto c = OpenCache();
  ASSERT_TRUE(c);
  const size_t n = (4 << 20) + 1000;  // 256 segments of 16 KiB and a short one
  auto data = Block("r", n);
  ASSERT_TRUE(c->Put("r", data));
  c->WaitIdle();
  std::string buf(70000, '\0');
  for (auto [off, len] : std::vector<std::pair<size_t, size_t>>{
           {0, 4096}, {16383, 2}, {(1 << 20) + 5, 70000}, {n - 1500, 1500}, {n, 0}, {12, 0}}) {
    ASSERT_TRUE(c->ReadRange("r", off, len, buf.data())) << off;
    EXPECT_EQ(buf.substr(0, len), data->substr(off, len)) << off;
  }
  EXPECT_FALSE(c->ReadRange("r", n - 10, 11, buf.data()));  // past the end: a miss
  EXPECT_FALSE(c->ReadRange("nope", 0, 10, buf.data()));
  EXPECT_EQ(c->Stats().corrupt, 0u);
  EXPECT_EQ(c->Stats().files, 1u);
  // A flipped byte in segment 100: reads of other segments are still served (their checksums
  // hold), a read that touches segment 100 drops the file.
  auto files = Files();
  ASSERT_EQ(files.size(), 1u);
  {
    std::fstream f(files[0], std::ios::in | std::ios::out | std::ios::binary);
    const uint64_t at = PayloadAt(n) + 100 * (16 << 10) + 7;
    f.seekg(at);
    char b = 0;
    f.read(&b, 1);
    b = static_cast<char>(b ^ 0x40);
    f.seekp(at);
    f.write(&b, 1);
  }
  ASSERT_TRUE(c->ReadRange("r", 99 * (16 << 10), 4096, buf.data()));
  EXPECT_EQ(buf.substr(0, 4096), data->substr(99 * (16 << 10), 4096));
  EXPECT_FALSE(c->ReadRange("r", 100 * (16 << 10) - 10, 4096, buf.data()));
  EXPECT_EQ(c->Stats().corrupt, 1u);
  EXPECT_EQ(c->Stats().files, 0u);
  EXPECT_TRUE(Files().empty());
}

TEST_F(DiskCacheTest, RemoveDeletesTheFile) {
  auto c = OpenCache();
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->Put("k", Block("k", 1000)));
  c->WaitIdle();
  ASSERT_EQ(Files().size(), 1u);
  c->Remove("k");
  EXPECT_EQ(c->Get("k"), nullptr);
  EXPECT_EQ(Files().size(), 0u);
  EXPECT_EQ(c->Stats().bytes, 0u);
  c->Remove("never-there");
}

TEST_F(DiskCacheTest, CorruptFileIsDroppedAndReportedAsMiss) {
  auto c = OpenCache();
  ASSERT_TRUE(c);
  for (std::string k : {"payload-flip", "header-flip"}) {
    ASSERT_TRUE(c->Put(k, Block(k, 8192)));
  }
  c->WaitIdle();
  auto files = Files();
  ASSERT_EQ(files.size(), 2u);
  for (const auto& p : files) {
    // A byte of the payload in one file, a byte of the length field in the other.
    std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(p.filename() == "payload-flip" ? PayloadAt(8192) + 4000 : 13);
    char b = 0;
    f.read(&b, 1);
    f.seekp(p.filename() == "payload-flip" ? PayloadAt(8192) + 4000 : 13);
    b = static_cast<char>(b ^ 0x20);
    f.write(&b, 1);
  }
  EXPECT_EQ(c->Get("payload-flip"), nullptr);
  EXPECT_EQ(c->Get("header-flip"), nullptr);
  DiskCacheStats s = c->Stats();
  EXPECT_EQ(s.corrupt, 2u);
  EXPECT_EQ(s.hits, 0u);
  EXPECT_EQ(s.misses, 2u);
  EXPECT_EQ(s.files, 0u);
  EXPECT_EQ(s.bytes, 0u);
  EXPECT_TRUE(Files().empty());
  // The key can be cached again.
  ASSERT_TRUE(c->Put("payload-flip", Block("payload-flip", 8192)));
  c->WaitIdle();
  auto got = c->Get("payload-flip");
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, *Block("payload-flip", 8192));
}

TEST_F(DiskCacheTest, TruncatedFileIsDropped) {
  {
    auto c = OpenCache();
    ASSERT_TRUE(c);
    ASSERT_TRUE(c->Put("half", Block("half", 8192)));
    ASSERT_TRUE(c->Put("headless", Block("headless", 8192)));
    c->WaitIdle();
  }
  for (const auto& p : Files()) {
    fs::resize_file(p, p.filename() == "half" ? PayloadAt(8192) + 4096 : 10);
  }
  // Truncated while closed: the rebuilt index takes the files, the reads drop them.
  auto c = OpenCache();
  ASSERT_TRUE(c);
  EXPECT_EQ(c->Stats().files, 2u);
  EXPECT_EQ(c->Get("half"), nullptr);
  EXPECT_EQ(c->Get("headless"), nullptr);
  EXPECT_EQ(c->Stats().corrupt, 2u);
  EXPECT_EQ(c->Stats().files, 0u);
  EXPECT_TRUE(Files().empty());
  // Truncated while open.
  ASSERT_TRUE(c->Put("live", Block("live", 8192)));
  c->WaitIdle();
  ASSERT_EQ(Files().size(), 1u);
  fs::resize_file(Files()[0], FileSize(8192) - 1);
  EXPECT_EQ(c->Get("live"), nullptr);
  EXPECT_EQ(c->Stats().corrupt, 3u);
}

TEST_F(DiskCacheTest, LeftoverTempFilesAreRemovedAtOpen) {
  {
    auto c = OpenCache();
    ASSERT_TRUE(c);
    ASSERT_TRUE(c->Put("kept", Block("kept", 1000)));
    c->WaitIdle();
  }
  for (std::string sub : {"00", "7f", "ff"}) {
    fs::create_directories(dir_ + "/blocks/" + sub);
    std::ofstream(dir_ + "/blocks/" + sub + "/.tmp.999.1") << "half a block";
  }
  std::ofstream(dir_ + "/blocks/00/not-ours-%zz") << "foreign";
  ASSERT_EQ(Files(true).size(), 3u);
  auto c = OpenCache();
  ASSERT_TRUE(c);
  EXPECT_TRUE(Files(true).empty());
  EXPECT_EQ(c->Stats().files, 1u);  // the foreign file is neither indexed nor deleted
  EXPECT_TRUE(fs::exists(dir_ + "/blocks/00/not-ours-%zz"));
  EXPECT_TRUE(c->Get("kept"));
}

TEST_F(DiskCacheTest, FullQueueDropsWritesInsteadOfBlocking) {
  DiskCacheOptions o;
  o.writers = 1;
  o.max_pending = 1;
  auto c = OpenCache(1ULL << 30, o);
  ASSERT_TRUE(c);
  constexpr int kBlocks = 200;
  std::vector<std::shared_ptr<const std::string>> blocks;
  for (int i = 0; i < kBlocks; ++i) blocks.push_back(Block("q" + std::to_string(i), 1 << 20));
  int accepted = 0;
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < kBlocks; ++i) accepted += c->Put("q" + std::to_string(i), blocks[i]);
  auto took = std::chrono::steady_clock::now() - start;
  // 200 MiB cannot be written in the time 200 Puts take unless they wait: they must not.
  EXPECT_LT(took, std::chrono::milliseconds(500));
  c->WaitIdle();
  DiskCacheStats s = c->Stats();
  EXPECT_GT(s.dropped_writes, 0u);
  EXPECT_LT(accepted, kBlocks);
  EXPECT_EQ(s.writes + s.dropped_writes, static_cast<uint64_t>(kBlocks));
  EXPECT_EQ(s.files, s.writes);
  for (int i = 0; i < kBlocks; ++i) {
    auto got = c->Get("q" + std::to_string(i));
    if (got) {
      EXPECT_EQ(*got, *blocks[i]);
    }
  }
}

TEST_F(DiskCacheTest, ShutdownDropsPendingWritesCleanly) {
  DiskCacheOptions o;
  o.writers = 1;
  o.max_pending = 64;
  auto block = Block("s", 1 << 20);
  {
    auto c = OpenCache(1ULL << 30, o);
    ASSERT_TRUE(c);
    for (int i = 0; i < 64; ++i) c->Put("s" + std::to_string(i), block);
  }  // destroyed with most writes still queued
  EXPECT_TRUE(Files(true).empty());
  auto c = OpenCache();
  ASSERT_TRUE(c);
  EXPECT_LT(c->Stats().files, 64u);
  for (int i = 0; i < 64; ++i) {
    auto got = c->Get("s" + std::to_string(i));
    if (got) {
      EXPECT_EQ(*got, *block);
    }
  }
  EXPECT_EQ(c->Stats().corrupt, 0u);
}

TEST_F(DiskCacheTest, ConcurrentGetPutRemoveServeOnlyRightBytes) {
  constexpr int kKeys = 40, kThreads = 4, kOps = 1500;
  constexpr size_t kSize = 16 << 10;
  auto c = OpenCache(12 * FileSize(kSize));
  ASSERT_TRUE(c);
  std::vector<std::shared_ptr<const std::string>> blocks;
  for (int i = 0; i < kKeys; ++i) blocks.push_back(Block("c" + std::to_string(i), kSize));
  // Filled first so that the readers find blocks even if the first writes are slow.
  for (int i = 0; i < 12; ++i) c->Put("c" + std::to_string(i), blocks[i]);
  c->WaitIdle();
  std::atomic<int> wrong{0}, hits{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int op = 0; op < kOps; ++op) {
        int k = static_cast<int>(rng() % kKeys);
        std::string key = "c" + std::to_string(k);
        // A Remove discards the write of its key under way, so removes are rare enough for
        // most writes to land.
        const unsigned dice = rng() % 100;
        if (dice < 60) {
          if (auto got = c->Get(key)) {
            hits++;
            if (*got != *blocks[k]) wrong++;
          }
        } else if (dice < 97) {
          c->Put(key, blocks[k]);
        } else {
          c->Remove(key);
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  c->WaitIdle();
  DiskCacheStats s = c->Stats();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_GT(hits.load(), 0) << s.writes << " writes, " << s.dropped_writes << " dropped, "
                            << s.evictions << " evictions";
  EXPECT_EQ(s.corrupt, 0u);
  EXPECT_LE(s.bytes, 12 * FileSize(kSize));
  EXPECT_EQ(s.bytes, s.files * FileSize(kSize));
  EXPECT_EQ(Files().size(), s.files);  // no file outlives its index entry, none is missing
  EXPECT_TRUE(Files(true).empty());
}

TEST_F(DiskCacheTest, FreeSpaceRatioKeepsTheDiskFree) {
  // Asking for (almost) the whole file system to stay free leaves the cache no room.
  auto c = DiskCache::Open(dir_, 1ULL << 30, 0.9999);
  ASSERT_TRUE(c) << c.error().ToString();
  (*c)->Put("k", Block("k", 4096));
  (*c)->WaitIdle();
  EXPECT_EQ((*c)->Stats().files, 0u);
  EXPECT_EQ((*c)->Stats().dropped_writes, 1u);
  EXPECT_TRUE(Files().empty());
}

TEST_F(DiskCacheTest, BadDirectoryIsAClearError) {
  fs::create_directories(root_);
  std::ofstream(root_ + "/a-file") << "x";
  auto r = DiskCache::Open(root_ + "/a-file/cache", 1 << 20, 0.1);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find(root_ + "/a-file/cache"), std::string::npos)
      << r.error().message();
  auto empty = DiskCache::Open("", 1 << 20, 0.1);
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error().code(), EINVAL);
  auto ratio = DiskCache::Open(dir_, 1 << 20, 1.5);
  ASSERT_FALSE(ratio);
  EXPECT_EQ(ratio.error().code(), EINVAL);
}

}  // namespace
}  // namespace nexus::cache
