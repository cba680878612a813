// The write buffer bounds memory: writing 4 GiB as fast as possible with a 64 MiB buffer keeps
// the process's peak RSS under 64 MiB plus a fixed overhead of 150 MiB (the binary, RocksDB-free
// metadata in memory, the 16 MiB block cache, thread stacks and allocator slack).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <filesystem>

#include "chunk/chunk_store.h"
#include "meta/kv/engine.h"
#include "meta/meta.h"
#include "object/block_codec.h"
#include "object/object_store.h"

namespace nexus::chunk {
namespace {

TEST(ChunkMemoryTest, FourGiBThroughA64MiBBufferStaysBounded) {
  char tmpl[] = "/tmp/nexus-chunk-mem-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  {
    auto e = kv::Engine::Open("mem://");
    ASSERT_TRUE(e);
    auto m = meta::Meta::Create(std::move(*e));
    meta::Format f;
    f.name = "membound";
    ASSERT_TRUE(m->Format(f, false).ok());
    auto store = object::ObjectStore::Open("file://" + dir + "/data");
    ASSERT_TRUE(store);
    ChunkOptions o;
    o.buffer_size = 64 << 20;
    o.mem_cache_size = 16 << 20;
    o.prefix = "membound/";
    auto chunks = ChunkStore::Open(m.get(), store->get(), o);
    ASSERT_TRUE(chunks) << chunks.error().ToString();
    meta::Context ctx;
    const std::string block(1 << 20, 'x');
    // Four files of 1 GiB, each deleted once written so the disk never holds more than ~1 GiB.
    for (int file = 0; file < 4; ++file) {
      std::string name = "f" + std::to_string(file);
      auto ent = m->Create(ctx, meta::kRootIno, name, 0644, O_WRONLY);
      ASSERT_TRUE(ent);
      for (uint64_t off = 0; off < (1ULL << 30); off += block.size()) {
        ASSERT_TRUE((*chunks)->Write(ent->ino, off, block.data(), block.size()).ok());
      }
      ASSERT_TRUE((*chunks)->Flush(ent->ino).ok());
      EXPECT_EQ(m->GetAttr(ent->ino)->length, 1ULL << 30);
      ASSERT_TRUE(m->Close(ent->ino).ok());
      ASSERT_TRUE(m->Unlink(ctx, meta::kRootIno, name).ok());
      ASSERT_TRUE((*chunks)->CleanupDeleted());
    }
    ASSERT_TRUE((*chunks)->Shutdown().ok());
  }
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  const long peak_mib = ru.ru_maxrss / 1024;
  std::printf("peak RSS after writing 4 GiB with a 64 MiB buffer: %ld MiB\n", peak_mib);
  EXPECT_LT(peak_mib, 64 + 150);
  std::filesystem::remove_all(dir);
}

// Back-pressure must not cut a sequential write into pieces: when the buffer is full because the
// store is slow, the writer waits for its uploads instead of sealing the slice it is writing.
// (It used to seal it every 20 ms of waiting: a 1 GiB fio write to s3rver left 61 slices in 16
// chunks, and reads then compacted them.)
TEST(ChunkMemoryTest, SequentialWriteToASlowStoreKeepsOneSlicePerChunk) {
  auto e = kv::Engine::Open("mem://");
  ASSERT_TRUE(e);
  auto m = meta::Meta::Create(std::move(*e));
  meta::Format f;
  f.name = "slowstore";
  ASSERT_TRUE(m->Format(f, false).ok());
  auto mem = object::ObjectStore::Open("mem://");
  ASSERT_TRUE(mem);
  // Every call waits up to 40 ms: the 8 MiB buffer is full nearly all the time.
  auto store = object::NewFaultyStore(std::move(*mem), object::FaultOptions{0, 40000, 3});
  ChunkOptions o;
  o.block_size = 1 << 20;
  o.buffer_size = 8 << 20;
  o.max_uploads = 4;
  o.prefix = "slowstore/";
  auto chunks = ChunkStore::Open(m.get(), store.get(), o);
  ASSERT_TRUE(chunks) << chunks.error().ToString();
  meta::Context ctx;
  auto ent = m->Create(ctx, meta::kRootIno, "seq", 0644, O_WRONLY);
  ASSERT_TRUE(ent);
  const std::string piece(256 << 10, 'q');
  const uint64_t size = 2 * meta::kChunkSize;
  for (uint64_t off = 0; off < size; off += piece.size()) {
    ASSERT_TRUE((*chunks)->Write(ent->ino, off, piece.data(), piece.size()).ok());
  }
  ASSERT_TRUE((*chunks)->Flush(ent->ino).ok());
  for (uint32_t c = 0; c < 2; ++c) {
    auto slices = m->ReadChunk(ent->ino, c);
    ASSERT_TRUE(slices) << slices.error().ToString();
    EXPECT_EQ(slices->size(), 1u) << "chunk " << c;
  }
  ASSERT_TRUE(m->Close(ent->ino).ok());
  ASSERT_TRUE((*chunks)->Shutdown().ok());
}

}  // namespace
}  // namespace nexus::chunk
