// The data path with a local disk cache over mem://: blocks read once are served from the disk
// cache after the objects are gone from the store, and a corrupted cache file is refetched from
// the store instead of being served.
#include <fcntl.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <random>

#include "cache/disk_cache.h"
#include "chunk/chunk_impl.h"
#include "chunk/chunk_store.h"
#include "meta/kv/engine.h"
#include "meta/meta.h"
#include "object/object_store.h"

namespace nexus::chunk {
namespace {

namespace fs = std::filesystem;

class ChunkDiskCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/nexus-chunk-disk-cache-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    auto e = kv::Engine::Open("mem://");
    ASSERT_TRUE(e);
    meta_ = meta::Meta::Create(std::move(*e));
    meta::Format f;
    f.name = "dc";
    f.block_size = 1 << 20;
    ASSERT_TRUE(meta_->Format(f, false).ok());
    auto s = object::ObjectStore::Open("mem://");
    ASSERT_TRUE(s);
    store_ = std::move(*s);
  }
  void TearDown() override {
    store_.reset();  // a file store's spare-file thread goes with it
    fs::remove_all(root_);
  }

  std::unique_ptr<ChunkStore> OpenChunks(bool cache_writes = true) {
    ChunkOptions o;
    o.cache_writes = cache_writes;
    o.block_size = 1 << 20;
    o.buffer_size = 8 << 20;
    o.mem_cache_size = 64 << 20;
    o.cache_dir = root_ + "/cache";
    o.cache_size = 256 << 20;
    o.free_space_ratio = 0.0;
    o.background = false;
    o.max_readahead = 0;  // every fetch is the reader's own: exact hit counts
    o.prefix = "dc/";
    auto c = ChunkStore::Open(meta_.get(), store_.get(), o);
    EXPECT_TRUE(c) << c.error().ToString();
    return c ? std::move(*c) : nullptr;
  }
  static cache::DiskCache* Disk(ChunkStore* c) {
    auto* impl = dynamic_cast<ChunkStoreImpl*>(c);
    return impl ? impl->disk_cache() : nullptr;
  }
  std::map<std::string, std::string> Objects() {
    std::map<std::string, std::string> out;
    auto l = store_->List("dc/chunks/", "", 10000);
    EXPECT_TRUE(l);
    for (const auto& o : l->objects) out[o.key] = *store_->Get(o.key);
    return out;
  }
  static std::string RandomBytes(size_t n, uint64_t seed) {
    std::string data(n, '\0');
    std::mt19937_64 rng(seed);
    for (auto& ch : data) ch = static_cast<char>(rng());
    return data;
  }
  // A file created (and left open) for writing; 0 on failure.
  meta::Ino NewFile(const std::string& name) {
    auto ent = meta_->Create(meta::Context{}, meta::kRootIno, name, 0644, O_WRONLY);
    EXPECT_TRUE(ent) << ent.error().ToString();
    return ent ? ent->ino : 0;
  }
  std::string ReadAll(ChunkStore* c, meta::Ino ino, size_t len) {
    std::string out(len, '\0');
    for (size_t off = 0; off < len;) {
      auto n = c->Read(ino, off, out.data() + off, std::min<size_t>(len - off, 256 << 10), len);
      EXPECT_TRUE(n) << n.error().ToString();
      if (!n || *n == 0) break;
      off += *n;
    }
    return out;
  }

  std::string root_;
  std::unique_ptr<meta::Meta> meta_;
  std::unique_ptr<object::ObjectStore> store_;
};

TEST_F(ChunkDiskCacheTest, ReadsSurviveTheStoreAndCorruptFilesAreRefetched) {
  // Three whole blocks and a partial one large enough to be fetched whole (a read of less than
  // a quarter block that misses the caches fetches only its range).
  const size_t len = (3 << 20) + (300 << 10) + 123;
  const std::string data = RandomBytes(len, 7);
  meta::Context ctx;
  const meta::Ino ino = NewFile("f");
  ASSERT_NE(ino, 0u);
  {
    auto c = OpenChunks();
    ASSERT_TRUE(c);
    ASSERT_NE(Disk(c.get()), nullptr);
    ASSERT_TRUE(c->Write(ino, 0, data.data(), data.size()).ok());
    ASSERT_TRUE(c->Flush(ino).ok());
    // Read through a fresh store so that the blocks come from the object store.
    ASSERT_TRUE(c->Shutdown().ok());
  }
  ASSERT_EQ(meta_->GetAttr(ino)->length, len);
  const auto objects = Objects();
  ASSERT_EQ(objects.size(), 4u);
  {
    auto c = OpenChunks();
    ASSERT_TRUE(c);
    EXPECT_EQ(ReadAll(c.get(), ino, len), data);
    Disk(c.get())->WaitIdle();
    EXPECT_EQ(Disk(c.get())->Stats().files, 4u);
    ASSERT_TRUE(c->Shutdown().ok());
  }
  // The store loses every block: a new client (empty memory cache) still reads the file.
  for (const auto& [key, bytes] : objects) ASSERT_TRUE(store_->Delete(key).ok());
  ASSERT_TRUE(Objects().empty());
  {
    auto c = OpenChunks();
    ASSERT_TRUE(c);
    EXPECT_EQ(Disk(c.get())->Stats().files, 4u);  // the index was rebuilt from the directory
    // Small reads first (the ranged path), then the whole file.
    for (size_t off : {size_t{5}, size_t{(2 << 20) + 4096}, len - 100}) {
      std::string buf(100, '\0');
      auto n = c->Read(ino, off, buf.data(), buf.size(), len);
      ASSERT_TRUE(n) << n.error().ToString();
      ASSERT_EQ(*n, 100u);
      EXPECT_EQ(buf, data.substr(off, 100));
    }
    EXPECT_EQ(ReadAll(c.get(), ino, len), data);
    EXPECT_GE(Disk(c.get())->Stats().hits, 3u);
    ASSERT_TRUE(c->Shutdown().ok());
  }
  // The blocks come back to the store; one cache file gets a flipped byte. The read drops the
  // file, refetches the block from the store and returns the right bytes.
  for (const auto& [key, bytes] : objects) ASSERT_TRUE(store_->Put(key, bytes).ok());
  std::vector<fs::path> files;
  for (auto& e : fs::recursive_directory_iterator(root_ + "/cache/blocks")) {
    if (e.is_regular_file()) files.push_back(e.path());
  }
  ASSERT_EQ(files.size(), 4u);
  std::sort(files.begin(), files.end());
  {
    std::fstream f(files[0], std::ios::in | std::ios::out | std::ios::binary);
    const auto at = static_cast<std::streamoff>(fs::file_size(files[0]) - 100);  // payload
    f.seekg(at);
    char b = 0;
    f.read(&b, 1);
    b = static_cast<char>(b ^ 1);
    f.seekp(at);
    f.write(&b, 1);
  }
  {
    auto c = OpenChunks();
    ASSERT_TRUE(c);
    EXPECT_EQ(ReadAll(c.get(), ino, len), data);
    Disk(c.get())->WaitIdle();
    cache::DiskCacheStats s = Disk(c.get())->Stats();
    EXPECT_EQ(s.corrupt, 1u);
    EXPECT_EQ(s.hits, 3u);
    EXPECT_EQ(s.writes, 1u);  // the refetched block is cached again
    EXPECT_EQ(s.files, 4u);
    ASSERT_TRUE(c->Shutdown().ok());
  }
  // Deleting the file deletes its blocks from the disk cache too.
  ASSERT_TRUE(meta_->Close(ino).ok());
  ASSERT_TRUE(meta_->Unlink(ctx, meta::kRootIno, "f").ok());
  {
    auto c = OpenChunks();
    ASSERT_TRUE(c);
    auto n = c->CleanupDeleted();
    ASSERT_TRUE(n) << n.error().ToString();
    EXPECT_EQ(Disk(c.get())->Stats().files, 0u);
    ASSERT_TRUE(c->Shutdown().ok());
  }
  size_t left = 0;
  for (auto& e : fs::recursive_directory_iterator(root_ + "/cache/blocks")) {
    left += e.is_regular_file();
  }
  EXPECT_EQ(left, 0u);
}

// A writer's uploaded blocks go to the disk cache as well (ChunkOptions::cache_writes): after
// Shutdown a new client reads the whole file with the objects gone from the store. With
// cache_writes off nothing written reaches the cache.
TEST_F(ChunkDiskCacheTest, WrittenBlocksAreCachedAndServeAFreshClient) {
  const size_t len = (2 << 20) + (700 << 10) + 17;  // two whole blocks and a partial one
  const std::string data = RandomBytes(len, 11);
  const meta::Ino ino = NewFile("w");
  ASSERT_NE(ino, 0u);
  {
    auto c = OpenChunks(/*cache_writes=*/false);
    ASSERT_TRUE(c);
    ASSERT_TRUE(c->Write(ino, 0, data.data(), data.size()).ok());
    ASSERT_TRUE(c->Flush(ino).ok());
    ASSERT_TRUE(c->Shutdown().ok());
    EXPECT_EQ(Disk(c.get())->Stats().writes, 0u);
    EXPECT_EQ(Disk(c.get())->Stats().files, 0u);
  }
  {
    auto c = OpenChunks();
    ASSERT_TRUE(c);
    ASSERT_TRUE(c->Write(ino, 0, data.data(), data.size()).ok());  // new slice, new blocks
    ASSERT_TRUE(c->Flush(ino).ok());
    ASSERT_TRUE(c->Shutdown().ok());  // waits for the queued cache writes
    EXPECT_EQ(Disk(c.get())->Stats().writes, 3u);
    EXPECT_EQ(Disk(c.get())->Stats().files, 3u);
  }
  // Every object goes, the first write's included: only the cache holds the second's blocks.
  for (const auto& [key, bytes] : Objects()) ASSERT_TRUE(store_->Delete(key).ok());
  {
    auto c = OpenChunks();
    ASSERT_TRUE(c);
    EXPECT_EQ(ReadAll(c.get(), ino, len), data);
    EXPECT_EQ(Disk(c.get())->Stats().hits, 3u);
    EXPECT_EQ(Disk(c.get())->Stats().misses, 0u);
    ASSERT_TRUE(c->Shutdown().ok());
  }
}

TEST_F(ChunkDiskCacheTest, UnusableCacheDirFailsOpen) {
  std::ofstream(root_ + "/file") << "x";
  ChunkOptions o;
  o.cache_dir = root_ + "/file/cache";
  o.background = false;
  auto c = ChunkStore::Open(meta_.get(), store_.get(), o);
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message().find(root_ + "/file/cache"), std::string::npos)
      << c.error().message();
}

}  // namespace
}  // namespace nexus::chunk
