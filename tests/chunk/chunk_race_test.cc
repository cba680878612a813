// Reads that race with commits. A read overlays this client's pending slices on the chunk's
// committed records; a flush on another thread (FUSE sends release asynchronously, and release
// flushes) commits a slice and drops it from the pending ones. A read must never fall between
// the two and miss the slice, and must never cache records that predate a commit. fsx over a
// mount found this once in 100,000 operations; here one thread writes and reads back while
// others flush, compact and delete the replaced slices as fast as they can.
#include <fcntl.h>
#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <thread>

#include "chunk/chunk_store.h"
#include "meta/kv/engine.h"
#include "meta/meta.h"
#include "object/object_store.h"

namespace nexus::chunk {
namespace {

class ChunkRaceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto e = kv::Engine::Open("mem://");
    ASSERT_TRUE(e);
    meta_ = meta::Meta::Create(std::move(*e));
    meta::Format f;
    f.name = "race";
    f.block_size = 64 << 10;
    ASSERT_TRUE(meta_->Format(f, false).ok());
    auto store = object::ObjectStore::Open("mem://");
    ASSERT_TRUE(store);
    store_ = std::move(*store);
    ChunkOptions o;
    o.block_size = 64 << 10;
    o.prefix = "race/";
    o.background = false;
    auto chunks = ChunkStore::Open(meta_.get(), store_.get(), o);
    ASSERT_TRUE(chunks) << chunks.error().ToString();
    chunks_ = std::move(*chunks);
    auto ent = meta_->Create(meta::Context{}, meta::kRootIno, "f", 0644, O_RDWR);
    ASSERT_TRUE(ent);
    ino_ = ent->ino;
  }
  void TearDown() override {
    if (chunks_) {
      EXPECT_TRUE(chunks_->Shutdown().ok());
    }
  }

  std::unique_ptr<meta::Meta> meta_;
  std::unique_ptr<object::ObjectStore> store_;
  std::unique_ptr<ChunkStore> chunks_;
  meta::Ino ino_ = 0;
};

TEST_F(ChunkRaceTest, ReadsSeeOwnWritesWhileOtherThreadsFlushCompactAndDelete) {
  constexpr uint64_t kSpan = 1 << 20;
  const int ops = 20000;
  std::atomic<bool> done{false};
  std::atomic<int> flushes{0}, compactions{0};
  std::thread flusher([&] {
    while (!done) {
      if (chunks_->Flush(ino_).ok()) flushes++;
    }
  });
  std::thread compactor([&] {
    while (!done) {
      if (chunks_->Compact(ino_, 0).ok()) compactions++;
      // Delete the replaced slices at once: a read that resolved them must read again.
      (void)chunks_->CleanupDeleted();
    }
  });
  std::string model;
  std::mt19937_64 rng(42);
  std::string data, back;
  int mismatches = 0;
  for (int i = 0; i < ops && mismatches == 0; ++i) {
    const uint64_t off = rng() % kSpan;
    const size_t len = 1 + rng() % (24 << 10);
    data.assign(len, static_cast<char>('a' + i % 26));
    data[0] = static_cast<char>(i);
    ASSERT_TRUE(chunks_->Write(ino_, off, data.data(), len).ok());
    if (model.size() < off + len) model.resize(off + len, '\0');
    model.replace(off, len, data);
    // Read back a range around the write, passing the length the test knows.
    const uint64_t from = off > 4096 ? off - 4096 : 0;
    const size_t want = static_cast<size_t>(std::min<uint64_t>(len + 8192, model.size() - from));
    back.assign(want, '\xee');
    auto n = chunks_->Read(ino_, from, back.data(), want, model.size());
    ASSERT_TRUE(n) << n.error().ToString();
    ASSERT_EQ(*n, want);
    if (back != model.substr(from, want)) {
      size_t at = 0;
      while (back[at] == model[from + at]) ++at;
      ADD_FAILURE() << "op " << i << ": read at " << from << " differs at offset " << from + at
                    << " (write at " << off << " +" << len << ")";
      mismatches++;
    }
  }
  done = true;
  flusher.join();
  compactor.join();
  EXPECT_EQ(mismatches, 0);
  EXPECT_GT(flushes.load(), 0);
  EXPECT_GT(compactions.load(), 0);
  // And the committed picture, read fresh, is the model.
  ASSERT_TRUE(chunks_->Flush(ino_).ok());
  chunks_->Invalidate(ino_);
  back.assign(model.size(), '\0');
  auto n = chunks_->Read(ino_, 0, back.data(), back.size(), model.size());
  ASSERT_TRUE(n);
  EXPECT_TRUE(back == model);
}

}  // namespace
}  // namespace nexus::chunk
