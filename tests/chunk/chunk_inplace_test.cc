// Blocks written in place (ObjectStore::NewWriter, file://): large writes go straight into the
// block objects' files; full blocks are committed where they are, a partial block is read back
// and put; reads of unflushed data find the bytes in those files; a writer that fails is
// replaced by a buffer without losing what it held. Over file:// behind a wrapper that counts
// the calls and can make writers fail (fault injection).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "chunk/chunk_impl.h"
#include "chunk/chunk_store.h"
#include "meta/kv/engine.h"
#include "meta/meta.h"
#include "object/object_store.h"

namespace nexus::chunk {
namespace {

namespace fs = std::filesystem;

class CountingStore final : public object::ObjectStore {
 public:
  explicit CountingStore(std::unique_ptr<object::ObjectStore> inner) : inner_(std::move(inner)) {}
  Status Put(std::string_view key, std::string_view data) override {
    puts++;
    return inner_->Put(key, data);
  }
  Result<std::string> Get(std::string_view key, uint64_t off, uint64_t len) override {
    gets++;
    return inner_->Get(key, off, len);
  }
  // Forwarded only when `local` is set: otherwise the store looks remote to the data path.
  Status ReadTo(std::string_view key, uint64_t off, size_t len, char* out) override {
    read_tos++;
    return local ? inner_->ReadTo(key, off, len, out) : ObjectStore::ReadTo(key, off, len, out);
  }
  bool ReadsLocally() const override { return local && inner_->ReadsLocally(); }
  void WillRead(std::string_view key, uint64_t off, uint64_t len) override {
    {
      std::lock_guard lock(hint_mu);
      hint_threads.insert(std::this_thread::get_id());
    }
    hints++;
    inner_->WillRead(key, off, len);
  }
  Result<object::ObjectInfo> Head(std::string_view key) override { return inner_->Head(key); }
  Status Delete(std::string_view key) override { return inner_->Delete(key); }
  Result<object::ListResult> List(std::string_view prefix, std::string_view marker,
                                  size_t limit) override {
    return inner_->List(prefix, marker, limit);
  }
  std::string Name() const override { return "counting+" + inner_->Name(); }
  std::unique_ptr<object::ObjectWriter> NewWriter(std::string_view key, uint64_t size) override {
    auto w = inner_->NewWriter(key, size);
    if (!w) return nullptr;
    writers++;
    return std::make_unique<Writer>(this, std::move(w));
  }

  std::atomic<int> puts{0}, gets{0}, read_tos{0}, writers{0}, commits{0}, hints{0};
  std::mutex hint_mu;
  std::set<std::thread::id> hint_threads;  // the threads that called WillRead
  bool local = false;                      // set before a ChunkStore opens it
  // Appends fail once a writer holds this many bytes (fault injection); 0 = never.
  std::atomic<uint64_t> fail_appends_after{0};

 private:
  class Writer final : public object::ObjectWriter {
   public:
    Writer(CountingStore* s, std::unique_ptr<object::ObjectWriter> w) : s_(s), w_(std::move(w)) {}
    Status Append(std::string_view data) override {
      const uint64_t limit = s_->fail_appends_after;
      if (limit && w_->size() + data.size() > limit) {
        // Part of the bytes goes in first, as a real short write would leave it.
        (void)w_->Append(data.substr(0, data.size() / 2));
        return Status::NoSpace("injected: no space left");
      }
      return w_->Append(data);
    }
    Status WriteAt(uint64_t off, std::string_view data) override { return w_->WriteAt(off, data); }
    Status ReadAt(uint64_t off, size_t len, char* out) override {
      return w_->ReadAt(off, len, out);
    }
    uint64_t size() const override { return w_->size(); }
    Status Commit() override {
      Status st = w_->Commit();
      if (st.ok()) s_->commits++;
      return st;
    }

   private:
    CountingStore* s_;
    std::unique_ptr<object::ObjectWriter> w_;
  };
  std::unique_ptr<object::ObjectStore> inner_;
};

std::string Bytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

class InPlaceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/nexus-inplace-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    auto e = kv::Engine::Open("mem://");
    ASSERT_TRUE(e);
    meta_ = meta::Meta::Create(std::move(*e));
    meta::Format f;
    f.name = "ip";
    f.block_size = 1 << 20;
    ASSERT_TRUE(meta_->Format(f, false).ok());
    auto s = object::ObjectStore::Open("file://" + root_ + "/data");
    ASSERT_TRUE(s);
    store_ = std::make_unique<CountingStore>(std::move(*s));
  }
  void TearDown() override {
    store_.reset();  // a file store's spare-file thread goes with it
    fs::remove_all(root_);
  }
  std::unique_ptr<ChunkStore> Open(uint64_t mem_cache = 0, uint64_t readahead = 0) {
    ChunkOptions o;
    o.block_size = 1 << 20;
    o.buffer_size = 8 << 20;
    o.mem_cache_size = mem_cache;  // 0: reads after the commit come from the objects themselves
    o.max_uploads = 1;             // commits in order: which blocks find room in the cache is exact
    o.background = false;
    o.max_readahead = readahead;
    o.prefetch_small_reads = false;  // as a mount on file:// has it
    o.prefix = "ip/";
    auto c = ChunkStore::Open(meta_.get(), store_.get(), o);
    EXPECT_TRUE(c) << c.error().ToString();
    return c ? std::move(*c) : nullptr;
  }
  meta::Ino NewFile(const std::string& name) {
    meta::Context ctx;
    auto ent = meta_->Create(ctx, meta::kRootIno, name, 0644, O_RDWR);
    EXPECT_TRUE(ent);
    return ent ? ent->ino : 0;
  }
  std::string Read(ChunkStore* c, meta::Ino ino, uint64_t off, size_t len, uint64_t file_len) {
    std::string out(len, '\0');
    auto n = c->Read(ino, off, out.data(), len, file_len);
    if (!n) return "error: " + n.error().ToString();
    out.resize(*n);
    return out;
  }
  // Temporary files of Puts and writers, not counting the spare files the store creates ahead
  // of need (object/spare_files.h).
  size_t TempFiles() {
    size_t n = 0;
    for (auto it = fs::recursive_directory_iterator(root_ + "/data"); it != fs::end(it); ++it) {
      if (it->path().filename() == ".nxtmp-spare") {
        it.disable_recursion_pending();
        continue;
      }
      n += it->path().filename().string().rfind(".nxtmp-", 0) == 0;
    }
    return n;
  }

  std::string root_;
  std::unique_ptr<meta::Meta> meta_;
  std::unique_ptr<CountingStore> store_;
};

TEST_F(InPlaceTest, LargeWritesGoStraightIntoTheBlockFiles) {
  const meta::Ino ino = NewFile("f");
  const std::string data = Bytes((3 << 20) + 300000, 1);  // three whole blocks and a partial one
  auto c = Open();
  ASSERT_TRUE(c);
  for (size_t off = 0; off < data.size(); off += 256 << 10) {
    const size_t n = std::min<size_t>(256 << 10, data.size() - off);
    ASSERT_TRUE(c->Write(ino, off, data.data() + off, n).ok());
    // Unflushed bytes read back from the block files (and from the memory buffer after them).
    ASSERT_EQ(Read(c.get(), ino, off / 2, n, off + n), data.substr(off / 2, n)) << off;
  }
  ASSERT_TRUE(c->Flush(ino).ok());
  EXPECT_EQ(store_->writers.load(), 4);
  EXPECT_EQ(store_->commits.load(), 3) << "full blocks are committed in place";
  EXPECT_EQ(store_->puts.load(), 1) << "the partial block is read back and put";
  EXPECT_EQ(TempFiles(), 0u);
  EXPECT_EQ(meta_->GetAttr(ino)->length, data.size());
  ASSERT_TRUE(c->Shutdown().ok());
  auto fresh = Open();
  EXPECT_EQ(Read(fresh.get(), ino, 0, data.size(), data.size()), data);
}

TEST_F(InPlaceTest, OnAStoreThatIsNotLocalCommittedBlocksGoToTheMemoryCacheWhileItHasRoom) {
  const meta::Ino ino = NewFile("f");
  const std::string data = Bytes(20 << 20, 4);
  auto c = Open(16 << 20);  // room for 16 of the 20 blocks
  ASSERT_TRUE(c);
  for (size_t off = 0; off < data.size(); off += 1 << 20) {
    ASSERT_TRUE(c->Write(ino, off, data.data() + off, 1 << 20).ok());
  }
  ASSERT_TRUE(c->Flush(ino).ok());
  EXPECT_EQ(store_->commits.load(), 20);
  // The first 16 blocks are read from memory, the last 4 from their objects.
  EXPECT_EQ(Read(c.get(), ino, 0, 16 << 20, data.size()), data.substr(0, 16 << 20));
  EXPECT_EQ(store_->gets.load(), 0);
  EXPECT_EQ(Read(c.get(), ino, 16 << 20, 4 << 20, data.size()), data.substr(16 << 20));
  EXPECT_EQ(store_->gets.load(), 4);
}

// On a store that reads locally the page cache holds what was written: nothing is copied into
// the memory cache at commit, and large reads read their ranges from the objects in place.
TEST_F(InPlaceTest, OnALocalStoreLargeReadsReadTheObjectsInPlace) {
  store_->local = true;
  const meta::Ino ino = NewFile("f");
  const std::string data = Bytes(20 << 20, 5);
  auto c = Open(64 << 20);
  ASSERT_TRUE(c);
  for (size_t off = 0; off < data.size(); off += 1 << 20) {
    ASSERT_TRUE(c->Write(ino, off, data.data() + off, 1 << 20).ok());
  }
  ASSERT_TRUE(c->Flush(ino).ok());
  EXPECT_EQ(store_->commits.load(), 20);
  for (int pass = 1; pass <= 2; ++pass) {
    EXPECT_EQ(Read(c.get(), ino, 0, data.size(), data.size()), data);
    EXPECT_EQ(store_->read_tos.load(), 20 * pass) << "one ranged read per block, every pass";
    EXPECT_EQ(store_->gets.load(), 0) << "no whole block is fetched";
  }
  // A quarter block or more at an offset inside a block: its range only.
  EXPECT_EQ(Read(c.get(), ino, (3 << 20) + 4097, 300000, data.size()),
            data.substr((3 << 20) + 4097, 300000));
  EXPECT_EQ(store_->read_tos.load(), 41);
  EXPECT_EQ(store_->gets.load(), 0);
}

// A sequential reader of a local store has the kernel read the blocks ahead of it, from its own
// thread: the hint costs less than waking a download thread to give it.
TEST_F(InPlaceTest, OnALocalStoreSequentialReadsHintTheBlocksAheadOnTheirOwnThread) {
  store_->local = true;
  const meta::Ino ino = NewFile("f");
  const std::string data = Bytes(20 << 20, 7);
  auto c = Open(64 << 20, 8 << 20);
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->Write(ino, 0, data.data(), data.size()).ok());
  ASSERT_TRUE(c->Flush(ino).ok());
  for (size_t off = 0; off < data.size(); off += 256 << 10) {
    ASSERT_EQ(Read(c.get(), ino, off, 256 << 10, data.size()), data.substr(off, 256 << 10));
  }
  EXPECT_GE(store_->hints.load(), 10) << "the blocks ahead of the reader were not hinted";
  EXPECT_EQ(store_->gets.load(), 0) << "no whole block is fetched";
  std::lock_guard lock(store_->hint_mu);
  ASSERT_EQ(store_->hint_threads.size(), 1u);
  EXPECT_EQ(*store_->hint_threads.begin(), std::this_thread::get_id());
}

// Small random reads on a local store: each reads its range, and the block follows into the
// memory cache in the background while the cache has room; later reads of it are from memory.
TEST_F(InPlaceTest, OnALocalStoreSmallReadsLoadTheirBlockWhileTheCacheHasRoom) {
  store_->local = true;
  const meta::Ino ino = NewFile("f");
  const std::string data = Bytes(18 << 20, 6);
  auto c = Open(16 << 20);  // room for 16 of the 18 blocks
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->Write(ino, 0, data.data(), data.size()).ok());
  ASSERT_TRUE(c->Flush(ino).ok());
  auto small_read = [&](uint32_t block, uint32_t at) {
    const uint64_t off = (uint64_t(block) << 20) + at;
    EXPECT_EQ(Read(c.get(), ino, off, 4096, data.size()), data.substr(off, 4096)) << off;
  };
  // Waits until the background loads are in the cache (the next read's room check sees them).
  const auto& cache = static_cast<ChunkStoreImpl*>(c.get())->memory_cache();
  auto wait_gets = [&](int n) {
    for (int i = 0; i < 500 && cache.Stats().bytes < uint64_t(n) << 20; ++i) usleep(10000);
    EXPECT_EQ(store_->gets.load(), n);
    EXPECT_EQ(cache.Stats().bytes, uint64_t(n) << 20);
  };
  for (uint32_t block = 0; block < 18; ++block) {
    small_read(block, 8192);
    EXPECT_EQ(store_->read_tos.load(), int(block) + 1) << "the first read of a block: its range";
    wait_gets(std::min<int>(block + 1, 16));  // the last two find no room
  }
  for (uint32_t block = 0; block < 16; ++block) small_read(block, 100000 + block * 4096);
  EXPECT_EQ(store_->read_tos.load(), 18) << "the first 16 blocks are read from memory";
  small_read(17, 100000);
  EXPECT_EQ(store_->read_tos.load(), 19);
  usleep(50000);
  EXPECT_EQ(store_->gets.load(), 16) << "a full cache loads nothing more";
}

TEST_F(InPlaceTest, SmallWritesAreBufferedAsBefore) {
  const meta::Ino ino = NewFile("f");
  const std::string data = Bytes(1 << 20, 2);
  auto c = Open();
  ASSERT_TRUE(c);
  for (size_t off = 0; off < data.size(); off += 4096) {
    ASSERT_TRUE(c->Write(ino, off, data.data() + off, 4096).ok());
  }
  ASSERT_TRUE(c->Flush(ino).ok());
  EXPECT_EQ(store_->writers.load(), 0);
  EXPECT_EQ(store_->puts.load(), 1);
  EXPECT_EQ(Read(c.get(), ino, 0, data.size(), data.size()), data);
}

TEST_F(InPlaceTest, AFailingWriterFallsBackToABufferAndLosesNothing) {
  const meta::Ino ino = NewFile("f");
  const std::string data = Bytes(2 << 20, 3);
  store_->fail_appends_after = 600 << 10;  // each block's writer fails at its third append
  auto c = Open();
  ASSERT_TRUE(c);
  for (size_t off = 0; off < data.size(); off += 256 << 10) {
    ASSERT_TRUE(c->Write(ino, off, data.data() + off, 256 << 10).ok()) << off;
  }
  ASSERT_TRUE(c->Flush(ino).ok());
  EXPECT_EQ(store_->writers.load(), 2);
  EXPECT_EQ(store_->commits.load(), 0);
  EXPECT_EQ(store_->puts.load(), 2);
  EXPECT_EQ(TempFiles(), 0u);
  ASSERT_TRUE(c->Shutdown().ok());
  auto fresh = Open();
  EXPECT_EQ(Read(fresh.get(), ino, 0, data.size(), data.size()), data);
}

}  // namespace
}  // namespace nexus::chunk
