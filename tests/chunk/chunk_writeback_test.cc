// Writeback (ChunkOptions::writeback): a flush stages the blocks it would wait for in the cache
// directory and commits at once; the blocks upload in the background. Over mem:// behind a
// wrapper whose Puts fail while the test says the store is down (an outage).
#include <fcntl.h>
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "chunk/chunk_impl.h"
#include "chunk/chunk_store.h"
#include "meta/kv/engine.h"
#include "meta/meta.h"
#include "object/object_store.h"

namespace nexus::chunk {
namespace {

namespace fs = std::filesystem;

// mem:// whose Puts fail with EIO while `down` is set (fault injection: an object-store outage).
class OutageStore final : public object::ObjectStore {
 public:
  explicit OutageStore(std::unique_ptr<object::ObjectStore> inner) : inner_(std::move(inner)) {}
  Status Put(std::string_view key, std::string_view data) override {
    puts++;
    if (down) return Status::IOError("store is down (test outage)");
    return inner_->Put(key, data);
  }
  Result<std::string> Get(std::string_view key, uint64_t off, uint64_t len) override {
    return inner_->Get(key, off, len);
  }
  Result<object::ObjectInfo> Head(std::string_view key) override { return inner_->Head(key); }
  Status Delete(std::string_view key) override { return inner_->Delete(key); }
  Result<object::ListResult> List(std::string_view prefix, std::string_view marker,
                                  size_t limit) override {
    return inner_->List(prefix, marker, limit);
  }
  std::string Name() const override { return "outage+" + inner_->Name(); }

  std::atomic<bool> down{false};
  std::atomic<int> puts{0};

 private:
  std::unique_ptr<object::ObjectStore> inner_;
};

std::string Bytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

class WritebackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/nexus-writeback-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    auto e = kv::Engine::Open("mem://");
    ASSERT_TRUE(e);
    meta_ = meta::Meta::Create(std::move(*e));
    meta::Format f;
    f.name = "wb";
    f.block_size = 1 << 20;
    ASSERT_TRUE(meta_->Format(f, false).ok());
    auto s = object::ObjectStore::Open("mem://");
    ASSERT_TRUE(s);
    store_ = std::make_unique<OutageStore>(std::move(*s));
  }
  void TearDown() override {
    store_.reset();  // a file store's spare-file thread goes with it
    fs::remove_all(root_);
  }

  ChunkOptions Options(bool writeback = true) {
    ChunkOptions o;
    o.block_size = 1 << 20;
    o.buffer_size = 8 << 20;
    o.mem_cache_size = 0;  // every read past the write buffer goes to staging or the store
    o.cache_dir = root_ + "/cache";
    o.free_space_ratio = 0.0;
    o.background = false;
    o.max_readahead = 0;
    o.prefix = "wb/";
    o.writeback = writeback;
    o.writeback_drain_stall_ns = 300'000'000;
    return o;
  }
  std::unique_ptr<ChunkStore> Open(const ChunkOptions& o) {
    auto c = ChunkStore::Open(meta_.get(), store_.get(), o);
    EXPECT_TRUE(c) << c.error().ToString();
    return c ? std::move(*c) : nullptr;
  }
  static Staging* StagingOf(ChunkStore* c) {
    auto* impl = dynamic_cast<ChunkStoreImpl*>(c);
    return impl ? impl->staging() : nullptr;
  }
  size_t Objects() {
    auto l = store_->List("wb/chunks/", "", 0);
    EXPECT_TRUE(l);
    return l ? l->objects.size() : 0;
  }
  size_t StagedFiles() {
    size_t n = 0;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(root_ + "/cache/staging", ec)) {
      (void)e;
      ++n;
    }
    return n;
  }
  meta::Ino NewFile(const std::string& name) {
    meta::Context ctx;
    auto ent = meta_->Create(ctx, meta::kRootIno, name, 0644, O_RDWR);
    EXPECT_TRUE(ent);
    return ent ? ent->ino : 0;
  }
  std::string ReadAll(ChunkStore* c, meta::Ino ino) {
    const uint64_t len = meta_->GetAttr(ino)->length;
    std::string out(len, '\0');
    auto n = c->Read(ino, 0, out.data(), len, len);
    if (!n) return "error: " + n.error().ToString();
    out.resize(*n);
    return out;
  }
  // A reader with no staging directory and no caches: only what is in the store.
  std::string ReadFromStore(meta::Ino ino) {
    ChunkOptions o = Options(false);
    o.cache_dir.clear();
    auto c = Open(o);
    return c ? ReadAll(c.get(), ino) : "";
  }

  std::string root_;
  std::unique_ptr<meta::Meta> meta_;
  std::unique_ptr<OutageStore> store_;
};

TEST_F(WritebackTest, NeedsACacheDirectory) {
  ChunkOptions o = Options();
  o.cache_dir.clear();
  auto c = ChunkStore::Open(meta_.get(), store_.get(), o);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code(), EINVAL);
  EXPECT_NE(c.error().message().find("cache"), std::string::npos) << c.error().ToString();
}

TEST_F(WritebackTest, FlushCommitsDuringAnOutageAndTheBlocksUploadAfterIt) {
  const meta::Ino small = NewFile("small"), big = NewFile("big");
  const std::string a = Bytes(100 << 10, 1);
  const std::string b = Bytes((2 << 20) + 5000, 2);  // two whole blocks and a partial one
  auto c = Open(Options());
  ASSERT_TRUE(c);
  ASSERT_NE(StagingOf(c.get()), nullptr);

  // The store is down: a flush of data that fills no block needs no upload at all.
  store_->down = true;
  ASSERT_TRUE(c->Write(small, 0, a.data(), a.size()).ok());
  ASSERT_TRUE(c->Flush(small).ok());
  ASSERT_TRUE(c->Sync().ok());
  EXPECT_EQ(meta_->GetAttr(small)->length, a.size());
  EXPECT_EQ(Objects(), 0u);
  EXPECT_EQ(StagingOf(c.get())->Stats().blocks, 1u);
  EXPECT_EQ(StagedFiles(), 1u);
  // No memory cache: the read is served from the staged file.
  EXPECT_EQ(ReadAll(c.get(), small), a);

  // Once the uploader has met the outage, the store comes back: the staged block uploads (after
  // its retry delay) and the staged file goes.
  for (int i = 0; i < 500 && StagingOf(c.get())->Stats().upload_errors == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  store_->down = false;
  ASSERT_TRUE(StagingOf(c.get())->Drain(10'000'000'000).ok());
  EXPECT_EQ(StagedFiles(), 0u);
  EXPECT_EQ(Objects(), 1u);
  EXPECT_GE(StagingOf(c.get())->Stats().upload_errors, 1u);

  // Whole blocks written before the flush upload directly; the flush stages the partial one.
  ASSERT_TRUE(c->Write(big, 0, b.data(), b.size()).ok());
  ASSERT_TRUE(c->Flush(big).ok());
  EXPECT_EQ(ReadAll(c.get(), big), b);
  ASSERT_TRUE(c->Shutdown().ok());  // waits for the uploads
  EXPECT_EQ(StagedFiles(), 0u);
  EXPECT_EQ(Objects(), 4u);
  EXPECT_EQ(ReadFromStore(small), a);
  EXPECT_EQ(ReadFromStore(big), b);
}

TEST_F(WritebackTest, BlocksLeftStagedUploadAtTheNextStart) {
  const meta::Ino ino = NewFile("f");
  const std::string a = Bytes(300 << 10, 3);
  store_->down = true;
  {
    auto c = Open(Options());
    ASSERT_TRUE(c);
    ASSERT_TRUE(c->Write(ino, 0, a.data(), a.size()).ok());
    ASSERT_TRUE(c->Flush(ino).ok());
    // Shutdown gives up once no upload succeeded for the stall time, and says so.
    Status s = c->Shutdown();
    EXPECT_FALSE(s.ok());
    EXPECT_NE(s.message().find("staged"), std::string::npos) << s.ToString();
  }
  EXPECT_EQ(StagedFiles(), 1u);
  EXPECT_EQ(Objects(), 0u);
  // A leftover temp file of a stage cut short is removed, not uploaded.
  { std::ofstream(root_ + "/cache/staging/.tmp.1.1") << "partial"; }
  store_->down = false;
  {
    auto c = Open(Options());
    ASSERT_TRUE(c);
    EXPECT_EQ(StagingOf(c.get())->Stats().recovered, 1u);
    EXPECT_EQ(ReadAll(c.get(), ino), a);
    ASSERT_TRUE(c->Shutdown().ok());
  }
  EXPECT_EQ(StagedFiles(), 0u);
  EXPECT_EQ(Objects(), 1u);
  EXPECT_EQ(ReadFromStore(ino), a);
}

TEST_F(WritebackTest, DeletedDataIsNeitherKeptNorUploaded) {
  const meta::Ino ino = NewFile("doomed");
  const std::string a = Bytes(200 << 10, 4);
  store_->down = true;
  auto c = Open(Options());
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->Write(ino, 0, a.data(), a.size()).ok());
  ASSERT_TRUE(c->Flush(ino).ok());
  EXPECT_EQ(StagedFiles(), 1u);
  meta::Context ctx;
  ASSERT_TRUE(meta_->Close(ino).ok());
  ASSERT_TRUE(meta_->Unlink(ctx, meta::kRootIno, "doomed").ok());
  auto cleaned = c->CleanupDeleted();
  ASSERT_TRUE(cleaned) << cleaned.error().ToString();
  EXPECT_EQ(*cleaned, 1u);
  // An upload attempt may be under way (failing: the store is down); the block goes when it
  // ends. Drain fails after the stall time if the block is still staged.
  EXPECT_TRUE(StagingOf(c.get())->Drain(5'000'000'000).ok());
  EXPECT_EQ(StagedFiles(), 0u);
  EXPECT_EQ(StagingOf(c.get())->Stats().blocks, 0u);
  store_->down = false;
  ASSERT_TRUE(c->Shutdown().ok());
  EXPECT_EQ(Objects(), 0u);
}

TEST_F(WritebackTest, AnUploadDelayLetsDeletedDataSkipTheStoreAndShutdownDoesNotWaitItOut) {
  ChunkOptions o = Options();
  o.writeback_upload_delay_ns = 3600'000'000'000;  // an hour
  const meta::Ino tmp = NewFile("tmp"), kept = NewFile("kept");
  const std::string a = Bytes(30 << 10, 7), b = Bytes(40 << 10, 8);
  auto c = Open(o);
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->Write(tmp, 0, a.data(), a.size()).ok());
  ASSERT_TRUE(c->Flush(tmp).ok());
  ASSERT_TRUE(c->Write(kept, 0, b.data(), b.size()).ok());
  ASSERT_TRUE(c->Flush(kept).ok());
  EXPECT_EQ(StagedFiles(), 2u);
  // A temporary file deleted within the delay: its block never reaches the store.
  meta::Context ctx;
  ASSERT_TRUE(meta_->Close(tmp).ok());
  ASSERT_TRUE(meta_->Unlink(ctx, meta::kRootIno, "tmp").ok());
  ASSERT_TRUE(c->CleanupDeleted());
  EXPECT_EQ(StagedFiles(), 1u);
  EXPECT_EQ(store_->puts.load(), 0);
  EXPECT_EQ(ReadAll(c.get(), kept), b);
  // Shutdown uploads the rest at once instead of waiting an hour.
  ASSERT_TRUE(c->Shutdown().ok());
  EXPECT_EQ(store_->puts.load(), 1);
  EXPECT_EQ(Objects(), 1u);
  EXPECT_EQ(StagedFiles(), 0u);
  EXPECT_EQ(ReadFromStore(kept), b);
}

TEST_F(WritebackTest, ADamagedStagedBlockIsNeverServedNorUploaded) {
  const meta::Ino ino = NewFile("f");
  const std::string a = Bytes(64 << 10, 5);
  store_->down = true;
  auto c = Open(Options());
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->Write(ino, 0, a.data(), a.size()).ok());
  ASSERT_TRUE(c->Flush(ino).ok());
  ASSERT_EQ(StagedFiles(), 1u);
  for (const auto& e : fs::directory_iterator(root_ + "/cache/staging")) {
    std::fstream f(e.path(), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(24 + 1000);
    f.put('\x5a' ^ a[1000]);
  }
  std::string got(a.size(), '\0');
  auto n = c->Read(ino, 0, got.data(), got.size(), a.size());
  ASSERT_FALSE(n) << "a damaged staged block was served";
  EXPECT_EQ(n.error().code(), EIO) << n.error().ToString();
  store_->down = false;
  ASSERT_TRUE(c->Shutdown().ok());
  EXPECT_EQ(Objects(), 0u);
  EXPECT_EQ(StagedFiles(), 0u);
}

// A staged block, once uploaded, moves to the disk cache (ChunkOptions::cache_writes): a new
// client reads it from there with the object gone from the store. Not with cache_writes off.
TEST_F(WritebackTest, AnUploadedStagedBlockMovesToTheDiskCache) {
  const meta::Ino ino = NewFile("f");
  const std::string a = Bytes(70 << 10, 9);
  for (bool cache_writes : {false, true}) {
    SCOPED_TRACE(cache_writes ? "cache_writes on" : "cache_writes off");
    ChunkOptions o = Options();
    o.cache_writes = cache_writes;
    auto c = Open(o);
    ASSERT_TRUE(c);
    ASSERT_TRUE(c->Write(ino, 0, a.data(), a.size()).ok());
    ASSERT_TRUE(c->Flush(ino).ok());
    ASSERT_TRUE(StagingOf(c.get())->Drain(10'000'000'000).ok());
    ASSERT_TRUE(c->Shutdown().ok());  // and the disk cache's queue
    auto* impl = dynamic_cast<ChunkStoreImpl*>(c.get());
    ASSERT_NE(impl, nullptr);
    EXPECT_EQ(impl->disk_cache()->Stats().files, cache_writes ? 1u : 0u);
    EXPECT_EQ(StagedFiles(), 0u);
  }
  auto l = store_->List("wb/chunks/", "", 0);
  ASSERT_TRUE(l);
  for (const auto& obj : l->objects) ASSERT_TRUE(store_->Delete(obj.key).ok());
  auto c = Open(Options(false));
  ASSERT_TRUE(c);
  EXPECT_EQ(ReadAll(c.get(), ino), a);
  ASSERT_TRUE(c->Shutdown().ok());
}

TEST_F(WritebackTest, AFailedStageFallsBackToADirectUpload) {
  const meta::Ino ino = NewFile("f");
  const std::string a = Bytes(50 << 10, 6);
  auto c = Open(Options());
  ASSERT_TRUE(c);
  fs::remove_all(root_ + "/cache/staging");  // staging cannot write any more
  ASSERT_TRUE(c->Write(ino, 0, a.data(), a.size()).ok());
  ASSERT_TRUE(c->Flush(ino).ok());
  EXPECT_EQ(Objects(), 1u);
  EXPECT_EQ(StagingOf(c.get())->Stats().staged, 0u);
  EXPECT_EQ(ReadFromStore(ino), a);
  ASSERT_TRUE(c->Shutdown().ok());
}

}  // namespace
}  // namespace nexus::chunk
